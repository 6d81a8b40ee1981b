"""The engine: dispatching units to workers and advancing a unit page by page.

A unit's task takes the unit's lease (a conditional UPDATE: only the task carrying the unit's
current dispatch token, and only while nobody holds the lease), then for each page: reserves
the page's maximum cost (refused when the run is no longer running — that is the per-page
re-check — or when a cap would be passed), takes a call of the source's quota, fetches the
page and checkpoints it. After a bounded time slice it releases the lease and enqueues its
successor at the back of the queue, so runs share workers fairly. Tasks are enqueued after
commit; a lost one is found by recovery.

The task (`advance_unit`) is defined here, beside the function it runs, so the engine and the
task module never import each other.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from enum import StrEnum

from django.conf import settings as django_settings
from django.db import close_old_connections, transaction
from django.db.models import Count, Q, Subquery
from django.tasks import default_task_backend, task
from django.utils import timezone

from collection.models import (
    CollectionRun,
    CollectionSettings,
    EventKind,
    PauseReason,
    RunStatus,
    RunUnit,
    SpendSample,
    UnitStatus,
)
from collection.redact import untrusted_text
from collection.sources import (
    BaseSource,
    FatalSourceError,
    QuotaExhausted,
    QuotaKind,
    SourceError,
    Throttled,
)

from .budget import budget_reserve, budget_settle
from .checkpoint import PageCheckpoint, unit_checkpoint
from .errors import BudgetExceeded, InvalidTransition, LeaseLost
from .heartbeat import heartbeat
from .lifecycle import event_write, run_complete, run_fail, run_pause
from .quota import quota_exhaust, quota_reserve, quota_settle_unit
from .source_state import source_for

logger = logging.getLogger("collection.engine")

ACTIVE = (UnitStatus.QUEUED, UnitStatus.RUNNING)
SAMPLE_SECONDS = 2.0


class Outcome(StrEnum):
    """How a task's time slice on a unit ended (the task's result)."""

    SKIPPED = "skipped"  # the trigger was stale: another task carries the unit, or nobody should
    YIELDED = "yielded"  # the slice ended: the unit went to the back of the queue
    STOPPED = "stopped"  # the run is not running (paused, cancelled): the unit waits for resume
    DONE = "done"  # the category is collected
    LEASE_LOST = "lease_lost"  # recovery took the unit over: nothing of ours was recorded
    RETRY = "retry"  # a retryable source error: tried again after a backoff
    THROTTLED = "throttled"  # the provider asked to wait: tried again after it, no attempt counted
    FAILED = "failed"  # the category failed (and the run, for a fatal error)
    ERROR = "error"  # an unexpected error, recorded on the unit


@dataclass(frozen=True)
class Reservation:
    """The money held for the page about to be fetched, and the month's ledger holding it."""

    amount: Decimal
    period_id: int


@dataclass(frozen=True)
class Charge:
    """What a page that is not checkpointed cost. `amount` None means unknown: the provider
    may have charged, so the whole reservation counts as spent (as for a dead worker)."""

    amount: Decimal | None


UNKNOWN_CHARGE = Charge(None)
NO_CHARGE = Charge(Decimal(0))


@task()
def advance_unit(unit_id: int, token: str) -> dict:
    """The task: a trigger that advances unit `unit_id` for one time slice."""
    return unit_advance(unit_id=unit_id, token=token)


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def unit_enqueue(*, unit_id: int, token: str, delay: float = 0) -> None:
    """Enqueue the unit's trigger (call after commit) and note the task id for recovery."""
    trigger = advance_unit
    if delay > 0 and default_task_backend.supports_defer:
        trigger = advance_unit.using(run_after=timezone.now() + timedelta(seconds=delay))
    result = trigger.enqueue(unit_id, token)
    RunUnit.objects.filter(pk=unit_id, dispatch_token=token).update(task_id=str(result.id)[:64])


def mark_queued(unit_ids: list[int], *, delay: float = 0) -> None:
    """Give each unit a fresh dispatch token and enqueue its trigger once the transaction
    commits. Older triggers of the same unit become inert."""
    now = timezone.now()
    for unit_id in unit_ids:
        token = uuid.uuid4().hex
        RunUnit.objects.filter(pk=unit_id).update(
            status=UnitStatus.QUEUED, dispatch_token=token, dispatched_at=now, task_id="",
            lease_owner="", lease_expires_at=None,
        )
        transaction.on_commit(lambda u=unit_id, t=token: unit_enqueue(unit_id=u, token=t, delay=delay))


def spend_sample(*, run_id: int) -> None:
    """Note the run's spend now (the console charts spend over time against the cap)."""
    spent = CollectionRun.objects.filter(pk=run_id).values("spent")[:1]
    SpendSample.objects.create(run_id=run_id, at=timezone.now(), spent=Subquery(spent))


