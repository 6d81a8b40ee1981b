import threading
import time
from contextlib import contextmanager
from dataclasses import replace
from decimal import Decimal
from types import SimpleNamespace

import pytest
from django.db import connection, transaction
from django.test import override_settings

from collection.models import (
    CollectionRun,
    Offer,
    Product,
    ProductSeen,
    RunProduct,
    RunStatus,
    RunUnit,
    Seller,
    UnitStatus,
)
from collection.services import runs
from collection.services.budget import budget_reserve, period_current
from collection.services.checkpoint import PageCheckpoint, _items_execute, unit_checkpoint, upsert_items
from collection.sources import OfferItem, Page, ProductItem, SellerItem
from tests.conftest import in_thread_once_set, make_categories, postgres_only, wait_for, waiting_on_a_lock

pytestmark = pytest.mark.django_db


def checkpoint(**fields):
    return unit_checkpoint(PageCheckpoint(**fields))


def items(*pairs) -> list[ProductItem]:
    return [
        ProductItem(external_id=pid, title=f"Item {pid}", price=Decimal("9.99"), currency="USD",
                    seller=SellerItem(external_id=sid, name=sid.title(), feedback_score=10,
                                      feedback_percent=Decimal("99.5")))
        for pid, sid in pairs
    ]


def test_upserting_items_already_stored_creates_no_duplicates():
    cat = make_categories(1)[0]
    first_run = runs.run_create(source="demo", category_ids=[cat.pk])
    second_run = runs.run_create(source="demo", category_ids=[cat.pk])
    new = upsert_items(platform="demo", items=items(("p1", "alice"), ("p2", "bob"), ("p3", "alice")),
                       run_id=first_run.pk, category_id=cat.pk)
    assert new == 2
    again = upsert_items(platform="demo", items=items(("p1", "alice"), ("p4", "bob"), ("p5", "carol")),
                         run_id=first_run.pk, category_id=cat.pk)
    assert again == 1
    assert Seller.objects.count() == 3 and Product.objects.count() == 5
    alice = Seller.objects.get(external_id="alice")
    assert alice.times_seen == 1 and alice.feedback_percent == Decimal("99.5")  # one run has seen her
    assert Product.objects.get(external_id="p4").seller.external_id == "bob"

    upsert_items(platform="demo", items=items(("p1", "alice")), run_id=second_run.pk, category_id=cat.pk)
    alice.refresh_from_db()
    assert (alice.times_seen, alice.first_seen_run_id, alice.last_seen_run_id) == (2, first_run.pk, second_run.pk)
    assert Product.objects.count() == 5
    # the same external id on another platform is another seller
    upsert_items(platform="other", items=items(("p1", "alice")), run_id=None, category_id=None)
    assert Seller.objects.filter(external_id="alice").count() == 2


@override_settings(DEMO_PAGE_SIZE=2, DEMO_COST_PER_REQUEST="0.01", DEMO_COST_PER_RESULT="0")
def test_checkpoint_records_a_page_once_and_ignores_pages_the_cursor_has_passed():
    cat = make_categories(1, items=4)[0]
    run = runs.run_create(source="demo", category_ids=[cat.pk])
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    unit = run.units.get()
    RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.RUNNING, lease_owner="me")
    page = Page(items=items(("a", "s1"), ("b", "s2")), next_cursor={"offset": 2}, cost=Decimal("0.01"))

    period = budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.01"))
    held = {"reserved": Decimal("0.01"), "period_id": period, "lease_seconds": 60, "platform": "demo",
            "run_id": run.pk, "category_id": cat.pk}
    first = checkpoint(unit_id=unit.pk, lease_owner="me", page_index=0, page=page, **held)
    assert first.items == 2 and first.sellers_new == 2 and not first.done
    snapshot = (RunUnit.objects.values("cursor", "pages_done", "items_done", "cost").get(pk=unit.pk),
                CollectionRun.objects.values("pages_done", "items_done", "spent", "reserved").get(pk=run.pk),
                Seller.objects.count(), Product.objects.count())
    # replaying page 0 (the cursor is already past it) or checkpointing without the lease changes nothing
    assert checkpoint(unit_id=unit.pk, lease_owner="me", page_index=0, page=page, **held) is None
    assert checkpoint(unit_id=unit.pk, lease_owner="someone-else", page_index=1, page=page, **held) is None
    assert snapshot == (RunUnit.objects.values("cursor", "pages_done", "items_done", "cost").get(pk=unit.pk),
                        CollectionRun.objects.values("pages_done", "items_done", "spent", "reserved").get(pk=run.pk),
                        Seller.objects.count(), Product.objects.count())
    assert snapshot[0]["cursor"] == {"offset": 2} and snapshot[1]["spent"] == Decimal("0.01")

    last = Page(items=items(("c", "s1"), ("d", "s3")), next_cursor=None, cost=Decimal("0.01"), total=4)
    budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.01"))
    done = checkpoint(unit_id=unit.pk, lease_owner="me", page_index=1, page=last, **held)
    assert done.done and done.sellers_new == 1
    unit.refresh_from_db()
    assert (unit.status, unit.lease_owner, unit.pages_done, unit.items_done) == (UnitStatus.DONE, "", 2, 4)
    run.refresh_from_db()
    assert (run.pages_done, run.items_done, run.units_done, run.spent, run.reserved) == (2, 4, 1, Decimal("0.02"), 0)


