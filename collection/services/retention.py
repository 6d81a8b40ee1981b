"""Retention: the rows that grow with every run and outlive their use are deleted after a number
of days (settings COLLECTION_KEEP_*, 0 keeps them forever):

* finished task results (django-tasks-db's rows, one per page slice) — useful while debugging;
* spend samples of runs finished long ago (the run page's chart) — the run keeps its totals;
* operational noise in the event log of finished runs: retries, source warnings, re-dispatches.
  The audit trail (created, started, paused, budget changes, completed, failures, recoveries,
  overcharges) is kept forever;
* idempotency keys, which only guard a client's retries;
* what runs finished long ago saw (RunProduct, RunSeller: a row a product and seller a run
  returned, the largest of these tables), only when COLLECTION_KEEP_SEEN_IN_RUN_DAYS is set:
  "seen in run" of those runs is then empty, their counts and what they first found stay.

Deleted in batches, each its own short statement, so pruning millions of rows never holds a lock
on a table for long. Worker processes prune every COLLECTION_PRUNE_EVERY_SECONDS (startup.py);
`manage.py collection_prune` does it by hand. Runs themselves are never pruned, and only a run
that never started can be deleted: the products, sellers and offers a run found are not its own
rows (they are shared by every run that saw them), so no deletion reaches them.
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.db.models import QuerySet
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from collection.models import CollectionRun, EventKind, IdempotencyKey, RunEvent, RunProduct, RunSeller, SpendSample

NOISE = (EventKind.UNIT_RETRY, EventKind.SOURCE_WARNING, EventKind.REDISPATCHED)
BATCH = 5000


def prune(*, now=None, batch: int = BATCH, max_seconds: float | None = None) -> dict[str, int]:
    """Delete what is past its retention; returns how many rows of each kind went. With
    `max_seconds`, stop after that long (between batches): the rest goes next time."""
    now = now or timezone.now()
    deadline = time.monotonic() + max_seconds if max_seconds else None

    def older(days: int):
        return now - timedelta(days=days) if days > 0 else None

    counts = {}
    if cutoff := older(settings.COLLECTION_KEEP_TASK_RESULTS_DAYS):
        counts["task_results"] = _delete(DBTaskResult.objects.finished().filter(finished_at__lt=cutoff), batch, deadline)
    if cutoff := older(settings.COLLECTION_KEEP_SPEND_SAMPLES_DAYS):
        counts["spend_samples"] = _delete(SpendSample.objects.filter(run__finished_at__lt=cutoff), batch, deadline)
    if cutoff := older(settings.COLLECTION_KEEP_EVENT_NOISE_DAYS):
        counts["events"] = _delete(
            RunEvent.objects.filter(kind__in=NOISE, created_at__lt=cutoff, run__finished_at__isnull=False), batch,
            deadline)
    if cutoff := older(settings.COLLECTION_KEEP_IDEMPOTENCY_KEYS_DAYS):
        counts["idempotency_keys"] = _delete(IdempotencyKey.objects.filter(created_at__lt=cutoff), batch, deadline)
    if cutoff := older(settings.COLLECTION_KEEP_SEEN_IN_RUN_DAYS):
        finished = CollectionRun.objects.filter(finished_at__lt=cutoff).values("id")
        counts["seen_in_run"] = sum(_delete(model.objects.filter(run_id__in=finished), batch, deadline)
                                    for model in (RunProduct, RunSeller))
    return counts


def _delete(queryset: QuerySet, batch: int, deadline: float | None) -> int:
    model, deleted = queryset.model, 0
    while (deadline is None or time.monotonic() < deadline) and (
            ids := list(queryset.values_list("pk", flat=True)[:batch])):
        deleted += model.objects.filter(pk__in=ids).delete()[0]
    return deleted
