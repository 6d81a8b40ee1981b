"""Crash recovery: kill -9 workers mid-run; recovery at process start; the recover command."""

import os
import random
import signal
import subprocess
import sys
import time
from datetime import timedelta
from decimal import Decimal

import pytest
from django.core.management import call_command
from django.utils import timezone

from collection.models import (
    CollectionRun,
    EventKind,
    PauseReason,
    RunEvent,
    RunStatus,
    RunUnit,
    UnitStatus,
)
from collection.services import runs
from collection.services.budget import budget_reserve
from tests.conftest import ROOT, Workers, make_categories, postgres_only, set_settings, worker_env
from tests.engine.helpers import PAGE, assert_complete_listing, fetches, refetched, start_run, wait_status
from tests.factories import make_run
from tests.fake_sources import logged_demo_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]



@postgres_only
def test_kill_9_workers_repeatedly_and_the_run_still_collects_exactly_once(tmp_path, demo_pricing):
    set_settings(concurrency_per_run=3, lease_seconds=2, max_auto_recoveries=100)
    cats = make_categories(6, items=300)  # 90 pages
    log = tmp_path / "fetches.log"
    workers = Workers(tmp_path, **logged_demo_env(log), DEMO_LATENCY_MS=60, COLLECTION_SLICE_SECONDS=2,
                      COLLECTION_SWEEP_SECONDS=0.5, **PAGE)
    rng = random.Random(20261124)
    kills = 0
    try:
        workers.start(3)
        run = start_run(cats, cap="50")
        while kills < 12 and CollectionRun.objects.get(pk=run.pk).status == RunStatus.RUNNING:
            time.sleep(rng.uniform(0.15, 0.6))
            alive = [p for p in workers.procs if p.poll() is None]
            # prefer a worker caught mid-unit (holding a lease): that is the crash that matters
            owners = " ".join(RunUnit.objects.filter(run=run).values_list("lease_owner", flat=True))
            busy = [p for p in alive if f":{p.pid}:" in owners]
            victim = rng.choice(busy or alive)
            os.kill(victim.pid, signal.SIGKILL)
            victim.wait()
            kills += 1
            workers.start(1)
        run = wait_status(run, RunStatus.COMPLETED, timeout=180)
    finally:
        workers.stop()

    assert kills >= 10
    # kills aim at workers holding a lease, but one may let go just before the signal lands
    assert RunEvent.objects.filter(run=run, kind=EventKind.RECOVERED).count() >= 2
    print(f"kills={kills} recovered={RunEvent.objects.filter(run=run, kind=EventKind.RECOVERED).count()} "
          f"refetched={refetched(log)} spent={run.spent} estimate={run.estimated_cost}")
    assert_complete_listing(run, cats)
    assert run.spent <= run.budget_cap and run.reserved == 0
    repeats = refetched(log)
    assert sum(repeats.values()) <= kills
    # every page fetched again is explained in the event log: a recovery of its unit at that page
    recovered = {
        (e.unit.category.external_id, e.detail["page_refetched"])
        for e in RunEvent.objects.filter(run=run, kind=EventKind.RECOVERED).select_related("unit__category")
    }
    for (category, offset), _ in repeats.items():
        assert (category, offset // 20 + 1) in recovered
    # reservations of dead workers were counted as spent: spend covers every page fetched
    page_costs = sum(
        Decimal("0.01") + Decimal("0.001") * min(20, 300 - offset) for _, offset in fetches(log)
    )
    assert run.spent >= run.estimated_cost
    assert run.spent <= page_costs + Decimal("0.03") * kills


def expire_one_unit(run) -> RunUnit:
    """Make it look as if a worker died holding a unit's lease with a reservation in flight."""
    unit = run.units.order_by("pk").first()
    RunUnit.objects.filter(pk=unit.pk).update(status=UnitStatus.RUNNING, lease_owner="dead-host:1:abc")
    budget_reserve(unit_id=unit.pk, run_id=run.pk, amount=Decimal("0.03"))
    RunUnit.objects.filter(pk=unit.pk).update(lease_expires_at=timezone.now() - timedelta(seconds=5))
    RunUnit.objects.filter(run=run).exclude(pk=unit.pk).update(status=UnitStatus.PENDING)
    return unit


def interrupted_run(cats):
    run = make_run(categories=cats, status=RunStatus.RUNNING)
    return run, expire_one_unit(run)


def manage(*args, env, timeout=60) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "manage.py", *args], cwd=ROOT, env=env, capture_output=True,
                          text=True, timeout=timeout)


