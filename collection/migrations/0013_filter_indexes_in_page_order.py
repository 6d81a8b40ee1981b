"""Filters a cursor pages through in id order: (column, id) indexes, read as a range in order
rather than every match fetched and sorted. The category's own foreign-key index is replaced by
one that ends in the id. Built concurrently on PostgreSQL (see _concurrently)."""

import django.db.models.deletion
from django.db import migrations, models

from collection.migrations._concurrently import add_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("collection", "0012_search_and_sort_indexes")]

    operations = [
        add_index("product", models.Index(fields=["category", "id"], name="product_category_idx")),
        add_index("offer", models.Index(fields=["fulfilled_by_platform", "id"], name="offer_fulfilled_idx")),
        migrations.AlterField(
            model_name="product",
            name="category",
            field=models.ForeignKey(blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL,
                                    related_name="products", to="collection.category"),
        ),
    ]
