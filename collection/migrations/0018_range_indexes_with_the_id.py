"""A range's page read from its index alone: prices (products, offers) and sellers' feedback
score indexed with the id, in place of the column alone (0016, and 0001's feedback index).

A page is the range's first 100 rows in id order. A narrow range is read through its index
and sorted by id; a wide one is walked in id order until the page is full. Between the two
(`price_min=10&price_max=10.49`, 0.045 % of 10 million products) both plans cost the same,
and grew with the square root of the table: 52 ms at 10 million, most of it the heap pages
of the range's 4,500 rows, read to learn their ids. With the id in the index, the list reads
the page's keys first (views.DiscoveredViewSet.paginate_queryset) from the index alone, then
its 100 rows. Built CONCURRENTLY on PostgreSQL (see _concurrently) before the old ones are
dropped, so migrating neither blocks the workers nor leaves a range without an index.
"""

from django.db import migrations, models

from collection.migrations._concurrently import add_index, remove_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("collection", "0017_filter_indexes_for_rare_values")]

    operations = [
        add_index("product", models.Index(fields=["price", "id"], name="product_price_id_idx")),
        add_index("offer", models.Index(fields=["price", "id"], name="offer_price_id_idx")),
        add_index("seller", models.Index(fields=["feedback_score", "id"], name="seller_feedback_id_idx")),
        remove_index("product", models.Index(fields=["price"], name="product_price_idx")),
        remove_index("offer", models.Index(fields=["price"], name="offer_price_idx")),
        remove_index("seller", models.Index(fields=["feedback_score"], name="seller_feedback_idx")),
    ]
