"""The data side at scale: searches, filters and sorts go through an index (checked in
PostgreSQL's plans, not by the clock), filter choices and counts never read a whole table."""

import pytest
from django.contrib import admin
from django.db import connection
from django.db.models import BooleanField, Q
from django.db.models.expressions import RawSQL
from django.test.utils import CaptureQueriesContext

from collection.admin import CappedCountPaginator
from collection.api.views import ProductViewSet
from collection.models import Category, CollectionRun, Offer, Product, ProductSearch, Seller
from collection.selectors import count_within, distinct_values, search, seen_in_run
from collection.services.checkpoint import upsert_items
from collection.services.search_index import index_all, index_pending
from collection.sources.demo import demo_item
from tests.conftest import postgres_only
from tests.factories import make_categories, seed_offers

pytestmark = pytest.mark.django_db
TITLES = ProductViewSet.search_fields  # external id and title, in ProductSearch
ENTRY = tuple(field.replace("search__", "") for field in TITLES)  # the same, from ProductSearch itself


@pytest.fixture
def products():
    category = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("s", i) for i in range(30)], run_id=None, category_id=category.pk)
    assert index_pending() == 30  # the checkpoint queued them for title search
    return Product.objects.order_by("id")


def test_search_matches_exact_ids_and_parts_of_titles(products):
    first = products.first()
    word = first.title.split()[0]
    assert list(search(Product.objects.all(), TITLES, first.external_id)) == [first]
    # ids are case-sensitive
    assert search(Product.objects.all(), TITLES, first.external_id.upper()).count() == 0
    part = search(Product.objects.all(), TITLES, word[1:].upper())
    assert first in part and all(word[1:].lower() in p.title.lower() for p in part)
    # every word must match; a short word rides along with a long one ...
    both = search(Product.objects.all(), TITLES, f"{word} zzqx")
    assert both.count() == 0
    # ... but alone it matches exact fields only (no index finds a part of 2 characters)
    assert search(Product.objects.all(), TITLES, word[:2]).count() == 0


def test_several_words_match_the_same_rows_however_the_query_is_said(products):
    """Every word must match an exact field or a searched part; several words are said so that
    one trigram-index scan finds them all (selectors.search), and match what one filter a word
    matches, also when one word is an id and another part of the title."""
    first, last = products.first(), products.last()
    seller, category = first.seller, first.category
    word = first.title.split()[0]

    def word_by_word(model, fields, text, min_part):  # what the search means, one filter a word
        rows, partial = model.objects.all(), any(len(w) >= min_part for w in text.split())
        for w in text.split():
            match = Q()
            for field in fields:
                if field.startswith("="):
                    match |= Q(**{field[1:].removeprefix("search__"): w})
                elif partial:  # the column itself, not its stored upper-case copy
                    match |= Q(**{f"{field.removeprefix('search__').removesuffix('_upper')}__icontains": w})
            rows = rows.filter(match)
        return set(rows)

    cases = [
        (Product, TITLES, 3,
         [f"{word} {first.title.split()[1]}", f"{first.external_id} {word}", f"{word} {first.external_id}",
          f"{first.external_id} {last.external_id}", f"{word} zzqx", f"{first.external_id} zzqx",
          f"{word.upper()} {first.title.split()[-1]}", f"{word} 1", f"{word} {word}", "de mo", f"{word} 1 1"]),
        (Seller, ("=external_id", "name_upper"), 3,
         [f"{seller.external_id} {seller.name.split()[0]}", f"{seller.name} zzqx", seller.name, "se 1"]),
        (Category, ("name", "=external_id"), 1,
         [f"{category.name} {category.external_id}", f"{category.external_id} x", "a b", category.name]),
    ]
    for model, fields, min_part, texts in cases:
        for text in texts:
            found = search(model.objects.all(), fields, text, min_part=min_part)
            assert set(found) == word_by_word(model, fields, text, min_part), (model, text)
    assert first in search(Product.objects.all(), TITLES, f"{first.external_id} {word}")
    assert not search(Product.objects.all(), TITLES, f"{first.external_id} {last.external_id}")


