"""Bad input answers 400 JSON over real HTTP, exports cannot carry formulas, settings fail
closed, and the API throttles per token in a real gunicorn."""

import base64
import csv
import subprocess
import sys
from decimal import Decimal
from io import StringIO

import httpx
import pytest
from django.core.management import call_command
from rest_framework.authtoken.models import Token
from rest_framework.test import APIClient

from collection.exports import safe_cell
from collection.services.checkpoint import upsert_items
from collection.sources import ProductItem, SellerItem
from tests.conftest import ROOT, wait_for, worker_env
from tests.factories import make_categories

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def served(live_server, operator):
    token = Token.objects.create(user=operator)
    return live_server.url, {"Authorization": f"Token {token.key}"}


def test_a_deeply_nested_json_body_is_a_400_not_a_500(served):
    url, headers = served
    body = "[" * 50_000 + "]" * 50_000
    response = httpx.post(f"{url}/api/collection/estimate/", content=body,
                          headers={**headers, "Content-Type": "application/json"})
    assert response.status_code == 400 and response.headers["content-type"].startswith("application/json")
    assert "nested too deeply" in response.json()["detail"]


def test_a_cursor_that_leads_nowhere_is_a_404_not_a_500(served):
    url, headers = served
    cursor = base64.b64encode(b"p=not-a-number").decode()
    for path in ("sellers", "products"):
        response = httpx.get(f"{url}/api/collection/{path}/", params={"cursor": cursor}, headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "invalid_cursor"
    for junk in ("a", base64.b64encode(b"o=x").decode()):  # not base64; an offset that is no number
        response = httpx.get(f"{url}/api/collection/runs/", params={"cursor": junk}, headers=headers)
        assert response.status_code == 404 and response.json()["code"] == "invalid_cursor"


FORMULAS = ["=HYPERLINK(\"http://evil.example\",\"click\")", "+1+1", "-2+3", "@SUM(A1)", "\tx", "\rx"]


def test_exports_neutralise_cells_a_spreadsheet_would_run_as_formulas(served, client, operator):
    cat = make_categories(1)[0]
    items = [ProductItem(external_id=f"f{i}", title=title, seller=SellerItem(external_id=f"=s{i}", name="@evil"),
                         price=Decimal("-1.50"), currency="USD") for i, title in enumerate(FORMULAS)]
    upsert_items(platform="demo", items=items, run_id=None, category_id=cat.pk)
    url, headers = served
    api_products = httpx.get(f"{url}/api/collection/products/", params={"format": "csv"}, headers=headers).text
    api_sellers = httpx.get(f"{url}/api/collection/sellers/", params={"format": "csv"}, headers=headers).text
    command = StringIO()
    call_command("collection_export", "products", stdout=command)
    client.force_login(operator)
    from collection.models import Product

    admin = b"".join(client.post("/admin/collection/product/", {
        "action": "export_csv", "_selected_action": list(Product.objects.values_list("pk", flat=True))}).streaming_content
    ).decode()
    for export in (api_products, command.getvalue(), admin):
        rows = list(csv.DictReader(StringIO(export, newline="")))
        assert sorted(row["title"] for row in rows) == sorted(f"'{title}" for title in FORMULAS)
        assert {row["price"] for row in rows} == {"-1.50"}  # numbers are numbers, not text
        assert {row["seller__external_id"][:2] for row in rows} == {"'="}
    sellers = list(csv.DictReader(StringIO(api_sellers, newline="")))
    assert {row["name"] for row in sellers} == {"'@evil"}
    assert safe_cell("plain") == "plain" and safe_cell(-5) == -5


def test_without_a_secret_key_and_with_debug_off_the_app_refuses_to_start():
    env = worker_env(DEBUG="false", SECRET_KEY="")
    refused = subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True, text=True)
    assert refused.returncode != 0 and "SECRET_KEY is not set" in refused.stderr
    env["DEBUG"] = "true"
    assert subprocess.run([sys.executable, "manage.py", "check"], cwd=ROOT, env=env, capture_output=True).returncode == 0


@pytest.mark.workers
def test_the_api_throttles_each_token_with_a_429_in_json(operator):
    token = Token.objects.create(user=operator)
    env = worker_env(API_THROTTLE_USER="5/minute", COLLECTION_RECOVER_ON_START="false")
    server = subprocess.Popen([sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "1", "--bind",
                               "127.0.0.1:8766"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.DEVNULL)
    headers = {"Authorization": f"Token {token.key}"}
    try:
        def up():
            try:
                return httpx.get("http://127.0.0.1:8766/api/schema/", timeout=2).status_code in (200, 401, 403)
            except httpx.HTTPError:
                return False

        wait_for(up, timeout=30, message="gunicorn to serve")
        statuses = [httpx.get("http://127.0.0.1:8766/api/collection/runs/", headers=headers).status_code
                    for _ in range(7)]
        assert statuses[:5] == [200] * 5 and statuses[5:] == [429, 429]
        throttled = httpx.get("http://127.0.0.1:8766/api/collection/runs/", headers=headers)
        assert "Retry-After" in throttled.headers and "throttled" in throttled.json()["detail"].lower()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_repeated_failed_admin_logins_lock_the_account_out(client, operator):
    for _ in range(4):
        response = client.post("/admin/login/", {"username": "op", "password": "wrong", "next": "/admin/"})
        assert response.status_code == 200  # the login form again, with an error
    fifth = client.post("/admin/login/", {"username": "op", "password": "wrong", "next": "/admin/"})
    assert fifth.status_code == 429  # the fifth failure locks the account out
    locked = client.post("/admin/login/", {"username": "op", "password": "op-password-123", "next": "/admin/"})
    assert locked.status_code == 429  # even the right password is refused while locked out
    assert not client.get("/admin/").wsgi_request.user.is_authenticated
    other = client.post("/admin/login/", {"username": "someone", "password": "x", "next": "/admin/"})
    assert other.status_code == 200  # another username from the same address is not locked


def test_errors_under_the_api_have_a_code_and_a_detail(api):
    unknown = api.get("/api/collection/nothing-here/")
    assert unknown.status_code == 404 and unknown["Content-Type"] == "application/json"
    assert unknown.json() == {"code": "not_found", "detail": "No API endpoint at /api/collection/nothing-here/."}
    missing = api.get("/api/collection/runs/424242/").json()
    assert missing["code"] == "not_found" and missing["detail"]
    wrong_method = api.put("/api/collection/runs/", {}, format="json").json()
    assert wrong_method["code"] == "method_not_allowed" and wrong_method["detail"]
    anonymous = APIClient().get("/api/collection/runs/").json()
    assert anonymous["code"] == "not_authenticated" and anonymous["detail"]
    cats = make_categories(1, items=20)
    payload = {"source": "demo", "categories": [cats[0].pk]}
    assert api.post("/api/collection/runs/", payload, format="json", HTTP_IDEMPOTENCY_KEY="k-1").status_code == 201
    reused = api.post("/api/collection/runs/", {**payload, "budget_cap": "5"}, format="json",
                      HTTP_IDEMPOTENCY_KEY="k-1")
    assert reused.status_code == 409 and reused.json()["code"] == "idempotency_key_reused"
