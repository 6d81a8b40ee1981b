"""Recovery: find work that a dead process left behind and set it going again.

* A unit whose lease expired lost its worker. Its in-flight reservation has an unknown
  outcome — the provider may have charged — so it is counted as spent, and the unit is
  dispatched again from its checkpoint (the page in flight is fetched again). After
  `max_auto_recoveries` such interruptions of one unit, or when the settings say so, the run
  is paused with reason `interrupted` for an operator.
* A queued unit whose trigger was lost (enqueue after commit never happened, or the task
  ended without taking the unit) is dispatched again.
* A running run with free slots or with nothing left to do is dispatched or ended.

Idempotent and safe to run from many processes at once: every step is a conditional update
on a locked row, so each interruption is recovered exactly once.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import timedelta

from django.db import transaction
from django.tasks import TaskResultStatus, default_task_backend
from django.tasks.exceptions import TaskResultDoesNotExist
from django.utils import timezone

from collection.models import (
    CollectionRun,
    CollectionSettings,
    EventKind,
    OnInterrupt,
    PauseReason,
    RunStatus,
    RunUnit,
    UnitStatus,
)

from .budget import budget_settle
from .engine import mark_queued, run_dispatch
from .errors import InvalidTransition
from .lifecycle import event_write, run_pause
from .quota import quota_settle_unit

logger = logging.getLogger("collection.recovery")


@dataclass
class RecoveryReport:
    expired_leases: list[int] = field(default_factory=list)  # units recovered from dead workers
    redispatched: list[int] = field(default_factory=list)  # units whose trigger was lost
    paused_runs: list[int] = field(default_factory=list)  # runs paused as interrupted
    dispatched_runs: list[int] = field(default_factory=list)  # runs given new units or ended
    dry_run: bool = False

    @property
    def changed(self) -> bool:
        return bool(self.expired_leases or self.redispatched or self.paused_runs or self.dispatched_runs)

    def as_dict(self) -> dict:
        return {
            "dry_run": self.dry_run, "expired_leases": self.expired_leases, "redispatched": self.redispatched,
            "paused_runs": self.paused_runs, "dispatched_runs": self.dispatched_runs,
        }


def unit_recover(*, unit_id: int, settings: CollectionSettings | None = None) -> str | None:
    """Recover one unit whose lease expired. Returns what was done, or None when there was
    nothing to do (another process recovered it, or its worker renewed the lease)."""
    settings = settings or CollectionSettings.load()
    now = timezone.now()
    with transaction.atomic():
        unit = (
            RunUnit.objects.select_for_update(skip_locked=True)
            .filter(pk=unit_id, status=UnitStatus.RUNNING, lease_expires_at__lt=now)
            .first()
        )
        if unit is None:
            return None
        dead_worker, page = unit.lease_owner, unit.pages_done
        counted = budget_settle(unit=unit, spent=unit.reserved)
        quota_settle_unit(unit=unit)  # a call in flight may have been made: it counts as used
        recoveries = unit.recoveries + 1
        RunUnit.objects.filter(pk=unit.pk).update(
            lease_owner="", lease_expires_at=None, recoveries=recoveries, status=UnitStatus.PENDING,
            last_error=f"worker {dead_worker} stopped answering (lease expired) during page {page + 1}",
        )
        run = CollectionRun.objects.select_for_update().get(pk=unit.run_id)
        automatic = settings.on_interrupt == OnInterrupt.RESUME and recoveries <= settings.max_auto_recoveries
        action = "left pending (run not running)"
        if run.status == RunStatus.RUNNING:
            action = "dispatched again from its checkpoint" if automatic else "run paused for an operator"
        event_write(
            run_id=run.pk, unit_id=unit.pk, kind=EventKind.RECOVERED, worker=dead_worker,
            page_refetched=page + 1, reservation_counted_as_spent=str(counted), recoveries=recoveries, action=action,
        )
        if run.status != RunStatus.RUNNING:
            return "pending"
        if automatic:
            mark_queued([unit.pk])
            return "redispatched"
        try:
            run_pause(run_id=run.pk, reason=PauseReason.INTERRUPTED,
                      detail={"unit": unit.pk, "recoveries": recoveries})
        except InvalidTransition:
            pass
        return "paused"


def _trigger_lost(unit: RunUnit, grace: timedelta, now) -> bool:
    if unit.dispatched_at and unit.dispatched_at > now - grace:
        return False  # just dispatched: the trigger may not be recorded yet
    if not unit.task_id:
        return True
    try:
        result = default_task_backend.get_result(unit.task_id)
    except (TaskResultDoesNotExist, NotImplementedError, ValueError):
        return True
    if result.status == TaskResultStatus.READY:
        return False
    if result.status == TaskResultStatus.RUNNING:
        # Claimed by a worker that never took the lease: it died in between.
        started = result.started_at or unit.dispatched_at or now
        return started < now - grace
    return True  # the task ended without taking the unit


def recover(*, dry_run: bool = False, run_id: int | None = None) -> RecoveryReport:
    """One sweep over everything interrupted. With `dry_run`, report without changing anything."""
    settings = CollectionSettings.load()
    report = RecoveryReport(dry_run=dry_run)
    now = timezone.now()
    grace = timedelta(seconds=settings.lease_seconds)
    units = RunUnit.objects.all() if run_id is None else RunUnit.objects.filter(run_id=run_id)

    expired = list(
        units.filter(status=UnitStatus.RUNNING, lease_expires_at__lt=now).values_list("pk", "run_id")
    )
    for unit_pk, unit_run in expired:
        if dry_run:
            report.expired_leases.append(unit_pk)
            continue
        outcome = unit_recover(unit_id=unit_pk, settings=settings)
        if outcome:
            report.expired_leases.append(unit_pk)
        if outcome == "paused":
            report.paused_runs.append(unit_run)

    for unit in units.filter(status=UnitStatus.QUEUED, run__status=RunStatus.RUNNING):
        if not _trigger_lost(unit, grace, now):
            continue
        report.redispatched.append(unit.pk)
        if dry_run:
            continue
        with transaction.atomic():
            if RunUnit.objects.select_for_update().filter(pk=unit.pk, dispatch_token=unit.dispatch_token,
                                                          status=UnitStatus.QUEUED).exists():
                mark_queued([unit.pk])
                event_write(run_id=unit.run_id, unit_id=unit.pk, kind=EventKind.REDISPATCHED,
                            lost_task=unit.task_id or None)

    runs = CollectionRun.objects.filter(status=RunStatus.RUNNING)
    if run_id is not None:
        runs = runs.filter(pk=run_id)
    for pk in runs.values_list("pk", flat=True):
        if dry_run:
            continue
        before = CollectionRun.objects.values_list("status", flat=True).get(pk=pk)
        if run_dispatch(run_id=pk) or CollectionRun.objects.values_list("status", flat=True).get(pk=pk) != before:
            report.dispatched_runs.append(pk)
    if report.changed and not dry_run:
        logger.info("recovery: %s", report.as_dict())
    return report


def recover_run(*, run_id: int) -> RecoveryReport:
    return recover(run_id=run_id)
