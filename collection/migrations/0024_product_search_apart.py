"""Product search moves from the products' rows to a table of its own (ProductSearch), written
by the workers' indexer after a page is stored, not by the page's checkpoint; the checkpoint
queues the products it inserted or changed (ProductSearchQueue). Migration 0025 then takes the
products' copy of the title, its trigram index and the key covering it away.

The table is filled from the products' external ids and stored copies of the title (0019), in
id order, and has what the products had on PostgreSQL: an index on the external id, a key that
holds both columns (0021: a search walking the rows in id order reads the key alone), the
trigram index (0020, built once the rows are in: faster than entry by entry, and CONCURRENTLY,
so the migration blocks no worker) and finer statistics (0015). A product stored by a worker still running the
previous version while this runs is not queued: `manage.py collection_search_index --all`
indexes every product again.
"""

import django.db.models.deletion
from django.db import migrations, models

INDEX, TARGET = "product_search_title_upper_trgm", 1000  # 0015's statistics target


def fill(apps, schema_editor):
    search, product = (apps.get_model("collection", name)._meta.db_table for name in ("ProductSearch", "Product"))
    postgresql = schema_editor.connection.vendor == "postgresql"
    if postgresql:  # on the empty table: no scan, a moment's lock
        schema_editor.execute(f"ALTER TABLE {search} DROP CONSTRAINT {search}_pkey, "
                              f"ADD PRIMARY KEY (product_id) INCLUDE (external_id, title_upper)")
    schema_editor.execute(f"INSERT INTO {search} (product_id, external_id, title_upper) "  # noqa: S608
                          f"SELECT id, external_id, title_upper FROM {product} ORDER BY id")
    if postgresql:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {INDEX}")  # what a failed build left
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {INDEX} ON {search} USING gin (title_upper gin_trgm_ops)")
        schema_editor.execute(f"ALTER TABLE {search} ALTER COLUMN title_upper SET STATISTICS {TARGET}")
        schema_editor.execute(f"VACUUM (ANALYZE) {search}")  # index-only scans need the visibility map


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY and VACUUM cannot run inside a transaction

    dependencies = [
        ('collection', '0023_product_seen_verbose_name'),
    ]

    operations = [
        migrations.CreateModel(
            name='ProductSearch',
            fields=[
                ('product', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='search', serialize=False, to='collection.product')),
                ('external_id', models.CharField(max_length=128)),
                ('title_upper', models.CharField(help_text='UPPER(title), folded by the database.', max_length=500)),
            ],
            options={
                'verbose_name': 'search entry',
                'verbose_name_plural': 'search entries',
                'indexes': [models.Index(fields=['external_id'], name='product_search_external_id_idx')],
            },
        ),
        migrations.CreateModel(
            name='ProductSearchQueue',
            fields=[
                ('product', models.OneToOneField(db_constraint=False, on_delete=django.db.models.deletion.CASCADE, primary_key=True, related_name='+', serialize=False, to='collection.product')),
            ],
            options={
                'verbose_name': 'product waiting for search',
            },
        ),
        migrations.RunPython(fill, migrations.RunPython.noop),
    ]
