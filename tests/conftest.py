import os
import subprocess
import sys
import threading
import time
from decimal import Decimal
from pathlib import Path

import pytest
from django.conf import settings
from django.contrib.auth.models import Group, User
from django.db import connection

from collection.models import CollectionSettings
from collection.sources import _load
from tests.factories import make_categories

ROOT = Path(__file__).resolve().parent.parent


def is_postgres() -> bool:
    return connection.vendor == "postgresql"


postgres_only = pytest.mark.skipif(
    "postgres" not in os.environ.get("DATABASE_URL", ""), reason="needs PostgreSQL (set DATABASE_URL=postgres://…)"
)


@pytest.fixture(scope="session", autouse=True)
def _close_connection_pools(django_db_setup):
    """Live-server threads return their connections to the PostgreSQL pool, which keeps them
    open; close it before pytest-django drops the test database."""
    yield
    from django.db import connections

    for conn in connections.all():
        if getattr(conn, "pool", None) is not None:
            conn.close_pool()


@pytest.fixture(scope="session", autouse=True)
def _plain_static_files():
    """Serve static files under their own names in tests, even after `make run` or `make demo`
    ran collectstatic (which switches the settings to hashed names the live server's static
    handler, reading the apps' files, does not know)."""
    from django.test import override_settings

    storages = {**settings.STORAGES,
                "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"}}
    with override_settings(STORAGES=storages):
        yield


@pytest.fixture(autouse=True)
def _fast_passwords(settings):
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture(autouse=True)
def _admin_counts_finish(monkeypatch):
    """The admin's counts finish whatever the machine's load (a stalled 30-row count would
    otherwise run past the 25 ms budget and change what a page says); the tests of the budget
    set their own."""
    from collection.admin import CappedCountPaginator

    monkeypatch.setattr(CappedCountPaginator, "BUDGET_MS", 60_000)


@pytest.fixture(autouse=True)
def _fresh_sources():
    _load.cache_clear()
    yield
    _load.cache_clear()


@pytest.fixture
def collection_settings(db):
    return CollectionSettings.load()


@pytest.fixture
def categories(db):
    return make_categories(3)


def operators_group() -> Group:
    """The group the data migration creates (transactional tests flush it away: recreate it)."""
    import importlib

    from django.apps import apps
    from django.contrib.auth.models import Permission

    group, created = Group.objects.get_or_create(name="Operators")
    if created:
        codenames = importlib.import_module("collection.migrations.0002_operators_group").OPERATOR_PERMISSIONS
        codenames = [*codenames, "view_offer"]  # what 0008_offers adds to the group
        group.permissions.add(*Permission.objects.filter(content_type__app_label="collection", codename__in=codenames))
    assert apps.is_installed("collection")
    return group


@pytest.fixture
def operator(db):
    user = User.objects.create_user("op", password="op-password-123", is_staff=True)
    user.groups.add(operators_group())
    return user


def set_settings(**values) -> CollectionSettings:
    obj = CollectionSettings.load()
    for key, value in values.items():
        setattr(obj, key, Decimal(str(value)) if isinstance(value, float) else value)
    obj.save()
    return obj


def worker_env(**extra) -> dict:
    """The environment for a child process that must use this test's database."""
    env = dict(os.environ)
    db = settings.DATABASES["default"]
    if db["ENGINE"].endswith("sqlite3"):
        env["DATABASE_URL"] = f"sqlite:///{db['NAME']}"
    else:
        env["DATABASE_URL"] = (
            f"postgres://{db['USER'] or ''}@{db['HOST'] or '127.0.0.1'}:{db['PORT'] or 5432}/{db['NAME']}"
        )
    env.setdefault("COLLECTION_SWEEP_SECONDS", "1")
    env["PYTHONUNBUFFERED"] = "1"
    env.update({k: str(v) for k, v in extra.items()})
    return env


class Workers:
    """Real `manage.py db_worker` processes against the test database."""

    def __init__(self, tmp_path: Path, **env):
        self.env = worker_env(**env)
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen] = []

    def start(self, n: int = 1) -> list[subprocess.Popen]:
        started = []
        for _ in range(n):
            log = open(self.tmp_path / f"worker-{len(self.procs)}.log", "w")
            proc = subprocess.Popen(
                [sys.executable, "manage.py", "db_worker", "--no-reload", "--interval", "0.05",
                 "--no-startup-delay", "-v", "0"],
                cwd=ROOT, env=self.env, stdout=log, stderr=subprocess.STDOUT,
            )
            self.procs.append(proc)
            started.append(proc)
        return started

    def stop(self) -> None:
        for proc in self.procs:
            if proc.poll() is None:
                proc.terminate()
        for proc in self.procs:
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.tmp_path.glob("worker-*.log")))


@pytest.fixture
def workers(tmp_path):
    pool = Workers(tmp_path)
    yield pool
    pool.stop()


def wait_for(predicate, *, timeout: float = 60, interval: float = 0.05, message: str = "condition"):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(interval)
    raise AssertionError(f"timed out after {timeout}s waiting for {message}")



def waiting_on_a_lock(cursor) -> bool:
    """Whether a session of this database waits for a row lock (PostgreSQL)."""
    cursor.execute("SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                   "AND wait_event_type = 'Lock'")
    return cursor.fetchone()[0] > 0


def in_thread_once_set(started: threading.Event, work) -> tuple[threading.Thread, list]:
    """Run `work()` in a daemon thread, on its own connection, once `started` is set; the list
    gets what it returned or raised."""
    outcome = []

    def run():
        try:
            if started.wait(timeout=30):
                outcome.append(work())
        except Exception as error:  # noqa: BLE001 - reported to the test
            outcome.append(error)
        finally:
            connection.close()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread, outcome
