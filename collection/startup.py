"""Recovery when a process starts, and the periodic sweep in worker processes.

Django's docs warn against queries in AppConfig.ready(): it also runs for migrate, test,
shell, collectstatic... So ready() only calls `install()`, which looks at what this process
is. Serving processes — `runserver`, `db_worker`, and WSGI/ASGI servers (config/wsgi.py calls
`process_started`) — recover in a background thread once they are up; worker processes keep
sweeping every COLLECTION_SWEEP_SECONDS, and index products for search when they are not
collecting (services/search_index.py). Everything else (migrate, makemigrations, test,
collectstatic, shell, the collection commands) never triggers it. A database that is not
migrated yet is left alone with a log line, never a crash.
"""

from __future__ import annotations

import logging
import os
import sys
import threading
import time

from django.conf import settings
from django.db import DatabaseError, close_old_connections, connection

# Imported from CollectionConfig.ready() only, once the app registry is ready.
from collection.models import RunUnit
from collection.services.recovery import recover
from collection.services.retention import prune
from collection.services.search_index import due as search_due
from collection.services.search_index import index_pending

logger = logging.getLogger("collection.recovery")

SERVING_COMMANDS = {"runserver": "web", "db_worker": "worker"}
_started = False
_lock = threading.Lock()


def _command() -> str | None:
    argv = sys.argv
    if len(argv) > 1 and os.path.basename(argv[0]) in ("manage.py", "django-admin", "__main__.py"):
        return argv[1]
    return None


def install() -> None:
    """Called from CollectionConfig.ready(): no queries, only a decision."""
    role = SERVING_COMMANDS.get(_command() or "")
    if role is None or {"-h", "--help", "--version"} & set(sys.argv):
        return  # not serving (asking for help serves nothing)
    reloading = "--noreload" not in sys.argv and "--no-reload" not in sys.argv
    if role == "worker":
        reloading = "--reload" in sys.argv or (settings.DEBUG and reloading)
    if reloading and os.environ.get("RUN_MAIN") != "true":
        return  # the autoreloader's parent process: its child serves and recovers
    process_started(role=role)


def _tables_ready() -> bool:
    return RunUnit._meta.db_table in connection.introspection.table_names()


def _recover_once(role: str, *, sweep: bool = False) -> None:
    """Recover once; at startup always say what was found, in a sweep only when it found something."""
    try:
        if not _tables_ready():
            logger.warning("startup recovery skipped: the database is not migrated yet")
            return
        report = recover()
        if not sweep:
            logger.info("startup recovery (%s, pid %s): %s", role, os.getpid(), report.as_dict())
        elif report.changed:
            logger.info("recovery sweep (%s, pid %s): %s", role, os.getpid(), report.as_dict())
    except DatabaseError as error:
        logger.warning("recovery skipped: %s", error)
    finally:
        close_old_connections()
        connection.close()


PRUNE_SECONDS = 10  # a pass stops after this long: recovery, in the same thread, is not held up


def _prune(role: str) -> None:
    """Retention (services/retention.py), in batches, for at most PRUNE_SECONDS; any failure is
    logged and tried next time (the sweep thread must survive it)."""
    try:
        counts = prune(max_seconds=PRUNE_SECONDS)
        if any(counts.values()):
            logger.info("retention (%s, pid %s): %s", role, os.getpid(), counts)
    except Exception:
        logger.exception("retention skipped")
    finally:
        close_old_connections()
        connection.close()


def _sweep_forever(role: str, interval: float, stop: threading.Event) -> None:
    _recover_once(role)
    every, last_prune = settings.COLLECTION_PRUNE_EVERY_SECONDS, None
    while not stop.wait(interval):
        _recover_once(role, sweep=True)
        if every > 0 and (last_prune is None or time.monotonic() - last_prune >= every):
            last_prune = time.monotonic()
            _prune(role)


def _index_search(role: str) -> int | None:
    """One pass of the search indexer (services/search_index.py), at most INDEX_SECONDS, unless
    another process is indexing (None); a failure (a database gone away) is logged, and the next
    pass tries again."""
    try:
        return index_pending(max_seconds=INDEX_SECONDS, alone=True)
    except DatabaseError as error:  # gone away, or not migrated yet
        logger.warning("search indexing skipped (%s, pid %s): %s", role, os.getpid(), error)
    except Exception:
        logger.exception("search indexing skipped (%s, pid %s)", role, os.getpid())
    finally:
        close_old_connections()
        connection.close()
    return 0


INDEX_SECONDS = 10  # a pass stops after this long


def _index_search_forever(role: str, interval: float, stop: threading.Event) -> None:
    """Every `interval` seconds, index what the checkpoints queued when it is due (not while this
    process is collecting, unless the last pass is COLLECTION_SEARCH_MAX_LAG_SECONDS old); at
    once again after a pass that ran out of time (a backlog)."""
    last_pass = time.monotonic()
    while not stop.wait(interval):
        while search_due(last_pass):
            started = last_pass = time.monotonic()
            _index_search(role)
            if time.monotonic() - started < INDEX_SECONDS or stop.is_set():
                break


def process_started(*, role: str) -> threading.Thread | None:
    """Start recovery in the background, once per process; in a worker process, title search
    indexing too (COLLECTION_SEARCH_INDEX_SECONDS, on its own thread)."""
    global _started
    with _lock:
        if _started:
            return None
        _started = True
    stop = threading.Event()
    if role == "worker" and settings.COLLECTION_SEARCH_INDEX_SECONDS > 0:
        threading.Thread(target=_index_search_forever, args=(role, settings.COLLECTION_SEARCH_INDEX_SECONDS, stop),
                         name="collection-search-index", daemon=True).start()
    if not settings.COLLECTION_RECOVER_ON_START:
        return None
    if role == "worker":
        target, args = _sweep_forever, (role, settings.COLLECTION_SWEEP_SECONDS, stop)
    else:
        target, args = _recover_once, (role,)
    thread = threading.Thread(target=target, args=args, name=f"collection-recovery-{role}", daemon=True)
    thread.start()
    return thread
