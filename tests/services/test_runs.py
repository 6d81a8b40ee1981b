from decimal import Decimal

import pytest
from django.db import transaction
from django.test import override_settings

from collection.models import CollectionRun, EventKind, RunEvent, RunStatus, RunUnit
from collection.services import runs
from collection.services.errors import BudgetExceeded, InvalidInput, InvalidTransition, RunNotFound
from collection.services.settings import settings_update
from tests.conftest import set_settings
from tests.factories import make_categories, make_run

pytestmark = pytest.mark.django_db

PRICING = {"DEMO_PAGE_SIZE": 20, "DEMO_COST_PER_REQUEST": "0.05", "DEMO_COST_PER_RESULT": "0.002"}


def new_run(**kwargs) -> CollectionRun:
    return make_run(categories=2, items=40, **kwargs)


@override_settings(**PRICING)
def test_create_snapshots_estimate_and_cap_and_makes_one_unit_per_category(operator):
    cats = make_categories(3, items=40)
    run = runs.run_create(source="demo", category_ids=[c.pk for c in cats], budget_cap="5", actor=operator)

    assert run.status == RunStatus.PENDING and run.budget_cap == Decimal("5")
    # per category: 2 pages × 0.05 + 40 × 0.002 = 0.18
    assert run.estimated_cost == Decimal("0.54") and run.estimate["total_cost"] == "0.5400"
    assert [row["id"] for row in run.estimate["categories"]] == [c.pk for c in cats]
    assert sorted(RunUnit.objects.filter(run=run).values_list("category_id", flat=True)) == sorted(c.pk for c in cats)
    assert run.units_total == 3 and run.pages_estimated == 6
    event = RunEvent.objects.get(run=run)
    assert event.kind == EventKind.CREATED and event.actor == operator


@override_settings(**PRICING)
def test_over_budget_creation_is_hard_blocked_and_writes_nothing():
    cats = make_categories(2, items=1000)  # 2 × (50 × 0.05 + 1000 × 0.002) = 9.00
    before = (CollectionRun.objects.count(), RunUnit.objects.count(), RunEvent.objects.count())
    with pytest.raises(BudgetExceeded) as caught:
        runs.run_create(source="demo", category_ids=[c.pk for c in cats], budget_cap="8.99")
    assert caught.value.estimate["total_cost"] == "9.0000"
    assert caught.value.estimate["within_budget"] is False
    assert "8.99" in caught.value.reason
    assert (CollectionRun.objects.count(), RunUnit.objects.count(), RunEvent.objects.count()) == before


def test_requested_cap_above_settings_cap_is_refused():
    set_settings(run_budget_cap=Decimal("10"))
    with pytest.raises(InvalidInput) as caught:
        new_run(budget_cap="10.01")
    assert "budget_cap" in caught.value.errors
    assert CollectionRun.objects.count() == 0


ACTIONS = {
    "start": lambda run_id: runs.run_start(run_id=run_id),
    "pause": lambda run_id: runs.run_pause(run_id=run_id),
    "resume": lambda run_id: runs.run_resume(run_id=run_id),
    "cancel": lambda run_id: runs.run_cancel(run_id=run_id),
    "complete": lambda run_id: runs.run_complete(run_id=run_id),
    "fail": lambda run_id: runs.run_fail(run_id=run_id, error="boom"),
}
LEGAL = {
    RunStatus.PENDING: {"start": RunStatus.RUNNING, "cancel": RunStatus.CANCELLED},
    RunStatus.RUNNING: {"pause": RunStatus.PAUSED, "cancel": RunStatus.CANCELLED,
                        "complete": RunStatus.COMPLETED, "fail": RunStatus.FAILED},
    RunStatus.PAUSED: {"resume": RunStatus.RUNNING, "cancel": RunStatus.CANCELLED, "fail": RunStatus.FAILED},
    RunStatus.COMPLETED: {},
    RunStatus.FAILED: {},
    RunStatus.CANCELLED: {},
}


