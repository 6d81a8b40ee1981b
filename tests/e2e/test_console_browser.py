"""The operators' console in a real browser: Playwright driving Debian's Chromium against a
live server, with a real worker process executing the run."""

import csv
import io
import os
import shutil
from pathlib import Path

import pytest
from django.contrib.auth.models import Permission
from rest_framework.test import APIClient

from collection.admin import SellerAdmin
from collection.models import CollectionRun, ProductSearchQueue, RunStatus, Seller
from tests.conftest import ROOT, Workers, make_categories, wait_for

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = ROOT / "artifacts"

pytestmark = [
    pytest.mark.django_db(transaction=True),
    pytest.mark.workers,
    pytest.mark.skipif(CHROMIUM is None, reason="Chromium is not installed (apt-get install chromium)"),
]


@pytest.fixture
def browser_page(monkeypatch):
    from playwright.sync_api import sync_playwright

    # Playwright's sync API runs an event loop in this thread; the test's own ORM calls are safe.
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path=CHROMIUM, headless=True,
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 900})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()
        browser.close()


def shoot(page, name: str, *, full_page: bool = False) -> None:
    """The page at 1400×900 (or whole), in light and dark mode, into artifacts/."""
    for scheme in ("light", "dark"):
        page.emulate_media(color_scheme=scheme)
        page.wait_for_timeout(300)  # the admin's buttons fade to the scheme's colours (a CSS transition)
        page.screenshot(path=str(ARTIFACTS / f"{name}-{scheme}.png"), full_page=full_page)
    page.emulate_media(color_scheme="light")


def pick_categories(page, categories) -> None:
    """Choose categories in the add page's search box (the admin's autocomplete)."""
    for category in categories:
        page.click("#id_categories + .select2 .select2-selection")
        page.fill(".select2-container--open .select2-search__field", category.external_id)
        page.click(f".select2-results__option:text-is('{category}')")


