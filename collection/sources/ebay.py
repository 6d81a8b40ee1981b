"""eBay Browse API: sellers discovered through item searches, one leaf category at a time.

What eBay documents, and what this source does about it (Browse API v1,
https://developer.ebay.com/api-docs/buy/browse/resources/item_summary/methods/search):

* `limit` is 1-200 and `offset` 0-9,999, and "the value of offset must be either zero or a
  multiple of the limit value" (errorId 12515); one result set serves at most 10,000 items
  (12029). So `limit` stays EBAY_PAGE_SIZE on every call and offsets step by it.
* `total` "is just an indicator ... It is strongly recommended that total not be used in
  pagination": pages follow `next` until it is absent (and never past the cap).
* "Only listings where FIXED_PRICE (Buy It Now) is a buying option are returned by default":
  every search asks for `buyingOptions:{…}` (EBAY_BUYING_OPTIONS, default FIXED_PRICE and
  AUCTION). An auction's price is its `currentBidPrice`.
* "If a top-level (L1) category is specified, you must also include a q query parameter"
  (409, errorId 12013): runs expand a parent category into its leaf categories
  (services/estimate.py), so a top-level category is never searched.
* A 200 may carry `warnings[]` (same shape as errors); errorId 12009 ("The 'category_ids'
  query parameter is invalid") means eBay no longer knows the category: the unit finishes
  with that reason. Other warnings become events.
* Past 10,000: a category (or partition) whose first page reports SPLIT_AT listings or more is
  split — by price band (`price:[a..b],priceCurrency:…`, bisected adaptively), then by buying
  option, then by condition — and every partition is walked. The plan of partitions is the
  unit's cursor, so a pause, a resume or a crash continues inside the right partition. A
  partition that no filter splits further is walked to the cap and the rest is counted as
  unreachable (an event and the run's summary). A probing first page is a normal call: it
  is reserved, counted against the quota and its items are stored.
* The Browse API allows 5,000 calls a day (https://developer.ebay.com/develop/api/buy/api_call_limits),
  on eBay's day: it starts at midnight US Pacific time, so the quota is reserved per
  America/Los_Angeles day. A 429 with errorId 2001 means the day's calls are used up.
* The application token (client credentials grant,
  https://developer.ebay.com/api-docs/static/oauth-client-credentials-grant.html) may be
  minted about 1,000 times a day per application: one token is kept in the shared state
  (the database) for every worker, refreshed shortly before it expires by one process under a
  row lock, and once more when a call answers 401. The client secret is never stored, logged
  or shown: errors and logs name the client id only.

Configuration comes from the environment only: EBAY_CLIENT_ID, EBAY_CLIENT_SECRET, EBAY_ENV
(sandbox | production), EBAY_MARKETPLACE_ID (EBAY_US), EBAY_BASE_URL (overrides the
environment's base URL, e.g. a local fake in tests), EBAY_PAGE_SIZE (1-200),
EBAY_COST_PER_CALL, EBAY_DAILY_CALL_QUOTA (5000), EBAY_TIMEOUT_SECONDS (10),
EBAY_BUYING_OPTIONS (FIXED_PRICE,AUCTION), EBAY_PRICE_CURRENCY (USD).
"""

from __future__ import annotations

import base64
import logging
import math
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from urllib.parse import parse_qs, urlparse

import httpx
from django.conf import settings

from .base import (
    BaseSource,
    CategoryPlan,
    FatalSourceError,
    Page,
    PermanentSourceError,
    Pricing,
    ProductItem,
    QuotaExhausted,
    QuotaKind,
    RetryableSourceError,
    SellerItem,
    SourceWarning,
    Throttled,
)

logger = logging.getLogger("collection.sources.ebay")

BASE_URLS = {"production": "https://api.ebay.com", "sandbox": "https://api.sandbox.ebay.com"}
SCOPE = "https://api.ebay.com/oauth/api_scope"
RESULT_CAP = 10_000  # eBay serves at most 10,000 items of one result set
# `total` is only an indicator (item groups count once but page as their variations), so a
# band is split before its total reaches the cap.
SPLIT_AT = 9_000
FIRST_SPLIT_CENTS = 10_000  # an open price band [lo..] is split at max(2·lo, lo + 100.00)
CONDITIONS = ("NEW", "USED", "UNSPECIFIED")  # the `conditions` filter's values
QUOTA_ERROR_ID = 2001
CATEGORY_GONE_IDS = {12009}
TOKEN_REFRESH_MARGIN = 300  # seconds before expiry when a token is replaced


def _base_url() -> str:
    return settings.EBAY_BASE_URL or BASE_URLS.get(settings.EBAY_ENV, BASE_URLS["sandbox"])