def run_dispatch(*, run_id: int) -> int:
    """Fill the run's free slots (concurrency per run) with pending units, or end the run when
    no unit is left to do. Idempotent; returns how many units were dispatched."""
    settings = CollectionSettings.load()
    with transaction.atomic():
        run = CollectionRun.objects.select_for_update().filter(pk=run_id).first()
        if run is None or run.status != RunStatus.RUNNING:
            return 0
        counts = RunUnit.objects.filter(run_id=run_id).aggregate(
            active=Count("pk", filter=Q(status__in=ACTIVE)),
            pending=Count("pk", filter=Q(status=UnitStatus.PENDING)),
            done=Count("pk", filter=Q(status=UnitStatus.DONE)),
            failed=Count("pk", filter=Q(status=UnitStatus.FAILED)),
        )
        if counts["active"] == 0 and counts["pending"] == 0:
            _run_end(run, done=counts["done"], failed=counts["failed"])
            return 0
        slots = settings.concurrency_per_run - counts["active"]
        if slots <= 0 or not counts["pending"]:
            return 0
        ids = list(
            RunUnit.objects.filter(run_id=run_id, status=UnitStatus.PENDING).order_by("pk").values_list("pk", flat=True)[:slots]
        )
        mark_queued(ids)
        return len(ids)


def _run_end(run: CollectionRun, *, done: int, failed: int) -> None:
    """Every unit has ended. The run's counters were kept by the checkpoints and failures."""
    if done == 0 and failed > 0:
        run_fail(run_id=run.pk, error=f"every category failed ({failed})")
        return
    changes = {"error": f"{failed} of {done + failed} categories failed"} if failed else {}
    run_complete(run_id=run.pk, detail={"categories_done": done, "categories_failed": failed}, **changes)


def retry_delay(attempt: int, retry_after: float | None) -> float:
    """Exponential backoff with full jitter, never sooner than the source's retry-after."""
    base = django_settings.COLLECTION_RETRY_BASE_SECONDS
    ceiling = django_settings.COLLECTION_RETRY_MAX_SECONDS
    backoff = min(ceiling, base * 2 ** max(0, attempt - 1))
    delay = backoff / 2 + random.uniform(0, backoff / 2)
    return max(delay, retry_after or 0)


def _take_lease(unit_id: int, token: str, owner: str, lease_seconds: int) -> RunUnit | None:
    took = RunUnit.objects.filter(
        pk=unit_id, dispatch_token=token, status=UnitStatus.QUEUED, lease_owner=""
    ).update(
        status=UnitStatus.RUNNING, lease_owner=owner,
        lease_expires_at=timezone.now() + timedelta(seconds=lease_seconds),
    )
    if not took:
        return None
    return RunUnit.objects.select_related("category", "run").get(pk=unit_id)


def unit_advance(*, unit_id: int, token: str, slice_seconds: float | None = None) -> dict:
    """Advance one unit for at most `slice_seconds`. Returns what happened (for the task log)."""
    settings = CollectionSettings.load()
    owner = worker_name()
    unit = _take_lease(unit_id, token, owner, settings.lease_seconds)
    if unit is None:
        return {"unit": unit_id, "outcome": Outcome.SKIPPED.value}
    try:
        outcome = _advance(unit, owner, settings, slice_seconds)
    except Exception as error:  # a bug or a database outage: do not strand the unit
        logger.exception("unit %s: unexpected error", unit_id)
        message = f"{type(error).__name__}: {error}"
        close_old_connections()  # a connection the database dropped is replaced, not reused
        try:
            quota_settle_unit(unit=RunUnit.objects.get(pk=unit.pk), lease_owner=owner)
            # The page may have been fetched (and charged) before the error.
            _unit_failed_page(unit, owner, settings, error=message, retry_after=None, charge=UNKNOWN_CHARGE)
        except Exception:
            logger.exception("unit %s: could not record the error; recovery will take it over", unit_id)
            raise
        return {"unit": unit_id, "outcome": Outcome.ERROR.value}
    return {"unit": unit_id, "outcome": outcome.value}