@pytest.mark.parametrize("status", list(LEGAL))
@pytest.mark.parametrize("action", list(ACTIONS))
def test_every_transition_is_legal_or_refused_by_the_table(status, action, operator):
    run = new_run()
    CollectionRun.objects.filter(pk=run.pk).update(status=status)
    events_before = RunEvent.objects.filter(run=run).count()
    expected = LEGAL[status].get(action)
    if expected is None:
        with pytest.raises(InvalidTransition) as caught:
            ACTIONS[action](run.pk)
        assert caught.value.status == status and f"cannot {action} a {status} run" == str(caught.value)
        assert CollectionRun.objects.get(pk=run.pk).status == status
        assert RunEvent.objects.filter(run=run).count() == events_before
    else:
        with transaction.atomic():  # keep the dispatch that start/resume schedule out of this test
            result = ACTIONS[action](run.pk)
            transaction.set_rollback(False)
        assert result.status == expected == CollectionRun.objects.get(pk=run.pk).status
        event = RunEvent.objects.filter(run=run).latest("id")
        assert event.detail["from"] == status
        assert RunEvent.objects.filter(run=run).count() == events_before + 1


def test_transitions_stamp_time_actor_and_pause_reason(operator):
    run = new_run()
    runs.run_start(run_id=run.pk, actor=operator)
    paused = runs.run_pause(run_id=run.pk, actor=operator, reason="budget")
    assert paused.pause_reason == "budget" and paused.paused_by == operator and paused.paused_at
    event = RunEvent.objects.filter(run=run).latest("id")
    assert (event.kind, event.actor, event.detail["reason"]) == (EventKind.PAUSED, operator, "budget")
    resumed = runs.run_resume(run_id=run.pk, actor=operator)
    assert resumed.pause_reason == "" and resumed.resumed_by == operator
    cancelled = runs.run_cancel(run_id=run.pk, actor=operator)
    assert cancelled.finished_at and cancelled.finished_by == operator


def test_unknown_pause_reason_and_unknown_run_are_refused():
    run = new_run()
    runs.run_start(run_id=run.pk)
    with pytest.raises(InvalidInput):
        runs.run_pause(run_id=run.pk, reason="because")
    with pytest.raises(RunNotFound):
        runs.run_pause(run_id=987654)


def test_budget_cap_update_is_bounded_by_spend_and_settings():
    set_settings(run_budget_cap=Decimal("20"))
    run = new_run(budget_cap="10")
    CollectionRun.objects.filter(pk=run.pk).update(spent=Decimal("3"), reserved=Decimal("1"))
    with pytest.raises(InvalidInput, match="spent and reserved"):
        runs.run_update_budget_cap(run_id=run.pk, budget_cap="3.99")
    with pytest.raises(InvalidInput, match="per-run cap"):
        runs.run_update_budget_cap(run_id=run.pk, budget_cap="20.01")
    updated = runs.run_update_budget_cap(run_id=run.pk, budget_cap="4")
    assert updated.budget_cap == Decimal("4")
    assert RunEvent.objects.filter(run=run, kind=EventKind.BUDGET_CHANGED).get().detail == {"old": "10.0000", "new": "4.0000"}


def test_only_a_run_that_never_started_can_be_deleted():
    run = new_run()
    runs.run_delete(run_id=run.pk)
    assert not CollectionRun.objects.filter(pk=run.pk).exists()
    started = new_run()
    runs.run_start(run_id=started.pk)
    with pytest.raises(InvalidTransition):
        runs.run_delete(run_id=started.pk)


def test_settings_update_validates_and_applies_the_monthly_cap_to_this_month():
    from collection.services.budget import period_current

    with pytest.raises(InvalidInput) as caught:
        settings_update(run_budget_cap="-5")
    assert "run_budget_cap" in caught.value.errors
    with pytest.raises(InvalidInput) as caught:
        settings_update(concurrency_per_run=0)
    assert "concurrency_per_run" in caught.value.errors
    with pytest.raises(InvalidInput) as caught:
        settings_update(no_such_setting=1)
    assert "no_such_setting" in caught.value.errors

    period = period_current()
    type(period).objects.filter(pk=period.pk).update(spent=Decimal("40"))
    with pytest.raises(InvalidInput, match="this month"):
        settings_update(monthly_budget_cap="39")
    saved = settings_update(monthly_budget_cap="250", currency="eur")
    assert saved.monthly_budget_cap == Decimal("250") and saved.currency == "EUR"
    assert period_current().cap == Decimal("250")
