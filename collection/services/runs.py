"""Runs: creation (hard-blocked over budget), the lifecycle transitions, cap changes.

Every status change goes through `_transition`: it locks the run row, checks the one table
below, stamps time and actor, and writes the RunEvent, all in one transaction.
"""

from __future__ import annotations

from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from collection.models import (
    CollectionRun,
    CollectionSettings,
    EventKind,
    PauseReason,
    RunEvent,
    RunStatus,
    RunUnit,
)

from .errors import BudgetExceeded, InvalidInput, InvalidTransition, RunNotFound
from .estimate import estimate as make_estimate
from .validation import parse_money

# action -> (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[frozenset[RunStatus], RunStatus]] = {
    "start": (frozenset({RunStatus.PENDING}), RunStatus.RUNNING),
    "pause": (frozenset({RunStatus.RUNNING}), RunStatus.PAUSED),
    "resume": (frozenset({RunStatus.PAUSED}), RunStatus.RUNNING),
    "cancel": (frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED}), RunStatus.CANCELLED),
    "complete": (frozenset({RunStatus.RUNNING}), RunStatus.COMPLETED),
    "fail": (frozenset({RunStatus.RUNNING, RunStatus.PAUSED}), RunStatus.FAILED),
}

# The state machine as a graph, derived from ACTIONS (for docs and tests).
TRANSITIONS: dict[RunStatus, set[RunStatus]] = {}
for _sources, _target in ACTIONS.values():
    for _source in _sources:
        TRANSITIONS.setdefault(_source, set()).add(_target)

_STAMPS = {
    "start": ("started_at", "started_by", EventKind.STARTED),
    "pause": ("paused_at", "paused_by", EventKind.PAUSED),
    "resume": ("resumed_at", "resumed_by", EventKind.RESUMED),
    "cancel": ("finished_at", "finished_by", EventKind.CANCELLED),
    "complete": ("finished_at", "finished_by", EventKind.COMPLETED),
    "fail": ("finished_at", "finished_by", EventKind.FAILED),
}


def event_write(*, run_id: int, kind: str, actor=None, unit_id: int | None = None, **detail) -> RunEvent:
    return RunEvent.objects.create(run_id=run_id, kind=kind, actor=actor, unit_id=unit_id, detail=detail)


def _lock(run_id) -> CollectionRun:
    try:
        return CollectionRun.objects.select_for_update().get(pk=run_id)
    except (CollectionRun.DoesNotExist, ValueError, TypeError):
        raise RunNotFound(run_id) from None


def _transition(run_id: int, *, action: str, actor=None, detail: dict | None = None, **changes) -> CollectionRun:
    """Lock, check the table, apply, stamp, log. Must be called inside a transaction."""
    run = _lock(run_id)
    allowed_from, target = ACTIONS[action]
    if run.status not in allowed_from:
        raise InvalidTransition(action=action, status=run.status)
    at_field, by_field, kind = _STAMPS[action]
    previous = run.status
    run.status = target
    setattr(run, at_field, timezone.now())
    setattr(run, f"{by_field}_id", getattr(actor, "pk", None))
    for name, value in changes.items():
        setattr(run, name, value)
    if target != RunStatus.PAUSED:
        run.pause_reason = ""
    run.save(update_fields=["status", "pause_reason", at_field, by_field, "updated_at", *changes])
    event_write(run_id=run.pk, kind=kind, actor=actor, **{"from": previous, **(detail or {})})
    return run


def _after_commit_dispatch(run_id: int) -> None:
    from .engine import run_dispatch

    transaction.on_commit(lambda: run_dispatch(run_id=run_id))