def _advance(unit: RunUnit, owner: str, settings: CollectionSettings, slice_seconds: float | None) -> Outcome:
    """Pages of one unit until the slice ends or the unit stops, each page in four steps:

    1. reserve the page's maximum cost on the month and the run — usually the previous
       checkpoint did, in its transaction; refused: the run pauses with reason `budget`;
    2. take one call of the source's daily quota; refused: the run pauses with reason `quota`;
    3. fetch the page; a source error settles what it charged, then retries, waits (throttled),
       fails the category or the run, or pauses (quota);
    4. checkpoint it: items, cursor, counters, captured cost and the next page's reservation
       in one transaction.
    """
    source = source_for(unit.run.source)
    slice_seconds = django_settings.COLLECTION_SLICE_SECONDS if slice_seconds is None else slice_seconds
    deadline = time.monotonic() + slice_seconds
    cursor, page_index = unit.cursor, unit.pages_done
    held: Reservation | None = None
    next_sample = time.monotonic() + SAMPLE_SECONDS
    while True:
        if held is None:  # 1. reserve
            if time.monotonic() >= deadline:
                return _unit_requeue(unit, owner)
            try:
                held = _reserve_page(unit, owner, source, cursor)
            except LeaseLost:
                return Outcome.LEASE_LOST
            if held is None:
                return _unit_requeue(unit, owner)
        try:  # 2. quota
            if not _take_quota(unit, owner, source):
                return _unit_requeue(unit, owner)
        except LeaseLost:
            return Outcome.LEASE_LOST
        try:  # 3. fetch (the lease is renewed while the page is in flight)
            with heartbeat.page(unit_id=unit.pk, owner=owner, lease_seconds=settings.lease_seconds):
                page = source.fetch_page(category=unit.category, cursor=cursor)
        except SourceError as error:
            return _page_not_fetched(unit, owner, settings, source, error)
        quota_settle_unit(unit=unit, used=page.quota_used, lease_owner=owner)
        next_reservation = None  # 4. checkpoint
        if page.next_cursor is not None and time.monotonic() < deadline:
            next_reservation = source.max_page_cost(category=unit.category, cursor=page.next_cursor)
        result = unit_checkpoint(PageCheckpoint(
            unit_id=unit.pk, run_id=unit.run_id, category_id=unit.category_id, platform=source.platform,
            lease_owner=owner, lease_seconds=settings.lease_seconds, page_index=page_index, page=page,
            reserved=held.amount, period_id=held.period_id, next_reservation=next_reservation,
            warn_percent=settings.warning_threshold_percent,
        ))
        if result is None:  # the lease was lost (recovery took over): the page is not ours to record
            return Outcome.LEASE_LOST
        if time.monotonic() >= next_sample or result.done:
            spend_sample(run_id=unit.run_id)
            next_sample = time.monotonic() + SAMPLE_SECONDS
        if result.done:
            run_dispatch(run_id=unit.run_id)
            return Outcome.DONE
        cursor, page_index = page.next_cursor, page_index + 1
        held = Reservation(next_reservation, held.period_id) if result.next_reserved else None


def _reserve_page(unit: RunUnit, owner: str, source: BaseSource, cursor: dict | None) -> Reservation | None:
    """Step 1. None when a cap (or the run's status) refuses the page: the run is paused for
    budget if it is still running."""
    amount = source.max_page_cost(category=unit.category, cursor=cursor)
    try:
        period_id = budget_reserve(unit_id=unit.pk, run_id=unit.run_id, amount=amount, lease_owner=owner)
    except BudgetExceeded as refused:
        _pause_quietly(unit.run_id, PauseReason.BUDGET, {"unit": unit.pk, "needed": str(amount), "scope": refused.scope})
        return None
    return Reservation(amount, period_id)


def _take_quota(unit: RunUnit, owner: str, source: BaseSource) -> bool:
    """Step 2, for sources with a daily call quota. False when today's quota is used up: the
    page's reservation is released and the run paused with the provider's reset time."""
    if source.quota_kind != QuotaKind.DAILY_CALLS:
        return True
    try:
        period = quota_reserve(source=source, unit_id=unit.pk, lease_owner=owner)
    except QuotaExhausted as error:
        _settle_failed_page(unit, owner, NO_CHARGE)
        _pause_for_quota(unit, error)
        return False
    unit.quota_reserved, unit.quota_period_id = 1, period.pk
    return True


def _page_not_fetched(unit: RunUnit, owner: str, settings: CollectionSettings, source: BaseSource,
                      error: SourceError) -> Outcome:
    """Step 3 failed: settle the page's reservation and quota call, then act on the error's type."""
    if isinstance(error, QuotaExhausted):
        quota_settle_unit(unit=unit, used=0, lease_owner=owner)
        if source.quota_kind == QuotaKind.DAILY_CALLS:
            quota_exhaust(source=source)
        _settle_failed_page(unit, owner, Charge(error.charged))
        _pause_for_quota(unit, error)
        return _unit_requeue(unit, owner)
    quota_settle_unit(unit=unit, lease_owner=owner)  # the call was made (or may have been)
    if isinstance(error, Throttled):
        _settle_failed_page(unit, owner, Charge(error.charged))
        return _unit_requeue(unit, owner, delay=error.retry_after, outcome=Outcome.THROTTLED)
    return _unit_failed_page(unit, owner, settings, error=str(error), retry_after=error.retry_after,
                             charge=Charge(error.charged), retryable=error.retryable,
                             fatal=isinstance(error, FatalSourceError))


