"""The database goes away under running workers and a serving web process (PostgreSQL)."""

import os
import subprocess
import sys
import time

import httpx
import pytest
from django.db import connection

from collection.models import CollectionRun, RunStatus
from tests.conftest import ROOT, Workers, postgres_only, set_settings, wait_for, worker_env
from tests.engine.helpers import PAGE, assert_complete_listing, assert_ledgers_settled, start_run, wait_status
from tests.factories import make_categories

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers, postgres_only]


def terminate_connections() -> int:
    """What a PostgreSQL restart, a failover or an idle-connection reaper does to every other
    session of this database: cut it."""
    with connection.cursor() as cursor:
        cursor.execute("SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
                       "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        return cursor.fetchone()[0]


def restart_postgres() -> bool:
    """Restart the server itself, when the test environment allows it (COLLECTION_TEST_PG_RESTART=1:
    the server is this machine's and nothing else depends on it)."""
    if os.environ.get("COLLECTION_TEST_PG_RESTART") != "1":
        return False
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)
    connection.close()
    wait_for(lambda: subprocess.run(["pg_isready", "-q", "-h", "127.0.0.1"]).returncode == 0, timeout=30,
             message="PostgreSQL to be back")
    return True


def test_workers_ride_out_dropped_connections_and_the_run_completes_exactly(tmp_path, demo_pricing):
    set_settings(concurrency_per_run=4, lease_seconds=3)
    cats = make_categories(8, items=400)  # 160 pages of 20
    workers = Workers(tmp_path, DEMO_LATENCY_MS=40, COLLECTION_SLICE_SECONDS=1, **PAGE)
    try:
        procs = workers.start(4)
        run = start_run(cats, cap="50")
        cuts = 0
        for _ in range(5):
            wait_for(lambda done=cuts: CollectionRun.objects.get(pk=run.pk).pages_done >= 10 + done * 20,
                     timeout=120, message="progress between cuts")
            if terminate_connections():
                cuts += 1
            connection.close()
        restarted = restart_postgres()
        run = wait_status(run, RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.PAUSED, timeout=180)
        assert all(proc.poll() is None for proc in procs), workers.logs()[-3000:]
    finally:
        workers.stop()
    assert cuts == 5
    assert run.status == RunStatus.COMPLETED, (run.status, run.pause_reason, run.error)
    assert_complete_listing(run, cats)
    assert_ledgers_settled(run)
    print(f"\n{cuts} cuts{' and a PostgreSQL restart' if restarted else ''}: run completed, "
          f"{run.pages_done} pages, spent {run.spent} of {run.budget_cap}")


def test_the_web_server_answers_after_its_connections_are_dropped(tmp_path, operator):
    from rest_framework.authtoken.models import Token

    token = Token.objects.create(user=operator)
    env = worker_env(COLLECTION_RECOVER_ON_START="false")
    server = subprocess.Popen(
        [sys.executable, "-m", "gunicorn", "config.wsgi", "--workers", "2", "--bind", "127.0.0.1:8765",
         "--timeout", "30"], cwd=ROOT, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
    )
    headers = {"Authorization": f"Token {token.key}"}
    try:
        def answers():
            try:
                return httpx.get("http://127.0.0.1:8765/api/collection/settings/", headers=headers).status_code == 200
            except httpx.HTTPError:
                return False

        wait_for(answers, timeout=30, message="gunicorn to serve")
        for _ in range(4):  # warm both workers' pools
            assert httpx.get("http://127.0.0.1:8765/api/collection/runs/", headers=headers).status_code == 200
        for _ in range(3):
            assert terminate_connections() >= 1
            connection.close()
            time.sleep(0.2)
            statuses = [httpx.get("http://127.0.0.1:8765/api/collection/runs/", headers=headers).status_code
                        for _ in range(6)]
            assert statuses == [200] * 6
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_a_pool_whose_idle_connections_are_all_cut_gives_a_new_one_at_once():
    """A busy process keeps several idle connections in its pool. When the server cuts them all,
    the first broken one found has the pool check the others at once (config/pool.py). Without
    that, the pool found them one at a time, backing off 0, 1, 2, 4, 8, 16 s between, and with
    nine the request failed at the pool's 30 s timeout (PoolTimeout). A pool of its own, with the
    project's check, so that what earlier tests left in the process's pool does not count."""
    from psycopg_pool import ConnectionPool

    from config.pool import check_connection

    idle = 9
    with ConnectionPool(worker_env()["DATABASE_URL"], min_size=idle, max_size=idle, timeout=30,
                        check=check_connection, open=True) as pool:
        pool.wait(timeout=30)
        assert pool.get_stats()["pool_available"] == idle
        assert terminate_connections() >= idle  # this test's own connection is not in that pool
        with pool.connection() as fresh:
            assert fresh.execute("SELECT 1").fetchone() == (1,)