@override_settings(DEMO_PAGE_SIZE=2, DEMO_COST_PER_REQUEST="0.01", DEMO_COST_PER_RESULT="0")
def test_checkpoint_reserves_the_next_page_in_the_same_transaction_only_when_it_fits():
    cat = make_categories(1, items=6)[0]
    run = runs.run_create(source="demo", category_ids=[cat.pk])
    runs.run_update_budget_cap(run_id=run.pk, budget_cap="0.025")
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    unit = run.units.get()
    RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.RUNNING, lease_owner="me")
    page = Page(items=items(("a", "s1")), next_cursor={"offset": 2}, cost=Decimal("0.008"))
    period = budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.01"))
    held = {"period_id": period, "lease_seconds": 60, "platform": "demo", "next_reservation": Decimal("0.01"),
            "run_id": run.pk, "category_id": cat.pk}

    first = checkpoint(unit_id=unit.pk, lease_owner="me", page_index=0, page=page, reserved=Decimal("0.01"), **held)
    assert first.next_reserved
    run.refresh_from_db()
    unit.refresh_from_db()
    assert (run.spent, run.reserved, unit.reserved, unit.cost) == (Decimal("0.008"), Decimal("0.01"), Decimal("0.01"),
                                                                    Decimal("0.008"))
    # 0.008 + 0.008 spent + 0.01 next would pass the cap of 0.025: captured, not reserved
    second = checkpoint(unit_id=unit.pk, lease_owner="me", page_index=1, page=page, reserved=Decimal("0.01"),
                             **held)
    assert not second.next_reserved
    run.refresh_from_db()
    unit.refresh_from_db()
    assert (run.spent, run.reserved, unit.reserved, unit.cost) == (Decimal("0.016"), 0, 0, Decimal("0.016"))
    assert period_current().reserved == 0 and period_current().spent == Decimal("0.016")


