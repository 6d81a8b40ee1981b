"""The products' primary key index also holds the two searched columns (INCLUDE external_id,
title_upper), so a search that walks the products in id order reads the key alone.

A search for two words each common but rare together ("wireless phone": 0.12 % of titles)
fills its page by walking about 87,000 products in id order. Through the table that is some
2,800 pages of 8 kB at 10 million products, each copied from the operating system's cache
into PostgreSQL's shared buffers: 24–27 ms for the page's 101 keys (psql). Through the key
holding what the search tests, an index-only scan of about 800 pages: 10–15 ms. The list
reads a page's keys first (views.DiscoveredViewSet.paginate_queryset), so that query needs
nothing else. No index is added: the key's entries grow by the two columns.

Built as a unique index CONCURRENTLY, then swapped in as the primary key: no scan (the index
already proves the key), but an exclusive lock for a moment. The swap waits at most
LOCK_TIMEOUT for it, so that a long query on the products (a CSV export) does not queue every
other query behind the waiting swap; it tries TRIES times, then fails saying so (and that the
index it built is there until the next run drops it); run the migration again when the query
is done. A key that already covers the columns is left as it is.
PostgreSQL only.
"""

import time

from django.db import OperationalError, migrations, transaction

TABLE, KEY = "collection_product", "collection_product_pkey"
COVERING = "INCLUDE (external_id, title_upper)"
LOCK_TIMEOUT, TRIES = "2s", 15


def _key_definition(schema_editor) -> str:
    with schema_editor.connection.cursor() as cursor:
        cursor.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND indexname = %s", [KEY])
        return cursor.fetchone()[0]


def _swap_key(schema_editor, include: str) -> None:
    building = f"{KEY}_new"
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {building}")  # what a failed build left
    schema_editor.execute(f"CREATE UNIQUE INDEX CONCURRENTLY {building} ON {TABLE} (id) {include}")
    for attempt in range(1, TRIES + 1):
        try:  # one statement: never without a key. ADD … USING INDEX gives the index the key's name.
            with transaction.atomic(using=schema_editor.connection.alias):
                schema_editor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
                schema_editor.execute(f"ALTER TABLE {TABLE} DROP CONSTRAINT {KEY}, "
                                      f"ADD CONSTRAINT {KEY} PRIMARY KEY USING INDEX {building}")
            return
        except OperationalError as error:
            if getattr(error.__cause__, "sqlstate", None) != "55P03":  # not lock_not_available
                raise
            if attempt == TRIES:
                # Dropping the index now would wait for that query too (CONCURRENTLY waits for
                # every transaction on the table): say it is there, since every write pays for it.
                raise OperationalError(
                    f"{TABLE}: could not swap in the new primary key ({error}); a long query holds the table. "
                    f"Run the migration again when it is done; until then every write also updates the index "
                    f"{building} it built (DROP INDEX CONCURRENTLY {building} to remove it).") from error
            time.sleep(1)


def cover_search(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql" and "INCLUDE" not in _key_definition(schema_editor):
        _swap_key(schema_editor, COVERING)


def uncover_search(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql" and "INCLUDE" in _key_definition(schema_editor):
        _swap_key(schema_editor, "")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("collection", "0020_search_trigram_indexes")]

    operations = [migrations.RunPython(cover_search, uncover_search)]
