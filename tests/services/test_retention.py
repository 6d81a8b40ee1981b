"""Retention: what outlived its use goes, in batches; the audit trail and live runs stay."""

from datetime import timedelta

import pytest
from django.core.management import call_command
from django.utils import timezone
from django_tasks_db.models import DBTaskResult

from collection.models import (
    CollectionRun,
    EventKind,
    IdempotencyKey,
    Product,
    RunEvent,
    RunProduct,
    RunSeller,
    RunStatus,
    Seller,
    SpendSample,
)
from collection.selectors import seen_counts
from collection.services.retention import prune
from tests.factories import make_run, seed_offers

pytestmark = pytest.mark.django_db

OLD = timezone.now() - timedelta(days=400)


def task_result(status: str, finished_at) -> DBTaskResult:
    return DBTaskResult.objects.create(status=status, finished_at=finished_at, args_kwargs={}, task_path="x.y",
                                       backend_name="default", run_after=timezone.now())


def finished_run(finished_at) -> CollectionRun:
    run = make_run(categories=1)
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.COMPLETED, finished_at=finished_at)
    return run


def test_prune_deletes_only_what_is_past_retention_and_keeps_the_audit_trail(operator, settings):
    settings.COLLECTION_KEEP_TASK_RESULTS_DAYS = 7
    old_run, recent_run, live_run = finished_run(OLD), finished_run(timezone.now()), make_run(categories=1)
    for run in (old_run, recent_run, live_run):
        SpendSample.objects.bulk_create(SpendSample(run=run, at=OLD, spent=1) for _ in range(3))
        RunEvent.objects.bulk_create([RunEvent(run=run, kind=EventKind.UNIT_RETRY, detail={}),
                                      RunEvent(run=run, kind=EventKind.SOURCE_WARNING, detail={}),
                                      RunEvent(run=run, kind=EventKind.BUDGET_CHANGED, detail={})])
    RunEvent.objects.update(created_at=OLD)
    for status in ("SUCCESSFUL", "FAILED"):
        task_result(status, OLD)
        task_result(status, timezone.now())
    task_result("READY", None)  # waiting to run: never pruned
    old_key = IdempotencyKey.objects.create(user=operator, key="old", fingerprint="f")
    IdempotencyKey.objects.filter(pk=old_key.pk).update(created_at=OLD)
    IdempotencyKey.objects.create(user=operator, key="new", fingerprint="f")

    counts = prune(batch=2)  # several batches each

    assert counts == {"task_results": 2, "spend_samples": 3, "events": 4, "idempotency_keys": 1}
    assert set(DBTaskResult.objects.values_list("status", flat=True)) == {"SUCCESSFUL", "FAILED", "READY"}
    assert DBTaskResult.objects.count() == 3
    assert not SpendSample.objects.filter(run=old_run).exists()
    assert SpendSample.objects.filter(run__in=[recent_run, live_run]).count() == 6
    kept = set(RunEvent.objects.filter(run=old_run).values_list("kind", flat=True))
    assert EventKind.UNIT_RETRY not in kept and EventKind.SOURCE_WARNING not in kept
    assert {EventKind.CREATED, EventKind.BUDGET_CHANGED} <= kept  # the audit trail stays
    assert RunEvent.objects.filter(run=live_run, kind=EventKind.UNIT_RETRY).exists()  # a live run keeps all
    assert list(IdempotencyKey.objects.values_list("key", flat=True)) == ["new"]
    assert prune() == {"task_results": 0, "spend_samples": 0, "events": 0, "idempotency_keys": 0}


def test_zero_days_keeps_everything_and_the_command_reports(settings, capsys):
    for name in ("TASK_RESULTS", "SPEND_SAMPLES", "EVENT_NOISE", "IDEMPOTENCY_KEYS"):
        setattr(settings, f"COLLECTION_KEEP_{name}_DAYS", 0)
    task_result("SUCCESSFUL", OLD)
    assert prune() == {}
    call_command("collection_prune")
    assert capsys.readouterr().out.strip() == "retention is off"
    settings.COLLECTION_KEEP_TASK_RESULTS_DAYS = 1
    call_command("collection_prune", "--json")
    assert capsys.readouterr().out.strip() == '{"task_results": 1}'


def test_what_old_runs_saw_goes_only_when_asked(settings):
    seed_offers()
    product_ids = list(Product.objects.values_list("id", flat=True))
    seller_ids = list(Seller.objects.values_list("id", flat=True))
    old_run, recent_run = finished_run(OLD), finished_run(timezone.now())
    for run in (old_run, recent_run):
        RunProduct.objects.bulk_create(RunProduct(run=run, product_id=pk) for pk in product_ids)
        RunSeller.objects.bulk_create(RunSeller(run=run, seller_id=pk) for pk in seller_ids)
    assert "seen_in_run" not in prune()  # kept forever by default
    settings.COLLECTION_KEEP_SEEN_IN_RUN_DAYS = 30
    assert prune(batch=2) == {"task_results": 0, "spend_samples": 0, "events": 0, "idempotency_keys": 0,
                              "seen_in_run": len(product_ids) + len(seller_ids)}
    assert seen_counts(old_run.pk) == {"sellers": 0, "products": 0}
    assert seen_counts(recent_run.pk) == {"sellers": len(seller_ids), "products": len(product_ids)}


@pytest.mark.django_db(transaction=True)
def test_worker_processes_prune_on_their_own(tmp_path):
    from tests.conftest import Workers, wait_for

    old = task_result("SUCCESSFUL", OLD)
    pool = Workers(tmp_path, COLLECTION_PRUNE_EVERY_SECONDS="1")
    try:
        pool.start(1)
        # The row goes when the batch commits, the log line once the sweep returns: wait for
        # both, or stopping the worker in between loses the line (seen in CI).
        wait_for(lambda: not DBTaskResult.objects.filter(pk=old.pk).exists() and "retention (worker" in pool.logs(),
                 timeout=60, message="the worker's sweep pruned the old task result and said so")
    finally:
        pool.stop()
    assert "retention (worker" in pool.logs()