def _pause_for_quota(unit: RunUnit, error: QuotaExhausted) -> None:
    detail = {"unit": unit.pk, "error": untrusted_text(error)}
    if error.resets_at:
        detail["resets_at"] = error.resets_at.isoformat()
    _pause_quietly(unit.run_id, PauseReason.QUOTA, detail, quota_resets_at=error.resets_at)


def _pause_quietly(run_id: int, reason: str, detail: dict, quota_resets_at=None) -> None:
    """Pause for a runtime reason; a run that is already not running stays as it is."""
    try:
        run_pause(run_id=run_id, reason=reason, detail=detail, quota_resets_at=quota_resets_at)
    except InvalidTransition:
        pass


def _settle_failed_page(unit: RunUnit, owner: str, charge: Charge) -> None:
    """Turn the page's reservation into what it cost (all of it when unknown), if we still
    hold the unit."""
    with transaction.atomic():
        locked = RunUnit.objects.select_for_update().get(pk=unit.pk)
        if locked.lease_owner != owner:
            return
        spent = locked.reserved if charge.amount is None else charge.amount
        budget_settle(unit=locked, spent=spent)


def _lock_unit_then_run(unit: RunUnit) -> None:
    """Row locks in the order every path takes them (unit, month, run): recovery and a worker
    letting go of the same unit never deadlock."""
    RunUnit.objects.select_for_update().filter(pk=unit.pk).values_list("pk").first()
    CollectionRun.objects.select_for_update().filter(pk=unit.run_id).values_list("pk").first()


def _release(unit: RunUnit, owner: str, **changes) -> bool:
    return bool(
        RunUnit.objects.filter(pk=unit.pk, lease_owner=owner).update(lease_owner="", lease_expires_at=None, **changes)
    )


def _unit_requeue(unit: RunUnit, owner: str, *, delay: float = 0, outcome: Outcome = Outcome.YIELDED,
                  event: dict | None = None, **changes) -> Outcome:
    """Let go of the unit: back of the queue (after `delay`) while the run is running, else
    pending until it is resumed. `changes` are made to the unit and `event` is logged in the
    same transaction."""
    with transaction.atomic():
        _lock_unit_then_run(unit)
        run = CollectionRun.objects.get(pk=unit.run_id)
        if not _release(unit, owner, **changes):
            return Outcome.LEASE_LOST
        if event:
            event_write(run_id=run.pk, unit_id=unit.pk, **event)
        if run.status == RunStatus.RUNNING:
            mark_queued([unit.pk], delay=delay)
            return outcome
        RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.PENDING)
        return Outcome.STOPPED if outcome == Outcome.YIELDED else outcome


def _unit_failed_page(unit: RunUnit, owner: str, settings: CollectionSettings, *, error: str,
                      retry_after: float | None, charge: Charge, retryable: bool = True, fatal: bool = False) -> Outcome:
    """Settle the page's reservation (capture what the source says it charged), then retry
    with backoff, or fail the unit (and the run, for a fatal error)."""
    _settle_failed_page(unit, owner, charge)
    attempts = RunUnit.objects.values_list("attempts", flat=True).get(pk=unit.pk) + 1
    error = untrusted_text(error)
    if retryable and attempts < settings.max_unit_attempts:
        delay = retry_delay(attempts, retry_after)
        return _unit_requeue(
            unit, owner, delay=delay, outcome=Outcome.RETRY, attempts=attempts, last_error=error,
            event={"kind": EventKind.UNIT_RETRY, "error": error, "attempt": attempts, "retry_in": round(delay, 2)},
        )
    with transaction.atomic():
        _lock_unit_then_run(unit)
        run = CollectionRun.objects.get(pk=unit.run_id)
        if not _release(unit, owner, status=UnitStatus.FAILED, attempts=attempts, last_error=error,
                        finished_at=timezone.now()):
            return Outcome.LEASE_LOST
        CollectionRun.objects.filter(pk=run.pk).update(units_failed=run.units_failed + 1)
        event_write(run_id=run.pk, unit_id=unit.pk, kind=EventKind.UNIT_FAILED, error=error,
                    attempts=attempts, permanent=not retryable)
    if fatal:
        try:
            run_fail(run_id=unit.run_id, error=error)
        except InvalidTransition:
            pass
        return Outcome.FAILED
    run_dispatch(run_id=unit.run_id)
    return Outcome.FAILED
