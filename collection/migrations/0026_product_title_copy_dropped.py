"""The products' own search columns go, now that product search reads ProductSearch (0024, 0025):
the stored upper-case copy of the title (0019), its trigram index (0020) and the key's covered
columns (0021, given back its plain form first: dropping the column would drop the key). Every
product the checkpoint writes no longer pays for them.

The key is swapped as 0021 swaps it (built CONCURRENTLY, then a moment's exclusive lock). The
column is dropped under the same lock, for a moment too (PostgreSQL only marks it dropped), waited
for at most LOCK_TIMEOUT, TRIES times, so that a long query on the products (a CSV export) does
not queue every other query behind the waiting drop; it then fails saying so, and running the
migration again finishes it. Processes still running the previous version read the column:
stop the web and worker processes for this migration. Undone, all three come back as those
migrations made them; the copy is computed for every product again, rewriting the table under
its exclusive lock (minutes at 10 million products).
"""

import importlib

from django.db import migrations, models
from django.db.models.functions import Upper

from collection.migrations._concurrently import under_short_lock

INDEX, TARGET = "product_title_upper_trgm", 1000
LOCK_TIMEOUT, TRIES = "2s", 15
covering = importlib.import_module("collection.migrations.0021_product_key_covers_search")


def drop_index(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":
        covering.uncover_search(apps, schema_editor)  # before the column: dropping it would drop the key
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")


def add_index_back(apps, schema_editor):
    if schema_editor.connection.vendor == "postgresql":  # the column is back (add_copy_back)
        table = apps.get_model("collection", "Product")._meta.db_table
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {table} USING gin (title_upper gin_trgm_ops)")
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN title_upper SET STATISTICS {TARGET}")
        covering.cover_search(apps, schema_editor)


def drop_copy(apps, schema_editor):
    """The column, dropped under a bounded wait for the products' lock (`apps`: the state before
    this migration, which has it)."""
    model = apps.get_model("collection", "Product")
    field = model._meta.get_field("title_upper")
    with schema_editor.connection.cursor() as cursor:
        if field.column not in {c.name for c in schema_editor.connection.introspection.get_table_description(
                cursor, model._meta.db_table)}:
            return  # dropped already (by this migration's first version, 0025_product_title_copy_dropped)
    under_short_lock(schema_editor, lambda: schema_editor.remove_field(model, field),
                     f"{model._meta.db_table}: could not drop title_upper", LOCK_TIMEOUT, TRIES)


def add_copy_back(apps, schema_editor):
    """The column as 0019 made it (`apps`: the state after this migration, without it)."""
    model = apps.get_model("collection", "Product")
    copy = models.GeneratedField(expression=Upper("title"), output_field=models.CharField(max_length=500),
                                 db_persist=True)
    copy.contribute_to_class(model, "title_upper")  # a generated field resolves its expression on its model
    schema_editor.add_field(model, copy)


class Migration(migrations.Migration):
    atomic = False  # CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("collection", "0025_product_search_indexes")]

    operations = [
        migrations.RunPython(drop_index, add_index_back),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name="product", name="title_upper")],
            database_operations=[migrations.RunPython(drop_copy, add_copy_back)],
        ),
    ]
