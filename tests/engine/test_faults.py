"""Source faults, executed by django-tasks-db's worker loop in this process."""

import json
from decimal import Decimal

import pytest
from django.utils import timezone

from collection.models import CollectionRun, EventKind, PauseReason, RunEvent, RunStatus, RunUnit, UnitStatus
from collection.services import runs
from collection.services.errors import QuotaNotReset
from tests.conftest import make_categories, set_settings
from tests.engine.helpers import assert_ledgers_settled, drain, start_run

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def flaky(settings, tmp_path, monkeypatch):
    settings.COLLECTION_SOURCES = {**settings.COLLECTION_SOURCES, "flaky": "tests.fake_sources.FlakySource"}
    settings.DEMO_PAGE_SIZE = 10
    settings.DEMO_COST_PER_REQUEST = "0.01"
    settings.DEMO_COST_PER_RESULT = "0"
    settings.COLLECTION_RETRY_BASE_SECONDS = 0.05
    monkeypatch.setenv("FLAKY_DIR", str(tmp_path))

    def script(rules: dict):
        monkeypatch.setenv("FLAKY_RULES", json.dumps(rules))

    return script


def test_retryable_errors_are_retried_with_backoff_and_the_unit_resumes_its_cursor(flaky):
    flaky({"demo-1": ["retryable", "charged"]})
    cats = make_categories(2, items=30)
    run = drain(start_run(cats, source="flaky"))
    assert run.status == RunStatus.COMPLETED and run.items_done == 60
    unit = RunUnit.objects.get(run=run, category=cats[0])
    assert (unit.status, unit.attempts, unit.last_error) == (UnitStatus.DONE, 0, "")
    retries = RunEvent.objects.filter(run=run, kind=EventKind.UNIT_RETRY).order_by("id")
    assert [e.detail["attempt"] for e in retries] == [1, 2]
    assert "503" in retries[0].detail["error"]
    # 6 pages at 0.01, plus 0.005 the provider charged for the failed attempt
    assert run.spent == Decimal("0.065")
    assert_ledgers_settled(run)


def test_a_permanent_error_fails_the_category_and_the_run_completes_with_the_rest(flaky):
    flaky({"demo-2": ["permanent"]})
    cats = make_categories(2, items=30)
    run = drain(start_run(cats, source="flaky"))
    assert run.status == RunStatus.COMPLETED and run.error == "1 of 2 categories failed"
    failed = RunUnit.objects.get(run=run, category=cats[1])
    assert failed.status == UnitStatus.FAILED and "category does not exist" in failed.last_error
    assert RunEvent.objects.filter(run=run, kind=EventKind.UNIT_FAILED, unit=failed).exists()
    assert_ledgers_settled(run)


def test_a_unit_that_exhausts_its_attempts_fails_and_a_run_with_every_unit_failed_fails(flaky):
    set_settings(max_unit_attempts=3)
    flaky({"demo-1": ["retryable"] * 5})
    cats = make_categories(1, items=30)
    run = drain(start_run(cats, source="flaky"))
    assert run.status == RunStatus.FAILED and "every category failed" in run.error
    unit = RunUnit.objects.get(run=run)
    assert unit.status == UnitStatus.FAILED and unit.attempts == 3
    assert_ledgers_settled(run)


def test_a_fatal_error_fails_the_run(flaky):
    flaky({"demo-1": ["fatal"]})
    run = drain(start_run(make_categories(2, items=30), source="flaky"))
    assert run.status == RunStatus.FAILED and "credentials" in run.error
    assert_ledgers_settled(run)


def test_quota_exhaustion_pauses_with_reason_quota_and_resume_continues(flaky):
    flaky({"demo-1": ["quota"]})
    cats = make_categories(1, items=30)
    run = drain(start_run(cats, source="flaky"))
    assert run.status == RunStatus.PAUSED and run.pause_reason == PauseReason.QUOTA and run.quota_resets_at
    with pytest.raises(QuotaNotReset):  # the source's quota has not reset yet
        runs.run_resume(run_id=run.pk)
    CollectionRun.objects.filter(pk=run.pk).update(quota_resets_at=timezone.now())  # the clock passes the reset
    runs.run_resume(run_id=run.pk)
    run = drain(run)
    assert run.status == RunStatus.COMPLETED and run.items_done == 30
    assert_ledgers_settled(run)


def test_budget_pause_then_raise_the_cap_and_resume(settings):
    settings.DEMO_PAGE_SIZE = 10
    settings.DEMO_COST_PER_REQUEST = "0.01"
    settings.DEMO_COST_PER_RESULT = "0.001"
    cats = make_categories(1, items=50)  # 5 pages of 0.02
    run = runs.run_create(source="demo", category_ids=[c.pk for c in cats])
    runs.run_update_budget_cap(run_id=run.pk, budget_cap="0.06")
    runs.run_start(run_id=run.pk)
    run = drain(run)
    assert (run.status, run.pause_reason, run.pages_done, run.spent) == (
        RunStatus.PAUSED, PauseReason.BUDGET, 3, Decimal("0.06"))
    runs.run_update_budget_cap(run_id=run.pk, budget_cap="0.10")
    runs.run_resume(run_id=run.pk)
    run = drain(run)
    assert (run.status, run.pages_done, run.spent) == (RunStatus.COMPLETED, 5, Decimal("0.10"))
    assert_ledgers_settled(run)


def test_an_unexpected_error_is_retried_and_its_reservation_counted_as_spent(flaky):
    flaky({"demo-1": ["bug"]})
    run = drain(start_run(make_categories(1, items=30), source="flaky"))
    assert run.status == RunStatus.COMPLETED and run.items_done == 30
    retry = RunEvent.objects.get(run=run, kind=EventKind.UNIT_RETRY)
    assert "ValueError: an unexpected error in the source" in retry.detail["error"]
    # 3 pages at 0.01, plus the failed attempt's reservation: its outcome is unknown
    assert run.spent == Decimal("0.04")
    assert_ledgers_settled(run)
