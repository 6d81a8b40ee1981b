"""Data migrations, run forward from the state before them."""

from datetime import timedelta

import pytest
from django.db import IntegrityError, connection
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


@pytest.mark.django_db(transaction=True)
def test_pages_seen_in_runs_become_rows_by_id():
    executor = MigrationExecutor(connection)
    before, after = [("collection", "0013_filter_indexes_in_page_order")], [("collection", "0014_seen_in_run_by_id")]
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    model = lambda name: apps.get_model("collection", name)  # noqa: E731
    now = timezone.now()
    seller = model("Seller").objects.create(platform="ebay", external_id="alice", first_seen_at=now, last_seen_at=now)
    model("Seller").objects.create(platform="amazon", external_id="alice", first_seen_at=now, last_seen_at=now)
    lamp, desk = (model("Product").objects.create(platform="ebay", external_id=key, title=key, first_seen_at=now,
                                                   last_seen_at=now) for key in ("lamp", "desk"))
    model("Product").objects.create(platform="amazon", external_id="lamp", title="x", first_seen_at=now,
                                    last_seen_at=now)
    category = model("Category").objects.create(platform="ebay", external_id="1", name="Lamps")
    runs = [model("CollectionRun").objects.create(source=source, estimate={}, budget_cap=1) for source in ("ebay", "gone")]
    for run in runs:
        unit = model("RunUnit").objects.create(run=run, category=category)
        model("RunPage").objects.create(run=run, unit=unit, page=0, products=["lamp", "missing"], sellers=["alice"])
        model("RunPage").objects.create(run=run, unit=unit, page=1, products=["lamp", "desk"], sellers=[])
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    seen = apps.get_model("collection", "RunProduct").objects.values_list("run_id", "product_id")
    # the ebay run's products on ebay, once; an unknown id and a source no longer configured: none
    assert sorted(seen) == sorted([(runs[0].pk, lamp.pk), (runs[0].pk, desk.pk)])
    assert list(apps.get_model("collection", "RunSeller").objects.values_list("run_id", "seller_id")) == [
        (runs[0].pk, seller.pk)]
    executor = MigrationExecutor(connection)
    executor.migrate(before)  # and back: each run's ids as one page row
    pages = executor.loader.project_state(before).apps.get_model("collection", "RunPage").objects.all()
    assert [(p.run_id, sorted(p.products), p.sellers) for p in pages] == [(runs[0].pk, ["desk", "lamp"], ["alice"])]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_last_seen_moves_to_its_own_table_and_back():
    executor = MigrationExecutor(connection)
    before, after = [("collection", "0021_product_key_covers_search")], [("collection", "0022_product_seen_apart")]
    executor.migrate(before)
    Product = executor.loader.project_state(before).apps.get_model("collection", "Product")
    first, last = timezone.now() - timedelta(days=3), timezone.now() - timedelta(hours=2)
    lamp = Product.objects.create(platform="ebay", external_id="lamp", title="Lamp", first_seen_at=first,
                                  last_seen_at=last)
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    assert list(apps.get_model("collection", "ProductSeen").objects.values_list("product_id", "last_seen_at")) == [
        (lamp.pk, last)]
    assert "last_seen_at" not in {f.name for f in connection.introspection.get_table_description(
        connection.cursor(), "collection_product")}
    desk = apps.get_model("collection", "Product").objects.create(  # stored with no sighting row
        platform="ebay", external_id="desk", title="Desk", first_seen_at=first)
    executor = MigrationExecutor(connection)
    executor.migrate(before)  # and back: the column, filled from the table or the first sighting
    Product = executor.loader.project_state(before).apps.get_model("collection", "Product")
    assert dict(Product.objects.values_list("external_id", "last_seen_at")) == {"lamp": last, "desk": first}
    with pytest.raises(IntegrityError):  # as required as it was
        Product.objects.filter(pk=desk.pk).update(last_seen_at=None)
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_search_moves_to_its_own_table_and_back():
    """0024 fills the search entries from the products, 0025 gives them their trigram index;
    0026 drops the products' copy of the title (and on PostgreSQL its trigram index and the
    key's covered columns). Undone, the copy is back, its index too, the key covers it again."""
    executor = MigrationExecutor(connection)
    before, after = [("collection", "0023_product_seen_verbose_name")], [("collection", "0026_product_title_copy_dropped")]
    executor.migrate(before)
    Product = executor.loader.project_state(before).apps.get_model("collection", "Product")
    lamp = Product.objects.create(platform="ebay", external_id="lamp-1", title="Desk lamp", first_seen_at=timezone.now())
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    apps = executor.loader.project_state(after).apps
    assert list(apps.get_model("collection", "ProductSearch").objects.values_list(
        "product_id", "external_id", "title_upper")) == [(lamp.pk, "lamp-1", "DESK LAMP")]

    def columns():
        return {f.name for f in connection.introspection.get_table_description(connection.cursor(), "collection_product")}

    def key():
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE indexname = 'collection_product_pkey'")
            return cursor.fetchone()[0]

    def trigram_indexes():
        with connection.cursor() as cursor:
            cursor.execute("SELECT tablename, indexname FROM pg_indexes WHERE indexname LIKE '%%title_upper_trgm'")
            return sorted(cursor.fetchall())

    assert "title_upper" not in columns()
    postgresql = connection.vendor == "postgresql"
    if postgresql:
        assert "INCLUDE" not in key()
        assert trigram_indexes() == [("collection_productsearch", "product_search_title_upper_trgm")]
    executor = MigrationExecutor(connection)
    executor.migrate([("collection", "0025_product_search_indexes")])  # and back: the copy, computed again
    assert "title_upper" in columns()
    Product = executor.loader.project_state(before).apps.get_model("collection", "Product")
    assert Product.objects.get(pk=lamp.pk).title_upper == "DESK LAMP"
    if postgresql:
        assert "INCLUDE (external_id, title_upper)" in key()
        assert trigram_indexes() == [("collection_product", "product_title_upper_trgm"),
                                     ("collection_productsearch", "product_search_title_upper_trgm")]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.skipif("postgres" not in str(connection.settings_dict["ENGINE"]), reason="a PostgreSQL lock wait")
