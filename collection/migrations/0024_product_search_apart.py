"""Product search moves from the products' rows to a table of its own (ProductSearch), written
by the workers' indexer after a page is stored, not by the page's checkpoint; the checkpoint
queues the products it inserted or changed (ProductSearchQueue). Migration 0025 builds the
entries' trigram index, and 0026 takes the products' copy of the title, its trigram index and
the key covering it away.

One transaction (re-run from the start if it fails): the tables are created, the entries' key
made to hold both columns (0021: a search walking the rows in id order reads the key alone),
and the entries filled from the products' external ids and stored copies of the title (0019)
in id order, a read that blocks no one. A product stored by a worker still running the previous
version after this read is not queued: stop the workers before migrating, or run
`manage.py collection_search_index --all` after.
"""

import django.db.models.deletion
from django.db import migrations, models

def fill(apps, schema_editor):
    search, product = (apps.get_model("collection", name)._meta.db_table for name in ("ProductSearch", "Product"))
    if schema_editor.connection.vendor == "postgresql":  # on the empty table: no scan
        schema_editor.execute(f"ALTER TABLE {search} DROP CONSTRAINT {search}_pkey, "
                              f"ADD PRIMARY KEY (product_id) INCLUDE (external_id, title_upper)")
    schema_editor.execute(f"INSERT INTO {search} (product_id, external_id, title_upper) "  # noqa: S608
                          f"SELECT id, external_id, title_upper FROM {product} ORDER BY id")


class Migration(migrations.Migration):

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
