"""Upstream text is untrusted, and a page slower than the lease is fetched and paid once."""

import json

import pytest

from collection.models import CollectionRun, EventKind, RunEvent, RunStatus, RunUnit
from tests.conftest import Workers, set_settings
from tests.engine.helpers import PAGE, assert_ledgers_settled, fetches, refetched, start_run, wait_status
from tests.factories import make_categories
from tests.fake_sources import logged_demo_env

pytestmark = pytest.mark.django_db(transaction=True)


def test_a_providers_error_text_is_length_limited_and_scrubbed_of_credentials(settings, tmp_path, monkeypatch):
    from tests.engine.helpers import drain

    settings.COLLECTION_SOURCES = {**settings.COLLECTION_SOURCES, "flaky": "tests.fake_sources.FlakySource"}
    settings.COLLECTION_RETRY_BASE_SECONDS = 0.05
    monkeypatch.setenv("FLAKY_DIR", str(tmp_path))
    monkeypatch.setenv("FLAKY_RULES", json.dumps({"demo-1": ["leaky"]}))
    run = drain(start_run(make_categories(1, items=20), source="flaky"))
    assert run.status == RunStatus.COMPLETED
    retry = RunEvent.objects.get(run=run, kind=EventKind.UNIT_RETRY)
    stored = json.dumps(retry.detail) + RunUnit.objects.get(run=run).last_error + run.error
    assert "sk_live_0123456789" not in stored and "KEY-9f8e7d6c5b4a" not in stored
    assert "[redacted]" in retry.detail["error"] and len(retry.detail["error"]) <= 500
    assert retry.detail["error"].startswith("HTTP 500 from upstream")


@pytest.mark.workers
def test_a_page_slower_than_the_lease_is_fetched_and_paid_once(tmp_path, demo_pricing):
    set_settings(lease_seconds=1)
    cats = make_categories(1, items=60)  # 3 pages of 20, each taking 2.5 lease lengths
    log = tmp_path / "fetches.log"
    workers = Workers(tmp_path, **logged_demo_env(log), DEMO_LATENCY_MS=2500, COLLECTION_SWEEP_SECONDS=0.3, **PAGE)
    try:
        workers.start(2)
        run = wait_status(start_run(cats), RunStatus.COMPLETED, timeout=60)
    finally:
        workers.stop()
    assert len(fetches(log)) == 3 and refetched(log) == {}
    assert not RunEvent.objects.filter(run=run, kind=EventKind.RECOVERED).exists()
    run = CollectionRun.objects.get(pk=run.pk)
    assert run.spent == run.estimated_cost  # three pages, each paid once
    assert_ledgers_settled(run)
