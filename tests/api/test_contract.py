"""The API's contract as a client developer reads it in the schema: one error shape, one way to
page, parameters refused rather than ignored, input of the documented types only."""

import csv
import io

import pytest
from rest_framework.test import APIClient

from collection.models import CollectionRun, CollectionSettings, Product
from collection.services import runs
from collection.services.checkpoint import upsert_items
from collection.sources.demo import demo_item
from tests.factories import make_categories, make_run

pytestmark = pytest.mark.django_db

BASE = "/api/collection/"
LISTS = ["runs/", "categories/", "sellers/", "products/", "offers/"]


def refused(response, field: str, status: int = 400) -> dict:
    body = response.json()
    assert response.status_code == status and response["Content-Type"] == "application/json", body
    assert body["code"] == "invalid" and field in body["errors"] and field in body["detail"], body
    return body


def test_refused_input_has_code_detail_and_errors_by_field_and_writes_nothing(api):
    category = make_categories(1)[0]
    body = refused(api.post(BASE + "runs/", {"source": "demo", "categories": []}, format="json"), "categories")
    assert body["errors"]["categories"] == ["Ensure this field has at least 1 elements."]
    body = refused(api.post(BASE + "runs/", {"source": "demo"}, format="json"), "categories")
    assert body["detail"] == "categories: This field is required."
    refused(api.post(BASE + "runs/", [1, 2], format="json"), "non_field_errors")
    refused(api.post(BASE + "runs/", {"source": "demo", "categories": [category.pk]}, format="json",
                     HTTP_IDEMPOTENCY_KEY=" padded "), "Idempotency-Key")
    refused(api.patch(BASE + "settings/", {"currency": "usd"}, format="json"), "currency")
    assert CollectionRun.objects.count() == 0 and CollectionSettings.load().currency == "USD"


@pytest.mark.parametrize(("payload", "field"), [
    ({"budget_cap": 5}, "budget_cap"),  # money is a string: a JSON number is a float
    ({"budget_cap": ""}, "budget_cap"),
    ({"budget_cap": " 5"}, "budget_cap"),
    ({"budget_cap": "5.12345"}, "budget_cap"),
    ({"probe": "true"}, "probe"),
    ({"categories": ["1"]}, "categories"),
    ({"source": 1}, "source"),
    ({"source": {}}, "source"),
])
def test_input_must_have_the_documented_json_type(api, payload, field):
    category = make_categories(1)[0]
    body = {"source": "demo", "categories": [category.pk], **payload}
    refused(api.post(BASE + "estimate/", body, format="json"), field)
    refused(api.post(BASE + "runs/", body, format="json"), field)
    assert CollectionRun.objects.count() == 0


def test_a_source_without_its_configuration_is_refused_with_what_is_missing(api, settings):
    settings.KEEPA_API_KEY = ""
    category = make_categories(1, platform="amazon")[0]
    body = refused(api.post(BASE + "estimate/", {"source": "keepa", "categories": [category.pk]}, format="json"),
                   "source")
    assert "KEEPA_API_KEY" in body["detail"]


def test_run_patch_without_a_cap_changes_nothing(api):
    run = make_run(categories=1)
    before = run.budget_cap
    response = api.patch(f"{BASE}runs/{run.pk}/", {}, format="json")
    assert response.status_code == 200 and response.json()["budget_cap"] == f"{before:.4f}"
    refused(api.patch(f"{BASE}runs/{run.pk}/", {"budget_cap": 7}, format="json"), "budget_cap")


