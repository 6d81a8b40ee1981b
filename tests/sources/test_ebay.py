"""The eBay source through the real engine and a real worker, against a local fake eBay."""

import json
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone
from rest_framework.test import APIClient

from collection.models import (
    Category,
    CollectionRun,
    EventKind,
    PauseReason,
    QuotaPeriod,
    RunEvent,
    RunStatus,
    RunUnit,
    UnitStatus,
)
from collection.services import runs
from collection.services.errors import QuotaNotReset
from collection.services.estimate import estimate
from tests.conftest import Workers, set_settings
from tests.engine.helpers import wait_status
from tests.sources.helpers import assert_stored_exactly, ebay_categories, run_with_worker

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]


def test_a_category_past_the_cap_is_partitioned_and_collected_whole_with_a_token_that_expires_mid_run(fake, tmp_path):
    scenario = fake.scenario
    scenario.token_lifetime = 0.3  # eBay says 7200 s; this one dies early: the source must re-mint on 401
    cats = ebay_categories(scenario, {"11450": 25_000, "267": 450})
    run, _ = run_with_worker(fake, tmp_path, cats)
    assert run.status == RunStatus.COMPLETED
    assert_stored_exactly(scenario, ["11450", "267"])  # all 25,000, not the first 10,000
    assert all_requests_follow_the_offset_rules(scenario)
    splits = RunEvent.objects.filter(run=run, kind=EventKind.PARTITIONED)
    assert splits.count() >= 2 and "price" in splits.first().detail["detail"]
    assert scenario.minted >= 2
    assert Category.objects.get(external_id="11450").known_item_count == 25_000
    assert run.spent <= run.budget_cap and run.reserved == 0 and run.items_unreachable == 0
    quota = QuotaPeriod.objects.get(source="ebay")
    assert quota.reserved == 0
    # every page used a call; a retried call counts too (it reached eBay), never more than were made
    assert run.pages_done <= quota.used <= len(scenario.searches)


def all_requests_follow_the_offset_rules(scenario) -> bool:
    """offset is 0 or a multiple of limit, below 10,000, and limit never changes within a search."""
    limits = {r["limit"] for r in scenario.requests if r["limit"] != "1"}
    return len(limits) <= 1 and all(
        int(r["offset"]) % int(r["limit"]) == 0 and int(r["offset"]) < 10_000 for r in scenario.requests
    )


def test_429_with_error_2001_pauses_for_quota_and_resume_after_the_reset_completes(fake, tmp_path):
    scenario = fake.scenario
    cats = ebay_categories(scenario, {"9355": 600})
    scenario.faults[("9355", 200)] = ["429-quota"]
    run, _ = run_with_worker(fake, tmp_path, cats, until=(RunStatus.PAUSED,))
    assert run.pause_reason == PauseReason.QUOTA and run.quota_resets_at is not None
    quota = QuotaPeriod.objects.get(source="ebay")
    assert quota.used + quota.reserved == quota.limit  # nobody calls eBay again before the reset
    assert RunEvent.objects.filter(run=run, kind=EventKind.PAUSED, detail__reason="quota").exists()
    with pytest.raises(QuotaNotReset, match=r"resets at .* (PST|PDT) \(.* UTC\)"):
        runs.run_resume(run_id=run.pk)  # before eBay's day turns over
    # The reset: eBay's new day (the clock moves past the reset time) and a fresh quota row.
    QuotaPeriod.objects.filter(pk=quota.pk).delete()
    CollectionRun.objects.filter(pk=run.pk).update(quota_resets_at=timezone.now() - timedelta(seconds=1))
    runs.run_resume(run_id=run.pk)
    workers = Workers(tmp_path, **fake.env)
    try:
        workers.start(1)
        run = wait_status(CollectionRun.objects.get(), RunStatus.COMPLETED, timeout=60)
    finally:
        workers.stop()
    assert_stored_exactly(scenario, ["9355"])