def test_a_search_compares_the_stored_copy_folded_as_the_database_folds(products):
    """Migration 0019: the part of a title is looked for in `title_upper` as it is stored, the
    word folded by the same UPPER(); no UPPER() of a title on every row read. On PostgreSQL that
    folds any letter (É, Ж), as icontains did."""
    product = products.first()
    Product.objects.filter(pk=product.pk).update(title="Écran Жёсткий wireless Phone")
    index_all()  # an update by hand is not queued
    found = search(Product.objects.all(), TITLES, "PHONE wIreLess")
    assert list(found) == [product]
    sql = str(found.query)
    assert '"title_upper"' in sql and 'UPPER("collection_product"."title' not in sql, sql  # nor of the copy
    if connection.vendor == "postgresql":
        assert list(search(Product.objects.all(), TITLES, "écran жёсткий")) == [product]
    product.search.refresh_from_db()
    folded = "ЖЁСТКИЙ" if connection.vendor == "postgresql" else "Жёсткий"  # SQLite's UPPER: ASCII only
    assert product.search.title_upper == f"ÉCRAN {folded} WIRELESS PHONE"


def test_filter_choices_are_the_columns_values(products):
    assert distinct_values(Product, "condition") == sorted(set(products.values_list("condition", flat=True)))
    seed_offers()
    assert distinct_values(Seller, "country") == sorted(set(Seller.objects.values_list("country", flat=True)))


def test_admin_filters_products_by_condition_and_country(admin_client, products):
    rare = list(products[:3])
    Product.objects.filter(pk__in=[p.pk for p in rare]).update(condition="USED_GOOD", location_country="IS")
    page = admin_client.get("/admin/collection/product/")
    choices = page.content.decode()
    assert "?condition=USED_GOOD" in choices and "?location_country=IS" in choices
    cl = page.context["cl"]
    [condition] = [spec for spec in cl.filter_specs if getattr(spec, "field_path", "") == "condition"]
    displays = [choice["display"] for choice in condition.choices(cl)]
    assert "USED_GOOD" in displays and "-" in displays and "" not in displays  # the rest have none
    for param in ({"condition": "USED_GOOD"}, {"location_country": "IS"}):
        cl = admin_client.get("/admin/collection/product/", param).context["cl"]
        assert list(cl.result_list) == rare and cl.result_count == 3, param


def test_admin_counts_at_most_a_cap_and_says_so(admin_client, products, monkeypatch):
    monkeypatch.setattr(CappedCountPaginator, "CAP", 10)
    page = admin_client.get("/admin/collection/product/").content.decode()
    assert "more than 10 products" in page
    searched = admin_client.get("/admin/collection/product/", {"q": "item"}).content.decode()
    assert "more than 10 results" in searched and "11 results" not in searched
    few = admin_client.get("/admin/collection/product/", {"q": products.first().external_id}).content.decode()
    assert "1 product" in few and "more than" not in few
    faceted = admin_client.get("/admin/collection/product/", {"_facets": "1"}).content.decode()
    assert "Show counts" not in page and "Hide counts" not in faceted  # a count per choice is never run


def slow(queryset, seconds_a_row=0.01):
    """The rows, each taking `seconds_a_row` to test: a count that a budget cuts short for real."""
    return queryset.filter(RawSQL("pg_sleep(%s) IS NOT NULL", [seconds_a_row], output_field=BooleanField()))


@postgres_only
def test_a_count_past_its_budget_is_cancelled_and_the_timeout_restored(products):
    def timeout():
        with connection.cursor() as cursor:
            cursor.execute("SHOW statement_timeout")
            return cursor.fetchone()[0]

    before = timeout()
    assert count_within(Product.objects.all(), cap=100, budget_ms=5000) == 30
    assert count_within(Product.objects.all(), cap=10, budget_ms=5000) == 11
    assert timeout() == before  # not left at the budget for the rest of the request
    assert count_within(slow(Product.objects.all()), cap=100, budget_ms=20) is None  # 30 rows × 10 ms
    assert timeout() == before
    assert Product.objects.count() == 30  # the transaction is usable after the cancelled count