def test_offers_many_sellers_per_product_stored_once_and_details_fill_in_later():
    cat = make_categories(1)[0]
    run = runs.run_create(source="demo", category_ids=[cat.pk])
    bare = lambda sid: SellerItem(external_id=sid)  # noqa: E731 (an offer names its seller by id only)
    asin = ProductItem(external_id="B0001", title="Kettle", seller=None, offers=(
        OfferItem(seller=bare("A1"), price=Decimal("19.99"), currency="USD", condition="NEW", fulfilled_by_platform=True),
        OfferItem(seller=bare("A2"), price=Decimal("18.50"), currency="USD", condition="NEW", fulfilled_by_platform=False),
        OfferItem(seller=bare("A2"), price=Decimal("12.00"), currency="USD", condition="USED_GOOD"),
    ))
    other = ProductItem(external_id="B0002", title="Toaster", seller=None, offers=(
        OfferItem(seller=bare("A1"), price=Decimal("25.00"), currency="USD", condition="NEW"),
    ))
    new = upsert_items(platform="amazon", items=[asin, other], run_id=run.pk, category_id=cat.pk,
                       sellers=[SellerItem(external_id="A1", name="Acme", feedback_score=120,
                                           feedback_percent=Decimal("97"))])
    assert new == 2 and Seller.objects.filter(platform="amazon").count() == 2
    assert Offer.objects.count() == 4
    assert Offer.objects.get(product__external_id="B0001", seller__external_id="A2", condition="USED_GOOD").price == \
        Decimal("12.00")
    assert Seller.objects.get(external_id="A1").name == "Acme"
    assert Seller.objects.get(external_id="A2").name == ""  # known by id only, so far
    # the next page of the same run brings A2's details and sees the offers again, with new prices
    again = ProductItem(external_id="B0001", title="Kettle", seller=None, offers=(
        OfferItem(seller=bare("A1"), price=Decimal("17.00"), currency="USD", condition="NEW", fulfilled_by_platform=True),
    ))
    upsert_items(platform="amazon", items=[again], run_id=run.pk, category_id=cat.pk,
                 sellers=[SellerItem(external_id="A2", name="Bolt", feedback_score=3)])
    a1, a2 = Seller.objects.get(external_id="A1"), Seller.objects.get(external_id="A2")
    assert (a1.name, a1.feedback_score, a1.times_seen) == ("Acme", 120, 1)  # a bare sighting keeps the details
    assert (a2.name, a2.feedback_score, a2.times_seen) == ("Bolt", 3, 1)
    assert Offer.objects.count() == 4
    kept = Offer.objects.get(product__external_id="B0001", seller=a1, condition="NEW")
    assert kept.price == Decimal("17.00") and kept.fulfilled_by_platform is True and kept.last_seen_run_id == run.pk
    assert Product.objects.get(external_id="B0001").seller is None


def test_a_listing_with_one_seller_is_a_product_with_one_offer():
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=items(("p1", "alice"), ("p2", "alice")), run_id=None, category_id=cat.pk)
    offers = Offer.objects.order_by("product__external_id")
    assert [(o.product.external_id, o.seller.external_id, o.price) for o in offers] == [
        ("p1", "alice", Decimal("9.99")), ("p2", "alice", Decimal("9.99"))]


@contextmanager
def product_rows_written():
    """The external ids of the products whose rows the block wrote (updated): by their row
    version (xmin) on PostgreSQL, by a temporary trigger on SQLite."""
    written: set[str] = set()
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SELECT external_id, xmin::text FROM collection_product")
            before = dict(cursor.fetchall())
        else:
            cursor.execute("CREATE TEMP TABLE product_written (e TEXT)")
            cursor.execute("CREATE TEMP TRIGGER product_write AFTER UPDATE ON collection_product "
                           "BEGIN INSERT INTO product_written VALUES (new.external_id); END")
        yield written
        if connection.vendor == "postgresql":
            cursor.execute("SELECT external_id, xmin::text FROM collection_product")
            written.update(key for key, version in cursor.fetchall() if key in before and before[key] != version)
        else:
            cursor.execute("SELECT e FROM product_written")
            written.update(key for (key,) in cursor.fetchall())
            cursor.execute("DROP TRIGGER product_write")
            cursor.execute("DROP TABLE product_written")