def test_the_local_quota_is_a_budget_reservations_never_pass(fake, tmp_path):
    scenario = fake.scenario
    cats = ebay_categories(scenario, {"177": 1000})  # 5 pages
    run, _ = run_with_worker(fake, tmp_path, cats, until=(RunStatus.PAUSED,), EBAY_DAILY_CALL_QUOTA=3)
    # creation probed the category's size (one call), then two pages fitted in the quota of 3
    assert run.pause_reason == PauseReason.QUOTA and run.pages_done == 2
    quota = QuotaPeriod.objects.get(source="ebay")
    assert (quota.used, quota.reserved, quota.limit) == (3, 0, 3) and len(scenario.searches) == 3
    QuotaPeriod.objects.filter(pk=quota.pk).update(limit=5000)  # the next day's quota
    CollectionRun.objects.filter(pk=run.pk).update(quota_resets_at=timezone.now() - timedelta(seconds=1))
    runs.run_resume(run_id=run.pk)
    workers = Workers(tmp_path, **fake.env)
    try:
        workers.start(1)
        run = wait_status(run, RunStatus.COMPLETED, timeout=60)
    finally:
        workers.stop()
    assert run.pages_done == 5
    assert_stored_exactly(scenario, ["177"])


def test_5xx_bursts_timeouts_and_malformed_json_are_retried(fake, tmp_path):
    scenario = fake.scenario
    cats = ebay_categories(scenario, {"625": 800})
    scenario.faults[("625", 200)] = ["503", "503", "503"]
    scenario.faults[("625", 400)] = ["slow"]
    scenario.faults[("625", 600)] = ["malformed", "429"]
    run, _ = run_with_worker(fake, tmp_path, cats)
    assert run.status == RunStatus.COMPLETED
    assert_stored_exactly(scenario, ["625"])
    retries = [e.detail["error"] for e in RunEvent.objects.filter(run=run, kind=EventKind.UNIT_RETRY)]
    assert sum("HTTP 503" in e for e in retries) == 3
    assert any("in time" in e for e in retries) and any("malformed" in e for e in retries)
    # the 429 (a rate limit, not the day's quota) was waited out: no attempt counted, no retry event
    assert not any("429" in e for e in retries)
    assert sum(1 for c, o, _ in scenario.searches if (c, o) == ("625", 600)) == 3  # malformed, 429, served
    # 4 pages at 0.01 plus what the provider may have charged for the failed calls
    assert Decimal("0.04") <= run.spent <= run.budget_cap


def test_a_category_ebay_says_is_invalid_finishes_with_that_reason_and_the_rest_completes(fake, tmp_path):
    scenario = fake.scenario
    cats = ebay_categories(scenario, {"58058": 300})
    cats.append(Category.objects.create(platform="ebay", external_id="999999999", name="gone"))
    run, _ = run_with_worker(fake, tmp_path, cats)
    assert run.status == RunStatus.COMPLETED and run.error == ""
    gone = RunUnit.objects.get(run=run, category__external_id="999999999")
    assert gone.status == UnitStatus.DONE and "12009" in gone.note and gone.items_done == 0
    event = RunEvent.objects.get(run=run, kind=EventKind.CATEGORY_GONE)
    assert event.unit_id == gone.pk and "category_ids" in event.detail["reason"]
    assert_stored_exactly(scenario, ["58058"])


def test_401_after_a_fresh_token_fails_the_run_and_the_secret_never_leaks(fake, tmp_path, operator):
    scenario = fake.scenario
    scenario.every_search = "401"
    cats = ebay_categories(scenario, {"1": 100, "2": 100})
    run, logs = run_with_worker(fake, tmp_path, cats, until=(RunStatus.FAILED,), LOG_LEVEL="DEBUG")
    assert "check EBAY credentials" in run.error
    secret = scenario.client_secret
    api = APIClient()
    api.force_authenticate(operator)
    outputs = [
        logs, run.error, json.dumps(list(RunEvent.objects.values_list("detail", flat=True))),
        " ".join(RunUnit.objects.values_list("last_error", flat=True)),
        json.dumps(api.get(f"/api/collection/runs/{run.pk}/").json()),
        json.dumps(api.get(f"/api/collection/runs/{run.pk}/events/").json()),
        json.dumps(api.get(f"/api/collection/runs/{run.pk}/units/").json()),
        json.dumps(api.get("/api/collection/sources/").json()),
    ]
    for text in outputs:
        assert secret not in text
        assert "s3cr3t" not in text


