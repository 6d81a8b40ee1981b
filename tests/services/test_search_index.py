"""Product search entries, written after the pages by the indexer (services/search_index.py)."""

import threading
from dataclasses import replace
from types import SimpleNamespace

import pytest
from django.db import connection, connections
from django.test import override_settings

from collection.models import Product, ProductSearch, ProductSearchQueue
from collection.selectors import search
from collection.services.checkpoint import upsert_items
from collection.services.collected import products_delete
from collection.services.search_index import index_all, index_pending, pending_count
from collection.sources.demo import demo_item
from tests.conftest import in_thread_once_set, postgres_only, wait_for, waiting_on_a_lock
from tests.factories import make_categories

pytestmark = pytest.mark.django_db
FIELDS = ("=search__external_id", "search__title_upper")


def store(items, category):
    upsert_items(platform="demo", items=items, run_id=None, category_id=category.pk)


def entries() -> dict[str, str]:
    return dict(ProductSearch.objects.values_list("external_id", "title_upper"))


def test_a_stored_product_is_found_once_indexed():
    category = make_categories(1)[0]
    items = [demo_item("ix", i) for i in range(5)]
    store(items, category)
    assert pending_count() == 5 and not search(Product.objects.all(), FIELDS, items[0].title.split()[0]).exists()
    assert index_pending(batch=2) == 5  # three transactions
    assert pending_count() == 0
    assert entries() == {item.external_id: item.title.upper() for item in items}
    word = items[0].title.split()[0]
    assert set(search(Product.objects.all(), FIELDS, word)) == set(Product.objects.filter(title__icontains=word))
    assert list(search(Product.objects.all(), FIELDS, items[1].external_id)) == [
        Product.objects.get(external_id=items[1].external_id)]


def test_only_what_a_page_changed_is_queued_and_an_unchanged_title_is_not_rewritten():
    category = make_categories(1)[0]
    items = [demo_item("ch", i) for i in range(3)]
    store(items, category)
    index_pending()
    store(items, category)  # seen again, unchanged: nothing to index
    assert pending_count() == 0
    changed = [replace(items[0], title="Renamed lamp"),
               replace(items[1], price=items[1].price + 1), items[2]]
    store(changed, category)
    assert set(ProductSearchQueue.objects.values_list("product__external_id", flat=True)) == {
        items[0].external_id, items[1].external_id}
    def versions():  # which transaction wrote each entry (SQLite: its rowid, new when the row is replaced)
        version = "xmin::text" if connection.vendor == "postgresql" else "rowid || title_upper"
        with connection.cursor() as cursor:
            cursor.execute(f"SELECT external_id, {version} FROM collection_productsearch")  # noqa: S608
            return dict(cursor.fetchall())

    before = versions()
    assert index_pending() == 2
    after = versions()
    assert entries()[items[0].external_id] == "RENAMED LAMP"
    assert after[items[1].external_id] == before[items[1].external_id]
    assert after[items[0].external_id] != before[items[0].external_id]


def test_with_title_search_off_nothing_is_queued_and_all_indexes_everything():
    category = make_categories(1)[0]
    with override_settings(COLLECTION_TITLE_SEARCH=False):
        store([demo_item("off", i) for i in range(4)], category)
    assert pending_count() == 0 and index_pending() == 0 and entries() == {}
    done = []
    assert index_all(batch=3, progress=done.append) == 4 and done == [3, 4]
    assert len(entries()) == 4


def test_deleting_products_deletes_their_entries_and_queue_rows():
    category = make_categories(1)[0]
    store([demo_item("del", i) for i in range(4)], category)
    index_pending()
    store([demo_item("del", i) for i in range(4, 6)], category)  # queued, not indexed yet
    products_delete(products=Product.objects.filter(external_id__in=["demo-del-0", "demo-del-4"]))
    assert pending_count() == 1 and set(entries()) == {"demo-del-1", "demo-del-2", "demo-del-3"}
    index_pending()
    assert set(entries()) == {"demo-del-1", "demo-del-2", "demo-del-3", "demo-del-5"}


