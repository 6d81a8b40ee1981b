"""The offline demo source: deterministic, free of any network, the embedded default and the
benchmark workload.

A category holds `known_item_count` items (default 50). Item `i` of category `c` always has
the same id, title, price and seller, so a run's results are known in advance
(`expected_listing`). Sellers come from a fixed population with a skewed distribution, so the
same sellers turn up across pages and categories, as on a real marketplace.
"""

from __future__ import annotations

import hashlib
import time
from dataclasses import dataclass, field
from decimal import Decimal
from functools import lru_cache

from django.conf import settings

from .base import BaseSource, Page, Pricing, ProductItem, SellerItem

SELLER_POPULATION = 5000
DEFAULT_ITEMS = 50


def _hash(*parts: object) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


@lru_cache(maxsize=SELLER_POPULATION)
def _seller(n: int) -> SellerItem:
    return SellerItem(
        external_id=f"demo-seller-{n:05d}",
        name=f"Demo Seller {n}",
        feedback_score=_hash("score", n) % 50_000,
        feedback_percent=Decimal(900 + _hash("pct", n) % 101) / Decimal(10),
    )


def demo_seller(category_id: str, index: int) -> SellerItem:
    h = _hash("seller", category_id, index)
    # Square the uniform draw: low seller numbers are much more frequent (a few big sellers).
    u = (h % 1_000_003) / 1_000_003
    return _seller(int(u * u * SELLER_POPULATION))


def demo_item(category_id: str, index: int) -> ProductItem:
    cents = 99 + (_hash("seller", category_id, index) >> 24) % 50_000
    return ProductItem(
        external_id=f"demo-{category_id}-{index}",
        title=f"Demo item {index} of category {category_id}",
        seller=demo_seller(category_id, index),
        price=Decimal(cents) / 100,
        currency="USD",
        url=f"https://demo.invalid/item/{category_id}/{index}",
    )


def item_count(category) -> int:
    return category.known_item_count if category.known_item_count is not None else DEFAULT_ITEMS


def expected_listing(categories) -> tuple[set[str], set[str]]:
    """The product ids and seller ids a complete run over `categories` must store."""
    products, sellers = set(), set()
    for category in categories:
        for i in range(item_count(category)):
            item = demo_item(category.external_id, i)
            products.add(item.external_id)
            sellers.add(item.seller.external_id)
    return products, sellers


def _env_pricing() -> Pricing:
    return Pricing(
        cost_per_request=Decimal(str(settings.DEMO_COST_PER_REQUEST)),
        cost_per_result=Decimal(str(settings.DEMO_COST_PER_RESULT)),
        model="per_request + per_result",
    )


@dataclass
class DemoSource(BaseSource):
    key: str = "demo"
    platform: str = "demo"
    label: str = "Demo marketplace (offline)"
    page_size: int = field(default_factory=lambda: settings.DEMO_PAGE_SIZE)
    pricing: Pricing = field(default_factory=_env_pricing)
    latency_ms: int = field(default_factory=lambda: settings.DEMO_LATENCY_MS)

    def _remaining(self, category, cursor) -> tuple[int, int]:
        offset = int((cursor or {}).get("offset", 0))
        return offset, max(0, item_count(category) - offset)

    def max_page_cost(self, *, category, cursor):
        _, remaining = self._remaining(category, cursor)
        return self.pricing.page_cost(min(self.page_size, remaining))

    def fetch_page(self, *, category, cursor):
        offset, remaining = self._remaining(category, cursor)
        if self.latency_ms:
            time.sleep(self.latency_ms / 1000)
        count = min(self.page_size, remaining)
        items = [demo_item(category.external_id, offset + i) for i in range(count)]
        end = offset + count
        return Page(
            items=items,
            next_cursor={"offset": end} if end < item_count(category) else None,
            cost=self.pricing.page_cost(count),
            total=item_count(category),
        )