@postgres_only
def test_admin_pages_a_search_it_could_not_count_in_time(admin_client, products, monkeypatch):
    product_admin = admin.site._registry[Product]
    monkeypatch.setattr(CappedCountPaginator, "BUDGET_MS", 25)
    monkeypatch.setattr(type(product_admin), "list_per_page", 10)
    monkeypatch.setattr(type(product_admin), "get_queryset", lambda self, request: slow(Product.objects.all()))

    def changelist(**params):
        response = admin_client.get("/admin/collection/product/", {"q": "item", **params})
        return response.context["cl"], response.content.decode()

    cl, page = changelist()  # a count of 30 rows at 10 ms each: past the 25 ms budget
    assert "more than 10 products (too many to count quickly)" in page
    assert "more than 10 results" in page  # the search bar says so too, not "11 results"
    assert "Select all matching products" in page and "Select all 11" not in page
    assert list(cl.result_list) == list(products[:10])
    assert "?p=2" in page and "?p=3" not in page  # a next page, none further: not counted
    cl, page = changelist(p=2)
    assert "more than 20 products" in page and list(cl.result_list) == list(products[10:20])
    cl, page = changelist(p=3)  # the last page: fewer rows than a page, so the count is exact
    assert "30 products" in page and "more than" not in page and list(cl.result_list) == list(products[20:])
    assert "30 results" in page and "Select all 30 products" in page
    for past in (4, 10_000 // 10 + 2):  # past the last row; past the pages a counted list has
        response = admin_client.get("/admin/collection/product/", {"q": "item", "p": past})
        assert response.status_code == 302 and response.url.endswith("?e=1"), past


@postgres_only
def test_admin_shows_one_uncounted_page_without_searching_again(admin_client, products, monkeypatch):
    """All matches fit one page, but the count ran out of time: the page shows the rows fetched
    with it (ChangeList would otherwise run the search again, without a limit)."""
    monkeypatch.setattr(CappedCountPaginator, "BUDGET_MS", 25)
    monkeypatch.setattr(type(admin.site._registry[Product]), "get_queryset", lambda self, request: slow(Product.objects.all()))
    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get("/admin/collection/product/", {"q": "item"})
    assert list(response.context["cl"].result_list) == list(products)
    assert "30 products" in response.content.decode() and "more than" not in response.content.decode()
    assert sum("pg_sleep" in q["sql"] and "COUNT(" not in q["sql"] for q in queries.captured_queries) == 1


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_a_count_in_autocommit_leaves_no_timeout_behind(products):
    """Outside a transaction (a serving process's requests) the budget ends with the count's own."""
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        before = cursor.fetchone()[0]
        assert count_within(Product.objects.all(), cap=100, budget_ms=5000) == 30
        assert count_within(slow(Product.objects.all()), cap=100, budget_ms=20) is None
        cursor.execute("SHOW statement_timeout")
        assert cursor.fetchone()[0] == before


def test_admin_offers_only_sorts_an_index_serves(admin_client, products):
    page = admin_client.get("/admin/collection/product/").content.decode()
    assert page.count('class="sortable') == 2  # external id, first seen (by id)
    newest = admin_client.get("/admin/collection/product/", {"o": "-10"})  # first seen, descending
    assert list(newest.context["cl"].result_list) == list(products.order_by("-id"))


def plan(queryset) -> str:
    off = ["enable_seqscan"]  # a tiny table: ask whether an index *can* serve
    if queryset.model is ProductSearch:  # its key holds every column: read whole, the cheapest index here
        off.append("enable_indexonlyscan")
    with connection.cursor() as cursor:
        for setting in off:
            cursor.execute(f"SET LOCAL {setting} = off")
        text = queryset.explain()
        for setting in off:
            cursor.execute(f"SET LOCAL {setting} = on")
    return text


@postgres_only
def test_every_search_filter_and_sort_has_an_index_on_postgresql(products):
    from django.db import transaction

    seed_offers()
    with transaction.atomic():
        cases = {  # label: (query, the index that must serve it)
            # a product search's words are all tested on its search entries (ProductSearch): at
            # scale PostgreSQL starts there (bench/scale_queries.py); a 30-row table starts anywhere
            "exact external id": (search(ProductSearch.objects.all(), ENTRY, "P1"),
                                  "product_search_external_id_idx"),
            "category, in id order": (Product.objects.filter(category_id=1).order_by("id")[:100],
                                      "product_category_idx"),
            "newest runs": (CollectionRun.objects.order_by("-created_at", "-id")[:100], "run_created_idx"),
            # a few prices in millions: read from the range, not by walking every row in id order
            "price range": (Product.objects.filter(price__gte=10, price__lte=10.05).order_by(), "product_price_id_idx"),
            "offers' price range": (Offer.objects.filter(price__gte=10, price__lte=10.05).order_by(),
                                    "offer_price_id_idx"),
            # a value few rows have, read in id order from (column, id) rather than every row walked
            "condition, in id order": (Product.objects.filter(condition="USED_GOOD").order_by("id")[:100],
                                       "product_condition_idx"),
            "country, in id order": (Product.objects.filter(location_country="IS").order_by("id")[:100],
                                     "product_country_idx"),
            "offers' condition, in id order": (Offer.objects.filter(condition="USED_GOOD").order_by("id")[:100],
                                               "offer_condition_idx"),
            "offers of a product": (Offer.objects.filter(product_id=1), "offer_unique_per_condition"),
            "title search": (search(ProductSearch.objects.all(), ENTRY, "demo phone").order_by(),
                             "product_search_title_upper_trgm"),
            "seller name search": (search(Seller.objects.all(), ("=external_id", "name_upper"), "shop").order_by(),
                                   "seller_name_upper_trgm"),
            # walked in id order from the (run, product) key: a page costs the same for any run
            "products seen in run": (seen_in_run(Product.objects.order_by("-id"), 1)[:100],
                                     "collection_runproduct_pkey"),
            "sellers seen in run": (seen_in_run(Seller.objects.order_by("-id"), 1)[:100],
                                    "collection_runseller_pkey"),
        }
        for label, (queryset, index) in cases.items():
            text = plan(queryset)
            assert index in text and "Seq Scan" not in text, (label, text)


@postgres_only
def test_searched_columns_keep_finer_statistics(db):
    """Migrations 0015 and 0020: the planner estimates a word's share from a 1,000-entry histogram."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT attrelid::regclass::text, attname, attstattarget FROM pg_attribute "
                       "WHERE attname IN ('title_upper', 'name_upper') AND attrelid IN "
                       "('collection_productsearch'::regclass, 'collection_seller'::regclass)")
        assert sorted(cursor.fetchall()) == [("collection_productsearch", "title_upper", 1000),
                                             ("collection_seller", "name_upper", 1000)]


@postgres_only
@pytest.mark.django_db(transaction=True)  # the indexes are built CONCURRENTLY, outside a transaction
def test_the_index_cost_bench_leaves_the_indexes_as_migrated(monkeypatch):
    """`bench/engine_throughput.py --index-cost` turns the title search queue off and drops the
    sellers' stored upper-case name and its trigram index, and adds them again: afterwards they
    are what migrations 0019 and 0020 made, definitions and statistics, and the checkpoint
    queues again. The title search entries' own indexes (0024) are never touched."""
    import os

    from bench.engine_throughput import set_search_indexes

    monkeypatch.setenv("COLLECTION_TITLE_SEARCH", "true")  # restored afterwards

    def indexes():
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname LIKE '%%trgm' "
                           "OR indexname IN ('collection_product_pkey', 'collection_productsearch_pkey') ORDER BY 1")
            found = cursor.fetchall()
            cursor.execute("SELECT attrelid::regclass::text, attname, attstattarget FROM pg_attribute WHERE attname IN "
                           "('title_upper', 'name_upper') AND attrelid IN ('collection_productsearch'::regclass, "
                           "'collection_seller'::regclass)")
            return found, sorted(cursor.fetchall()), os.environ["COLLECTION_TITLE_SEARCH"]

    migrated = indexes()
    assert [name for name, _ in migrated[0]] == ["collection_product_pkey", "collection_productsearch_pkey",
                                                 "product_search_title_upper_trgm", "seller_name_upper_trgm"]
    set_search_indexes(False)
    assert indexes() == (migrated[0][:3], migrated[1][:1], "false")
    set_search_indexes(True)
    assert indexes() == migrated


