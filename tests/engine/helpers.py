from collections import Counter
from decimal import Decimal
from pathlib import Path

from django_tasks_db.management.commands.db_worker import Worker

from collection.models import BudgetPeriod, CollectionRun, Product, RunStatus, RunUnit, Seller, UnitStatus
from collection.services import runs
from collection.sources.demo import expected_listing
from tests.conftest import wait_for
from tests.factories import make_categories, make_run

PAGE = {"DEMO_PAGE_SIZE": 20, "DEMO_COST_PER_REQUEST": "0.01", "DEMO_COST_PER_RESULT": "0.001"}


def start_run(categories, *, source="demo", cap=None) -> CollectionRun:
    run = make_run(categories=categories, source=source, budget_cap=cap)
    runs.run_start(run_id=run.pk)
    return run


def status_of(run) -> str:
    return CollectionRun.objects.values_list("status", flat=True).get(pk=run.pk)


def wait_status(run, *statuses, timeout=90) -> CollectionRun:
    wait_for(lambda: status_of(run) in statuses, timeout=timeout, message=f"run {run.pk} to be {statuses}")
    return CollectionRun.objects.get(pk=run.pk)


def wait_idle(run, timeout=30) -> None:
    """Until no worker holds a lease on any of the run's units."""
    wait_for(lambda: not RunUnit.objects.filter(run=run, status=UnitStatus.RUNNING).exists(),
             timeout=timeout, message="workers to let go of the run")


def fetches(log: Path) -> list[tuple[str, int]]:
    if not log.exists():
        return []
    return [(cat, int(offset)) for cat, offset, _pid in (line.split() for line in log.read_text().splitlines())]


def refetched(log: Path) -> dict[tuple[str, int], int]:
    return {page: n - 1 for page, n in Counter(fetches(log)).items() if n > 1}


def assert_complete_listing(run, categories) -> None:
    """The stored sellers and products are exactly what the demo source defines."""
    products, sellers = expected_listing(categories)
    stored_products = list(Product.objects.filter(platform="demo").values_list("external_id", flat=True))
    stored_sellers = list(Seller.objects.filter(platform="demo").values_list("external_id", flat=True))
    assert len(stored_products) == len(set(stored_products)) and set(stored_products) == products
    assert len(stored_sellers) == len(set(stored_sellers)) and set(stored_sellers) == sellers
    run.refresh_from_db()
    assert run.items_done >= len(products)
    assert run.sellers_new == len(sellers)


def assert_ledgers_settled(run) -> None:
    run.refresh_from_db()
    assert run.reserved == 0
    assert sum(RunUnit.objects.filter(run=run).values_list("reserved", flat=True), Decimal(0)) == 0
    assert all(p.reserved == 0 for p in BudgetPeriod.objects.all())
    assert run.spent <= run.budget_cap


def drain(run, *, until=(RunStatus.COMPLETED, RunStatus.FAILED, RunStatus.CANCELLED, RunStatus.PAUSED), timeout=60):
    """Run the queued tasks in this process (django-tasks-db's own worker loop) until the run
    reaches one of `until`. Deferred retries are waited for."""

    def step():
        Worker(queue_names=["default"], interval=0, batch=True, backend_name="default", startup_delay=False,
               max_tasks=None, worker_id="test-drain", excluded_queue_names=[]).run()
        return status_of(run) in until

    wait_for(step, timeout=timeout, interval=0.05, message=f"run {run.pk} to reach {until}")
    return CollectionRun.objects.get(pk=run.pk)


__all__ = ["make_categories"]
