"""What a source is: it fetches one page of a category from a cursor and says what it cost.

A source also declares its pricing, so estimates and reservations are computed the same way
for every source, and raises typed errors so the engine can tell a retry from a dead end.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collection.models import Category


@dataclass(frozen=True)
class Pricing:
    cost_per_request: Decimal = Decimal("0")
    cost_per_result: Decimal = Decimal("0")
    model: str = "per_request"  # per_request | per_result | quota — shown to operators

    def page_cost(self, results: int) -> Decimal:
        return self.cost_per_request + self.cost_per_result * results


@dataclass(frozen=True)
class SellerItem:
    external_id: str
    name: str = ""
    feedback_score: int | None = None
    feedback_percent: Decimal | None = None


@dataclass(frozen=True)
class ProductItem:
    external_id: str
    title: str
    seller: SellerItem | None
    price: Decimal | None = None
    currency: str = ""
    url: str = ""


@dataclass
class Page:
    """One fetched page: its items, where the next page starts (None: the category is done)
    and what the provider charged for it."""

    items: list[ProductItem]
    next_cursor: dict | None
    cost: Decimal
    total: int | None = None  # items the source reports for the category, when it does
    quota_used: int = 1


@dataclass(frozen=True)
class CategoryPlan:
    """How a source expects to collect one category: items, pages and cost."""

    items: int
    pages: int
    cost: Decimal


class SourceError(Exception):
    """A page could not be fetched. `charged` is what the provider charged anyway."""

    retryable = False

    def __init__(self, message: str, *, charged: Decimal = Decimal("0"), retry_after: float | None = None):
        super().__init__(message)
        self.charged = charged
        self.retry_after = retry_after


class RetryableSourceError(SourceError):
    """Worth trying again later: 429 with retry-after, 5xx, timeouts, malformed payloads."""

    retryable = True


class PermanentSourceError(SourceError):
    """Trying again will not help (bad request): the category fails."""


class FatalSourceError(PermanentSourceError):
    """Nothing in this run can succeed (e.g. bad credentials): the run fails."""


class QuotaExhausted(SourceError):
    """The source's call quota is used up until `resets_at`: the run pauses with reason quota."""

    def __init__(self, message: str, *, resets_at: datetime | None = None, **kwargs: Any):
        super().__init__(message, **kwargs)
        self.resets_at = resets_at


@dataclass
class BaseSource:
    """Subclass and set `key`, `platform`, `page_size`, `pricing`; implement `fetch_page`."""

    key: str = "base"
    platform: str = "base"
    label: str = ""
    page_size: int = 50
    pricing: Pricing = field(default_factory=Pricing)

    def fetch_page(self, *, category: Category, cursor: dict | None) -> Page:
        raise NotImplementedError

    def plan(self, *, category: Category, expected_items: int) -> CategoryPlan:
        """Pages and cost to collect `expected_items`; at least one request per category."""
        pages = max(1, math.ceil(expected_items / self.page_size))
        cost = self.pricing.cost_per_request * pages + self.pricing.cost_per_result * expected_items
        return CategoryPlan(items=expected_items, pages=pages, cost=cost)

    def max_page_cost(self, *, category: Category, cursor: dict | None) -> Decimal:
        """The most the next page can cost: what a worker reserves before fetching it."""
        return self.pricing.page_cost(self.page_size)

    def describe(self) -> dict:
        return {
            "key": self.key,
            "label": self.label or self.key,
            "platform": self.platform,
            "page_size": self.page_size,
            "pricing": {
                "model": self.pricing.model,
                "cost_per_request": str(self.pricing.cost_per_request),
                "cost_per_result": str(self.pricing.cost_per_result),
                "max_page_cost": str(self.pricing.page_cost(self.page_size)),
            },
        }