@postgres_only
@pytest.mark.django_db(transaction=True)
def test_the_index_cost_bench_rebuilds_other_index_sets_as_migrated():
    """`--index-cost price` and `--index-cost rare-values` (migrations 0016 and 0017)."""
    from bench.engine_throughput import INDEX_SETS

    def definitions(names):
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexname, indexdef FROM pg_indexes WHERE indexname = ANY(%s) ORDER BY 1", [names])
            return cursor.fetchall()

    for label, names in {"price": ["offer_price_id_idx", "product_price_id_idx"],
                         "rare-values": ["offer_condition_idx", "product_condition_idx", "product_country_idx"]}.items():
        migrated = definitions(names)
        assert [name for name, _ in migrated] == names, label
        INDEX_SETS[label](False)
        assert definitions(names) == [], label
        INDEX_SETS[label](True)
        assert definitions(names) == migrated, label


@postgres_only
def test_several_words_are_found_by_one_trigram_index_scan(products):
    """Not one bitmap a word ANDed afterwards: at 10 million titles two common words made
    bitmaps too large to stay exact, and the search took 1.7 s instead of 0.1 s."""
    from django.db import transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_indexscan = off")  # the bitmap plan, which is the one in question
        text = plan(search(Product.objects.all(), TITLES, "demo item").order_by("id")[:100])
    assert "BitmapAnd" not in text, text
    assert any("%DEMO%" in line and "%ITEM%" in line and "Index Cond" in line for line in text.splitlines()), text


