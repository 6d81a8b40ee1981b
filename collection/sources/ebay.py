"""eBay Browse API: sellers discovered through item searches, one category per request.

Configuration comes from the environment only (never the database): EBAY_CLIENT_ID,
EBAY_CLIENT_SECRET, EBAY_ENV (sandbox | production), EBAY_MARKETPLACE_ID (EBAY_US),
EBAY_BASE_URL (overrides the environment's base URL, e.g. a local fake server in tests),
EBAY_PAGE_SIZE (1-200), EBAY_COST_PER_CALL (money, default 0), EBAY_DAILY_CALL_QUOTA (5000),
EBAY_TIMEOUT_SECONDS (10).

The application token (client credentials) is cached per process until shortly before it
expires, and minted again once when a call answers 401: with a handful of worker processes
that stays far below eBay's ~1,000 mints a day. The secret never leaves this module: errors
and logs name the client id only.
"""

from __future__ import annotations

import base64
import logging
import threading
import time
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation

import httpx
from django.conf import settings

from .base import (
    BaseSource,
    FatalSourceError,
    Page,
    PermanentSourceError,
    Pricing,
    ProductItem,
    QuotaExhausted,
    QuotaKind,
    RetryableSourceError,
    SellerItem,
)

logger = logging.getLogger("collection.sources.ebay")

BASE_URLS = {"production": "https://api.ebay.com", "sandbox": "https://api.sandbox.ebay.com"}
SCOPE = "https://api.ebay.com/oauth/api_scope"
RESULT_CAP = 10_000  # eBay serves at most 10,000 items of one result set
QUOTA_ERROR_ID = 2001


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
    quota_timezone: str = "UTC"
    can_probe: bool = True

    def __post_init__(self):
        self._token: str | None = None
        self._token_expires = 0.0
        self._lock = threading.Lock()
        self._client = httpx.Client(base_url=_base_url(), timeout=settings.EBAY_TIMEOUT_SECONDS)

    def describe(self) -> dict:
        return {**super().describe(), "daily_call_quota": self.daily_call_quota,
                "environment": settings.EBAY_ENV, "marketplace": settings.EBAY_MARKETPLACE_ID}

    # --- token -----------------------------------------------------------------------------

    def _mint(self) -> str:
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
            token, expires_in = body["access_token"], int(body.get("expires_in", 7200))
        except (ValueError, KeyError, TypeError):
            raise RetryableSourceError("eBay token response was malformed") from None
        self._token, self._token_expires = token, time.monotonic() + max(expires_in - 60, expires_in / 2)
        logger.info("minted an eBay application token for client %s (expires in %ss)", client_id, expires_in)
        return token

    def _bearer(self, *, fresh: bool = False) -> str:
        with self._lock:
            if fresh or not self._token or time.monotonic() >= self._token_expires:
                return self._mint()
            return self._token

    # --- search ----------------------------------------------------------------------------

    def _search(self, category, *, offset: int, limit: int) -> httpx.Response:
        """GET item_summary/search; on 401 mint a new token once and try again."""
        for fresh in (False, True):
            headers = {"Authorization": f"Bearer {self._bearer(fresh=fresh)}",
                       "X-EBAY-C-MARKETPLACE-ID": settings.EBAY_MARKETPLACE_ID}
            params = {"category_ids": category.external_id, "limit": limit, "offset": offset}
            try:
                response = self._client.get("/buy/browse/v1/item_summary/search", params=params, headers=headers)
            except httpx.TimeoutException:
                raise RetryableSourceError("eBay did not answer in time", charged=self.pricing.cost_per_request)
            except httpx.HTTPError as error:
                raise RetryableSourceError(f"eBay could not be reached: {type(error).__name__}") from None
            if response.status_code != 401:
                return response
        raise FatalSourceError(f"eBay answered 401 after a fresh token for client {settings.EBAY_CLIENT_ID}: "
                               "check EBAY credentials")

    def _raise_for(self, response: httpx.Response) -> None:
        status = response.status_code
        message, error_id = _ebay_message(response)
        charged = self.pricing.cost_per_request
        if status == 429:
            retry_after = _decimal(response.headers.get("Retry-After"))
            if error_id == QUOTA_ERROR_ID:
                raise QuotaExhausted(f"eBay call quota exceeded (errorId {QUOTA_ERROR_ID}): {message}",
                                     resets_at=self.quota_resets_at())
            raise RetryableSourceError(f"eBay rate limit (HTTP 429): {message}",
                                       retry_after=float(retry_after) if retry_after else None)
        if status >= 500:
            raise RetryableSourceError(f"eBay server error (HTTP {status})", charged=charged)
        raise PermanentSourceError(f"eBay refused the request (HTTP {status}): {message}", charged=charged)

    def fetch_page(self, *, category, cursor):
        offset = int((cursor or {}).get("offset", 0))
        limit = max(1, min(self.page_size, 200, RESULT_CAP - offset))
        response = self._search(category, offset=offset, limit=limit)
        if response.status_code != 200:
            self._raise_for(response)
        try:
            body = response.json()
            total = int(body.get("total", 0))
            summaries = body.get("itemSummaries") or []
            items = [self._item(summary) for summary in summaries]
        except (ValueError, TypeError, AttributeError, KeyError):
            raise RetryableSourceError("eBay answered with a malformed payload",
                                       charged=self.pricing.cost_per_request) from None
        end = offset + limit
        more = bool(summaries) and end < min(total, RESULT_CAP) and bool(body.get("next", True))
        return Page(items=items, next_cursor={"offset": end} if more else None, cost=self.pricing.cost_per_request,
                    total=min(total, RESULT_CAP))

    def probe(self, category) -> int:
        """A limit=1 search: the category's item count (capped at 10,000)."""
        response = self._search(category, offset=0, limit=1)
        if response.status_code != 200:
            self._raise_for(response)
        try:
            return min(int(response.json().get("total", 0)), RESULT_CAP)
        except (ValueError, TypeError, AttributeError):
            raise RetryableSourceError("eBay answered the probe with a malformed payload") from None

    @staticmethod
    def _item(summary: dict) -> ProductItem:
        seller = summary.get("seller") or {}
        price = summary.get("price") or {}
        username = seller.get("username")
        return ProductItem(
            external_id=str(summary["itemId"]),
            title=str(summary.get("title", ""))[:500],
            seller=SellerItem(
                external_id=str(username), name=str(username),
                feedback_score=int(seller["feedbackScore"]) if seller.get("feedbackScore") is not None else None,
                feedback_percent=_decimal(seller.get("feedbackPercentage")),
            ) if username else None,
            price=_decimal(price.get("value")),
            currency=str(price.get("currency", ""))[:3],
            url=str(summary.get("itemWebUrl", ""))[:1000],
        )



