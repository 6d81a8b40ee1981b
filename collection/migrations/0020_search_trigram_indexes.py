"""Trigram indexes on the stored upper-case copies of 0019 (what 0012 built on UPPER(column)),
with 0015's finer statistics, now the columns' own, and the rewritten tables vacuumed.
Built CONCURRENTLY on PostgreSQL: migrating does not block the workers, and running it again
repairs a failed build. Nothing on SQLite.
"""

from django.db import migrations

SEARCHED = [  # (table, stored copy, index name)
    ("collection_product", "title_upper", "product_title_upper_trgm"),
    ("collection_seller", "name_upper", "seller_name_upper_trgm"),
]
TARGET = 1000  # 0015's statistics target: a 1 % word estimated within about a third


def add_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name in SEARCHED:  # dropped first: a failed concurrent build leaves it invalid
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} USING gin ({column} gin_trgm_ops)")
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {TARGET}")
        # 0019's rewrite left the table without a visibility map, and nothing would bring
        # autovacuum soon: index-only scans (0018, 0021) would read the table for every row.
        schema_editor.execute(f"VACUUM (ANALYZE) {table}")


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _, _, name in SEARCHED:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


class Migration(migrations.Migration):
    atomic = False  # CREATE INDEX CONCURRENTLY and VACUUM cannot run inside a transaction

    dependencies = [("collection", "0019_search_stored_upper")]

    operations = [migrations.RunPython(add_trigram_indexes, drop_trigram_indexes)]
