"""The products' own search columns go, now that title search reads ProductSearch (0024): the
stored upper-case copy of the title (0019), its trigram index (0020) and the key's covered
columns (0021, given back its plain form first: dropping the column would drop the key). Every
product the checkpoint writes no longer pays for them.

The key is swapped as 0021 swaps it (built CONCURRENTLY, then a moment's exclusive lock, waited
for at most a few seconds, retried). Undone, all three come back as those migrations made them.
"""

import importlib

from django.db import migrations

INDEX, TARGET = "product_title_upper_trgm", 1000
covering = importlib.import_module("collection.migrations.0021_product_key_covers_search")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        covering.uncover_search(apps, schema_editor)  # before the column: dropping it would drop the key
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


def add_index_back(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # the column is back (RemoveField undone)
        table = apps.get_model("collection", "Product")._meta.db_table
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {table} USING gin (title_upper gin_trgm_ops)")
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN title_upper SET STATISTICS {TARGET}")
        covering.cover_search(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = False  # CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("collection", "0024_product_search_apart")]

    operations = [
        migrations.RunPython(drop_index, add_index_back),
        migrations.RemoveField(model_name="product", name="title_upper"),
    ]