@override_settings(DEMO_PAGE_SIZE=3, DEMO_COST_PER_REQUEST="0.01", DEMO_COST_PER_RESULT="0")
def test_a_sighting_that_changes_nothing_rewrites_no_product_but_records_when_it_was_seen():
    cat = make_categories(1, items=3)[0]
    first = runs.run_create(source="demo", category_ids=[cat.pk])
    upsert_items(platform="demo", items=items(("p1", "alice"), ("p2", "bob"), ("p3", "bob")), run_id=first.pk,
                 category_id=cat.pk)
    seen_first = {p.external_id: p.last_seen_at for p in Product.objects.select_related("seen")}
    assert len(seen_first) == 3 and all(seen_first.values())

    second = runs.run_create(source="demo", category_ids=[cat.pk])
    CollectionRun.objects.filter(pk=second.pk).update(status=RunStatus.RUNNING)
    unit = second.units.get()
    RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.RUNNING, lease_owner="me")
    period = budget_reserve(unit_id=unit.pk, run_id=second.pk, amount=Decimal("0.01"))
    p1, p2, p3 = items(("p1", "alice"), ("p2", "bob"), ("p3", "bob"))
    page = Page(items=[p1, replace(p2, price=Decimal("5.00")), replace(p3, title="Item p3, renamed")],
                next_cursor=None, cost=Decimal("0.01"))
    with product_rows_written() as written:
        assert checkpoint(unit_id=unit.pk, lease_owner="me", page_index=0, page=page, reserved=Decimal("0.01"),
                          period_id=period, lease_seconds=60, platform="demo", run_id=second.pk, category_id=cat.pk)
    assert written == {"p2", "p3"}  # p1 is as it was: its row is left alone
    products = {p.external_id: p for p in Product.objects.select_related("seen")}
    assert (products["p2"].price, products["p3"].title) == (Decimal("5.00"), "Item p3, renamed")
    assert all(products[key].last_seen_at > seen_first[key] for key in ("p1", "p2", "p3"))
    # what the run saw and the offers' last sighting are written for the unchanged product too
    assert set(RunProduct.objects.filter(run=second).values_list("product__external_id", flat=True)) == \
        {"p1", "p2", "p3"}
    assert set(Offer.objects.values_list("product__external_id", "last_seen_run_id")) == \
        {("p1", second.pk), ("p2", second.pk), ("p3", second.pk)}