def test_the_command_indexes_the_queue_or_everything(capsys):
    from django.core.management import call_command

    category = make_categories(1)[0]
    store([demo_item("cmd", i) for i in range(3)], category)
    call_command("collection_search_index")
    assert capsys.readouterr().out.strip() == "3 products indexed (queued)"
    ProductSearch.objects.all().delete()
    call_command("collection_search_index", "--all", "--json")
    assert capsys.readouterr().out.strip() == '{"indexed": 3, "all": true}'
    assert len(entries()) == 3


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_page_changing_a_product_while_it_is_indexed_queues_it_again():
    """The indexer has taken a product from the queue (its transaction open) when a page renames
    it: the page waits for the indexer, queues the product again, and the next pass writes the
    new title. Nothing deadlocks, nothing is lost. (With ON CONFLICT DO NOTHING the page saw the
    locked row as queued and went on: the rename was never indexed.)"""
    category = make_categories(1)[0]
    item = demo_item("race", 0)
    store([item], category)
    indexer = connections.create_connection("default")
    started = threading.Event()
    page, outcome = in_thread_once_set(started, lambda: store([replace(item, title="Renamed while indexed")],
                                                              category))
    try:
        with indexer.cursor() as cursor:
            cursor.execute("BEGIN")  # the indexer's steps (search_index._index_pending), the take split in two:
            cursor.execute("SELECT product_id FROM collection_productsearchqueue FOR UPDATE SKIP LOCKED")
            [(product_id,)] = cursor.fetchall()  # taken (locked), not yet deleted: the narrowest moment
            started.set()
            with connection.cursor() as looking:
                wait_for(lambda: waiting_on_a_lock(looking), timeout=10, message="the page waiting for the indexer")
            cursor.execute("DELETE FROM collection_productsearchqueue WHERE product_id = %s", [product_id])
            cursor.execute("INSERT INTO collection_productsearch (product_id, external_id, title_upper) "
                           "SELECT id, external_id, UPPER(title) FROM collection_product WHERE id = %s", [product_id])
            cursor.execute("COMMIT")
        page.join(10)
        assert outcome == [None]
    finally:
        indexer.close()
    assert entries() == {item.external_id: item.title.upper()}  # what the indexer read
    assert index_pending() == 1
    assert entries() == {item.external_id: "RENAMED WHILE INDEXED"}


def test_the_admin_says_when_stored_products_are_not_searchable_yet(admin_client):
    category = make_categories(1)[0]
    store([demo_item("adm", i) for i in range(2)], category)
    page = admin_client.get("/admin/collection/product/", {"q": "demo"})
    assert "2 recently stored products are not searchable yet" in page.content.decode()  # and when they will be
    assert list(page.context["cl"].result_list) == []
    index_pending()
    page = admin_client.get("/admin/collection/product/", {"q": "demo"})
    assert "not searchable yet" not in page.content.decode() and len(page.context["cl"].result_list) == 2
    assert "not searchable" not in admin_client.get("/admin/collection/product/").content.decode()  # no search


@override_settings(COLLECTION_SEARCH_INDEX_SECONDS=5, COLLECTION_SEARCH_MAX_LAG_SECONDS=60)
def test_a_collecting_process_leaves_indexing_for_later_up_to_the_lag(monkeypatch):
    """A worker that stored a page within the last 5 s indexes only once its last pass is 60 s
    old; one that stored none indexes at every look (startup.py)."""
    from collection.services import search_index

    monkeypatch.setattr(search_index, "_page_stored_at", None)
    assert search_index.due(last_pass=1000.0, now=1001.0)  # never collected
    monkeypatch.setattr(search_index, "_page_stored_at", 1000.0)
    assert not search_index.due(last_pass=990.0, now=1004.9)  # collecting, last pass 14.9 s ago
    assert search_index.due(last_pass=944.9, now=1004.9)  # collecting, but the last pass is 60 s old
    assert search_index.due(last_pass=1000.0, now=1005.0)  # no page for 5 s: idle
    from collection.services import checkpoint

    monkeypatch.setattr(checkpoint, "_checkpoint", lambda record: None)  # a page the engine stores:
    checkpoint.unit_checkpoint(SimpleNamespace(unit_id=1, page_index=0))  # the process says it collects
    assert not search_index.due(last_pass=search_index._page_stored_at)


@postgres_only
def test_one_process_indexes_at_a_time():
    """The workers' passes take an advisory lock: while another process indexes, a pass does
    nothing (None) and leaves the queue to it; the command (not alone) indexes regardless."""
    from collection.services.search_index import LOCK

    store([demo_item("lock", i) for i in range(3)], make_categories(1)[0])
    other = connections.create_connection("default")
    try:
        with other.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_lock(%s)", [LOCK])
            assert index_pending(alone=True) is None and pending_count() == 3
            cursor.execute("SELECT pg_advisory_unlock(%s)", [LOCK])
    finally:
        other.close()
    assert index_pending(alone=True) == 3
    with connection.cursor() as cursor:  # and released after the pass
        cursor.execute("SELECT count(*) FROM pg_locks WHERE locktype = 'advisory' AND pid = pg_backend_pid()")
        assert cursor.fetchone()[0] == 0