def test_operator_drives_a_run_from_its_page_and_follows_what_it_saw(live_server, operator, browser_page, tmp_path):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    cats = make_categories(3, items=300)  # 45 pages: long enough to pause in the middle
    workers = Workers(tmp_path, DEMO_LATENCY_MS=120, COLLECTION_SLICE_SECONDS=1)
    workers.start(1)
    try:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "op")
        page.fill("#id_password", "op-password-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#collection-dashboard")

        page.goto(f"{live_server.url}/admin/collection/collectionrun/add/")
        pick_categories(page, cats)
        page.click("input[name=_estimate]")
        page.wait_for_selector("#estimate")
        assert page.inner_text("#estimate-total") == "1.3500 USD"  # 3 × (15 pages × 0.01 + 300 × 0.001)
        shoot(page, "add-run-estimate")

        page.fill("#id_budget_cap", "0.50")  # the form keeps the chosen categories
        page.click("input[name=_save_start]")
        page.wait_for_selector("#refusal")
        assert "exceeds the requested run cap" in page.inner_text("#refusal")
        shoot(page, "add-run-refused")
        assert CollectionRun.objects.count() == 0

        page.fill("#id_budget_cap", "")
        page.click("input[name=_save_start]")
        page.wait_for_selector(".messagelist .success")
        run = CollectionRun.objects.get()
        assert "created and started" in page.inner_text(".messagelist")

        def progressed():
            page.reload()
            return CollectionRun.objects.get(pk=run.pk).pages_done >= 5 and "Running" in page.inner_text("#run-status")

        wait_for(progressed, timeout=60, interval=0.3, message="the run page to show progress")
        page.click("#run-controls button[value=pause]")
        page.wait_for_selector(".messagelist .success")
        assert "Paused" in page.inner_text("#run-status")
        assert {b.get_attribute("value") for b in page.locator("#run-controls button").all()} == {"resume", "cancel"}
        shoot(page, "run-page-paused", full_page=True)
        page.click("#run-controls button[value=resume]")
        page.wait_for_selector(".messagelist .success")

        def completed():
            page.reload()
            return "Completed" in page.inner_text("#run-status")

        wait_for(completed, timeout=120, interval=0.5, message="the run page to show the run completed")
        assert page.locator("svg polyline").count() == 1 and page.locator("#run-controls button").count() == 0
        shoot(page, "run-page-completed", full_page=True)

        page.goto(f"{live_server.url}/admin/collection/collectionrun/")
        shoot(page, "runs-list")
        page.goto(f"{live_server.url}/admin/collection/collectionrun/{run.pk}/change/")
        link = page.inner_text("#sellers-seen")
        page.click("#sellers-seen")
        page.wait_for_selector("#result_list")
        api = APIClient()
        api.force_authenticate(operator)
        seen = api.get("/api/collection/sellers/", {"run": run.pk, "page_size": 1000}).json()["results"]
        assert link == f"Sellers seen ({len(seen)})" and seen
        assert f"{len(seen)} seller" in page.inner_text("#changelist-form .paginator")
        shoot(page, "sellers-seen-in-run")
        page.goto(f"{live_server.url}/admin/collection/product/?run={run.pk}")
        shoot(page, "products-seen-in-run")
        # Searching the products once the workers have indexed them (between runs, within seconds)
        wait_for(lambda: not ProductSearchQueue.objects.exists(), timeout=60, message="the products indexed")
        page.goto(f"{live_server.url}/admin/collection/product/?q=demo+item")
        assert page.locator("#result_list tbody tr").count() > 0
        assert "not searchable yet" not in page.inner_text("#content")
        shoot(page, "products-search")
        page.goto(f"{live_server.url}/admin/")
        shoot(page, "admin-index-dashboard")

        page.goto(f"{live_server.url}/admin/collection/seller/")
        page.check("#action-toggle")
        page.select_option("select[name=action]", "export_csv")
        with page.expect_download() as download:
            page.click("button[name=index]")
        path = download.value.path()
        rows = list(csv.reader(io.StringIO(Path(path).read_text())))

        # Deleting collected data: a page of products confirmed with counts, then a seller.
        operator.user_permissions.add(*Permission.objects.filter(
            content_type__app_label="collection", codename__in=["delete_product", "delete_seller", "delete_offer"]))
        page.goto(f"{live_server.url}/admin/collection/product/")
        page.check("#action-toggle")
        page.select_option("select[name=action]", "delete_selected")
        page.click("button[name=index]")
        page.wait_for_selector("text=Are you sure")
        assert "… and 30 more products" in page.inner_text("#content")
        shoot(page, "products-delete-confirmation", full_page=True)
        seller = Seller.objects.exclude(external_id__in=[row[2] for row in rows[1:]]).order_by("pk").first()
        page.goto(f"{live_server.url}/admin/collection/seller/{seller.pk}/delete/")
        assert "without a seller" in page.inner_text("#content")  # its products stay
        shoot(page, "seller-delete-confirmation")
        page.click("input[type=submit]")
        page.wait_for_selector(".messagelist .success")
        assert not Seller.objects.filter(pk=seller.pk).exists()
    finally:
        workers.stop()
    assert CollectionRun.objects.get().status == RunStatus.COMPLETED
    assert rows[0][2] == "external_id"
    exported = {row[2] for row in rows[1:]}
    # the changelist selects one page (50 rows, SellerAdmin.list_per_page) at a time
    assert exported and exported <= set(Seller.objects.values_list("external_id", flat=True))
    assert len(exported) == min(SellerAdmin.list_per_page, Seller.objects.count()) == 50
    assert os.path.getsize(ARTIFACTS / "run-page-completed-dark.png") > 0


def test_admin_browsable_api_and_api_docs_work_under_the_content_security_policy(live_server, operator, browser_page):
    page = browser_page
    violations: list[str] = []
    page.on("console", lambda message: violations.append(message.text)
            if "Content Security Policy" in message.text else None)
    make_categories(2, items=20)
    response = page.goto(f"{live_server.url}/admin/login/")
    policy = response.headers["content-security-policy"]
    assert "script-src 'self' 'nonce-" in policy and "object-src 'none'" in policy
    page.fill("#id_username", "op")
    page.fill("#id_password", "op-password-123")
    page.click("input[type=submit]")
    page.wait_for_selector("#site-name")
    page.goto(f"{live_server.url}/admin/collection/collectionrun/add/")
    page.click("#id_categories + .select2 .select2-selection")  # the search box is built by the admin's scripts
    page.wait_for_selector(".select2-results__option >> nth=1")
    assert page.locator(".select2-results__option").count() == 2
    page.goto(f"{live_server.url}/api/collection/runs/")
    page.wait_for_selector(".response-info")
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Collection runs API" in page.inner_text(".swagger-ui .info .title")
    assert violations == []
