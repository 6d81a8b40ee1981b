"""Products' and offers' prices indexed: a narrow price range (`?price_min=10&price_max=10.05`)
matches a few rows in millions, and without an index a page of them was found by walking every
row in id order (382 ms for products and 579 ms for offers at 10 million, growing with the
table). With it PostgreSQL reads the range and sorts it by id, or walks in id order when the
range is wide enough to fill a page soon, whichever its statistics say is cheaper. Built
CONCURRENTLY on PostgreSQL (see _concurrently), so migrating does not block the workers."""

from django.db import migrations, models

from collection.migrations._concurrently import add_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("collection", "0015_search_statistics")]

    operations = [
        add_index("product", models.Index(fields=["price"], name="product_price_idx")),
        add_index("offer", models.Index(fields=["price"], name="offer_price_idx")),
    ]
