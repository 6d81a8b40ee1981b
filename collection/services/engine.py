"""The engine: dispatching units to workers and advancing a unit page by page.

A unit's task takes the unit's lease (a conditional UPDATE: only the task carrying the unit's
current dispatch token, and only while nobody holds the lease), then for each page: reserves
the page's maximum cost (refused when the run is no longer running — that is the per-page
re-check — or when a cap would be passed), fetches it, and checkpoints it. After a bounded
time slice it releases the lease and enqueues its successor at the back of the queue, so runs
share workers fairly. Tasks are enqueued after commit; a lost one is found by recovery.
"""

from __future__ import annotations

import logging
import os
import random
import socket
import time
import uuid
from datetime import timedelta

from django.conf import settings as django_settings
from django.db import transaction
from django.db.models import Count, Q, Subquery
from django.tasks import default_task_backend
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
from collection.sources import (
    FatalSourceError,
    QuotaExhausted,
    SourceError,
    get_source,
)

from .budget import budget_release, budget_reserve, budget_settle
from .checkpoint import unit_checkpoint
from .errors import BudgetExceeded, InvalidTransition
from .quota import quota_exhaust, quota_reserve, quota_settle_unit
from .runs import event_write, run_complete, run_fail, run_pause

logger = logging.getLogger("collection.engine")

ACTIVE = (UnitStatus.QUEUED, UnitStatus.RUNNING)


def worker_name() -> str:
    return f"{socket.gethostname()[:30]}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


def unit_enqueue(*, unit_id: int, token: str, delay: float = 0) -> None:
    """Enqueue the unit's trigger (call after commit) and note the task id for recovery."""
    from collection.tasks import advance_unit

    task = advance_unit
    if delay > 0 and default_task_backend.supports_defer:
        task = advance_unit.using(run_after=timezone.now() + timedelta(seconds=delay))
    result = task.enqueue(unit_id, token)
    RunUnit.objects.filter(pk=unit_id, dispatch_token=token).update(task_id=str(result.id)[:64])


def mark_queued(unit_ids: list[int], *, delay: float = 0, status_from=None) -> None:
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


SAMPLE_SECONDS = 2.0


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
    CollectionRun.objects.filter(pk=run.pk).update(units_done=done, units_failed=failed)
    from collection.models import Seller

    sellers_new = Seller.objects.filter(first_seen_run_id=run.pk).count()
    CollectionRun.objects.filter(pk=run.pk).update(sellers_new=sellers_new)
    if done == 0 and failed > 0:
        run_fail(run_id=run.pk, error=f"every category failed ({failed})")
    else:
        detail = {"categories_done": done, "categories_failed": failed}
        run_complete(run_id=run.pk, detail=detail)
        if failed:
            CollectionRun.objects.filter(pk=run.pk).update(error=f"{failed} of {done + failed} categories failed")


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
        return {"unit": unit_id, "outcome": "skipped"}
    try:
        outcome = _advance(unit, owner, settings, slice_seconds)
    except Exception as error:  # a bug or a database outage: do not strand the unit
        logger.exception("unit %s: unexpected error", unit_id)
        message = f"{type(error).__name__}: {error}"
        try:
            quota_settle_unit(unit=RunUnit.objects.get(pk=unit.pk))
            # The page may have been fetched (and charged) before the error: an unknown outcome
            # is counted as spent, like a dead worker's reservation.
            _unit_failed_page(unit, owner, settings, error=message, retry_after=None, charged=ALL_RESERVED)
        except Exception:
            logger.exception("unit %s: could not record the error; recovery will take it over", unit_id)
            raise
        return {"unit": unit_id, "outcome": "error"}
    return {"unit": unit_id, "outcome": outcome}