@postgres_only
def test_a_range_pages_keys_from_its_index_alone(products):
    """Migration 0018: the keys of a price range or a feedback range come from the range's
    index without reading the table (an index-only scan). Without the id in the index it
    cannot: it reads every match from the table to learn its id."""
    from django.db import transaction

    seed_offers()
    cases = {
        "product_price_id_idx": Product.objects.filter(price__gte=10, price__lte=10.49),
        "offer_price_id_idx": Offer.objects.filter(price__gte=10, price__lte=10.49),
        "seller_feedback_id_idx": Seller.objects.filter(feedback_score__gte=99900),
    }
    with transaction.atomic(), connection.cursor() as cursor:
        for setting in ("seqscan", "bitmapscan"):  # a tiny table: ask whether the index *can* serve
            cursor.execute(f"SET LOCAL enable_{setting} = off")
        for index, queryset in cases.items():
            text = queryset.only("pk").order_by().explain()
            assert f"Index Only Scan using {index}" in text, (index, text)


def test_an_api_page_reads_its_keys_then_its_rows(client, admin_user, products):
    """The list's first query selects ids alone (what the cursor needs), the second the rows by
    id; the page comes out whole and in order, in both directions, with its cursor."""
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=admin_user).key
    headers = {"HTTP_AUTHORIZATION": f"Token {token}"}
    ids = list(products.values_list("id", flat=True))
    for ordering, expected in (("", ids), ("-first_seen_at", ids[::-1])):
        with CaptureQueriesContext(connection) as queries:
            query = {"ordering": ordering, "page_size": 7} if ordering else {"page_size": 7}
            page = client.get("/api/collection/products/", query, **headers).json()
        assert [row["id"] for row in page["results"]] == expected[:7]
        reads = [q["sql"] for q in queries.captured_queries if 'FROM "collection_product"' in q["sql"]]
        assert len(reads) == 2, reads
        assert reads[0].startswith('SELECT "collection_product"."id" FROM') and "LIMIT 8" in reads[0]
        assert '"collection_product"."title"' in reads[1] and " IN (" in reads[1]
        following = client.get(page["next"], **headers).json()
        assert [row["id"] for row in following["results"]] == expected[7:14]
        back = client.get(following["previous"], **headers).json()  # DRF reads this page reversed
        assert [row["id"] for row in back["results"]] == expected[:7]
    word = products.first().title.split()[0]
    with CaptureQueriesContext(connection) as queries:  # the words choose the keys; the rows are read by key alone
        found = client.get("/api/collection/products/", {"search": word}, **headers).json()["results"]
    assert found and all(word.lower() in row["title"].lower() for row in found)
    reads = [q["sql"] for q in queries.captured_queries if 'FROM "collection_product"' in q["sql"]]
    assert "LIKE" in reads[0] and "LIKE" not in reads[1], reads


@postgres_only
def test_a_search_walks_the_search_entries_key_alone(products):
    """Migration 0024: the title search entries' key holds the title, so a search's keys, walked
    in id order, are read from that key without the table (as 0021 had the products' key)."""
    from django.db import transaction

    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute("SET LOCAL enable_bitmapscan = off")  # the walk, not the trigram index
        text = plan(search(Product.objects.all(), TITLES, "demo item")
                    .only("pk").order_by("id")[:101])
    assert "Index Only Scan using collection_productsearch_pkey" in text, text