@pytest.mark.parametrize("path", LISTS)
def test_every_list_pages_by_cursor_with_page_size_and_refuses_what_it_does_not_honour(api, path):
    for bad in ({"page_size": 0}, {"page_size": 1001}, {"page_size": "ten"}):
        refused(api.get(BASE + path, bad), "page_size")
    for foreign in ({"limit": 5}, {"offset": 5}, {"page": 2}, {"stauts": "running"}):
        refused(api.get(BASE + path, foreign), next(iter(foreign)))
    refused(api.get(BASE + path, {"ordering": "nonsense"}), "ordering")
    page = api.get(BASE + path, {"page_size": 1})
    assert page.status_code == 200 and set(page.json()) == {"next", "previous", "results"}
    junk = api.get(BASE + path, {"cursor": "a"})
    assert junk.status_code == 404 and junk.json()["code"] == "invalid_cursor"


def test_a_cursor_pages_through_every_run_once_while_runs_are_added(api):
    for _ in range(5):
        make_run(categories=1)
    seen, url = [], BASE + "runs/?page_size=2"
    while url:
        body = api.get(url).json()
        seen += [run["id"] for run in body["results"]]
        if len(seen) == 2:
            make_run(categories=1)  # newer than the cursor's position: not in this walk, not a duplicate
        url = body["next"]
    assert seen == sorted(seen, reverse=True) and len(seen) == len(set(seen)) == 5


@pytest.mark.parametrize("path", ["units/", "events/"])
def test_a_runs_units_and_events_page_by_cursor(api, path):
    run = make_run(categories=3)
    runs.run_cancel(run_id=run.pk)  # a second event
    first = api.get(f"{BASE}runs/{run.pk}/{path}", {"page_size": 1}).json()
    rest = api.get(first["next"]).json()
    assert len(first["results"]) == 1 and first["previous"] is None and rest["results"]
    assert rest["results"][0]["id"] > first["results"][0]["id"]
    refused(api.get(f"{BASE}runs/{run.pk}/{path}", {"status": "done"}), "status")


def test_ordering_is_honoured_and_only_index_backed_sorts_are_offered(api):
    category = make_categories(1)[0]
    for start in (0, 10):
        upsert_items(platform="demo", items=[demo_item("o", i) for i in range(start, start + 10)], run_id=None,
                     category_id=category.pk)
    newest = api.get(BASE + "products/", {"ordering": "-first_seen_at", "page_size": 20}).json()["results"]
    stamps = [p["first_seen_at"] for p in newest]
    assert stamps == sorted(stamps, reverse=True) and stamps[0] > stamps[-1]
    for unindexed in ("price", "title", "-spent"):
        refused(api.get(BASE + "products/", {"ordering": unindexed}), "ordering")
    refused(api.get(BASE + "runs/", {"ordering": "status"}), "ordering")


def test_typed_filters_refuse_empty_and_malformed_values(api):
    refused(api.get(BASE + "runs/", {"created_before": ""}), "created_before")
    refused(api.get(BASE + "offers/", {"fulfilled_by_platform": "null"}), "fulfilled_by_platform")
    refused(api.get(BASE + "offers/", {"fulfilled_by_platform": ""}), "fulfilled_by_platform")
    refused(api.get(BASE + "products/", {"seller": "1.5"}), "seller")
    refused(api.get(BASE + "products/", {"price_min": "-1"}), "price_min")
    refused(api.get(BASE + "sellers/", {"feedback_score_min": "1.5"}), "feedback_score_min")
    assert api.get(BASE + "offers/", {"fulfilled_by_platform": "true"}).status_code == 200
    assert api.get(BASE + "products/", {"platform": ""}).status_code == 200  # text: empty matches as before


def test_a_refused_csv_request_says_why_in_json(api):
    response = api.get(BASE + "products/", {"format": "csv", "seller": "x"})
    body = refused(response, "seller")
    assert body["detail"].startswith("seller:")
    anonymous = APIClient().get(BASE + "products/", {"format": "csv"})
    assert anonymous.status_code == 401 and anonymous.json()["code"] == "not_authenticated"
    detail = api.get(f"{BASE}products/1/", {"format": "csv"})  # CSV exports lists; one object is JSON
    assert detail.status_code == 404 and detail.json()["code"] == "not_found"