def _advance(unit: RunUnit, owner: str, settings: CollectionSettings, slice_seconds: float | None) -> str:
    source = get_source(unit.run.source)
    category = unit.category
    slice_seconds = django_settings.COLLECTION_SLICE_SECONDS if slice_seconds is None else slice_seconds
    deadline = time.monotonic() + slice_seconds
    cursor, page_index = unit.cursor, unit.pages_done
    reserved = None  # the next page's reservation, when the previous checkpoint already made it
    next_sample = time.monotonic() + SAMPLE_SECONDS
    while True:
        if reserved is None:
            if time.monotonic() >= deadline:
                return _unit_yield(unit, owner)
            reserved = source.max_page_cost(category=category, cursor=cursor)
            try:
                period_id = budget_reserve(unit_id=unit.pk, run_id=unit.run_id, amount=reserved)
            except BudgetExceeded as refused:
                detail = {"unit": unit.pk, "needed": str(reserved), "scope": refused.scope}
                _pause_quietly(unit.run_id, PauseReason.BUDGET, detail)
                return _unit_stop(unit, owner)
        quota_limit = getattr(source, "daily_call_quota", None)
        if quota_limit:
            try:
                period = quota_reserve(source=source.key, limit=quota_limit, unit_id=unit.pk)
            except QuotaExhausted as error:
                _settle_failed_page(unit, owner, 0)
                _pause_quietly(unit.run_id, PauseReason.QUOTA, {"unit": unit.pk, "error": str(error),
                                                               "resets_at": error.resets_at.isoformat()},
                               quota_resets_at=error.resets_at)
                return _unit_stop(unit, owner)
            unit.quota_reserved, unit.quota_period_id = 1, period.pk
        try:
            page = source.fetch_page(category=category, cursor=cursor)
        except QuotaExhausted as error:
            quota_settle_unit(unit=unit, used=0)
            if quota_limit:
                quota_exhaust(source=source.key)
            _settle_failed_page(unit, owner, error.charged)
            detail = {"unit": unit.pk, "error": str(error)}
            if error.resets_at:
                detail["resets_at"] = error.resets_at.isoformat()
            _pause_quietly(unit.run_id, PauseReason.QUOTA, detail, quota_resets_at=error.resets_at)
            return _unit_stop(unit, owner)
        except SourceError as error:
            quota_settle_unit(unit=unit)  # the call was made (or may have been)
            return _unit_failed_page(unit, owner, settings, error=str(error), retry_after=error.retry_after,
                                     charged=error.charged, retryable=error.retryable,
                                     fatal=isinstance(error, FatalSourceError))
        quota_settle_unit(unit=unit, used=page.quota_used)
        next_reservation = None
        if page.next_cursor is not None and time.monotonic() < deadline:
            next_reservation = source.max_page_cost(category=category, cursor=page.next_cursor)
        result = unit_checkpoint(
            unit_id=unit.pk, run_id=unit.run_id, category_id=unit.category_id, lease_owner=owner,
            page_index=page_index, page=page, platform=source.platform,
            lease_seconds=settings.lease_seconds, reserved=reserved, period_id=period_id,
            next_reservation=next_reservation, warn_percent=settings.warning_threshold_percent,
        )
        if result is None:  # the lease was lost (recovery took over): the page is not ours to record
            return "lease_lost"
        if time.monotonic() >= next_sample or result.done:
            spend_sample(run_id=unit.run_id)
            next_sample = time.monotonic() + SAMPLE_SECONDS
        if result.done:
            run_dispatch(run_id=unit.run_id)
            return "done"
        cursor, page_index = page.next_cursor, page_index + 1
        reserved = next_reservation if result.next_reserved else None


def _pause_quietly(run_id: int, reason: str, detail: dict, quota_resets_at=None) -> None:
    """Pause for a runtime reason; a run that is already not running stays as it is."""
    try:
        run_pause(run_id=run_id, reason=reason, detail=detail, quota_resets_at=quota_resets_at)
    except InvalidTransition:
        pass


ALL_RESERVED = object()  # "charged": the outcome is unknown, count the whole reservation as spent


def _settle_failed_page(unit: RunUnit, owner: str, charged) -> None:
    with transaction.atomic():
        locked = RunUnit.objects.select_for_update().get(pk=unit.pk)
        if locked.lease_owner != owner:
            return
        if charged is ALL_RESERVED:
            budget_settle(unit=locked, spent=locked.reserved)
        elif charged:
            budget_settle(unit=locked, spent=charged)
        else:
            budget_release(unit=locked)


def _release(unit: RunUnit, owner: str, **changes) -> bool:
    return bool(
        RunUnit.objects.filter(pk=unit.pk, lease_owner=owner).update(lease_owner="", lease_expires_at=None, **changes)
    )


def _unit_yield(unit: RunUnit, owner: str) -> str:
    """End of the time slice: go to the back of the queue (if the run is still running)."""
    with transaction.atomic():
        run = CollectionRun.objects.select_for_update().get(pk=unit.run_id)
        if not _release(unit, owner):
            return "lease_lost"
        if run.status == RunStatus.RUNNING:
            mark_queued([unit.pk])
            return "yielded"
        RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.PENDING)
        return "stopped"


def _unit_stop(unit: RunUnit, owner: str) -> str:
    """The run is no longer running: leave the unit pending for resume — unless it was resumed
    in the meantime, then carry on."""
    return _unit_yield(unit, owner)


def _unit_failed_page(unit: RunUnit, owner: str, settings: CollectionSettings, *, error: str,
                      retry_after: float | None, charged, retryable: bool = True, fatal: bool = False) -> str:
    """Settle the page's reservation (capture what the source says it charged), then retry
    with backoff, or fail the unit (and the run, for a fatal error)."""
    _settle_failed_page(unit, owner, charged)
    attempts = RunUnit.objects.values_list("attempts", flat=True).get(pk=unit.pk) + 1
    give_up = not retryable or attempts >= settings.max_unit_attempts
    with transaction.atomic():
        run = CollectionRun.objects.select_for_update().get(pk=unit.run_id)
        if give_up:
            if not _release(unit, owner, status=UnitStatus.FAILED, attempts=attempts, last_error=error[:2000],
                            finished_at=timezone.now()):
                return "lease_lost"
            CollectionRun.objects.filter(pk=run.pk).update(units_failed=run.units_failed + 1)
            event_write(run_id=run.pk, unit_id=unit.pk, kind=EventKind.UNIT_FAILED, error=error[:2000],
                        attempts=attempts, permanent=not retryable)
        else:
            delay = retry_delay(attempts, retry_after)
            if not _release(unit, owner, attempts=attempts, last_error=error[:2000]):
                return "lease_lost"
            event_write(run_id=run.pk, unit_id=unit.pk, kind=EventKind.UNIT_RETRY, error=error[:2000],
                        attempt=attempts, retry_in=round(delay, 2))
            if run.status == RunStatus.RUNNING:
                mark_queued([unit.pk], delay=delay)
            else:
                RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.PENDING)
            return "retry"
    if fatal:
        try:
            run_fail(run_id=unit.run_id, error=error)
        except InvalidTransition:
            pass
        return "failed"
    run_dispatch(run_id=unit.run_id)
    return "failed"
