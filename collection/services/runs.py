"""Operator commands on runs: create (hard-blocked over budget), start, pause, resume, cancel,
change the cap, delete. They sit above the engine and recovery: a transition (lifecycle.py)
plus what must follow it once committed (dispatch, settling).
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from collection.models import CollectionRun, CollectionSettings, EventKind, PauseReason, RunStatus, RunUnit
from collection.money import money
from collection.sources import UnknownSource

from .engine import run_dispatch
from .errors import BudgetExceeded, InvalidInput, InvalidTransition, QuotaNotReset, RunNotFound
from .estimate import estimate as make_estimate
from .lifecycle import event_write, run_complete, run_fail, run_lock, run_pause, transition
from .recovery import recover_run
from .source_state import source_for
from .validation import parse_money

__all__ = [
    "run_cancel", "run_complete", "run_create", "run_delete", "run_fail", "run_get", "run_pause", "run_resume",
    "run_start", "run_update_budget_cap",
]


def _after_commit_dispatch(run_id: int) -> None:
    transaction.on_commit(lambda: run_dispatch(run_id=run_id))


def run_create(*, source, category_ids, budget_cap=None, actor=None, probe: bool = True) -> CollectionRun:
    """Create a pending run with one unit per category, snapshotting the estimate and the cap.
    Raises InvalidInput or BudgetExceeded (carrying the estimate) and then writes nothing."""
    settings = CollectionSettings.load()
    requested = _requested_cap(budget_cap, settings)
    if probe:
        run_probe(source=source, category_ids=category_ids, budget_cap=requested)
    with transaction.atomic():
        est = make_estimate(source=source, category_ids=category_ids, budget_cap=requested, probe=False)
        if not est.within_budget:
            raise BudgetExceeded(est.reason, estimate=est.as_dict())
        run = CollectionRun.objects.create(
            source=est.source,
            budget_cap=money(requested if requested is not None else settings.run_budget_cap),
            estimate=est.as_dict(),
            estimated_cost=est.total_cost,
            pages_estimated=est.pages,
            units_total=len(est.categories),
            currency=settings.currency,
            created_by=actor if getattr(actor, "pk", None) else None,
        )
        RunUnit.objects.bulk_create([RunUnit(run=run, category_id=cid) for cid in est.category_ids])
        event_write(
            run_id=run.pk, kind=EventKind.CREATED, actor=run.created_by,
            estimate=str(est.total_cost), budget_cap=str(run.budget_cap), categories=len(est.categories),
        )
    return run


def _requested_cap(budget_cap, settings: CollectionSettings):
    """The run cap asked for (None: the settings' per-run cap), checked against that cap."""
    errors: dict = {}
    requested = parse_money(budget_cap, field="budget_cap", errors=errors, allow_none=True)
    if errors:
        raise InvalidInput(errors)
    if requested is not None and requested > settings.run_budget_cap:
        raise InvalidInput({
            "budget_cap": f"Must not exceed the per-run cap in settings ({settings.run_budget_cap} {settings.currency})."
        })
    return requested


def run_probe(*, source, category_ids, budget_cap=None) -> None:
    """Ask the source for the sizes of the categories that have none (a run's creation does this
    first). The calls really happen, so what they cost (charged to the month, counted against
    the quota) and the sizes they found must stay whatever follows: never call this inside a
    transaction that a refusal would roll back — nor while holding locks."""
    requested = _requested_cap(budget_cap, CollectionSettings.load())
    make_estimate(source=source, category_ids=category_ids, budget_cap=requested, probe=True)


def _source_configured(source_key: str) -> None:
    """A run of a source that cannot run now (e.g. its API key was removed) is not started."""
    try:
        missing = source_for(source_key).missing_configuration()
    except UnknownSource as error:
        missing = str(error)
    if missing:
        raise InvalidInput({"source": [missing]})


def run_start(*, run_id: int, actor=None) -> CollectionRun:
    with transaction.atomic():
        _source_configured(run_lock(run_id).source)
        run = transition(run_id, action="start", actor=actor)
        _after_commit_dispatch(run.pk)
    return run


def run_resume(*, run_id: int, actor=None) -> CollectionRun:
    """Every unit continues from its cursor; nothing checkpointed is fetched again. A run paused
    for its source's call quota resumes only once the provider's day has turned over."""
    with transaction.atomic():
        locked = run_lock(run_id)
        _source_configured(locked.source)
        resets_at = locked.quota_resets_at
        if locked.pause_reason == PauseReason.QUOTA and resets_at and resets_at > timezone.now():
            try:
                zone = source_for(locked.source).quota_timezone
            except UnknownSource:
                zone = "UTC"
            raise QuotaNotReset(resets_at=resets_at, timezone_name=zone)
        run = transition(run_id, action="resume", actor=actor, quota_resets_at=None)
        # A fresh start for units that were interrupted too often: the operator has looked.
        RunUnit.objects.filter(run_id=run.pk, recoveries__gt=0).update(recoveries=0)
        _after_commit_dispatch(run.pk)
    return run


def run_cancel(*, run_id: int, actor=None) -> CollectionRun:
    """Stops the run for good. Pages in flight finish and are checkpointed, which releases
    their reservations; reservations left by dead workers are settled by recovery."""
    with transaction.atomic():
        run = transition(run_id, action="cancel", actor=actor)
        RunUnit.objects.filter(run_id=run.pk, status__in=["pending", "queued"]).update(status="pending")
    transaction.on_commit(lambda: recover_run(run_id=run.pk))
    return run


def run_update_budget_cap(*, run_id: int, budget_cap, actor=None) -> CollectionRun:
    """Raise or lower a run's cap: never below what is spent and reserved, never above the
    per-run cap in settings."""
    errors: dict = {}
    new_cap = parse_money(budget_cap, field="budget_cap", errors=errors)
    if errors:
        raise InvalidInput(errors)
    settings = CollectionSettings.load()
    with transaction.atomic():
        run = run_lock(run_id)
        if run.is_terminal:
            raise InvalidTransition(action="change the budget of", status=run.status)
        if new_cap > settings.run_budget_cap:
            raise InvalidInput({
                "budget_cap": f"Must not exceed the per-run cap in settings ({settings.run_budget_cap} {run.currency})."
            })
        floor = run.spent + run.reserved
        if new_cap < floor:
            raise InvalidInput({"budget_cap": f"Must not be below what is spent and reserved ({floor} {run.currency})."})
        old = run.budget_cap
        new_cap = money(new_cap)
        run.budget_cap = new_cap
        run.save(update_fields=["budget_cap", "updated_at"])
        event_write(run_id=run.pk, kind=EventKind.BUDGET_CHANGED, actor=actor, old=str(old), new=str(new_cap))
    return run


def run_delete(*, run_id: int, actor=None) -> None:
    """Only a run that never started may be deleted; the others are the audit trail."""
    with transaction.atomic():
        run = run_lock(run_id)
        if run.status != RunStatus.PENDING:
            raise InvalidTransition(action="delete", status=run.status)
        run.delete()


def run_get(run_id) -> CollectionRun:
    try:
        return CollectionRun.objects.get(pk=run_id)
    except (CollectionRun.DoesNotExist, ValueError, TypeError):
        raise RunNotFound(run_id) from None