@pytest.mark.django_db(transaction=True)
def test_dropping_the_title_copy_gives_up_on_a_held_lock_and_can_run_again(monkeypatch):
    """0026 waits a bounded time for the products' lock: a long query on them (here an open
    transaction that read them) makes it fail saying so, the column still there; run again once
    the query is done, it drops the column."""
    import importlib

    import psycopg
    from django.db import OperationalError

    from collection.migrations import _concurrently

    dropped = importlib.import_module("collection.migrations.0026_product_title_copy_dropped")
    monkeypatch.setattr(dropped, "LOCK_TIMEOUT", "50ms")
    monkeypatch.setattr(dropped, "TRIES", 2)
    monkeypatch.setattr(_concurrently.time, "sleep", lambda seconds: None)
    executor = MigrationExecutor(connection)
    executor.migrate([("collection", "0025_product_search_indexes")])

    def columns():
        return {f.name for f in connection.introspection.get_table_description(connection.cursor(), "collection_product")}

    params = connection.get_connection_params()
    reader = psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")})
    first = dropped.Migration.operations[0]  # the key's swap and the index's drop, then the read begins

    def then_read(apps, schema_editor, swap=first.code):
        swap(apps, schema_editor)
        reader.execute("SELECT count(*) FROM collection_product")  # its transaction stays open

    try:
        monkeypatch.setattr(first, "code", then_read)
        executor = MigrationExecutor(connection)
        with pytest.raises(OperationalError, match="could not drop title_upper.*Run the migration again"):
            executor.migrate(executor.loader.graph.leaf_nodes())
        assert "title_upper" in columns()
        reader.rollback()
        monkeypatch.undo()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())
        assert "title_upper" not in columns()
    finally:
        reader.close()
        executor = MigrationExecutor(connection)
        executor.migrate(executor.loader.graph.leaf_nodes())


@pytest.mark.django_db(transaction=True)
def test_sellers_last_run_becomes_information_only_and_back():
    """0027: the seller's last-seen run loses its index and constraint (a refresh then writes no
    index: a HOT update), and on PostgreSQL sellers and offers leave half of each page free.
    Undone, all of it is back; the sellers' values stay as they were both ways."""
    before = [("collection", "0026_product_title_copy_dropped")]
    after = [("collection", "0027_sellers_and_offers_refreshed_in_place")]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    apps = executor.loader.project_state(before).apps
    run = apps.get_model("collection", "CollectionRun").objects.create(source="ebay", estimate={}, budget_cap=1)
    now = timezone.now()
    seller = apps.get_model("collection", "Seller").objects.create(
        platform="ebay", external_id="alice", first_seen_at=now, last_seen_at=now, last_seen_run_id=run.pk)

    def on_last_seen_run():
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, "collection_seller")
        return sorted("foreign key" if info["foreign_key"] else "index" for info in found.values()
                      if info["columns"] == ["last_seen_run_id"])

    def fillfactors():
        with connection.cursor() as cursor:
            cursor.execute("SELECT relname, reloptions FROM pg_class WHERE relname IN "
                           "('collection_seller', 'collection_offer') ORDER BY relname")
            return cursor.fetchall()

    postgresql = connection.vendor == "postgresql"
    assert on_last_seen_run() == ["foreign key", "index"]
    executor = MigrationExecutor(connection)
    executor.migrate(after)
    assert on_last_seen_run() == []
    Seller = executor.loader.project_state(after).apps.get_model("collection", "Seller")
    assert Seller.objects.values_list("external_id", "last_seen_run_id").get(pk=seller.pk) == ("alice", run.pk)
    if postgresql:
        assert fillfactors() == [("collection_offer", ["fillfactor=50"]), ("collection_seller", ["fillfactor=50"])]
    executor = MigrationExecutor(connection)
    executor.migrate(before)
    assert on_last_seen_run() == ["foreign key", "index"]
    Seller = executor.loader.project_state(before).apps.get_model("collection", "Seller")
    assert Seller.objects.values_list("external_id", "last_seen_run_id").get(pk=seller.pk) == ("alice", run.pk)
    if postgresql:
        assert fillfactors() == [("collection_offer", None), ("collection_seller", None)]
    executor = MigrationExecutor(connection)
    executor.migrate(executor.loader.graph.leaf_nodes())
