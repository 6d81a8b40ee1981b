"""Finer statistics for the searched expressions (UPPER(title), UPPER(name)), PostgreSQL only.

The planner estimates how many rows `UPPER(col) LIKE '%word%'` matches by trying the pattern on
the column's histogram. With the default 100 entries a word in 1 % of the names matches none or
two of them, so the estimate is noise (it was 200 sellers of 2,000,000 where 17,580 matched):
the planner then read every match through the trigram index and sorted them instead of walking
the rows newest first until a page is full (an API search request: 45 ms at 10 M products
instead of 12 ms; the query alone 34 ms instead of 4). With 1,000 entries a 1 % word is
estimated within about a third. The statistics are the trigram indexes' own (an expression
index keeps statistics of its expression); ANALYZE samples 300,000 rows instead of 30,000, a
few seconds at 10 M products, without blocking writes.
"""

from django.db import migrations

TARGET = 1000
TRIGRAM_INDEXES = [("collection_product", "product_title_trgm"), ("collection_seller", "seller_name_trgm")]  # 0012


def set_statistics(target):
    def apply(apps, schema_editor):
        if schema_editor.connection.vendor != "postgresql":
            return
        for table, name in TRIGRAM_INDEXES:
            schema_editor.execute(f"ALTER INDEX {name} ALTER COLUMN 1 SET STATISTICS {target}")
            schema_editor.execute(f"ANALYZE {table}")
    return apply


class Migration(migrations.Migration):
    # Each statement its own transaction: an ANALYZE in the transaction that set the target
    # still samples by the old one (seen on PostgreSQL 15: 101 histogram entries, not 1,001).
    atomic = False

    dependencies = [("collection", "0014_seen_in_run_by_id")]

    operations = [migrations.RunPython(set_statistics(TARGET), set_statistics(-1), elidable=False)]
