"""Titles and sellers' names searched in a stored upper-case copy (a generated column), not
through UPPER() on every row read.

A search for two words that are each common but rare together ("wireless phone": 2.6 % and
5.2 % of titles, 0.12 % together) fills its page by walking about 87,000 titles in id order.
UPPER(title) was most of the walk's cost: under a UTF-8 locale PostgreSQL converts each title
to wide characters and back, letter by letter. The copy is made by the database (GENERATED
ALWAYS AS upper(…) STORED), so it is never stale, and the search word is folded by the same
function (selectors.search). Migration 0020 gives the copies the trigram indexes that 0012 gave
UPPER(column).

Adding a stored generated column rewrites the table under an exclusive lock (57 s for 10
million products on a 2-core machine: pause the runs first). One transaction: the old trigram
indexes are dropped in it (the rewrite would otherwise rebuild them), so a failure leaves the
tables as they were and the migration can simply run again. Searches work without an index
until 0020 has built the new ones. SQLite gets the columns (its UPPER folds ASCII letters only,
as its LIKE always did).
"""

from django.db import migrations, models
from django.db.models.functions import Upper

LOCK_TIMEOUT = "10s"
OLD_INDEXES = [("collection_product", "title", "product_title_trgm"),  # 0012, statistics by 0015
               ("collection_seller", "name", "seller_name_trgm")]


def drop_old_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    # Each lock is waited for at most this long (not the rewrite): behind a long query on the
    # table (a CSV export) every other query would queue behind the waiting migration. It
    # then fails with "canceling statement due to lock timeout", changing nothing: run it again.
    schema_editor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")
    for _, _, name in OLD_INDEXES:  # in the transaction: under the lock the rewrite takes anyway
        schema_editor.execute(f"DROP INDEX IF EXISTS {name}")


def restore_old_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name in OLD_INDEXES:
        schema_editor.execute(f"CREATE INDEX IF NOT EXISTS {name} ON {table} USING gin (UPPER({column}) gin_trgm_ops)")
        schema_editor.execute(f"ALTER INDEX {name} ALTER COLUMN 1 SET STATISTICS 1000")


class Migration(migrations.Migration):
    dependencies = [("collection", "0018_range_indexes_with_the_id")]

    operations = [
        migrations.RunPython(drop_old_indexes, restore_old_indexes),
        migrations.AddField(
            model_name="product",
            name="title_upper",
            field=models.GeneratedField(db_persist=True, expression=Upper("title"),
                                        output_field=models.CharField(max_length=500)),
        ),
        migrations.AddField(
            model_name="seller",
            name="name_upper",
            field=models.GeneratedField(db_persist=True, expression=Upper("name"),
                                        output_field=models.CharField(max_length=255)),
        ),
    ]