def row_updates(*models) -> dict[str, tuple[int, int]]:
    """(rows updated, of which heap-only) per table, in this transaction so far (PostgreSQL)."""
    with connection.cursor() as cursor:
        return {model._meta.db_table: cursor.execute(
            "SELECT pg_stat_get_xact_tuples_updated(%s::regclass), pg_stat_get_xact_tuples_hot_updated(%s::regclass)",
            [model._meta.db_table] * 2).fetchone() for model in models}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_runs_that_see_sellers_and_offers_again_rewrite_them_in_place():
    """Each later run refreshes each seller once and every offer: heap-only (HOT) updates, the
    new version on the row's page and no entry in any of the table's indexes (migration 0027).
    The second run's versions fill the room left on the page; the third's fit once the page is
    pruned of the first's (each run commits, as the engine's pages do): 59 of 60 sellers here."""
    cat = make_categories(1)[0]
    pairs = [(f"p{i}", f"s{i % 60}") for i in range(300)]
    for number in range(1, 4):
        run = runs.run_create(source="demo", category_ids=[cat.pk])
        with transaction.atomic():
            before = row_updates(Seller, Offer)
            upsert_items(platform="demo", items=items(*pairs), run_id=run.pk, category_id=cat.pk)
            after = row_updates(Seller, Offer)
        updated, hot = ({table: after[table][i] - before[table][i] for table in before} for i in (0, 1))
        assert updated == {Seller._meta.db_table: 60 if number > 1 else 0, Offer._meta.db_table: 300 if number > 1 else 0}
        # all in place the second time; later, all but the odd row whose page was not pruned yet
        assert all(hot[table] >= count * (1 if number == 2 else 0.95) for table, count in updated.items()), (number, hot)
        assert set(Seller.objects.values_list("times_seen", "last_seen_run_id")) == {(number, run.pk)}


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_product_another_page_inserts_meanwhile_is_recorded_as_seen_by_both():
    """Two pages of two runs return the same new product at once: the second page's upsert waits
    for the first's insert, then finds the product committed after the second page's statement
    began, and records its sighting, its offer and the run's row for it all the same."""
    cat = make_categories(1)[0]
    first, second = (runs.run_create(source="demo", category_ids=[cat.pk]) for _ in range(2))
    shared, own = items(("shared", "alice"), ("own", "bob"))
    inserting, done = threading.Event(), []

    def second_page():
        try:
            inserting.wait()
            with transaction.atomic(), connection.cursor() as inserted, connection.cursor() as cursor:
                _items_execute(inserted, cursor, platform="demo", items=[shared, own], run_id=second.pk,
                               category_id=cat.pk, seen=True)
            done.append(True)
        finally:
            connection.close()

    other = threading.Thread(target=second_page)
    other.start()
    with transaction.atomic(), connection.cursor() as inserted, connection.cursor() as cursor:
        _items_execute(inserted, cursor, platform="demo", items=[shared], run_id=first.pk, category_id=cat.pk,
                       seen=True)
        inserting.set()
        deadline = time.monotonic() + 20
        while not waiting_on_a_lock(cursor) and time.monotonic() < deadline:  # the other page, on this row
            time.sleep(0.05)
        assert waiting_on_a_lock(cursor) and not done
    other.join(timeout=30)
    assert done
    shared_id = Product.objects.get(external_id="shared").pk
    assert set(RunProduct.objects.values_list("run_id", "product__external_id")) == {
        (first.pk, "shared"), (second.pk, "shared"), (second.pk, "own")}
    assert Offer.objects.get(product_id=shared_id).last_seen_run_id == second.pk
    assert ProductSeen.objects.filter(product_id=shared_id).exists() and Product.objects.count() == 2


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_page_whose_seller_is_deleted_while_it_waits_is_written_again_not_fetched_again():
    """The page finds its seller at its start (inserting it does nothing), then waits for the
    seller's row, which a deletion holds; the deletion commits, and the page's offer finds no
    seller (NOT NULL). The page's transaction runs again, storing the seller anew, instead of
    failing the page, which the worker would fetch and pay for again."""
    cat = make_categories(1, items=4)[0]
    first, second = (runs.run_create(source="demo", category_ids=[cat.pk]) for _ in range(2))
    upsert_items(platform="demo", items=items(("a", "s1")), run_id=first.pk, category_id=cat.pk)
    CollectionRun.objects.filter(pk=second.pk).update(status=RunStatus.RUNNING)
    unit = second.units.get()
    RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.RUNNING, lease_owner="me")
    period = budget_reserve(unit_id=unit.pk, run_id=second.pk, amount=Decimal("0.01"))
    page = Page(items=items(("a", "s1"), ("b", "s1")), next_cursor={"offset": 2}, cost=Decimal("0.01"))
    started = threading.Event()
    other, results = in_thread_once_set(started, lambda: checkpoint(
        unit_id=unit.pk, lease_owner="me", page_index=0, page=page, reserved=Decimal("0.01"), period_id=period,
        lease_seconds=60, platform="demo", run_id=second.pk, category_id=cat.pk))
    with transaction.atomic(), connection.cursor() as cursor:
        seller = Seller.objects.select_for_update().get(external_id="s1")  # as services.collected does
        started.set()
        wait_for(lambda: waiting_on_a_lock(cursor), timeout=20, message="the page's refresh to wait on s1")
        Seller.objects.filter(pk=seller.pk).delete()
    other.join(timeout=30)
    assert len(results) == 1 and not isinstance(results[0], Exception), results
    assert results[0].items == 2
    again = Seller.objects.get(external_id="s1")
    assert again.pk != seller.pk
    assert set(Product.objects.values_list("external_id", "seller_id")) == {("a", again.pk), ("b", again.pk)}
    assert set(Offer.objects.values_list("product__external_id", "seller_id")) == {("a", again.pk), ("b", again.pk)}


@pytest.mark.django_db(transaction=True)  # outside a transaction: inside one, the caller retries
@pytest.mark.parametrize(("sqlstate", "column", "calls"), [
    ("40P01", None, 3), ("23502", "seller_id", 3), ("23502", "currency", 1), ("23505", None, 1)])
def test_a_checkpoint_runs_again_only_for_what_another_transaction_caused_and_only_so_often(
        monkeypatch, sqlstate, column, calls):
    from collection.services import checkpoint as module

    class Aborted(Exception):
        pass

    tried = []

    def aborted(record):
        tried.append(record)
        error = Aborted("aborted")
        error.sqlstate = sqlstate
        error.diag = SimpleNamespace(table_name="collection_offer", column_name=column)
        raise error

    monkeypatch.setattr(module, "_checkpoint", aborted)
    with pytest.raises(Aborted):
        module.unit_checkpoint(SimpleNamespace(unit_id=1, page_index=0))
    assert len(tried) == calls
    tried.clear()
    with transaction.atomic(), pytest.raises(Aborted):  # part of a caller's transaction: once
        module.unit_checkpoint(SimpleNamespace(unit_id=1, page_index=0))
    assert len(tried) == 1