def test_csv_follows_the_lists_order_and_pages_with_a_link_header(api):
    category = make_categories(1)[0]
    upsert_items(platform="demo", items=[demo_item("v", i) for i in range(25)], run_id=None, category_id=category.pk)

    def rows(response):
        assert response.status_code == 200 and response["Content-Type"].startswith("text/csv")
        return list(csv.DictReader(io.StringIO(b"".join(response.streaming_content).decode())))

    every = rows(api.get(BASE + "products/", {"format": "csv", "ordering": "-id"}))
    assert [int(r["id"]) for r in every] == sorted(Product.objects.values_list("id", flat=True), reverse=True)
    first = api.get(BASE + "products/", {"format": "csv", "ordering": "-id", "page_size": 10})
    assert [r["id"] for r in rows(first)] == [r["id"] for r in every[:10]]
    next_url = first["Link"].split(">")[0].lstrip("<")
    assert 'rel="next"' in first["Link"] and "format=csv" in next_url
    assert [r["id"] for r in rows(api.get(next_url))] == [r["id"] for r in every[10:20]]


@pytest.mark.parametrize("query", ["", "?format=yaml", "?format=json"])
def test_the_schema_answers_its_own_errors_in_the_error_body(query):
    response = APIClient().get(f"/api/schema/{query}")
    assert response.status_code == 401 and response["Content-Type"] == "application/json"
    assert response.json() == {"code": "not_authenticated", "detail": "Authentication credentials were not provided."}


def test_the_schema_documents_every_error_an_operation_can_answer(api):
    schema = api.get("/api/schema/", {"format": "json"}).json()
    assert "Error" in schema["components"]["schemas"]
    for path, operations in schema["paths"].items():
        for method, operation in operations.items():
            codes = set(operation["responses"])
            assert {"400", "401", "403", "404", "429"} <= codes, (method, path, codes)
            if method in ("post", "patch"):
                assert "415" in codes, (method, path)
            error = operation["responses"]["401"]["content"]["application/json"]["schema"]
            assert error == {"$ref": "#/components/schemas/Error"}, (method, path)
    transitions = [p for p in schema["paths"] if p.endswith(("/start/", "/pause/", "/resume/", "/cancel/"))]
    assert len(transitions) == 4 and all("409" in schema["paths"][p]["post"]["responses"] for p in transitions)
    page_size = next(p for p in schema["paths"]["/api/collection/runs/"]["get"]["parameters"]
                     if p["name"] == "page_size")
    assert page_size["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000}


def test_an_anonymous_visitor_is_offered_a_login_in_the_browsable_api_and_the_docs(client, operator):
    page = client.get(BASE + "runs/", HTTP_ACCEPT="text/html")
    assert page.status_code == 401 and b"href='/api/auth/login/?next=/api/collection/runs/'>Log in" in page.content
    docs = client.get("/api/docs/")
    assert docs.status_code == 302 and docs["Location"] == "/api/auth/login/?next=/api/docs/"
    login = client.get(docs["Location"])
    assert login.status_code == 200 and b'name="password"' in login.content
    client.force_login(operator)
    assert client.get("/api/docs/").status_code == 200
    page = client.get(BASE + "runs/", HTTP_ACCEPT="text/html")
    assert b'action="/api/auth/logout/?next=/api/collection/runs/"' in page.content and b"onclick" not in page.content
    client.post("/api/auth/logout/")
    assert client.get(BASE + "runs/", HTTP_ACCEPT="text/html").status_code == 401


def test_edge_values_are_refused_not_a_server_error(api):
    refused(api.get(BASE + "runs/", {"created_after": "0001-01-01T00:00:00+14:00"}), "created_after")
    refused(api.get(BASE + "runs/", {"page_size": "²"}), "page_size")  # a digit to str.isdigit, not to int()


def test_categories_find_a_short_part_of_a_name(api):
    make_categories(2)
    names = [c["name"] for c in api.get(BASE + "categories/", {"search": "1"}).json()["results"]]
    assert names == ["Category 1"]
