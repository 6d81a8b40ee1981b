"""`manage.py db_worker`: django-tasks-db's worker, made to ride out a lost database.

The library's worker exits when the database drops its connections (a PostgreSQL restart, a
failover, an idle-connection reaper): its own bookkeeping raises "the connection is closed".
This command (it takes precedence because `collection` is listed before `django_tasks_db` in
INSTALLED_APPS) runs the same worker, but when the database goes away it closes its
connections, waits with exponential backoff and jitter, logs once per outage, and carries on.
A unit whose page was in flight is recovered as usual (its lease expires, or its error is
recorded once the database answers again).
"""

from __future__ import annotations

import logging
import random
import time

from django.db import DatabaseError, InterfaceError, OperationalError, connections
from django_tasks_db.management.commands.db_worker import Command as DbWorkerCommand
from django_tasks_db.management.commands.db_worker import Worker

logger = logging.getLogger("collection.worker")

BACKOFF_START = 0.2
BACKOFF_MAX = 10.0


class ResilientWorker(Worker):
    def run(self) -> None:
        backoff, outage_since = BACKOFF_START, None
        while self.running:
            try:
                super().run()
                return
            except (OperationalError, InterfaceError, DatabaseError) as error:
                if not self.running:
                    raise
                if outage_since is None:
                    outage_since = time.monotonic()
                    logger.warning("worker %s: the database went away (%s); reconnecting with backoff",
                                   self.worker_id, str(error).strip().splitlines()[0][:200] if str(error) else
                                   type(error).__name__)
                for connection in connections.all(initialized_only=True):
                    try:
                        connection.close()
                    except DatabaseError:
                        pass
                time.sleep(backoff / 2 + random.uniform(0, backoff / 2))
                backoff = min(BACKOFF_MAX, backoff * 2)
                self.startup_delay = False
                if self._database_answers():
                    logger.warning("worker %s: the database is back after %.1f s", self.worker_id,
                                   time.monotonic() - outage_since)
                    backoff, outage_since = BACKOFF_START, None

    @staticmethod
    def _database_answers() -> bool:
        try:
            with connections["default"].cursor() as cursor:
                cursor.execute("SELECT 1")
            return True
        except DatabaseError:
            connections["default"].close()
            return False


class Command(DbWorkerCommand):
    help = "Run a database background worker that survives database restarts and dropped connections"

    def handle(self, **options):
        import django_tasks_db.management.commands.db_worker as library

        # The library's handle() builds `Worker` from its module: build ours instead.
        library.Worker = ResilientWorker
        return super().handle(**options)
