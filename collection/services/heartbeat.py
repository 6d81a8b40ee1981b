"""Lease renewal for pages in flight (see LeaseHeartbeat)."""

from __future__ import annotations

import logging
import threading
import time
from contextlib import contextmanager
from datetime import timedelta

from django.db import DatabaseError, connection
from django.utils import timezone

from collection.models import RunUnit

logger = logging.getLogger("collection.engine")


class LeaseHeartbeat:
    """Keeps the lease of a page in flight alive, so a page slower than the lease is not taken
    over by recovery and fetched (and paid for) again. One daemon thread per worker process
    renews, a few times a lease, the lease of every unit whose page has been in flight for a
    third of it; a page costs two dict operations, not a thread. A page in flight for more
    than MAX_LEASES leases (a server trickling bytes forever) is let go: its lease expires and
    recovery takes the unit over."""

    TICK_SECONDS = 0.25
    MAX_LEASES = 10

    def __init__(self):
        # unit -> (owner, lease seconds, last renewed, started)
        self._inflight: dict[int, tuple[str, int, float, float]] = {}
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    @contextmanager
    def page(self, *, unit_id: int, owner: str, lease_seconds: int):
        with self._lock:
            self._inflight[unit_id] = (owner, lease_seconds, time.monotonic(), time.monotonic())
            if self._thread is None:
                self._thread = threading.Thread(target=self._beat, name="collection-lease-heartbeat", daemon=True)
                self._thread.start()
        try:
            yield
        finally:
            with self._lock:
                self._inflight.pop(unit_id, None)

    def _beat(self) -> None:
        while True:
            time.sleep(self.TICK_SECONDS)
            now = time.monotonic()
            with self._lock:
                due = [(unit, owner, lease, started) for unit, (owner, lease, renewed, started) in self._inflight.items()
                       if now - renewed >= lease / 3 and now - started < lease * self.MAX_LEASES]
                for unit, owner, lease, started in due:
                    self._inflight[unit] = (owner, lease, now, started)
            if not due:
                continue
            try:
                for unit, owner, lease, _ in due:
                    RunUnit.objects.filter(pk=unit, lease_owner=owner).update(
                        lease_expires_at=timezone.now() + timedelta(seconds=lease))
            except DatabaseError as error:
                logger.warning("lease heartbeat: %s", error)
            finally:
                connection.close()  # this thread's connection: back to the pool between beats


heartbeat = LeaseHeartbeat()
