"""The Keepa source (Amazon, offers, a token bucket) through the real engine and real workers,
against a local fake Keepa that follows Keepa's documented contract (tests/fake_keepa.py)."""

import io
import json
import os
import signal
import time
from decimal import Decimal

import pytest
from django.core.management import call_command
from rest_framework.test import APIClient

from collection.models import (
    BudgetPeriod,
    Category,
    CollectionRun,
    EventKind,
    Offer,
    PauseReason,
    Product,
    RunEvent,
    RunStatus,
    RunUnit,
    Seller,
)
from collection.services import runs
from collection.services.estimate import estimate
from collection.sources.keepa import offer_tokens, query_tokens
from tests.conftest import Workers, set_settings, wait_for
from tests.engine.helpers import start_run, wait_idle, wait_status
from tests.fake_keepa import build_catalog, expected
from tests.sources.helpers import run_with_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]

PRICE = Decimal("0.001")


def keepa_categories(scenario, sizes: dict[str, int], *, known: bool = True, **options) -> list[Category]:
    build_catalog(scenario, sizes, **options)
    return [Category.objects.create(platform="amazon", external_id=cid, name=f"Amazon {cid}",
                                    known_item_count=len(scenario.categories[cid]) if known else None)
            for cid in sizes]


def assert_stored_exactly(scenario, categories: list[str]) -> None:
    asins, offers, sellers = expected(scenario, categories)
    stored = list(Product.objects.filter(platform="amazon").values_list("external_id", flat=True))
    assert len(stored) == len(set(stored)) and set(stored) == asins
    stored_offers = list(Offer.objects.values_list("product__external_id", "seller__external_id", "condition"))
    assert len(stored_offers) == len(set(stored_offers)) and set(stored_offers) == offers
    stored_sellers = list(Seller.objects.filter(platform="amazon").values_list("external_id", flat=True))
    assert len(stored_sellers) == len(set(stored_sellers)) and set(stored_sellers) == sellers
    # every seller Keepa knows has its name and rating; the ones it does not know keep their id
    known = sellers & set(scenario.sellers)
    named = dict(Seller.objects.filter(platform="amazon").values_list("external_id", "name"))
    assert {s for s in known if named[s] == scenario.sellers[s]["sellerName"]} == known
    assert len(known) < len(sellers)  # the catalog has sellers Keepa does not know: they stay, by id


def run_keepa(keepa, tmp_path, cats, *, workers=2, **options):
    return run_with_worker(keepa, tmp_path, cats, source="keepa", workers=workers, **options)


def test_three_categories_store_every_offer_and_seller_once_and_spend_what_keepa_reports(keepa, tmp_path):
    scenario = keepa.scenario
    set_settings(concurrency_per_run=3)
    cats = keepa_categories(scenario, {"1001": 130, "1002": 75, "1003": 60})
    scenario.unrefreshed = {scenario.categories["1002"][30]}  # in 1002 only
    scenario.invalid = {scenario.categories["1003"][5]}
    run, logs = run_keepa(keepa, tmp_path, cats, ROOT_LOG_LEVEL="DEBUG", LOG_LEVEL="DEBUG")
    assert run.status == RunStatus.COMPLETED, run.error
    assert_stored_exactly(scenario, ["1001", "1002", "1003"])
    # ASINs shared by two categories are one product; a seller on many ASINs is one seller
    assert Product.objects.filter(external_id=scenario.categories["1001"][0]).count() == 1
    assert Offer.objects.values("seller").distinct().count() < Offer.objects.count()
    # spend is exactly what Keepa reported consumed, priced per token, and never above the cap
    assert run.spent == scenario.consumed * PRICE and run.spent <= run.budget_cap and run.reserved == 0
    assert BudgetPeriod.objects.get().spent == run.spent
    # the documented limits held: 20 ASINs a call with offers, 100 sellers, perPage ≥ 50
    for endpoint, params in scenario.requests:
        if endpoint == "product":
            assert len(params["asin"].split(",")) <= 20 and params["offers"] == "20"
        if endpoint == "seller":
            assert len(params["seller"].split(",")) <= 100
    warnings = list(RunEvent.objects.filter(run=run, kind=EventKind.SOURCE_WARNING).values_list("detail", flat=True))
    assert [w["code"] for w in warnings] == ["offersSuccessful"], warnings
    assert not RunEvent.objects.filter(run=run, kind__in=[EventKind.PAUSED, EventKind.UNIT_RETRY]).exists()
    assert "HTTP Request" in logs  # the HTTP client logged every call at DEBUG ...
    assert scenario.key not in logs  # ... without the key


