"""Data migrations, run forward from the state before them."""

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor
from django.utils import timezone


@pytest.mark.django_db(transaction=True)
def test_listings_stored_before_offers_become_one_offer_each():
    executor = MigrationExecutor(connection)
    before, after = [("collection", "0007_seller_filter_indexes_not_led_by_platform")], [("collection", "0008_offers")]
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    Seller, Product = apps.get_model("collection", "Seller"), apps.get_model("collection", "Product")
    now = timezone.now()
    seller = Seller.objects.create(platform="ebay", external_id="alice", first_seen_at=now, last_seen_at=now)
    Product.objects.create(platform="ebay", external_id="1", title="Lamp", price="9.50", currency="USD",
                           condition="NEW", seller=seller, first_seen_at=now, last_seen_at=now)
    Product.objects.create(platform="ebay", external_id="2", title="No seller", first_seen_at=now, last_seen_at=now)
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    Offer = executor.loader.project_state(after).apps.get_model("collection", "Offer")
    offers = list(Offer.objects.values_list("product__external_id", "seller__external_id", "price", "condition"))
    assert [(p, s, str(price), c) for p, s, price, c in offers] == [("1", "alice", "9.50", "NEW")]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
