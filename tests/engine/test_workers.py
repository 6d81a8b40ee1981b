"""The engine with real `manage.py db_worker` processes against the test database."""

import time
from decimal import Decimal

import pytest

from collection.models import (
    BudgetPeriod,
    CollectionRun,
    EventKind,
    PauseReason,
    Product,
    ProductSearch,
    ProductSearchQueue,
    RunEvent,
    RunStatus,
)
from collection.services import runs
from tests.conftest import Workers, make_categories, postgres_only, set_settings, wait_for
from tests.engine.helpers import (
    PAGE,
    assert_complete_listing,
    assert_ledgers_settled,
    fetches,
    refetched,
    start_run,
    wait_idle,
    wait_status,
)
from tests.fake_sources import logged_demo_env

pytestmark = [pytest.mark.django_db(transaction=True), pytest.mark.workers]



def pool(tmp_path, **env) -> Workers:
    return Workers(tmp_path, **{**logged_demo_env(tmp_path / "fetches.log"), "COLLECTION_SLICE_SECONDS": 1, **PAGE, **env})


def test_a_run_completes_with_exactly_the_items_and_sellers_the_source_defines(tmp_path, demo_pricing):
    set_settings(concurrency_per_run=3)
    cats = make_categories(5, items=45)  # 3 pages each: 20 + 20 + 5
    workers = pool(tmp_path)
    try:
        workers.start(2)
        run = wait_status(start_run(cats), RunStatus.COMPLETED)
        # and the workers index what they stored for search, within seconds (COLLECTION_SEARCH_INDEX_SECONDS)
        wait_for(lambda: ProductSearch.objects.count() == 225 and not ProductSearchQueue.objects.exists(),
                 timeout=30, message="every product indexed for search")
    finally:
        workers.stop()
    assert (run.pages_done, run.items_done, run.units_done) == (15, 225, 5)
    assert set(ProductSearch.objects.values_list("external_id", flat=True)) == set(
        Product.objects.values_list("external_id", flat=True))
    assert_complete_listing(run, cats)
    assert run.spent == run.estimated_cost == Decimal("5") * (3 * Decimal("0.01") + 45 * Decimal("0.001"))
    assert_ledgers_settled(run)
    assert refetched(tmp_path / "fetches.log") == {}
    assert RunEvent.objects.filter(run=run, kind=EventKind.COMPLETED).count() == 1


def test_pause_stops_fetching_within_one_page_and_resume_refetches_nothing(tmp_path, demo_pricing):
    set_settings(concurrency_per_run=2)
    cats = make_categories(3, items=200)  # 30 pages
    log = tmp_path / "fetches.log"
    workers = pool(tmp_path, DEMO_LATENCY_MS=60)
    try:
        workers.start(2)
        run = start_run(cats)
        wait_status_pages(run, at_least=4)
        runs.run_pause(run_id=run.pk)
        paused_at = len(fetches(log))
        wait_idle(run)
        after_pause = len(fetches(log)) - paused_at
        assert after_pause <= 2  # only the pages in flight (one per unit in flight) finish
        time.sleep(0.5)
        assert len(fetches(log)) == paused_at + after_pause  # and nothing more is fetched
        run.refresh_from_db()
        assert run.status == RunStatus.PAUSED and run.pages_done < 30 and run.reserved == 0

        runs.run_resume(run_id=run.pk)
        run = wait_status(run, RunStatus.COMPLETED)
    finally:
        workers.stop()
    assert run.pages_done == 30 and run.items_done == 600
    assert_complete_listing(run, cats)
    assert refetched(log) == {}
    assert_ledgers_settled(run)


def test_cancel_mid_run_stops_and_releases_every_reservation(tmp_path, demo_pricing):
    set_settings(concurrency_per_run=2)
    cats = make_categories(2, items=200)
    log = tmp_path / "fetches.log"
    workers = pool(tmp_path, DEMO_LATENCY_MS=60)
    try:
        workers.start(2)
        run = start_run(cats)
        wait_status_pages(run, at_least=3)
        runs.run_cancel(run_id=run.pk)
        wait_idle(run)
        stopped_at = len(fetches(log))
        time.sleep(0.5)
        assert len(fetches(log)) == stopped_at
    finally:
        workers.stop()
    run.refresh_from_db()
    assert run.status == RunStatus.CANCELLED and run.pages_done < 20
    assert_ledgers_settled(run)


def wait_status_pages(run, *, at_least: int, timeout: float = 60):
    from tests.conftest import wait_for

    wait_for(lambda: CollectionRun.objects.get(pk=run.pk).pages_done >= at_least, timeout=timeout,
             message=f"{at_least} pages")


@postgres_only
@pytest.mark.parametrize("repeat", range(3))
def test_four_workers_spend_at_most_the_cap_fetch_k_pages_and_pause_for_budget(tmp_path, demo_pricing, repeat):
    k = 7 + repeat
    page_cost = Decimal("0.01") + 20 * Decimal("0.001")
    set_settings(concurrency_per_run=4, monthly_budget_cap=Decimal("1000"))
    cats = make_categories(4, items=100)  # 20 full pages, each costing exactly page_cost
    run = runs.run_create(source="demo", category_ids=[c.pk for c in cats])
    runs.run_update_budget_cap(run_id=run.pk, budget_cap=page_cost * k)
    workers = pool(tmp_path, DEMO_LATENCY_MS=20)
    try:
        workers.start(4)
        runs.run_start(run_id=run.pk)
        run = wait_status(run, RunStatus.PAUSED)
        wait_idle(run)
    finally:
        workers.stop()
    run.refresh_from_db()
    assert run.pause_reason == PauseReason.BUDGET
    assert run.spent == page_cost * k == run.budget_cap and run.reserved == 0
    assert run.pages_done == k and len(fetches(tmp_path / "fetches.log")) == k
    assert BudgetPeriod.objects.get().spent == run.spent


def test_runs_share_workers_fairly(tmp_path, demo_pricing):
    """One worker, a long run started first: a short run started after it is not starved."""
    set_settings(concurrency_per_run=1)
    long_cats = make_categories(1, items=2000)  # 100 pages
    short_cats = make_categories(1, items=60)  # 3 pages
    workers = pool(tmp_path, DEMO_LATENCY_MS=20, COLLECTION_SLICE_SECONDS=0.2)
    try:
        workers.start(1)
        long_run = start_run(long_cats)
        wait_status_pages(long_run, at_least=3)
        short_run = wait_status(start_run(short_cats), RunStatus.COMPLETED)
        long_run.refresh_from_db()
        assert long_run.status == RunStatus.RUNNING and long_run.pages_done < 60
        assert short_run.pages_done == 3
    finally:
        workers.stop()


def test_at_most_concurrency_per_run_units_are_in_flight(tmp_path, demo_pricing):
    from collection.models import RunUnit, UnitStatus

    set_settings(concurrency_per_run=2)
    cats = make_categories(6, items=60)
    workers = pool(tmp_path, DEMO_LATENCY_MS=20, COLLECTION_SLICE_SECONDS=0.1)
    seen = set()
    try:
        workers.start(4)
        run = start_run(cats)
        while CollectionRun.objects.get(pk=run.pk).status == RunStatus.RUNNING:
            in_flight = RunUnit.objects.filter(run=run, status__in=[UnitStatus.QUEUED, UnitStatus.RUNNING]).count()
            seen.add(in_flight)
            time.sleep(0.01)
    finally:
        workers.stop()
    assert max(seen) == 2
    assert CollectionRun.objects.get(pk=run.pk).status == RunStatus.COMPLETED
