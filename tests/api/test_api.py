import csv
import io
from datetime import datetime
from decimal import Decimal

import pytest
from django.urls import URLPattern, URLResolver, get_resolver
from rest_framework.test import APIClient

from collection.models import (
    CollectionRun,
    IdempotencyKey,
    Product,
    ProductSeen,
    RunEvent,
    RunStatus,
    RunUnit,
    Seller,
)
from collection.services.checkpoint import upsert_items
from collection.sources.demo import demo_item
from tests.conftest import set_settings
from tests.factories import make_categories, make_run, seed_offers

pytestmark = pytest.mark.django_db

BASE = "/api/collection/"


def new_run(**kwargs) -> CollectionRun:
    return make_run(categories=2, items=40, **kwargs)


def api_routes() -> list[str]:
    """Every route under /api/ in the URLconf, with sample ids filled in."""
    found = []

    def walk(patterns, prefix=""):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns, prefix + str(p.pattern))
            elif isinstance(p, URLPattern):
                route = prefix + str(p.pattern)
                if route.startswith("api/") and "format" not in route and not route.startswith("api/auth/"):
                    found.append("/" + route.replace("^", "").replace("$", "").replace("\\.", "."))

    walk(get_resolver().url_patterns)
    return sorted(set(found))


def fill(route: str, ids: dict) -> str:
    import re

    route = re.sub(r"\(\?P<pk>[^)]*\)", str(ids["pk"]), route)
    route = route.replace("<pk>", str(ids["pk"]))
    return route


def test_permission_matrix_every_api_route(client, api, outsider):
    run = new_run()
    routes = api_routes()
    assert len(routes) >= 14 and "/api/schema/" in routes and "/api/docs/" in routes
    for route in routes:
        url = fill(route, {"pk": run.pk})
        method = "post" if route.endswith(("start/", "pause/", "resume/", "cancel/", "estimate/")) else "get"
        anonymous = getattr(APIClient(), method)(url)
        if url == "/api/docs/":  # a person in a browser: sent to log in
            assert anonymous.status_code == 302 and anonymous["Location"].startswith("/api/auth/login/?next=")
        else:
            assert anonymous.status_code in (401, 403), (url, anonymous.status_code)
        forbidden = getattr(outsider, method)(url)
        assert forbidden.status_code == 403, (url, forbidden.status_code)
        allowed = getattr(api, method)(url, {"source": "demo", "categories": [1]} if "estimate" in url else None,
                                       format="json")
        assert allowed.status_code not in (401, 403, 500), (url, allowed.status_code)


def test_anonymous_is_told_to_authenticate():
    response = APIClient().get(BASE + "runs/")
    assert response.status_code == 401 and response["WWW-Authenticate"] == "Token"


def test_estimate_answers_the_estimate_shape_with_cap_and_within_budget(api):
    cats = make_categories(2, items=40)
    response = api.post(BASE + "estimate/", {"source": "demo", "categories": [c.pk for c in cats],
                                             "budget_cap": "0.05"}, format="json")
    assert response.status_code == 200
    body = response.json()
    assert body["total_cost"] == "0.1200" and body["cap"] == "0.0500" and body["within_budget"] is False
    assert "exceeds" in body["reason"] and len(body["categories"]) == 2


def test_create_start_pause_resume_cancel_and_the_run_fields(api, django_capture_on_commit_callbacks):
    cats = make_categories(2, items=40)
    response = api.post(BASE + "runs/", {"source": "demo", "categories": [c.pk for c in cats]}, format="json")
    assert response.status_code == 201
    run = response.json()
    assert set(run) >= {"id", "source", "status", "pause_reason", "budget_cap", "spent", "reserved", "estimate",
                        "categories", "units_total", "units_done", "pages_done", "items_done", "sellers_new",
                        "progress", "created_by", "created_at", "started_at", "paused_at", "finished_at", "error"}
    assert run["categories"] == [c.pk for c in cats] and run["created_by"] == "op"
    assert run["spent"] == "0.0000" and run["estimate"]["total_cost"] == "0.1200" and run["status"] == "pending"
    url = f"{BASE}runs/{run['id']}/"
    with django_capture_on_commit_callbacks(execute=False):
        assert api.post(url + "start/").json()["status"] == "running"
    assert api.post(url + "pause/").json()["pause_reason"] == "operator"
    with django_capture_on_commit_callbacks(execute=False):
        assert api.post(url + "resume/").json()["status"] == "running"
    assert api.post(url + "cancel/").json()["status"] == "cancelled"
    assert [e["kind"] for e in api.get(url + "events/").json()["results"]] == [
        "created", "started", "paused", "resumed", "cancelled"]
    units = api.get(url + "units/").json()["results"]
    assert [u["category"] for u in units] == [c.pk for c in cats] and units[0]["cursor"] is None