@postgres_only
def test_serving_processes_plan_without_parallel_workers(db):
    """A page is a LIMIT query: serving processes (this one) plan it serially and for its
    values; workers keep PostgreSQL's settings (config/settings.py)."""
    import subprocess
    import sys

    with connection.cursor() as cursor:
        cursor.execute("SELECT current_setting('max_parallel_workers_per_gather'), current_setting('plan_cache_mode')")
        assert cursor.fetchone() == ("0", "force_custom_plan")
    script = ("import sys; sys.argv = ['manage.py', 'db_worker']; from config import settings; "
              "print(settings.DATABASES['default']['OPTIONS']['options'])")
    options = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "plan_cache_mode=auto" in options and "max_parallel_workers_per_gather" not in options


@pytest.mark.parametrize(("variable", "value"), [
    ("DATABASE_PARALLEL_WORKERS", "abc"), ("DATABASE_PARALLEL_WORKERS", "-1"),
    ("DATABASE_URL", "mysql://user@host/name"), ("DATABASE_URL", "nonsense"),
])
def test_a_bad_database_setting_is_refused_by_name(variable, value):
    """Settings refuse what the database would (or could not) take, saying which variable."""
    import os
    import subprocess
    import sys

    env = {**os.environ, "DATABASE_URL": "postgres://root@127.0.0.1:5432/test", variable: value}
    done = subprocess.run([sys.executable, "-c", "from config import settings"], capture_output=True, text=True,
                          env=env)
    assert done.returncode != 0
    assert f"ImproperlyConfigured: {variable} must be" in done.stderr.splitlines()[-1], done.stderr


def test_the_admin_does_not_show_the_search_copies(admin_client, products):
    """`title_upper` and `name_upper` exist for search (0019): not shown on a change page."""
    product = products.first()
    for url, label in ((f"/admin/collection/product/{product.pk}/change/", "Title upper"),
                       (f"/admin/collection/seller/{product.seller_id}/change/", "Name upper")):
        page = admin_client.get(url).content.decode()
        assert product.title in page or product.seller.external_id in page
        assert label not in page and label.lower().replace(" ", "_") not in page, url


@postgres_only
@pytest.mark.django_db(transaction=True)  # the key is swapped outside a transaction
def test_the_key_swap_gives_up_on_a_held_lock_and_can_run_again(monkeypatch):
    """Migration 0021's swap of the products' key (which 0025 runs to give the key its plain
    form back) waits a bounded time for its lock: a long query on the products (here an open
    transaction that read them) makes it fail saying so, with the plain key still in place; run
    again once the query is done, it swaps the covering key in."""
    import importlib

    import psycopg
    from django.db import OperationalError

    swap = importlib.import_module("collection.migrations.0021_product_key_covers_search")
    monkeypatch.setattr(swap, "LOCK_TIMEOUT", "50ms")
    monkeypatch.setattr(swap, "TRIES", 2)
    monkeypatch.setattr(swap.time, "sleep", lambda seconds: None)

    def key():
        with connection.cursor() as cursor:
            cursor.execute("SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                           "AND indexname = 'collection_product_pkey'")
            return cursor.fetchone()[0]

    params = connection.get_connection_params()
    reader = psycopg.connect(**{k: v for k, v in params.items() if k in ("dbname", "user", "host", "port", "password")})
    try:
        covering = "INCLUDE (external_id)"  # the title's copy is gone (0025): the same swap, another column
        with connection.schema_editor(atomic=False) as editor:
            assert "INCLUDE" not in key()
            reader.execute("SELECT count(*) FROM collection_product")  # its transaction stays open
            with pytest.raises(OperationalError, match="could not swap in the new primary key.*"
                                                       "DROP INDEX CONCURRENTLY collection_product_pkey_new"):
                swap._swap_key(editor, covering)
            assert "INCLUDE" not in key()
            reader.rollback()
            swap._swap_key(editor, covering)
        assert covering in key()
    finally:
        reader.close()
        with connection.schema_editor(atomic=False) as editor:
            swap.uncover_search(None, editor)  # as migrated, whatever happened above
