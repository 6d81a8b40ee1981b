"""Titles and sellers' names searched in a stored upper-case copy (a generated column), not
through UPPER() on every row read.

A search for two words that are each common but rare together ("wireless phone": 2.6 % and
5.2 % of titles, 0.12 % together) fills its page by walking about 87,000 titles in id order.
UPPER(title) is the walk's cost: under a UTF-8 locale PostgreSQL converts each title to wide
characters and back, letter by letter (34 ms for the 87,000 at 1 M products; the same LIKE on
a stored copy took 11 ms). The copy is made by the database (GENERATED ALWAYS AS upper(…)
STORED), so it is never stale and the search word is folded by the same function
(selectors.search). Its trigram index replaces 0012's on UPPER(column), with 0015's finer
statistics, now the column's own.

Adding a stored generated column rewrites the table under an exclusive lock: the old trigram
index is dropped first, so the rewrite does not rebuild it (measured: see the README, "Data at
scale"), and the new one is built CONCURRENTLY afterwards. Searches work in between, without an
index. PostgreSQL only for the indexes; SQLite gets the columns (its UPPER folds ASCII, as its
LIKE always did).
"""

from django.db import migrations, models
from django.db.models.functions import Upper

SEARCHED = [  # (table, stored copy, index name, the copied column's 0012 index)
    ("collection_product", "title_upper", "product_title_upper_trgm", "product_title_trgm"),
    ("collection_seller", "name_upper", "seller_name_upper_trgm", "seller_name_trgm"),
]
TARGET = 1000  # 0015's statistics target: a 1 % word estimated within about a third


def add_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for table, column, name, _ in SEARCHED:  # dropped first: a failed concurrent build leaves it invalid
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")
        schema_editor.execute(f"CREATE INDEX CONCURRENTLY {name} ON {table} USING gin ({column} gin_trgm_ops)")
        schema_editor.execute(f"ALTER TABLE {table} ALTER COLUMN {column} SET STATISTICS {TARGET}")
        # The rewrite left the table without a visibility map, and nothing would make autovacuum
        # visit it soon: index-only scans (0018, 0020) would read the table for every row.
        schema_editor.execute(f"VACUUM (ANALYZE) {table}")


def drop_trigram_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _, _, name, _ in SEARCHED:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {name}")


def drop_old_indexes(apps, schema_editor):
    if schema_editor.connection.vendor != "postgresql":
        return
    for _, _, _, old in SEARCHED:
        schema_editor.execute(f"DROP INDEX CONCURRENTLY IF EXISTS {old}")


def restore_old_indexes(apps, schema_editor):
    made = __import__("collection.migrations.0012_search_and_sort_indexes", fromlist=["add_trigram_indexes"])
    tuned = __import__("collection.migrations.0015_search_statistics", fromlist=["set_statistics"])
    made.add_trigram_indexes(apps, schema_editor)
    tuned.set_statistics(tuned.TARGET)(apps, schema_editor)


class Migration(migrations.Migration):
    atomic = False  # CREATE and DROP INDEX CONCURRENTLY cannot run inside a transaction

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
        migrations.RunPython(add_trigram_indexes, drop_trigram_indexes),
    ]