def _decimal(value) -> Decimal | None:
    try:
        return Decimal(str(value)) if value not in (None, "") else None
    except InvalidOperation:
        return None


def _ebay_message(response: httpx.Response) -> tuple[str, int | None]:
    """eBay's own message and errorId from an error body, if it has one."""
    try:
        errors = response.json().get("errors") or []
        first = errors[0]
        return str(first.get("longMessage") or first.get("message") or "")[:500], first.get("errorId")
    except (ValueError, AttributeError, IndexError, TypeError):
        return response.text[:200], None


def _cents(value: int) -> str:
    return f"{value // 100}.{value % 100:02d}"


def describe_band(band: dict) -> str:
    """A partition in the operator's words, e.g. "price 0.00-100.00, AUCTION, NEW"."""
    parts = []
    if "lo" in band:
        hi = band.get("hi")
        parts.append(f"price {_cents(band['lo'])}-{_cents(hi) if hi is not None else '…'}")
    parts += [band[key] for key in ("bo", "cond") if band.get(key)]
    return ", ".join(parts) or "the whole category"


def _next_offset(body: dict, offset: int, limit: int) -> int | None:
    """The offset of the page `next` points at; None when eBay says there is no next page."""
    link = body.get("next")
    if not link:
        return None
    values = parse_qs(urlparse(str(link)).query).get("offset")
    try:
        following = int(values[0]) if values else offset + limit
    except ValueError:
        following = offset + limit
    return following if following > offset else None