def test_an_empty_bucket_is_waited_out_without_failing_or_pausing(keepa, tmp_path):
    scenario = keepa.scenario
    need = query_tokens(50) + 50 * offer_tokens(20) + 100  # a page's worst case
    scenario.refill_rate, scenario.tokens = 1500, 200  # one page's tokens a "minute"; less than a page now
    scenario.drain_on_call = {4: -300, 9: -300}  # another client of the key empties the bucket, twice
    cats = keepa_categories(scenario, {"2001": 150, "2002": 100})
    run, _ = run_keepa(keepa, tmp_path, cats)
    assert run.status == RunStatus.COMPLETED, run.error
    assert_stored_exactly(scenario, ["2001", "2002"])
    # Keepa answered 429 after each drain, but the workers waited for its refill instead of
    # calling into an empty bucket again and again
    assert 1 <= scenario.rejected <= 6, scenario.rejected
    assert not RunEvent.objects.filter(run=run, kind__in=[EventKind.PAUSED, EventKind.UNIT_RETRY,
                                                         EventKind.UNIT_FAILED]).exists()  # ... and it was waited out
    assert set(RunUnit.objects.filter(run=run).values_list("attempts", flat=True)) == {0}
    assert run.spent == scenario.consumed * PRICE
    assert need > 200 and scenario.requests[0][0] == "token"  # the first page waited for a refill


def test_pause_resume_and_kill_9_lose_nothing(keepa, tmp_path):
    scenario = keepa.scenario
    scenario.latency = 0.03
    set_settings(concurrency_per_run=3, lease_seconds=2, max_auto_recoveries=50)
    cats = keepa_categories(scenario, {"3001": 400, "3002": 300, "3003": 250})
    pool = Workers(tmp_path, **keepa.env, COLLECTION_SLICE_SECONDS=1, COLLECTION_SWEEP_SECONDS=0.5)
    try:
        pool.start(2)
        run = start_run(cats, source="keepa", cap="100")
        wait_for(lambda: CollectionRun.objects.get(pk=run.pk).pages_done >= 3, timeout=60, message="3 pages")
        runs.run_pause(run_id=run.pk)
        wait_idle(run)
        calls = len(scenario.requests)
        time.sleep(0.5)
        assert len(scenario.requests) == calls  # paused means no calls (and no spend)
        runs.run_resume(run_id=run.pk)
        done = CollectionRun.objects.get(pk=run.pk).pages_done
        wait_for(lambda: CollectionRun.objects.get(pk=run.pk).pages_done >= done + 2, timeout=60, message="pages")
        owners = " ".join(RunUnit.objects.filter(run=run).values_list("lease_owner", flat=True))
        victim = next((p for p in pool.procs if f":{p.pid}:" in owners), pool.procs[0])
        os.kill(victim.pid, signal.SIGKILL)
        victim.wait()
        pool.start(1)
        run = wait_status(run, RunStatus.COMPLETED, timeout=180)
        wait_idle(run)
    finally:
        pool.stop()
    assert_stored_exactly(scenario, ["3001", "3002", "3003"])
    run.refresh_from_db()
    # a page in flight at the kill counts as spent in full (Keepa may have charged it): spend
    # covers at least what Keepa consumed, and stays under the cap
    assert scenario.consumed * PRICE <= run.spent <= run.budget_cap and run.reserved == 0


def test_a_plan_keepa_refuses_pauses_for_quota_with_its_message_and_resume_completes(keepa, tmp_path):
    scenario = keepa.scenario
    scenario.plan_expired = True
    cats = keepa_categories(scenario, {"4001": 60})
    pool = Workers(tmp_path, **keepa.env)
    try:
        pool.start(1)
        run = start_run(cats, source="keepa")
        run = wait_status(run, RunStatus.PAUSED)
        assert run.pause_reason == PauseReason.QUOTA
        paused = RunEvent.objects.filter(run=run, kind=EventKind.PAUSED).last()
        assert "402" in paused.detail["error"] and "subscription has expired" in paused.detail["error"]
        wait_idle(run)
        scenario.plan_expired = False  # the operator renewed the plan
        runs.run_resume(run_id=run.pk)
        run = wait_status(run, RunStatus.COMPLETED)
    finally:
        pool.stop()
    assert_stored_exactly(scenario, ["4001"])


def test_a_rejected_key_pauses_for_quota_and_the_key_leaks_nowhere(keepa, tmp_path, operator, admin_client):
    scenario = keepa.scenario
    wrong = "k" + scenario.key[1:]  # the workers' key, which Keepa does not accept
    cats = keepa_categories(scenario, {"5001": 60, "5002": 60})
    run, logs = run_keepa(keepa, tmp_path, cats, until=(RunStatus.PAUSED,), KEEPA_API_KEY=wrong,
                          ROOT_LOG_LEVEL="DEBUG", LOG_LEVEL="DEBUG")
    assert run.pause_reason == PauseReason.QUOTA
    paused = RunEvent.objects.filter(run=run, kind=EventKind.PAUSED).last()
    assert "rejected the API key" in paused.detail["error"] and "Invalid API key" in paused.detail["error"]
    api = APIClient()
    api.force_authenticate(operator)
    dump = io.StringIO()
    call_command("dumpdata", "collection", stdout=dump)
    outputs = [
        logs, run.error, dump.getvalue(), json.dumps(list(RunEvent.objects.values_list("detail", flat=True))),
        " ".join(RunUnit.objects.values_list("last_error", flat=True)),
        json.dumps(api.get(f"/api/collection/runs/{run.pk}/").json()),
        json.dumps(api.get(f"/api/collection/runs/{run.pk}/events/").json()),
        json.dumps(api.get(f"/api/collection/runs/{run.pk}/units/").json()),
        json.dumps(api.get("/api/collection/sources/").json()),
        admin_client.get(f"/admin/collection/collectionrun/{run.pk}/change/").content.decode(),
    ]
    assert "HTTP Request" in logs
    for text in outputs:
        assert wrong not in text and scenario.key not in text


