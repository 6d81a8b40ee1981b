"""The operators' console in a real browser: Playwright driving Debian's Chromium against a
live server, with a real worker process executing the run."""

import csv
import io
import os
import shutil
from pathlib import Path

import pytest

from collection.models import CollectionRun, RunStatus, Seller
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
        context = browser.new_context(accept_downloads=True, viewport={"width": 1400, "height": 1000})
        page = context.new_page()
        page.set_default_timeout(30_000)
        yield page
        context.close()
        browser.close()


def test_operator_estimates_is_refused_over_budget_runs_and_exports(live_server, operator, browser_page, tmp_path):
    page = browser_page
    ARTIFACTS.mkdir(exist_ok=True)
    cats = make_categories(3, items=60)
    workers = Workers(tmp_path, DEMO_LATENCY_MS=30, COLLECTION_SLICE_SECONDS=1)
    workers.start(1)
    try:
        page.goto(f"{live_server.url}/admin/login/")
        page.fill("#id_username", "op")
        page.fill("#id_password", "op-password-123")
        page.click("input[type=submit]")
        page.wait_for_selector("#site-name")

        page.goto(f"{live_server.url}/admin/collection/collectionrun/add/")
        page.select_option("#id_categories_from", [str(c.pk) for c in cats])
        page.click("#id_categories_add")
        page.click("input[name=_estimate]")
        page.wait_for_selector("#estimate")
        assert page.inner_text("#estimate-total") == "0.2700 USD"  # 3 × (3 × 0.01 + 60 × 0.001)
        page.screenshot(path=str(ARTIFACTS / "add-run-estimate.png"), full_page=True)

        # the form keeps the chosen categories
        page.fill("#id_budget_cap", "0.20")
        page.click("input[name=_save]")
        page.wait_for_selector("#refusal")
        assert "exceeds the requested run cap" in page.inner_text("#refusal")
        page.emulate_media(color_scheme="dark")
        page.screenshot(path=str(ARTIFACTS / "add-run-refused-dark.png"), full_page=True)
        page.emulate_media(color_scheme="light")
        assert CollectionRun.objects.count() == 0

        page.fill("#id_budget_cap", "")
        page.click("input[name=_save]")
        page.wait_for_selector(".messagelist .success")
        run = CollectionRun.objects.get()

        page.goto(f"{live_server.url}/admin/collection/collectionrun/")
        page.check(f"input[name=_selected_action][value='{run.pk}']")
        page.select_option("select[name=action]", "start_runs")
        page.click("button[name=index]")
        page.wait_for_selector(".messagelist .success")

        def completed_on_page():
            page.goto(f"{live_server.url}/admin/collection/collectionrun/")
            return "Completed" in page.inner_text("#result_list") and "100%" in page.inner_text("#result_list")

        wait_for(completed_on_page, timeout=90, interval=0.5, message="the runs list to show 100% completed")
        assert CollectionRun.objects.get().status == RunStatus.COMPLETED
        page.screenshot(path=str(ARTIFACTS / "runs-list.png"), full_page=True)
        page.goto(f"{live_server.url}/admin/collection/collectionrun/{run.pk}/change/")
        assert page.locator("svg polyline").count() == 1
        page.screenshot(path=str(ARTIFACTS / "run-page.png"), full_page=True)

        page.goto(f"{live_server.url}/admin/collection/seller/")
        page.check("#action-toggle")
        page.select_option("select[name=action]", "export_csv")
        with page.expect_download() as download:
            page.click("button[name=index]")
        path = download.value.path()
        rows = list(csv.reader(io.StringIO(Path(path).read_text())))
    finally:
        workers.stop()
    assert rows[0][2] == "external_id"
    exported = {row[2] for row in rows[1:]}
    # the changelist selects one page (100 rows) at a time
    assert exported and exported <= set(Seller.objects.values_list("external_id", flat=True))
    assert len(exported) == min(100, Seller.objects.count())
    assert os.path.getsize(ARTIFACTS / "runs-list.png") > 0


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
    page.wait_for_selector("#id_categories_from")  # the filtered picker is built by the admin's scripts
    assert page.locator("#id_categories_from option").count() == 2
    page.goto(f"{live_server.url}/api/collection/runs/")
    page.wait_for_selector(".response-info")
    page.goto(f"{live_server.url}/api/docs/")
    page.wait_for_selector(".swagger-ui .info .title", timeout=30_000)
    assert "Collection runs API" in page.inner_text(".swagger-ui .info .title")
    assert violations == []