@dataclass
class EbaySource(BaseSource):
    key: str = "ebay"
    platform: str = "ebay"
    label: str = "eBay Browse API"
    page_size: int = field(default_factory=lambda: settings.EBAY_PAGE_SIZE)
    pricing: Pricing = field(default_factory=lambda: Pricing(
        cost_per_request=Decimal(str(settings.EBAY_COST_PER_CALL)), model="per_request + daily call quota"))
    quota_kind: QuotaKind = QuotaKind.DAILY_CALLS
    daily_call_quota: int = field(default_factory=lambda: settings.EBAY_DAILY_CALL_QUOTA)
    quota_timezone: str = "America/Los_Angeles"
    can_probe: bool = True
    buying_options: tuple[str, ...] = field(default_factory=lambda: tuple(settings.EBAY_BUYING_OPTIONS))

    def __post_init__(self):
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=_base_url(), timeout=settings.EBAY_TIMEOUT_SECONDS)

    def describe(self) -> dict:
        return {**super().describe(), "daily_call_quota": self.daily_call_quota,
                "environment": settings.EBAY_ENV, "marketplace": settings.EBAY_MARKETPLACE_ID}

    # --- token -----------------------------------------------------------------------------

    def _mint(self) -> tuple[str, int]:
        client_id, secret = settings.EBAY_CLIENT_ID, settings.EBAY_CLIENT_SECRET
        if not client_id or not secret:
            raise FatalSourceError("eBay is not configured: set EBAY_CLIENT_ID and EBAY_CLIENT_SECRET")
        basic = base64.b64encode(f"{client_id}:{secret}".encode()).decode()
        try:
            response = self._client.post(
                "/identity/v1/oauth2/token", data={"grant_type": "client_credentials", "scope": SCOPE},
                headers={"Authorization": f"Basic {basic}"},
            )
        except httpx.HTTPError as error:
            raise RetryableSourceError(f"eBay token request failed: {type(error).__name__}") from None
        if response.status_code in (400, 401):
            raise FatalSourceError(f"eBay refused the credentials of client {client_id} "
                                   f"(HTTP {response.status_code}): check EBAY credentials")
        if response.status_code != 200:
            raise RetryableSourceError(f"eBay token request answered HTTP {response.status_code}")
        try:
            body = response.json()
            token, expires_in = str(body["access_token"]), int(body.get("expires_in", 7200))
        except (ValueError, KeyError, TypeError):
            raise RetryableSourceError("eBay token response was malformed") from None
        logger.info("minted an eBay application token for client %s (expires in %ss)", client_id, expires_in)
        return token, expires_in

    def _usable(self, saved: dict, rejected: str | None) -> bool:
        return bool(saved.get("token")) and saved["token"] != rejected and \
            float(saved.get("expires_at", 0)) - TOKEN_REFRESH_MARGIN > time.time()

    def _bearer(self, *, rejected: str | None = None) -> str:
        """The application token every worker shares; `rejected` is one eBay just refused."""
        with self._lock:
            if rejected is None and self._token and self._token_expires - TOKEN_REFRESH_MARGIN > time.time():
                return self._token
            name = f"ebay-token:{settings.EBAY_ENV}:{settings.EBAY_CLIENT_ID}"
            saved = self.state.read(name)
            if not self._usable(saved, rejected):
                with self.state.update(name) as saved:  # one process mints; the others wait and reuse
                    if not self._usable(saved, rejected):
                        token, expires_in = self._mint()
                        saved.update(token=token, expires_at=time.time() + expires_in)
            self._token, self._token_expires = saved["token"], float(saved["expires_at"])
            return self._token

    # --- search ----------------------------------------------------------------------------

    def _filter(self, band: dict) -> str:
        options = [band["bo"]] if band.get("bo") else list(self.buying_options)
        parts = [f"buyingOptions:{{{'|'.join(options)}}}"]
        if "lo" in band:
            hi = band.get("hi")
            parts.append(f"price:[{_cents(band['lo'])}..{_cents(hi) if hi is not None else ''}]")
            parts.append(f"priceCurrency:{settings.EBAY_PRICE_CURRENCY}")
        if band.get("cond"):
            parts.append(f"conditions:{{{band['cond']}}}")
        return ",".join(parts)

    def _search(self, category, *, band: dict, offset: int, limit: int) -> tuple[dict, int]:
        """GET item_summary/search (on 401 with a fresh token once more): the JSON body and how
        many calls it took (each counts against the daily quota)."""
        params = {"category_ids": category.external_id, "limit": limit, "offset": offset, "filter": self._filter(band)}
        rejected, calls = None, 0
        for _ in range(2):
            token = self._bearer(rejected=rejected)
            calls += 1
            headers = {"Authorization": f"Bearer {token}", "X-EBAY-C-MARKETPLACE-ID": settings.EBAY_MARKETPLACE_ID}
            try:
                response = self._client.get("/buy/browse/v1/item_summary/search", params=params, headers=headers)
            except httpx.TimeoutException:
                raise RetryableSourceError("eBay did not answer in time", charged=self.pricing.cost_per_request)
            except httpx.HTTPError as error:
                raise RetryableSourceError(f"eBay could not be reached: {type(error).__name__}") from None
            if response.status_code != 401:
                break
            rejected = token
        else:
            raise FatalSourceError(f"eBay answered 401 after a fresh token for client {settings.EBAY_CLIENT_ID}: "
                                   "check EBAY credentials")
        if response.status_code != 200:
            self._raise_for(response)
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise TypeError
            return body, calls
        except (ValueError, TypeError):
            raise RetryableSourceError("eBay answered with a malformed payload",
                                       charged=self.pricing.cost_per_request) from None

    def _raise_for(self, response: httpx.Response) -> None:
        status = response.status_code
        message, error_id = _ebay_message(response)
        charged = self.pricing.cost_per_request
        if status == 429:
            retry_after = _decimal(response.headers.get("Retry-After"))
            if error_id == QUOTA_ERROR_ID:
                raise QuotaExhausted(f"eBay call quota exceeded (errorId {QUOTA_ERROR_ID}): {message}",
                                     resets_at=self.quota_resets_at())
            # A rate limit, not the day's quota: wait and try again (no attempt counted, no pause).
            raise Throttled(f"eBay rate limit (HTTP 429): {message}",
                            retry_after=float(retry_after) if retry_after is not None else 1.0)
        if status >= 500:
            raise RetryableSourceError(f"eBay server error (HTTP {status})", charged=charged)
        suffix = f" (errorId {error_id})" if error_id else ""
        raise PermanentSourceError(f"eBay refused the request (HTTP {status}){suffix}: {message}", charged=charged)

    def _split(self, band: dict) -> list[dict] | None:
        """The parts of a partition too big for one search, or None when no filter splits it."""
        lo, hi = band.get("lo"), band.get("hi")
        if lo is None:
            return [{**band, "lo": 0, "hi": FIRST_SPLIT_CENTS}, {**band, "lo": FIRST_SPLIT_CENTS + 1, "hi": None}]
        if hi is None:
            mid = max(2 * lo, lo + FIRST_SPLIT_CENTS)
            return [{**band, "lo": lo, "hi": mid}, {**band, "lo": mid + 1, "hi": None}]
        if hi > lo:
            mid = (lo + hi) // 2
            return [{**band, "lo": lo, "hi": mid}, {**band, "lo": mid + 1, "hi": hi}]
        if not band.get("bo") and len(self.buying_options) > 1:
            return [{**band, "bo": option} for option in self.buying_options]
        if not band.get("cond"):
            return [{**band, "cond": condition} for condition in CONDITIONS]
        return None

    def fetch_page(self, *, category, cursor):
        cursor = cursor or {}
        bands = cursor.get("bands") or [{}]
        band, rest = bands[0], bands[1:]
        offset, limit = int(cursor.get("offset", 0)), self.page_size
        body, calls = self._search(category, band=band, offset=offset, limit=limit)
        cost = self.pricing.cost_per_request
        warnings = [SourceWarning(code=str(w.get("errorId", "")), message=str(w.get("longMessage") or w.get("message") or ""))
                    for w in body.get("warnings") or [] if isinstance(w, dict)]
        gone = next((w for w in warnings if w.code.isdigit() and int(w.code) in CATEGORY_GONE_IDS), None)
        if gone is not None:
            return Page(items=[], next_cursor=None, cost=cost, total=0 if not band else None, quota_used=calls,
                        warnings=[w for w in warnings if w is not gone],
                        gone=f"eBay no longer knows category {category.external_id} (errorId {gone.code}): {gone.message}")
        try:
            total = int(body.get("total") or 0)
            items = [self._item(summary) for summary in body.get("itemSummaries") or []]
        except (ValueError, TypeError, AttributeError, KeyError):
            raise RetryableSourceError("eBay answered with a malformed payload", charged=cost) from None
        page = Page(items=items, next_cursor=None, cost=cost, total=total if not band and offset == 0 else None,
                    warnings=warnings, quota_used=calls)
        following = _next_offset(body, offset, limit)
        too_big = (offset == 0 and total >= SPLIT_AT) or (following is not None and following >= RESULT_CAP)
        parts = self._split(band) if too_big else None
        if parts:
            page.next_cursor = {"bands": parts + rest, "offset": 0}
            page.partitioned = (f"{describe_band(band)} reports {total} listings (one eBay search serves at most "
                                f"{RESULT_CAP}): split into {'; '.join(describe_band(p) for p in parts)}")
            return page
        if too_big and offset == 0:
            page.unreachable = max(0, total - RESULT_CAP)
        if following is not None and following < RESULT_CAP:
            page.next_cursor = {"bands": bands, "offset": following}
        elif rest:
            page.next_cursor = {"bands": rest, "offset": 0}
        return page

    def probe(self, category) -> int:
        """A limit=1 search: the category's item count as eBay reports it (not capped: a
        category above the cap is partitioned)."""
        body, _ = self._search(category, band={}, offset=0, limit=1)
        try:
            return max(0, int(body.get("total") or 0))
        except (ValueError, TypeError):
            raise RetryableSourceError("eBay answered the probe with a malformed payload") from None

    def plan(self, *, category, expected_items: int) -> CategoryPlan:
        """Below SPLIT_AT: one call a page. Above it: about one partition per 5,000 listings
        (adaptive bisection leaves partitions between half and all of SPLIT_AT), each with a
        last partial page, plus one probing call per split."""
        if expected_items < SPLIT_AT:
            return super().plan(category=category, expected_items=expected_items)
        partitions = math.ceil(expected_items / (SPLIT_AT // 2))
        probes = partitions - 1
        calls = math.ceil(expected_items / self.page_size) + partitions + probes
        return CategoryPlan(items=expected_items, pages=calls, cost=self.pricing.cost_per_request * calls,
                            partitions=partitions, probe_calls=probes)

    @staticmethod
    def _item(summary: dict) -> ProductItem:
        seller = summary.get("seller") or {}
        username = seller.get("username")
        # Some applications receive an immutable user id instead of (or besides) the username:
        # it is the seller's identity when present, so a renamed seller is not stored twice.
        identity = seller.get("userId") or username
        buying = tuple(str(option) for option in summary.get("buyingOptions") or ())
        price = summary.get("price") or {}
        if "AUCTION" in buying and summary.get("currentBidPrice"):
            price = summary["currentBidPrice"]  # an auction's price is its current bid
        country = str((summary.get("itemLocation") or {}).get("country") or "")[:2]
        return ProductItem(
            external_id=str(summary["itemId"]),
            title=str(summary.get("title", ""))[:500],
            seller=SellerItem(
                external_id=str(identity), name=str(username or identity),
                feedback_score=int(seller["feedbackScore"]) if seller.get("feedbackScore") is not None else None,
                feedback_percent=_decimal(seller.get("feedbackPercentage")),
                account_type=str(seller.get("sellerAccountType") or "")[:16], country=country,
            ) if identity else None,
            price=_decimal(price.get("value")),
            currency=str(price.get("currency", ""))[:3],
            url=str(summary.get("itemWebUrl", ""))[:1000],
            condition=str(summary.get("condition") or "")[:64],
            buying_options=buying,
            location_country=country,
            legacy_id=str(summary.get("legacyItemId") or "")[:32],
            category_ids=tuple(str(c.get("categoryId")) for c in summary.get("categories") or [] if isinstance(c, dict)),
        )