def test_illegal_transition_is_409_with_code_detail_and_status(api):
    run = new_run()
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED)
    response = api.post(f"{BASE}runs/{run.pk}/pause/")
    assert response.status_code == 409
    assert response.json() == {"code": "invalid_transition", "detail": "cannot pause a completed run",
                                "status": "completed"}


def test_budget_block_is_400_with_the_estimate_and_writes_nothing(api):
    cats = make_categories(2, items=40)
    response = api.post(BASE + "runs/", {"source": "demo", "categories": [c.pk for c in cats], "budget_cap": "0.1"},
                        format="json")
    assert response.status_code == 400
    body = response.json()
    assert body["code"] == "budget_exceeded" and body["estimate"]["total_cost"] == "0.1200" and body["detail"]
    assert CollectionRun.objects.count() == 0


@pytest.mark.parametrize(
    ("payload", "field"),
    [
        ({"source": "demo", "categories": "1"}, "categories"),
        ({"source": "demo", "categories": []}, "categories"),
        ({"source": "demo", "categories": ["x"]}, "categories"),
        ({"source": "demo", "categories": [99999]}, "categories"),
        ({"source": "demo", "categories": list(range(1, 1002))}, "categories"),
        ({"source": "demo", "categories": [1, 1]}, "categories"),
        ({"source": "demo", "categories": [2**70]}, "categories"),
        ({"source": "nope", "categories": [1]}, "source"),
        ({"source": 5, "categories": [1]}, "source"),
        ({"categories": [1]}, "source"),
        ({"source": "demo", "categories": [1], "budget_cap": "-1"}, "budget_cap"),
        ({"source": "demo", "categories": [1], "budget_cap": "1e30"}, "budget_cap"),
        ({"source": "demo", "categories": [1], "budget_cap": "NaN"}, "budget_cap"),
        ({"source": "demo", "categories": [1], "budget_cap": "abc"}, "budget_cap"),
        ({"source": "demo", "categories": [1], "budget_cap": "100.01"}, "budget_cap"),
    ],
)
def test_bad_input_is_400_naming_the_field_and_writes_nothing(api, payload, field):
    make_categories(1)
    response = api.post(BASE + "runs/", payload, format="json")
    body = response.json()
    assert response.status_code == 400 and field in body["errors"] and body["code"] == "invalid", body
    assert field in body["detail"]
    assert CollectionRun.objects.count() == 0 and RunUnit.objects.count() == 0


def test_malformed_json_and_wrong_shapes_are_400(api):
    response = api.post(BASE + "runs/", "{not json", content_type="application/json")
    assert response.status_code == 400 and "detail" in response.json()
    assert api.post(BASE + "runs/", [1, 2], format="json").status_code == 400
    assert api.patch(BASE + "settings/", {"concurrency_per_run": 0}, format="json").status_code == 400
    assert api.patch(BASE + "settings/", {"run_budget_cap": "-3"}, format="json").status_code == 400


def test_unknown_ids_are_404(api):
    assert api.get(BASE + "runs/987654/").status_code == 404
    assert api.post(BASE + "runs/987654/start/").status_code == 404
    assert api.get(BASE + "runs/abc/").status_code == 404
    assert api.get(BASE + "sellers/987654/").status_code == 404


def test_budget_cap_patch_and_delete_follow_the_rules(api):
    set_settings(run_budget_cap=Decimal("10"))
    run = new_run()
    url = f"{BASE}runs/{run.pk}/"
    assert api.patch(url, {"budget_cap": "5"}, format="json").json()["budget_cap"] == "5.0000"
    response = api.patch(url, {"budget_cap": "11"}, format="json")
    assert response.status_code == 400 and "budget_cap" in response.json()["errors"]
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    assert api.delete(url).status_code == 409
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.PENDING)
    assert api.delete(url).status_code == 204 and not CollectionRun.objects.filter(pk=run.pk).exists()
    assert api.put(url, {"budget_cap": "5"}, format="json").status_code in (404, 405)