def test_estimate_probes_unknown_categories_against_the_quota_or_uses_the_default(fake):
    scenario = fake.scenario
    set_settings(default_items_per_category=50)
    cats = ebay_categories(scenario, {"31388": 12_345, "220": 35})
    declined = estimate(source="ebay", category_ids=[c.pk for c in cats], probe=False)
    assert [row.items for row in declined.categories] == [50, 50] and declined.probe_calls == 0
    assert scenario.searches == []
    est = estimate(source="ebay", category_ids=[c.pk for c in cats])
    assert [row.items for row in est.categories] == [12_345, 35], [r.probe_error for r in est.categories]
    assert all(row.probed for row in est.categories) and est.probe_calls == 2
    assert sorted(scenario.searches) == [("220", 0, 1), ("31388", 0, 1)]
    assert QuotaPeriod.objects.get(source="ebay").used == 2
    assert Category.objects.get(external_id="31388").item_count_measured_at is not None
    # 12,345 items: past the cap, so ~3 partitions (one per 4,500), 62 pages, 3 last pages, 2 probing calls
    big = est.categories[0]
    assert (big.partitions, big.partition_probes, big.pages) == (3, 2, 67) and big.cost == Decimal("0.67")
    assert est.categories[1].partitions == 1 and est.categories[1].pages == 1
    again = estimate(source="ebay", category_ids=[c.pk for c in cats])
    assert again.probe_calls == 0 and len(scenario.searches) == 2


def test_load_categories_from_a_taxonomy_file(tmp_path, capsys):
    from django.core.management import CommandError, call_command

    tree = {"categoryTreeId": "0", "rootCategoryNode": {
        "category": {"categoryId": "0", "categoryName": "Root"},
        "childCategoryTreeNodes": [
            {"category": {"categoryId": "550", "categoryName": "Art"}, "childCategoryTreeNodes": [
                {"category": {"categoryId": "552", "categoryName": "Art Prints"}, "leafCategoryTreeNode": True}]},
            {"category": {"categoryId": "267", "categoryName": "Books"}, "leafCategoryTreeNode": True},
        ]}}
    path = tmp_path / "tree.json"
    path.write_text(json.dumps(tree))
    call_command("collection_load_categories", "ebay", str(path))
    assert "3 created" in capsys.readouterr().out
    assert Category.objects.get(external_id="552").parent_external_id == "550"
    call_command("collection_load_categories", "ebay", str(path))
    assert "0 created, 3 updated" in capsys.readouterr().out
    flat = tmp_path / "flat.json"
    flat.write_text(json.dumps([{"id": "9355", "name": "Cell Phones"}]))
    call_command("collection_load_categories", "ebay", str(flat))
    assert Category.objects.filter(platform="ebay").count() == 4
    bad = tmp_path / "bad.json"
    bad.write_text('[{"id": "1", "name": "ok"}, {"name": "no id"}]')
    with pytest.raises(CommandError, match="entry 2"):
        call_command("collection_load_categories", "ebay", str(bad))
    assert Category.objects.filter(platform="ebay").count() == 4  # nothing written
    (tmp_path / "broken.json").write_text("{nope")
    with pytest.raises(CommandError, match="not valid JSON"):
        call_command("collection_load_categories", "ebay", str(tmp_path / "broken.json"))
    with pytest.raises(CommandError, match="unknown source"):
        call_command("collection_load_categories", "nope", str(path))


@pytest.mark.parametrize("key", [None, "probe-then-refuse-1"])
def test_probes_are_real_spend_even_when_creation_is_refused(fake, operator, key):
    """The probes really reached eBay: their charge, their quota calls and the sizes they found
    stay when the run is refused over budget, with or without an Idempotency-Key."""
    from collection.models import BudgetPeriod

    cats = ebay_categories(fake.scenario, {"31388": 12_345, "220": 35})
    api = APIClient()
    api.force_authenticate(operator)
    headers = {"HTTP_IDEMPOTENCY_KEY": key} if key else {}
    refused = api.post("/api/collection/runs/", {"source": "ebay", "categories": [c.pk for c in cats],
                                                 "budget_cap": "0.05"}, format="json", **headers)
    assert refused.status_code == 400 and refused.json()["code"] == "budget_exceeded"
    assert CollectionRun.objects.count() == 0
    assert len(fake.scenario.searches) == 2  # two probes reached eBay ...
    assert BudgetPeriod.objects.get().spent == Decimal("0.02")  # ... were charged ...
    assert QuotaPeriod.objects.get(source="ebay").used == 2  # ... counted ...
    assert Category.objects.get(external_id="31388").known_item_count == 12_345  # ... and what they found is kept
