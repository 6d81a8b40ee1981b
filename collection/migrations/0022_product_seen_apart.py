"""When a product was last seen moves from its row to a narrow table of its own (ProductSeen),
so that a sighting that changes nothing does not rewrite the product.

A run over categories seen before returns mostly unchanged products. Refreshing `last_seen_at`
wrote a new version of each one, and (its page being full) a new entry in each of its indexes:
the title's trigram index, and the key that holds the title (0021). Now the checkpoint leaves
an unchanged product as it is and updates its ProductSeen row. On PostgreSQL that table leaves
half of each page free, so the new version of its row stays on its page and its key is not
written either (a HOT update).

One transaction: the table is created and filled from the products (a read that blocks no
one), then the column is dropped, which needs the products' exclusive lock for a moment. Like
0019 it waits at most LOCK_TIMEOUT for that lock, then fails, changing nothing; run it again
when the long query holding the table (a CSV export) is done. Undone, the column comes back
filled from the table.
"""

import django.db.models.deletion
from django.db import migrations, models

LOCK_TIMEOUT = "10s"
FREE_SPACE_FILLFACTOR = 50  # % of each page filled by inserts; the rest is for rows' new versions


def copy_last_seen(apps, schema_editor):
    seen, product = (schema_editor.quote_name(apps.get_model("collection", name)._meta.db_table)
                     for name in ("ProductSeen", "Product"))
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:
        schema_editor.execute(f"ALTER TABLE {seen} SET (fillfactor = {FREE_SPACE_FILLFACTOR})")
    schema_editor.execute(f"INSERT INTO {seen} (product_id, last_seen_at) "  # noqa: S608
                          f"SELECT id, last_seen_at FROM {product} ORDER BY id")
    if postgresql:
        schema_editor.execute(f"ANALYZE {seen}")
        schema_editor.execute(f"SET LOCAL lock_timeout = '{LOCK_TIMEOUT}'")  # for the drop below


def drop_column(apps, schema_editor):
    model = apps.get_model("collection", "Product")
    schema_editor.remove_field(model, model._meta.get_field("last_seen_at"))


def add_column_back(apps, schema_editor):
    """The column as it was (NOT NULL), filled from the table (or the first sighting)."""
    model = apps.get_model("collection", "Product")
    nullable = models.DateTimeField(null=True)
    nullable.set_attributes_from_name("last_seen_at")
    schema_editor.add_field(model, nullable)
    seen, product = (schema_editor.quote_name(apps.get_model("collection", name)._meta.db_table)
                     for name in ("ProductSeen", "Product"))
    schema_editor.execute(f"UPDATE {product} SET last_seen_at = COALESCE((SELECT s.last_seen_at FROM {seen} s "  # noqa: S608
                          f"WHERE s.product_id = {product}.id), first_seen_at)")
    required = models.DateTimeField()
    required.set_attributes_from_name("last_seen_at")
    schema_editor.alter_field(model, nullable, required)


class Migration(migrations.Migration):

    dependencies = [
        ('collection', '0021_product_key_covers_search'),
    ]

    operations = [
        migrations.CreateModel(
            name='ProductSeen',
            fields=[
                ('product', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='seen', serialize=False, to='collection.product')),
                ('last_seen_at', models.DateTimeField()),
            ],
        ),
        migrations.RunPython(copy_last_seen, migrations.RunPython.noop),
        migrations.SeparateDatabaseAndState(
            state_operations=[migrations.RemoveField(model_name='product', name='last_seen_at')],
            database_operations=[migrations.RunPython(drop_column, add_column_back)],
        ),
    ]