def test_settings_read_and_update(api):
    assert api.get(BASE + "settings/").json()["currency"] == "USD"
    body = api.patch(BASE + "settings/", {"monthly_budget_cap": "250.5", "concurrency_per_run": 3},
                     format="json").json()
    assert body["monthly_budget_cap"] == "250.5000" and body["concurrency_per_run"] == 3


def test_sources_and_categories(api):
    assert api.get(BASE + "sources/").json()[0]["key"] == "demo"
    make_categories(2)
    make_categories(1, platform="other")
    assert len(api.get(BASE + "categories/", {"platform": "demo"}).json()["results"]) == 2
    assert api.get(BASE + "categories/", {"search": "Category 1"}).json()["results"][0]["name"] == "Category 1"


def test_idempotency_key_replays_the_first_response(api):
    cats = make_categories(1, items=40)
    payload = {"source": "demo", "categories": [cats[0].pk]}
    first = api.post(BASE + "runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    again = api.post(BASE + "runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert first.status_code == again.status_code == 201 and first.json() == again.json()
    assert again["Idempotent-Replayed"] == "true"
    # creation answers with where the run lives, replayed or not
    run_url = f"http://testserver{BASE}runs/{first.json()['id']}/"
    assert first["Location"] == again["Location"] == run_url and api.get(run_url).status_code == 200
    assert CollectionRun.objects.count() == 1 and RunEvent.objects.count() == 1
    other = api.post(BASE + "runs/", {**payload, "budget_cap": "50"}, format="json", HTTP_IDEMPOTENCY_KEY="abc-1")
    assert other.status_code == 409 and CollectionRun.objects.count() == 1
    assert api.post(BASE + "runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="abc-2").status_code == 201
    assert CollectionRun.objects.count() == 2
    # a refused request stores nothing: the retry is judged afresh
    assert api.post(BASE + "runs/", {**payload, "budget_cap": "0.01"}, format="json",
                    HTTP_IDEMPOTENCY_KEY="abc-3").status_code == 400
    assert not IdempotencyKey.objects.filter(key="abc-3").exists()


def test_list_endpoints_make_a_constant_number_of_queries(api, django_assert_max_num_queries):
    for _ in range(3):
        new_run()
    cat = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("q", i) for i in range(150)], run_id=None, category_id=cat.pk)
    for url in ["runs/", "sellers/", "products/", "offers/", "categories/"]:
        with django_assert_max_num_queries(6):
            assert api.get(BASE + url, {"page_size": 100}).status_code == 200
    for _ in range(10):
        new_run()
    with django_assert_max_num_queries(6):
        assert len(api.get(BASE + "runs/", {"page_size": 100}).json()["results"]) == 13


def test_sellers_and_products_filter_paginate_by_cursor_and_stream_csv(api):
    cat = make_categories(1)[0]
    run = new_run()
    upsert_items(platform="demo", items=[demo_item("c", i) for i in range(120)], run_id=run.pk, category_id=cat.pk)
    page = api.get(BASE + "products/", {"page_size": 50}).json()
    assert len(page["results"]) == 50 and page["next"] and "cursor=" in page["next"]
    second = api.get(page["next"]).json()
    assert {p["id"] for p in page["results"]}.isdisjoint({p["id"] for p in second["results"]})
    assert len(api.get(BASE + "products/", {"category": cat.pk, "page_size": 1000}).json()["results"]) == 120
    assert api.get(BASE + "sellers/", {"first_seen_run": run.pk}).json()["results"]
    top = api.get(BASE + "sellers/", {"feedback_score_min": 40000}).json()["results"]
    assert all(s["feedback_score"] >= 40000 for s in top)
    response = api.get(BASE + "sellers/", {"format": "csv"})
    assert response.status_code == 200 and response["Content-Type"].startswith("text/csv") and response.streaming
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][2] == "external_id" and len(rows) == Seller.objects.count() + 1


