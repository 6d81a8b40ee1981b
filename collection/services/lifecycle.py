"""The run state machine: the transition table, row locking, the event log, and the moves the
engine and recovery make at runtime (pause for a reason, complete, fail).

Every status change goes through `_transition`: it locks the run row, checks the one table
below, stamps time and actor, and writes the RunEvent, all in one transaction. This module
imports only models and errors; the operator commands that combine a transition with
dispatch (start, resume, cancel) live above the engine, in `runs.py`.
"""

from __future__ import annotations

from django.db import transaction
from django.utils import timezone

from collection.models import CollectionRun, EventKind, PauseReason, RunEvent, RunStatus

from .errors import InvalidInput, InvalidTransition, RunNotFound

# action -> (statuses it may start from, status it leads to)
ACTIONS: dict[str, tuple[frozenset[RunStatus], RunStatus]] = {
    "start": (frozenset({RunStatus.PENDING}), RunStatus.RUNNING),
    "pause": (frozenset({RunStatus.RUNNING}), RunStatus.PAUSED),
    "resume": (frozenset({RunStatus.PAUSED}), RunStatus.RUNNING),
    "cancel": (frozenset({RunStatus.PENDING, RunStatus.RUNNING, RunStatus.PAUSED}), RunStatus.CANCELLED),
    "complete": (frozenset({RunStatus.RUNNING}), RunStatus.COMPLETED),
    "fail": (frozenset({RunStatus.RUNNING, RunStatus.PAUSED}), RunStatus.FAILED),
}

# What an operator's action did, in words (messages in the admin and the commands).
ACTION_DONE = {"start": "started", "pause": "paused", "resume": "resumed", "cancel": "cancelled"}

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


def run_lock(run_id) -> CollectionRun:
    """The run's row, locked until the transaction ends. Raises RunNotFound."""
    try:
        return CollectionRun.objects.select_for_update().get(pk=run_id)
    except (CollectionRun.DoesNotExist, ValueError, TypeError):
        raise RunNotFound(run_id) from None


def transition(run_id: int, *, action: str, actor=None, detail: dict | None = None, **changes) -> CollectionRun:
    """Lock, check the table, apply, stamp, log. Must be called inside a transaction; raises
    InvalidTransition (nothing changed) when the run's status does not allow `action`."""
    run = run_lock(run_id)
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


def run_pause(*, run_id: int, actor=None, reason: str = PauseReason.OPERATOR, detail: dict | None = None,
              quota_resets_at=None) -> CollectionRun:
    """Workers notice within one page: their next reservation is refused for a run that is not
    running, and the page in flight is still checkpointed."""
    if reason not in PauseReason.values:
        raise InvalidInput({"reason": f"Must be one of {', '.join(PauseReason.values)}."})
    with transaction.atomic():
        return transition(
            run_id, action="pause", actor=actor, detail={"reason": reason, **(detail or {})},
            pause_reason=reason, quota_resets_at=quota_resets_at,
        )


def run_complete(*, run_id: int, actor=None, detail: dict | None = None, **changes) -> CollectionRun:
    with transaction.atomic():
        return transition(run_id, action="complete", actor=actor, detail=detail, **changes)


def run_fail(*, run_id: int, error: str, actor=None) -> CollectionRun:
    with transaction.atomic():
        return transition(run_id, action="fail", actor=actor, detail={"error": error}, error=error)
