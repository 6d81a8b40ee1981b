import pytest

from tests.fake_ebay import FakeEbay, Scenario
from tests.fake_keepa import FakeKeepa
from tests.fake_keepa import Scenario as KeepaScenario


@pytest.fixture
def fake(settings):
    """A fake eBay on a local port, with this process's settings and the workers' environment
    (`fake.env`) pointing at it."""
    scenario = Scenario()
    with FakeEbay(scenario) as server:
        env = {"EBAY_BASE_URL": server.url, "EBAY_CLIENT_ID": scenario.client_id,
               "EBAY_CLIENT_SECRET": scenario.client_secret, "EBAY_PAGE_SIZE": 200, "EBAY_TIMEOUT_SECONDS": 1,
               "EBAY_COST_PER_CALL": "0.01", "EBAY_DAILY_CALL_QUOTA": 5000, "COLLECTION_RETRY_BASE_SECONDS": 0.05}
        for key, value in env.items():
            setattr(settings, key, value)
        server.env = env
        yield server


@pytest.fixture
def keepa(settings):
    """A fake Keepa on a local port, with this process's settings and the workers' environment
    (`keepa.env`) pointing at it. Its "minute" is compressed to 0.3 s."""
    scenario = KeepaScenario(minute_seconds=0.3)
    with FakeKeepa(scenario) as server:
        env = {"KEEPA_API_URL": server.url, "KEEPA_API_KEY": scenario.key, "KEEPA_TOKEN_PRICE": "0.001",
               "KEEPA_PAGE_SIZE": 50, "KEEPA_OFFERS": 20, "KEEPA_SELLERS_PER_PAGE": 100, "KEEPA_TIMEOUT_SECONDS": 2,
               "COLLECTION_RETRY_BASE_SECONDS": 0.05}
        for key, value in env.items():
            setattr(settings, key, value)
        server.env = env
        yield server
