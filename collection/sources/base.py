"""What a source is: it fetches one page of a category from a cursor and says what it cost.

A source also declares its pricing, so estimates and reservations are computed the same way
for every source, and raises typed errors so the engine can tell a retry from a dead end.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from enum import StrEnum
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo

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
    external_id: str  # the provider's stable id where it has one, else its username
    name: str = ""
    feedback_score: int | None = None
    feedback_percent: Decimal | None = None
    account_type: str = ""  # e.g. BUSINESS / INDIVIDUAL, where the provider says
    country: str = ""  # ISO 3166 alpha-2: where its listings are located


@dataclass(frozen=True)
class OfferItem:
    """One seller's offer of a product. `seller` may carry only the id: its details come on
    this page's `Page.sellers` or a later page's (a sighting without details keeps the stored
    ones)."""

    seller: SellerItem
    price: Decimal | None = None
    currency: str = ""
    condition: str = ""
    fulfilled_by_platform: bool | None = None  # Amazon's FBA; None where the provider does not say


@dataclass(frozen=True)
class ProductItem:
    """A product. Where a product has one seller (an eBay listing), `seller` and the product's
    own price and condition are its one offer; a product with many sellers (an Amazon ASIN)
    lists them in `offers`, and its `seller` is None."""

    external_id: str
    title: str
    seller: SellerItem | None
    price: Decimal | None = None
    currency: str = ""
    url: str = ""
    condition: str = ""
    buying_options: tuple[str, ...] = ()
    location_country: str = ""
    legacy_id: str = ""
    category_ids: tuple[str, ...] = ()
    offers: tuple[OfferItem, ...] = ()

    def all_offers(self) -> tuple[OfferItem, ...]:
        if self.offers or self.seller is None:
            return self.offers
        return (OfferItem(seller=self.seller, price=self.price, currency=self.currency, condition=self.condition),)


@dataclass(frozen=True)
class SourceWarning:
    """A warning the provider sent with a successful answer (e.g. eBay's warnings[])."""

    code: str
    message: str


@dataclass(frozen=True)
class CategoryInfo:
    """A category as the provider describes it (to add one by its id)."""

    external_id: str
    name: str
    parent: str = ""  # the parent's external id; "" for a top-level category
    is_leaf: bool = True
    item_count: int | None = None


@dataclass
class Page:
    """One fetched page: its items, where the next page starts (None: the category is done)
    and what the provider charged for it.

    `warnings` become events on the unit. `gone` (non-empty) says the provider no longer knows
    the category: the unit finishes with that reason. `unreachable` counts listings the
    provider reported but will not serve (a result set above its cap that cannot be split).
    Each becomes an event on the unit, recorded with the page. `sellers` are seller details
    the source looked up for this page or an earlier one's offers."""

    items: list[ProductItem]
    next_cursor: dict | None
    cost: Decimal
    total: int | None = None  # items the source reports for the whole category, when it does
    quota_used: int = 1
    warnings: list[SourceWarning] = field(default_factory=list)
    gone: str = ""
    unreachable: int = 0
    partitioned: str = ""  # the category (or a partition) was split on this page: how
    # Details of sellers looked up on this page (e.g. Keepa's /seller), beyond the items' own.
    sellers: list[SellerItem] = field(default_factory=list)


@dataclass(frozen=True)
class CategoryPlan:
    """How a source expects to collect one category: items, pages (calls) and cost; for a
    category above the provider's result cap, how many partitions and extra probe calls."""

    items: int
    pages: int
    cost: Decimal
    partitions: int = 1
    probe_calls: int = 0
    tokens: int = 0  # for a token-bucket source: the tokens it expects to spend


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


class Throttled(SourceError):
    """The provider asks us to slow down ("retry after N seconds"): neither a failure nor a
    pause. The page is tried again after `retry_after` seconds, and it counts as no attempt."""

    retryable = True

    def __init__(self, message: str, *, retry_after: float, **kwargs: Any):
        super().__init__(message, retry_after=max(0.0, float(retry_after)), **kwargs)


class SharedState:
    """Small state a source shares between every worker process (e.g. an access token). This
    default keeps it in the process; the services bind a database-backed one (one row per
    name, changed under a row lock) before a source is used."""

    def __init__(self):
        self._values: dict[str, dict] = {}
        self._lock = threading.Lock()

    def read(self, name: str) -> dict:
        with self._lock:
            return dict(self._values.get(name, {}))

    @contextmanager
    def update(self, name: str) -> Iterator[dict]:
        """Read-modify-write under a lock: the yielded dict is saved when the block ends
        without an error. Only one process at a time is inside for a name."""
        with self._lock:
            value = dict(self._values.get(name, {}))
            yield value
            self._values[name] = value


class QuotaKind(StrEnum):
    """How a provider limits calls, besides money."""

    NONE = "none"
    DAILY_CALLS = "daily_calls"  # `daily_call_quota` calls per provider day (`quota_timezone`)
    # A refilling bucket shared by all workers of a key: the source raises Throttled when the
    # bucket cannot pay for the next page.
    TOKEN_BUCKET = "token_bucket"  # noqa: S105 (a kind of quota, not a secret)


@dataclass
class BaseSource:
    """Everything the engine and the estimate ask of a source, with defaults.

    Subclass, set `key`, `platform`, `page_size` and `pricing`, and implement `fetch_page`.
    Override the rest only where the provider differs: nothing outside this class probes a
    source with getattr/hasattr. Sources import nothing from the services.

    Errors: raise RetryableSourceError (5xx, timeouts, malformed payloads),
    PermanentSourceError (the category fails), FatalSourceError (the run fails),
    QuotaExhausted (the run pauses with reason quota until `resets_at`) or Throttled (try
    again after N seconds; no attempt, no pause). `charged` on an error is what the provider
    billed anyway."""

    key: str = "base"
    platform: str = "base"
    label: str = ""
    page_size: int = 50
    pricing: Pricing = field(default_factory=Pricing)

    # Call quota. DAILY_CALLS: one call is reserved before each page (and each probe) on a
    # ledger shared by every worker, and the day is the provider's: it starts at midnight in
    # `quota_timezone`.
    quota_kind: QuotaKind = QuotaKind.NONE
    daily_call_quota: int = 0
    quota_timezone: str = "UTC"

    # Size probes: whether `probe` can tell a category's item count before a run (estimates).
    can_probe: bool = False
    # Whether `look_up_category` can describe a category from its id (to add one by id).
    can_look_up_categories: bool = False
    # State shared by every worker (see SharedState); bound by the services.
    state: SharedState = field(default_factory=SharedState, repr=False)

    def missing_configuration(self) -> str:
        """Why the source cannot run (e.g. "set KEEPA_API_KEY"), or "" when it is configured.
        Estimates and runs of an unconfigured source are refused with this message."""
        return ""

    def refill_rate(self) -> int | None:
        """For a token-bucket source: the tokens its key gains a minute (to say how long a run
        takes), from what the provider last reported; None when unknown or not such a source."""
        return None

    def bucket_status(self) -> dict | None:
        """For a token-bucket source: what the provider last reported of the key's bucket
        ({"tokens_left", "refill_rate"}), without a call; None when unknown or not such a source."""
        return None

    def fetch_page(self, *, category: Category, cursor: dict | None) -> Page:
        """One page of `category` starting at `cursor` (None: the beginning)."""
        raise NotImplementedError

    def probe(self, category: Category) -> int:
        """The category's item count, from one cheap call. Only called when `can_probe`."""
        raise NotImplementedError(f"source {self.key!r} cannot probe category sizes")

    def look_up_category(self, external_id: str) -> CategoryInfo | None:
        """The category with this id as the provider knows it (None: it does not); one call,
        costing `probe_cost()`. Only called when `can_look_up_categories`."""
        raise NotImplementedError(f"source {self.key!r} cannot look up categories")

    def probe_cost(self) -> Decimal:
        """What one probe costs (charged to the month's budget before the call)."""
        return self.pricing.cost_per_request

    def plan(self, *, category: Category, expected_items: int) -> CategoryPlan:
        """Pages and cost to collect `expected_items`; at least one request per category."""
        pages = max(1, math.ceil(expected_items / self.page_size))
        cost = self.pricing.cost_per_request * pages + self.pricing.cost_per_result * expected_items
        return CategoryPlan(items=expected_items, pages=pages, cost=cost)

    def max_page_cost(self, *, category: Category, cursor: dict | None) -> Decimal:
        """The most the next page can cost: what a worker reserves before fetching it."""
        return self.pricing.page_cost(self.page_size)

    def quota_day(self, now: datetime | None = None) -> date:
        """The provider's day that `now` falls in (its quota counts per day)."""
        return (now or datetime.now(UTC)).astimezone(ZoneInfo(self.quota_timezone)).date()

    def quota_resets_at(self, now: datetime | None = None) -> datetime:
        """When the provider's next day starts (an aware datetime, in UTC)."""
        zone = ZoneInfo(self.quota_timezone)
        midnight = datetime.combine(self.quota_day(now) + timedelta(days=1), time.min, tzinfo=zone)
        return midnight.astimezone(UTC)

    def describe(self) -> dict:
        missing = self.missing_configuration()
        return {
            "key": self.key,
            "label": self.label or self.key,
            "platform": self.platform,
            "configured": not missing,
            "configuration_error": missing,
            "quota_kind": self.quota_kind.value,
            "page_size": self.page_size,
            "pricing": {
                "model": self.pricing.model,
                "cost_per_request": str(self.pricing.cost_per_request),
                "cost_per_result": str(self.pricing.cost_per_result),
                "max_page_cost": str(self.pricing.page_cost(self.page_size)),
            },
        }
