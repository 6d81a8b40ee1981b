"""Products' condition and country, and offers' condition, indexed with the id: a filter on a
value few rows have (`?location_country=IS`, `?condition=USED_GOOD`: eBay has a dozen
conditions, most of them rare) read every row of 10 million, 0.33–0.62 s, growing with the
table, where the common values filled a page in id order at once. With (column, id) a page of
any value is a range read in id order, as a category's (migration 0013). Built CONCURRENTLY
on PostgreSQL (see _concurrently), so migrating does not block the workers."""

from django.db import migrations, models

from collection.migrations._concurrently import add_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("collection", "0016_price_indexes")]

    operations = [
        add_index("product", models.Index(fields=["condition", "id"], name="product_condition_idx")),
        add_index("product", models.Index(fields=["location_country", "id"], name="product_country_idx")),
        add_index("offer", models.Index(fields=["condition", "id"], name="offer_condition_idx")),
    ]