def run_create(*, source, category_ids, budget_cap=None, actor=None, probe: bool = True) -> CollectionRun:
    """Create a pending run with one unit per category, snapshotting the estimate and the cap.
    Raises InvalidInput or BudgetExceeded (carrying the estimate) and then writes nothing."""
    settings = CollectionSettings.load()
    errors: dict = {}
    requested = parse_money(budget_cap, field="budget_cap", errors=errors, allow_none=True)
    if errors:
        raise InvalidInput(errors)
    if requested is not None and requested > settings.run_budget_cap:
        raise InvalidInput({
            "budget_cap": f"Must not exceed the per-run cap in settings ({settings.run_budget_cap} {settings.currency})."
        })
    if probe:
        # Probing calls the provider: do it before the transaction, never while holding locks.
        make_estimate(source=source, category_ids=category_ids, budget_cap=requested, probe=True)
    with transaction.atomic():
        est = make_estimate(source=source, category_ids=category_ids, budget_cap=requested, probe=False)
        if not est.within_budget:
            raise BudgetExceeded(est.reason, estimate=est.as_dict())
        run = CollectionRun.objects.create(
            source=est.source,
            budget_cap=(requested if requested is not None else settings.run_budget_cap).quantize(Decimal("0.0001")),
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


def run_start(*, run_id: int, actor=None) -> CollectionRun:
    with transaction.atomic():
        run = _transition(run_id, action="start", actor=actor)
        _after_commit_dispatch(run.pk)
    return run


def run_pause(*, run_id: int, actor=None, reason: str = PauseReason.OPERATOR, detail: dict | None = None,
              quota_resets_at=None) -> CollectionRun:
    """Workers notice within one page: their next reservation is refused for a run that is not
    running, and the page in flight is still checkpointed."""
    if reason not in PauseReason.values:
        raise InvalidInput({"reason": f"Must be one of {', '.join(PauseReason.values)}."})
    with transaction.atomic():
        run = _transition(
            run_id, action="pause", actor=actor, detail={"reason": reason, **(detail or {})},
            pause_reason=reason, quota_resets_at=quota_resets_at,
        )
    return run


def run_resume(*, run_id: int, actor=None) -> CollectionRun:
    """Every unit continues from its cursor; nothing checkpointed is fetched again."""
    with transaction.atomic():
        run = _transition(run_id, action="resume", actor=actor, quota_resets_at=None)
        # A fresh start for units that were interrupted too often: the operator has looked.
        RunUnit.objects.filter(run_id=run.pk, recoveries__gt=0).update(recoveries=0)
        _after_commit_dispatch(run.pk)
    return run


def run_cancel(*, run_id: int, actor=None) -> CollectionRun:
    """Stops the run for good. Pages in flight finish and are checkpointed, which releases
    their reservations; reservations left by dead workers are settled by recovery."""
    with transaction.atomic():
        run = _transition(run_id, action="cancel", actor=actor)
        RunUnit.objects.filter(run_id=run.pk, status__in=["pending", "queued"]).update(status="pending")
    from .recovery import recover_run

    transaction.on_commit(lambda: recover_run(run_id=run.pk))
    return run


def run_complete(*, run_id: int, actor=None, detail: dict | None = None) -> CollectionRun:
    with transaction.atomic():
        return _transition(run_id, action="complete", actor=actor, detail=detail)


def run_fail(*, run_id: int, error: str, actor=None) -> CollectionRun:
    with transaction.atomic():
        return _transition(run_id, action="fail", actor=actor, detail={"error": error}, error=error)


def run_update_budget_cap(*, run_id: int, budget_cap, actor=None) -> CollectionRun:
    """Raise or lower a run's cap: never below what is spent and reserved, never above the
    per-run cap in settings."""
    errors: dict = {}
    new_cap = parse_money(budget_cap, field="budget_cap", errors=errors)
    if errors:
        raise InvalidInput(errors)
    settings = CollectionSettings.load()
    with transaction.atomic():
        run = _lock(run_id)
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
        new_cap = new_cap.quantize(Decimal("0.0001"))
        run.budget_cap = new_cap
        run.save(update_fields=["budget_cap", "updated_at"])
        event_write(run_id=run.pk, kind=EventKind.BUDGET_CHANGED, actor=actor, old=str(old), new=str(new_cap))
    return run


def run_delete(*, run_id: int, actor=None) -> None:
    """Only a run that never started may be deleted; the others are the audit trail."""
    with transaction.atomic():
        run = _lock(run_id)
        if run.status != RunStatus.PENDING:
            raise InvalidTransition(action="delete", status=run.status)
        run.delete()


def settings_update(*, actor=None, **values) -> CollectionSettings:
    """Validate and save settings. A lower monthly cap applies to this month too, but never
    below what this month has already spent and reserved."""
    from django.core.exceptions import ValidationError

    from .budget import period_current

    with transaction.atomic():
        current = CollectionSettings.load()
        obj = CollectionSettings.objects.select_for_update().get(pk=current.pk)
        unknown = set(values) - {f.name for f in obj._meta.fields if f.name not in ("id", "updated_at")}
        if unknown:
            raise InvalidInput({name: "Unknown setting." for name in sorted(unknown)})
        errors = {}
        for name in ("run_budget_cap", "monthly_budget_cap"):
            if name in values:
                values[name] = parse_money(values[name], field=name, errors=errors)
        if errors:
            raise InvalidInput(errors)
        for name, value in values.items():
            setattr(obj, name, value)
        try:
            obj.full_clean()
        except ValidationError as error:
            raise InvalidInput(error.message_dict) from None
        if "currency" in values:
            obj.currency = obj.currency.upper()
        if "monthly_budget_cap" in values:
            period = period_current(settings=obj)
            period = type(period).objects.select_for_update().get(pk=period.pk)
            floor = period.spent + period.reserved
            if obj.monthly_budget_cap < floor:
                raise InvalidInput({
                    "monthly_budget_cap": f"Must not be below what this month has spent and reserved ({floor})."
                })
            period.cap = obj.monthly_budget_cap
            period.save(update_fields=["cap"])
        obj.save()
    return obj


def run_get(run_id) -> CollectionRun:
    try:
        return CollectionRun.objects.get(pk=run_id)
    except (CollectionRun.DoesNotExist, ValueError, TypeError):
        raise RunNotFound(run_id) from None

