"""Search and sort at tens of millions of rows.

* Part of a title or a seller's name: a trigram GIN index (pg_trgm) on UPPER(column), which is
  what Django's `icontains` compares on PostgreSQL (UPPER(col) LIKE UPPER('%term%')). PostgreSQL
  only: SQLite has no such index and searches by scanning.
* Runs newest first by creation time (a small table; products, sellers and offers are sorted by
  id, which is the order they were first stored, and need no index of their own).

Built CONCURRENTLY on PostgreSQL (the migration is not atomic), so adding them to a database
with millions of rows does not block the workers' writes.
"""

from django.contrib.postgres.operations import TrigramExtension
from django.db import migrations, models

from collection.migrations._concurrently import add_index

TRIGRAM = [  # (table, column, index name)
    ("collection_product", "title", "product_title_trgm"),
    ("collection_seller", "name", "seller_name_trgm"),
]
BTREE = [  # (model, index)
    ("collectionrun", models.Index(fields=["created_at", "id"], name="run_created_idx")),
]


def add_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name in TRIGRAM:  # dropped first: a failed concurrent build leaves it invalid
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} USING gin (UPPER({column}) gin_trgm_ops)")


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _, _, name in TRIGRAM:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY cannot run inside a transaction

    dependencies = [("collection", "0011_seen_in_run")]

    operations = [
        TrigramExtension(),
        migrations.RunPython(add_trigram_indexes, drop_trigram_indexes),
        *(add_index(model_name, index) for model_name, index in BTREE),
    ]
