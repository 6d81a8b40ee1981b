import threading

import pytest
from django.db import connection, transaction
from django.utils import timezone

from collection.models import Category, Offer, Product, ProductSeen, Seller
from collection.services import collected, runs
from collection.services.checkpoint import page_params, page_sql, upsert_items
from collection.sources.demo import demo_item
from tests.conftest import in_thread_once_set, make_categories, postgres_only, wait_for, waiting_on_a_lock
from tests.factories import seed_offers
from tests.services.test_checkpoint import items

pytestmark = pytest.mark.django_db


def test_products_go_in_batches_with_their_offers_and_last_sightings_and_nothing_else():
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("x", i) for i in range(7)], run_id=None, category_id=cat.pk)
    kept = Product.objects.get(external_id="demo-x-3")
    doomed = Product.objects.exclude(pk=kept.pk)
    assert collected.deletion_counts(doomed) == {Product: 6, Offer: 6, ProductSeen: 6}

    assert collected.products_delete(products=doomed, batch=4) == 6  # two batches, the second short
    assert list(Product.objects.all()) == [kept]
    assert list(Offer.objects.values_list("product_id", flat=True)) == [kept.pk]
    assert list(ProductSeen.objects.values_list("product_id", flat=True)) == [kept.pk]
    assert Seller.objects.count() == 7  # a product's seller is not the product's


def test_a_seller_goes_with_its_offers_and_its_products_stay_without_it():
    asins = seed_offers()
    shop0 = Seller.objects.get(external_id="A0SELLER")  # offers on B000 only
    shop3 = Seller.objects.get(external_id="A3SELLER")  # offers on all three, two on B000
    assert collected.deletion_counts(Seller.objects.filter(pk=shop3.pk)) == {Seller: 1, Offer: 4}

    assert collected.collected_delete(rows=Seller.objects.filter(pk__in=[shop0.pk, shop3.pk]), batch=1) == 2
    assert set(Seller.objects.values_list("external_id", flat=True)) == {"A1SELLER", "A2SELLER"}
    assert Product.objects.filter(external_id__in=asins).count() == 3
    assert set(Offer.objects.values_list("seller__external_id", flat=True)) == {"A1SELLER", "A2SELLER"}


def test_an_ebay_sellers_products_lose_their_seller_not_their_rows():
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("x", i) for i in range(3)], run_id=None, category_id=cat.pk)
    product = Product.objects.get(external_id="demo-x-1")
    assert collected.sellers_delete(sellers=Seller.objects.filter(pk=product.seller_id)) == 1
    product.refresh_from_db()
    assert product.seller_id is None and not Offer.objects.filter(product=product).exists()
    assert Product.objects.count() == 3 and Offer.objects.count() == 2


def test_a_big_sellers_products_are_let_go_of_a_batch_at_a_time(monkeypatch):
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=items(*((f"p{i}", "big") for i in range(5)), ("other", "small")), run_id=None,
                 category_id=cat.pk)
    monkeypatch.setattr(collected, "BATCH", 2)
    released = []
    release = collected._release_products
    monkeypatch.setattr(collected, "_release_products", lambda sellers: released.append(release(sellers)) or released[-1])

    assert collected.sellers_delete(sellers=Seller.objects.filter(external_id="big")) == 1
    assert released == [2, 2, 1]  # each its own transaction; the last one short
    assert not Product.objects.filter(external_id__startswith="p", seller__isnull=False).exists()
    assert list(Offer.objects.values_list("product__external_id", flat=True)) == ["other"]


def test_offers_go_alone_and_other_rows_refuse():
    asins = seed_offers()
    used = Offer.objects.filter(condition="USED_GOOD")
    assert collected.collected_delete(rows=used) == 1
    assert Offer.objects.count() == 9 and Product.objects.filter(external_id__in=asins).count() == 3
    with pytest.raises(TypeError, match="not collected data: Category"):
        collected.collected_delete(rows=Category.objects.all())


# A page being stored holds its products from its upsert until it commits, and writes their
# offers and last sightings after the upsert. The tests stop a page there, start the deletion,
# then let the page go on: Django's own deletion, which deletes a product's offers and last
# sighting before the product (and a seller's offers before clearing its products' seller),
# deadlocks with it here (PostgreSQL aborts one of the two after deadlock_timeout).


def _delete_while_a_page_stores(deletion) -> list:
    """Store a page of three demo items (demo-x-0…2) in a run, then store it again in the same
    run (its sellers, seen in this run already, are not refreshed) with its transaction held
    after the products' upsert while `deletion` runs in another thread and reaches a lock;
    returns what the deletion raised (nothing: [])."""
    cat = make_categories(1)[0]
    run_id, category_id = runs.run_create(source="demo", category_ids=[cat.pk]).pk, cat.pk
    items = [demo_item("x", i) for i in range(3)]
    upsert_items(platform="demo", items=items, run_id=run_id, category_id=category_id)
    started = threading.Event()
    other, outcome = in_thread_once_set(started, deletion)
    sql = page_sql(connection.vendor)
    sellers, products, offers = page_params(platform="demo", items=items, run_id=run_id, category_id=category_id,
                                            now=connection.ops.adapt_datetimefield_value(timezone.now()))
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql["sellers_insert"], sellers)
        cursor.execute(sql["sellers_refresh"], sellers)
        cursor.execute(sql["products_upsert"], products)  # the page's products are locked now
        started.set()
        wait_for(lambda: waiting_on_a_lock(cursor), timeout=20, message="the deletion to reach a lock the page holds")
        cursor.execute(sql["products_after"], {**products, **offers})
    other.join(timeout=30)
    assert not other.is_alive()
    return [error for error in outcome if isinstance(error, Exception)]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_deleting_a_product_while_a_page_stores_it_waits_for_the_page_instead_of_deadlocking():
    doomed = Product.objects.filter(external_id__in=["demo-x-0", "demo-x-2"])
    raised = _delete_while_a_page_stores(lambda: collected.products_delete(products=doomed, batch=1))
    assert raised == []
    assert list(Product.objects.values_list("external_id", flat=True)) == ["demo-x-1"]
    survivor = Product.objects.get().pk
    assert list(Offer.objects.values_list("product_id", flat=True)) == [survivor]
    assert list(ProductSeen.objects.values_list("product_id", flat=True)) == [survivor]


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_deleting_a_seller_while_a_page_stores_its_product_waits_for_the_page_instead_of_deadlocking():
    seller = Seller.objects.filter(products__external_id="demo-x-1")
    raised = _delete_while_a_page_stores(lambda: collected.sellers_delete(sellers=seller))
    assert raised == []
    product = Product.objects.get(external_id="demo-x-1")
    assert product.seller_id is None and not Offer.objects.filter(product=product).exists()
    assert Seller.objects.count() == 2 and Offer.objects.count() == 2


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_deleting_offers_while_a_page_stores_their_product_waits_for_the_page():
    """A page locks an offer after its product, in its own order; the deletion locks the product
    first (without, it deleted the offers at once, in the table's order)."""
    doomed = Offer.objects.filter(product__external_id="demo-x-1")
    raised = _delete_while_a_page_stores(lambda: collected.offers_delete(offers=doomed))
    assert raised == []
    assert Product.objects.count() == 3 and Offer.objects.count() == 2 and not doomed.exists()