def test_startup_recovers_an_interrupted_run_once_and_migrate_does_not(tmp_path, demo_pricing):
    set_settings(lease_seconds=30)
    cats = make_categories(2, items=40)
    run, unit = interrupted_run(cats)
    env = worker_env(**PAGE, COLLECTION_SWEEP_SECONDS=60)

    migrate = manage("migrate", "--noinput", env=env)
    assert migrate.returncode == 0, migrate.stderr
    assert "recovery" not in migrate.stderr + migrate.stdout
    assert not RunEvent.objects.filter(run=run, kind=EventKind.RECOVERED).exists()
    assert RunUnit.objects.get(pk=unit.pk).lease_owner == "dead-host:1:abc"

    # three workers start at once: the run is recovered exactly once, then completes
    workers = Workers(tmp_path, **PAGE, COLLECTION_SWEEP_SECONDS=60)
    try:
        workers.start(3)
        run = wait_status(run, RunStatus.COMPLETED)
    finally:
        workers.stop()
    events = RunEvent.objects.filter(run=run, kind=EventKind.RECOVERED)
    assert events.count() == 1
    assert events.get().detail["reservation_counted_as_spent"] == "0.0300"
    assert "startup recovery (worker" in workers.logs()
    assert run.spent == run.estimated_cost + Decimal("0.03")
    assert_complete_listing(run, cats)


def test_a_web_process_on_an_unmigrated_database_starts_and_skips_recovery(tmp_path):
    env = worker_env()
    env["DATABASE_URL"] = f"sqlite:///{tmp_path / 'empty.sqlite3'}"
    server = subprocess.Popen(
        [sys.executable, "manage.py", "runserver", "127.0.0.1:0", "--noreload"], cwd=ROOT, env=env,
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
    )
    try:
        time.sleep(3)
        assert server.poll() is None, server.stdout.read()
    finally:
        server.terminate()
        output = server.communicate(timeout=10)[0]
    assert "startup recovery skipped: the database is not migrated yet" in output
    # asking a serving command for help serves nothing: no recovery, not even its log line
    for _ in range(3):
        asking = manage("db_worker", "--help", env=env)
        assert asking.returncode == 0 and "recovery" not in asking.stderr + asking.stdout, asking.stderr


def test_recover_command_dry_run_changes_nothing_and_then_recovers(capsys):
    set_settings(lease_seconds=30, on_interrupt="pause")
    run, unit = interrupted_run(make_categories(1, items=40))

    call_command("collection_recover", "--dry-run")
    assert f"would recover 1 unit(s) with expired leases: [{unit.pk}]" in capsys.readouterr().out
    assert RunUnit.objects.get(pk=unit.pk).lease_owner == "dead-host:1:abc"

    call_command("collection_recover")
    out = capsys.readouterr().out
    assert f"recovered 1 unit(s) with expired leases: [{unit.pk}]" in out
    assert f"paused as interrupted: runs [{run.pk}]" in out
    run.refresh_from_db()
    assert (run.status, run.pause_reason, run.reserved, run.spent) == (
        RunStatus.PAUSED, PauseReason.INTERRUPTED, 0, Decimal("0.03"))
    call_command("collection_recover")
    assert "nothing to recover" in capsys.readouterr().out


def test_a_unit_interrupted_more_often_than_allowed_pauses_the_run(demo_pricing):
    set_settings(lease_seconds=30, max_auto_recoveries=1)
    run, unit = interrupted_run(make_categories(1, items=40))
    call_command("collection_recover")
    assert RunUnit.objects.get(pk=unit.pk).status == UnitStatus.QUEUED
    assert CollectionRun.objects.get(pk=run.pk).status == RunStatus.RUNNING
    expire_one_unit(run)
    call_command("collection_recover")
    run.refresh_from_db()
    assert (run.status, run.pause_reason) == (RunStatus.PAUSED, PauseReason.INTERRUPTED)


def test_a_lost_trigger_is_dispatched_again(demo_pricing):
    set_settings(lease_seconds=1)
    run = runs.run_create(source="demo", category_ids=[c.pk for c in make_categories(1, items=40)])
    CollectionRun.objects.filter(pk=run.pk).update(status=RunStatus.RUNNING)
    # queued, but the enqueue after commit never happened (the process died in between)
    RunUnit.objects.filter(run=run).update(status=UnitStatus.QUEUED, dispatch_token="old", task_id="",
                                           dispatched_at=timezone.now() - timedelta(seconds=5))
    call_command("collection_recover")
    unit = run.units.get()
    assert unit.status == UnitStatus.QUEUED and unit.dispatch_token != "old" and unit.task_id
    assert RunEvent.objects.filter(run=run, kind=EventKind.REDISPATCHED).count() == 1
