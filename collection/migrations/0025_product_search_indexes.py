"""The search entries' trigram index (0020's, now on ProductSearch), with 0015's finer
statistics, and the table vacuumed (index-only scans need its visibility map). Built
CONCURRENTLY once the rows are in (0024): faster than entry by entry, and migrating blocks no
worker; running it again repairs a failed build. PostgreSQL only.
"""

from django.db import migrations

TABLE, INDEX, TARGET = "collection_productsearch", "product_search_title_upper_trgm", 1000


def add_index(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")  # what a failed build left
    schema_editor.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {TABLE} USING gin (title_upper gin_trgm_ops)")
    schema_editor.execute(f"ALTER TABLE {TABLE} ALTER COLUMN title_upper SET STATISTICS {TARGET}")
    schema_editor.execute(f"VACUUM (ANALYZE) {TABLE}")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY and VACUUM cannot run inside a transaction

    dependencies = [("collection", "0024_product_search_apart")]

    operations = [migrations.RunPython(add_index, drop_index)]
