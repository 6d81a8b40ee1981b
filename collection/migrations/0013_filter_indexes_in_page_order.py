"""A category's products in id order: the foreign key's own index is replaced by (category, id),
so a cursor page of a category is a range read in order rather than every product of the
category fetched and sorted (same cost to write: one index either way). Built concurrently on
PostgreSQL (see _concurrently)."""

import django.db.models.deletion
from django.db import migrations, models

from collection.migrations._concurrently import add_index, drop_field_index


class Migration(migrations.Migration):
    atomic = False

    dependencies = [("collection", "0012_search_and_sort_indexes")]

    operations = [
        add_index("product", models.Index(fields=["category", "id"], name="product_category_idx")),
        drop_field_index("product", "category", models.ForeignKey(
            blank=True, db_index=False, null=True, on_delete=django.db.models.deletion.SET_NULL,
            related_name="products", to="collection.category")),
    ]