def test_a_csv_page_of_nothing_is_its_header(api):
    upsert_items(platform="demo", items=[demo_item("e", 0)], run_id=None, category_id=make_categories(1)[0].pk)
    for query in ({"search": "zzzqqq"}, {"search": "zzzqqq", "page_size": 5}, {"platform": "none", "page_size": 5}):
        response = api.get(BASE + "products/", {"format": "csv", **query})
        body = b"".join(response.streaming_content).decode()
        assert response.status_code == 200 and body.splitlines()[0].startswith("id,platform") and len(body.splitlines()) == 1


def test_a_products_last_sighting_in_its_json_and_csv(api):
    cat = make_categories(1)[0]
    lamp, desk = demo_item("l", 0), demo_item("l", 1)
    upsert_items(platform="demo", items=[lamp, desk], run_id=None, category_id=cat.pk)
    upsert_items(platform="demo", items=[lamp], run_id=None, category_id=cat.pk)  # seen again, unchanged
    ProductSeen.objects.filter(product__external_id=desk.external_id).delete()  # a row stored without one
    stored = {p.external_id: p for p in Product.objects.select_related("seen")}
    assert stored[lamp.external_id].last_seen_at > stored[lamp.external_id].first_seen_at
    assert stored[desk.external_id].last_seen_at == stored[desk.external_id].first_seen_at
    expected = {key: api.get(BASE + f"products/{p.pk}/").json()["last_seen_at"] for key, p in stored.items()}
    listed = {p["external_id"]: p["last_seen_at"] for p in api.get(BASE + "products/").json()["results"]}
    assert listed == expected and expected[lamp.external_id] != expected[desk.external_id]
    response = api.get(BASE + "products/", {"format": "csv"})
    rows = list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))
    exported = {row["external_id"]: row["last_seen_at"] for row in rows}
    assert {key: datetime.fromisoformat(value) for key, value in exported.items()} == \
        {key: p.last_seen_at for key, p in stored.items()}


def test_browsable_api_works_for_a_logged_in_operator(client, operator):
    client.force_login(operator)
    response = client.get(BASE + "runs/", HTTP_ACCEPT="text/html")
    assert response.status_code == 200 and b"Run List" in response.content
    assert client.get("/api/docs/").status_code == 200
    assert client.get("/api/schema/").status_code == 200


def test_a_body_that_is_not_json_is_a_json_415(api):
    fields = "&".join(f"categories={i}" for i in range(1, 1200))
    response = api.post(BASE + "estimate/", fields, content_type="application/x-www-form-urlencoded")
    assert response.status_code == 415 and response["Content-Type"] == "application/json"
    assert response.json()["code"] == "unsupported_media_type"


def test_offers_list_a_products_sellers_and_a_sellers_products_and_stream_csv(api, django_assert_max_num_queries):
    asins = seed_offers()
    b000 = Product.objects.get(external_id=asins[0])
    offers = api.get(BASE + "offers/", {"product": b000.pk}).json()["results"]
    assert sorted((o["seller_external_id"], o["condition"]) for o in offers) == [
        ("A0SELLER", "NEW"), ("A1SELLER", "NEW"), ("A2SELLER", "NEW"), ("A3SELLER", "NEW"), ("A3SELLER", "USED_GOOD")]
    assert {o["seller_name"] for o in offers} == {"Shop 0", "Shop 1", "Shop 2", "Shop 3"}
    shop3 = Seller.objects.get(external_id="A3SELLER")
    sold = api.get(BASE + "offers/", {"seller": shop3.pk}).json()["results"]
    assert len(sold) == 4 and {o["product_external_id"] for o in sold} == set(asins)
    # products a seller offers (not only the ones it is the product's one seller of)
    products = api.get(BASE + "products/", {"seller": shop3.pk}).json()["results"]
    assert {p["external_id"] for p in products} == set(asins)
    assert api.get(BASE + "offers/", {"fulfilled_by_platform": "true", "product": b000.pk}).json()["results"]
    assert api.get(BASE + "offers/", {"seller": "x"}).status_code == 400
    with django_assert_max_num_queries(6):
        assert api.get(BASE + "offers/", {"page_size": 100}).status_code == 200
    response = api.get(BASE + "offers/", {"format": "csv", "seller": shop3.pk})
    rows = list(csv.reader(io.StringIO(b"".join(response.streaming_content).decode())))
    assert rows[0][:5] == ["id", "product__platform", "product__external_id", "product__title", "seller__external_id"]
    assert len(rows) == 5 and {r[4] for r in rows[1:]} == {"A3SELLER"}
