"""Helpers for the source tests: eBay categories the fake serves, a run with real workers, and what
a complete eBay collection stores."""

from collection.models import Category, Product, RunStatus, Seller
from tests.conftest import Workers
from tests.engine.helpers import start_run, wait_idle, wait_status
from tests.fake_ebay import Catalog, Scenario, expected


def ebay_categories(scenario: Scenario, totals: dict[str, int] | None = None, *,
                    catalogs: list[Catalog] = ()) -> list[Category]:
    """Categories the fake serves: simple ones by size, rich ones as catalogs."""
    scenario.totals.update(totals or {})
    scenario.catalogs.update({c.category: c for c in catalogs})
    ids = [*(totals or {}), *(c.category for c in catalogs)]
    return [Category.objects.create(platform="ebay", external_id=cid, name=f"eBay {cid}") for cid in ids]


def run_with_worker(fake, tmp_path, cats, *, until=(RunStatus.COMPLETED,), cap=None, workers: int = 1,
                    source: str = "ebay", **env):
    """Run `cats` on real workers whose environment points at the fake; the run and the logs."""
    pool = Workers(tmp_path, **{**fake.env, **env})
    try:
        pool.start(workers)
        run = start_run(cats, source=source, cap=cap)
        run = wait_status(run, *until, timeout=180)
        wait_idle(run)
    finally:
        pool.stop()
    run.refresh_from_db()
    return run, pool.logs()


def stored_listing() -> tuple[list[str], list[str]]:
    return (list(Product.objects.filter(platform="ebay").values_list("external_id", flat=True)),
            list(Seller.objects.filter(platform="ebay").values_list("external_id", flat=True)))


def assert_stored_exactly(scenario, categories, **options):
    products, sellers = set(), set()
    for cid in categories:
        p, s = expected(scenario, cid, **options)
        products |= p
        sellers |= s
    stored, stored_sellers = stored_listing()
    assert len(stored) == len(set(stored)) and set(stored) == products
    assert len(stored_sellers) == len(set(stored_sellers)) and set(stored_sellers) == sellers
