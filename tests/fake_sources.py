"""A demo source with scripted faults, for engine tests (also usable by worker processes via
COLLECTION_EXTRA_SOURCES=flaky=tests.fake_sources.FlakySource).

FLAKY_RULES (JSON, env or settings) maps a category external id to the faults its fetches
raise in order, e.g. {"demo-1": ["retryable", "retryable"]}: the first two fetches of demo-1
fail, later ones succeed. Counters live in files under FLAKY_DIR so every process shares them.
"""

import json
import os
from dataclasses import dataclass
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

from django.utils import timezone

from collection.sources import (
    FatalSourceError,
    PermanentSourceError,
    QuotaExhausted,
    RetryableSourceError,
)
from collection.sources.demo import DemoSource

FAULTS = {
    "retryable": lambda: RetryableSourceError("HTTP 503 from the marketplace", retry_after=0.1),
    "charged": lambda: RetryableSourceError("timeout after the provider billed", charged=Decimal("0.005")),
    "permanent": lambda: PermanentSourceError("HTTP 400: category does not exist"),
    "fatal": lambda: FatalSourceError("HTTP 401: check credentials"),
    "bug": lambda: ValueError("an unexpected error in the source"),
    "quota": lambda: QuotaExhausted("daily call quota used up", resets_at=timezone.now() + timedelta(hours=3)),
    # an upstream message that echoes a credential and goes on for pages
    "leaky": lambda: RetryableSourceError(
        "HTTP 500 from upstream: request had Authorization: Bearer sk_live_0123456789abcdefghijklmnopqrstuv "
        "and ?api_key=KEY-9f8e7d6c5b4a " + "trace " * 2000),
}


@dataclass
class FlakySource(DemoSource):
    key: str = "flaky"
    label: str = "Demo with scripted faults"

    def fetch_page(self, *, category, cursor):
        rules = json.loads(os.environ.get("FLAKY_RULES", "{}"))
        script = rules.get(category.external_id, [])
        if script:
            counter = Path(os.environ["FLAKY_DIR"]) / f"{category.external_id}.count"
            fd = os.open(counter, os.O_WRONLY | os.O_APPEND | os.O_CREAT)
            try:
                os.write(fd, b"x")
            finally:
                os.close(fd)
            n = counter.stat().st_size - 1
            if n < len(script):
                raise FAULTS[script[n]]()
        return super().fetch_page(category=category, cursor=cursor)


@dataclass
class LoggedDemoSource(DemoSource):
    """The demo source, noting each fetched page in the file FETCH_LOG (one line: category,
    offset, pid), so tests can count pages fetched twice across worker processes. Installed
    in workers as the `demo` source: COLLECTION_EXTRA_SOURCES=demo=tests.fake_sources.LoggedDemoSource."""

    def fetch_page(self, *, category, cursor):
        page = super().fetch_page(category=category, cursor=cursor)
        offset = int((cursor or {}).get("offset", 0))
        with open(os.environ["FETCH_LOG"], "a") as log:
            log.write(f"{category.external_id} {offset} {os.getpid()}\n")
        return page


def logged_demo_env(log) -> dict:
    """Worker environment that logs every demo page fetched to `log`."""
    return {"COLLECTION_EXTRA_SOURCES": "demo=tests.fake_sources.LoggedDemoSource", "FETCH_LOG": log}