def test_estimate_probes_keepa_counts_and_says_tokens_and_how_long(keepa):
    scenario = keepa.scenario
    scenario.refill_rate = 20
    cats = keepa_categories(scenario, {"6001": 7500, "6002": 60}, known=False, max_offers=2)
    est = estimate(source="keepa", category_ids=[c.pk for c in cats])
    assert [row.items for row in est.categories] == [7507, 67]  # Keepa's productCount (an estimate)
    assert all(row.probed for row in est.categories) and est.probe_calls == 2
    assert [e for e, _ in scenario.requests if e == "category"] == ["category", "category"]
    # probes are charged like a page: 1 token each, to the month
    assert BudgetPeriod.objects.get().spent == 2 * PRICE and scenario.consumed == 2
    assert est.tokens == sum(row.tokens for row in est.categories)
    # per page a query; per product its offers' pages; about one seller lookup per product
    per_item = offer_tokens(20) + 1
    assert est.tokens == 151 * query_tokens(50) + 7507 * per_item + 2 * query_tokens(50) + 67 * per_item == 100_145
    assert est.refill_rate == 20 and est.duration_seconds == 100_145 * 3
    assert est.pacing == "Needs about 100,145 tokens: about 3.5 days at the key's 20 tokens a minute."
    assert est.total_cost == est.tokens * PRICE


def test_without_a_key_keepa_is_listed_as_not_configured_and_refused(keepa, settings, operator):
    settings.KEEPA_API_KEY = ""
    cats = keepa_categories(keepa.scenario, {"7001": 60})
    api = APIClient()
    api.force_authenticate(operator)
    listed = {s["key"]: s for s in api.get("/api/collection/sources/").json()}
    assert listed["keepa"]["configured"] is False and "KEEPA_API_KEY" in listed["keepa"]["configuration_error"]
    assert listed["demo"]["configured"] is True
    refused = api.post("/api/collection/estimate/", {"source": "keepa", "categories": [cats[0].pk]}, format="json")
    assert refused.status_code == 400 and "KEEPA_API_KEY" in json.dumps(refused.json())
    created = api.post("/api/collection/runs/", {"source": "keepa", "categories": [cats[0].pk]}, format="json")
    assert created.status_code == 400 and CollectionRun.objects.count() == 0
    assert keepa.scenario.requests == []


def test_load_keepa_categories_from_a_category_answer(tmp_path, capsys):
    answer = {"categories": {
        "172282": {"catId": 172282, "name": "Electronics", "parent": 0, "children": [281407], "productCount": 9_000_000},
        "281407": {"catId": 281407, "name": "Accessories", "parent": 172282, "children": [], "productCount": 120_000},
    }, "tokensLeft": 10}
    path = tmp_path / "keepa.json"
    path.write_text(json.dumps(answer))
    call_command("collection_load_categories", "keepa", str(path))
    assert "2 created" in capsys.readouterr().out
    leaf = Category.objects.get(platform="amazon", external_id="281407")
    assert (leaf.parent_external_id, leaf.is_leaf, leaf.known_item_count) == ("172282", True, 120_000)
    root = Category.objects.get(platform="amazon", external_id="172282")
    assert (root.parent_external_id, root.is_leaf) == ("", False)
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps([{"catId": "x", "name": "No"}]))
    with pytest.raises(Exception, match="numeric catId"):
        call_command("collection_load_categories", "keepa", str(bad))
    assert Category.objects.filter(platform="amazon").count() == 2


def test_the_admin_adds_a_keepa_category_by_its_id(keepa, admin_client):
    scenario = keepa.scenario
    scenario.add_category("281407", [f"B{i:09d}" for i in range(80)], count=123_456)
    url = "/admin/collection/category/add-by-id/"
    assert "Add by id at a source" in admin_client.get("/admin/collection/category/").content.decode()
    response = admin_client.post(url, {"source": "keepa", "external_id": "281407"})
    assert response.status_code == 302
    added = Category.objects.get(platform="amazon", external_id="281407")
    assert (added.name, added.is_leaf, added.known_item_count) == ("Category 281407", True, 123_456)
    assert BudgetPeriod.objects.get().spent == PRICE and scenario.consumed == 1  # one lookup, charged
    unknown = admin_client.post(url, {"source": "keepa", "external_id": "999"})
    assert unknown.status_code == 200 and "does not know category" in unknown.content.decode()
    assert admin_client.post(url, {"source": "ebay", "external_id": "1"}).status_code == 200  # not a choice
    assert Category.objects.count() == 1
