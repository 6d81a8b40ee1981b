"""Keepa API (Amazon): a category's products (ASINs), their live offers and the sellers behind them.

What Keepa documents, and what this source does about it. Sources: Keepa's API clients, whose
documentation Keepa writes (keepacom/api_backend: KeepaAPI.java, structs/Request.java,
Response.java, Offer.java, Product.java, Seller.java, Category.java, helper/KeepaTime.java;
keepacom/php_api), the plans page ("How our API Plans work") and keepa.com/api-docs/ as quoted
in akaszynski/keepa (keepa_sync.py, constants.py):

* Requests are `GET https://api.keepa.com/<endpoint>?key=<key>&domain=<id>` (KeepaAPI.java),
  domain ids 1 .com, 2 .co.uk, 3 .de, 4 .fr, 5 .co.jp, 6 .ca, 8 .it, 9 .es, 10 .in, 11 .com.mx,
  12 .com.br (AmazonLocale; 7 was China and is gone).
* Tokens: "We limit access to our API via the token bucket algorithm ... The plans
  differentiate by the number of tokens that are generated per minute. Unused tokens expire
  after 60 minutes" (plans page): a key's bucket holds at most 60 × refillRate. Every
  response carries `tokensLeft`, `refillIn` ("Milliseconds till new tokens are generated"),
  `refillRate` ("Token refill rate per minute") and `tokensConsumed` (Response.java). A request
  runs while the balance is positive and may drive it negative (the Python client accounts for
  negative balances); with no tokens the answer is HTTP 429 NOT_ENOUGH_TOKEN, whose body still
  carries the envelope (the clients wait `refillIn` and retry). `/token` reports the envelope
  and costs nothing, but Keepa asks clients not to poll it: it is called only when a wait is
  over and the shared balance still looks too low.
* HTTP 400 REQUEST_REJECTED (e.g. an invalid key), 402 PAYMENT_REQUIRED (no plan for this
  request), 405 (an invalid parameter value), 429, 500 (KeepaAPI.java). An error body is the
  envelope plus `error: {type, message, details}` (RequestError.java); `error` is checked on
  a 200 too.
* Product Finder `/query?selection=<JSON>`: `categories_include`, `perPage` (at least 50),
  `page`; at most 10,000 results per query ((page+1)·perPage ≤ 10,000); `asinList` and
  `totalResults`, "Estimated count of all matched products" — only an estimate, so pages
  follow until a short page, never `totalResults`. Cost 10 + 1 per 100 ASINs.
* `/product?asin=…&offers=N&only-live-offers=1`: "between 1 and 100 ASINs - or max 20 ASINs if
  the offers parameter is used" (Request.java): offers calls carry 20 ASINs. `offers` is 20-100.
  Cost with offers: 6 tokens per found page of 10 offers, 5 when a product has none (the 1
  token per ASIN does not apply). Offer: `sellerId`, `condition` (0 unknown, 1 new, 2-5 used,
  6 refurbished, 7-10 collectible), `isFBA`, `isPrime`, `offerCSV` = [keepaTime, price,
  shipping, …] with prices in the domain's smallest currency unit, -1 no offer, -2 unknown.
  `offersSuccessful` false: Keepa could not refresh the offers (a warning, the product is kept).
  `productType` 4 is an invalid or deprecated ASIN (skipped).
* `/seller?seller=a,b,…` up to 100 ids, 1 token each, "If a seller is not found no tokens will
  be consumed"; `sellers` maps id → {sellerName, currentRating (percent), currentRatingCount}.
* `/category?category=<id>`: 1 token; `categories` maps id → {catId, name, parent (0: a root),
  children, productCount (an estimate)} — the size probe.

What this source does: a page is one Product Finder slice of KEEPA_PAGE_SIZE ASINs, the offers
of those ASINs (20 per call), and the lookup of at most KEEPA_SELLERS_PER_PAGE sellers not yet
looked up. Sellers beyond that wait in the unit's cursor for the next page (and the last pages
only look up sellers), so a page's cost has a bound that is reserved before it starts. The
bucket's last known state is shared by every worker through the database: a page starts only
when the balance (refills since then included) covers its worst case, which is taken from
the balance until Keepa's next answer says the truth; otherwise it raises Throttled until
Keepa's `refillIn` — no attempt, no pause. A 429 is the same. The run pauses (reason quota)
only for 402 or a rejected key, with Keepa's message. The key is never stored, logged or put
in an error: the shared state is named by a hash of it, and every message is scrubbed of it.

Configuration (environment only): KEEPA_API_KEY, KEEPA_API_URL, KEEPA_DOMAIN, KEEPA_TOKEN_PRICE,
KEEPA_OFFERS, KEEPA_PAGE_SIZE, KEEPA_SELLERS_PER_PAGE, KEEPA_TIMEOUT_SECONDS.
"""

from __future__ import annotations

import hashlib
import json
import logging
import math
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from decimal import Decimal

import httpx
from django.conf import settings

from .base import (
    BaseSource,
    CategoryInfo,
    CategoryPlan,
    OfferItem,
    Page,
    PermanentSourceError,
    Pricing,
    ProductItem,
    QuotaExhausted,
    QuotaKind,
    RetryableSourceError,
    SellerItem,
    SourceError,
    SourceWarning,
    Throttled,
)

logger = logging.getLogger("collection.sources.keepa")

RESULT_CAP = 10_000  # one Product Finder query serves at most 10,000 ASINs
ASINS_PER_OFFERS_CALL = 20
SELLERS_PER_CALL = 100
OFFERS_PER_OFFER_PAGE = 10
TOKENS_PER_OFFER_PAGE = 6
TOKENS_WITHOUT_OFFERS = 5
TOKEN_LIFETIME_MINUTES = 60
KEEPA_EPOCH_MINUTES = 21_564_000  # Keepa time: minutes since 2011-01-01 (KeepaTime.java)
INVALID_PRODUCT = 4  # productType: "invalid or deprecated asin"
CONDITIONS = {0: "UNKNOWN", 1: "NEW", 2: "USED_LIKE_NEW", 3: "USED_VERY_GOOD", 4: "USED_GOOD",
              5: "USED_ACCEPTABLE", 6: "REFURBISHED", 7: "COLLECTIBLE_LIKE_NEW", 8: "COLLECTIBLE_VERY_GOOD",
              9: "COLLECTIBLE_GOOD", 10: "COLLECTIBLE_ACCEPTABLE"}
# domain id -> (Amazon site, currency, decimals of the smallest unit)
DOMAINS = {1: ("amazon.com", "USD", 2), 2: ("amazon.co.uk", "GBP", 2), 3: ("amazon.de", "EUR", 2),
           4: ("amazon.fr", "EUR", 2), 5: ("amazon.co.jp", "JPY", 0), 6: ("amazon.ca", "CAD", 2),
           8: ("amazon.it", "EUR", 2), 9: ("amazon.es", "EUR", 2), 10: ("amazon.in", "INR", 2),
           11: ("amazon.com.mx", "MXN", 2), 12: ("amazon.com.br", "BRL", 2)}
SELLER_CACHE_SIZE = 200_000
SELLER_CACHE_SECONDS = 6 * 3600


def query_tokens(per_page: int) -> int:
    return 10 + math.ceil(per_page / 100)


def offer_tokens(offers: int) -> int:
    """The most one product's offers can cost."""
    return TOKENS_PER_OFFER_PAGE * math.ceil(offers / OFFERS_PER_OFFER_PAGE)


class _Call:
    """Tokens a page has consumed so far (what it will be charged)."""

    def __init__(self):
        self.tokens = 0


@dataclass
class KeepaSource(BaseSource):
    key: str = "keepa"
    platform: str = "amazon"
    label: str = "Keepa API (Amazon)"
    page_size: int = field(default_factory=lambda: settings.KEEPA_PAGE_SIZE)
    pricing: Pricing = field(default_factory=lambda: Pricing(model="per token (token bucket)"))
    quota_kind: QuotaKind = QuotaKind.TOKEN_BUCKET
    can_probe: bool = True
    can_look_up_categories: bool = True
    offers: int = field(default_factory=lambda: settings.KEEPA_OFFERS)
    sellers_per_page: int = field(default_factory=lambda: settings.KEEPA_SELLERS_PER_PAGE)
    token_price: Decimal = field(default_factory=lambda: Decimal(str(settings.KEEPA_TOKEN_PRICE)))
    domain: int = field(default_factory=lambda: settings.KEEPA_DOMAIN)

    def __post_init__(self):
        self._client = httpx.Client(base_url=settings.KEEPA_API_URL.rstrip("/"), timeout=settings.KEEPA_TIMEOUT_SECONDS)
        self._looked_up: OrderedDict[str, float] = OrderedDict()  # seller id -> when (this process)
        self._lock = threading.Lock()

    # --- configuration ---------------------------------------------------------------------

    def missing_configuration(self) -> str:
        return "" if settings.KEEPA_API_KEY else "Keepa is not configured: set KEEPA_API_KEY in the environment."

    def _bucket_name(self) -> str:
        digest = hashlib.sha256(settings.KEEPA_API_KEY.encode()).hexdigest()[:12]
        return f"keepa-bucket:{digest}"  # a hash names the key's bucket: the key is never stored

    def _scrub(self, text: str) -> str:
        key = settings.KEEPA_API_KEY
        return text.replace(key, "[redacted]") if key else text

    def describe(self) -> dict:
        site, currency, _ = DOMAINS[self.domain]
        max_tokens = self.page_tokens({})
        return {**super().describe(), "domain": self.domain, "site": site, "currency": currency,
                "offers_per_product": self.offers, "token_price": str(self.token_price),
                "refill_rate": self.state.read(self._bucket_name()).get("rate") if settings.KEEPA_API_KEY else None,
                "pricing": {"model": self.pricing.model, "cost_per_request": "0", "cost_per_result": "0",
                            "max_page_cost": str(self.token_price * max_tokens)}}

    # --- cost ------------------------------------------------------------------------------

    def page_tokens(self, cursor: dict | None) -> int:
        """The most the page at `cursor` can consume: the query, every ASIN's offers and the
        seller lookups (a page after the last slice only looks up sellers)."""
        lookups = self.sellers_per_page
        if (cursor or {}).get("asins_done"):
            return lookups
        return query_tokens(self.page_size) + self.page_size * offer_tokens(self.offers) + lookups

    def max_page_cost(self, *, category, cursor) -> Decimal:
        return self.token_price * self.page_tokens(cursor)

    def probe_cost(self) -> Decimal:
        return self.token_price  # one /category call: 1 token

    def plan(self, *, category, expected_items: int) -> CategoryPlan:
        """Up to 10,000 ASINs (one query's cap); each costs its offers' pages; about one seller
        to look up per product (sellers repeat across products, so this is an upper guess)."""
        items = min(expected_items, RESULT_CAP)
        pages = max(1, math.ceil(items / self.page_size))
        tokens = pages * query_tokens(self.page_size) + items * offer_tokens(self.offers)
        if self.sellers_per_page:
            tokens += items
        return CategoryPlan(items=items, pages=pages, cost=self.token_price * tokens, tokens=tokens)

    def bucket_status(self) -> dict | None:
        bucket = self.state.read(self._bucket_name()) if settings.KEEPA_API_KEY else {}
        if "left" not in bucket:
            return None
        return {"tokens_left": int(bucket["left"]), "refill_rate": int(bucket["rate"])}

    def refill_rate(self) -> int | None:
        if not settings.KEEPA_API_KEY:
            return None
        rate = self.state.read(self._bucket_name()).get("rate")
        if rate is None:
            try:
                with self.state.update(self._bucket_name()) as bucket:
                    self._learn(bucket, self._get("token", {}, _Call()))
                rate = bucket.get("rate")
            except SourceError:
                return None
        return int(rate) if rate is not None else None

    # --- the token bucket --------------------------------------------------------------------

    @staticmethod
    def _learn(bucket: dict, body: dict) -> None:
        """What Keepa just said about the key's bucket."""
        try:
            bucket.update(left=int(body["tokensLeft"]), rate=int(body["refillRate"]),
                          refill_at=time.time() + max(0, int(body["refillIn"])) / 1000)
        except (KeyError, TypeError, ValueError):
            pass

    @staticmethod
    def _balance(bucket: dict, now: float) -> int:
        """The balance now: the last known one plus the refills since (Keepa refills every
        minute; tokens older than an hour expire, so the bucket holds at most 60 × rate)."""
        left, rate, refill_at = int(bucket["left"]), int(bucket["rate"]), float(bucket["refill_at"])
        if now < refill_at:
            return left
        refills = 1 + int((now - refill_at) // 60)
        return min(left + rate * refills, max(left, rate * TOKEN_LIFETIME_MINUTES))

    def _take_tokens(self, need: int, spent: _Call) -> None:
        """Start a page that may consume `need` tokens, or raise Throttled until Keepa's next
        refill. The need is taken from the shared balance until Keepa's next answer replaces
        it with the truth, so workers sharing the key do not all start on the same tokens."""
        with self.state.update(self._bucket_name()) as bucket:
            now = time.time()
            if "left" not in bucket:
                self._learn(bucket, self._get("token", {}, spent))
            if "left" not in bucket:
                raise RetryableSourceError("Keepa's token status answered without the bucket's state")
            rate = int(bucket["rate"])
            if rate <= 0:
                raise QuotaExhausted("Keepa reports a refill rate of 0 for this key (tracked products use up the "
                                     "plan's token flow): no request can be paid for")
            need = min(need, rate * TOKEN_LIFETIME_MINUTES)
            balance = self._balance(bucket, now)
            if balance < need and now >= float(bucket["refill_at"]):
                self._learn(bucket, self._get("token", {}, spent))  # a refill passed: ask (free) rather than guess
                balance, now = self._balance(bucket, time.time()), time.time()
            if balance >= need:
                bucket.update(left=balance - need, refill_at=max(float(bucket["refill_at"]), now))
                return
            wait = max(0.05, float(bucket["refill_at"]) - now)
            wait += 60 * max(0, math.ceil((need - balance) / rate) - 1)
        raise Throttled(f"Keepa token bucket: {balance} tokens, the page needs up to {need} "
                        f"(refill {rate}/minute); waiting {wait:.1f}s", retry_after=wait)

    # --- HTTP ----------------------------------------------------------------------------------

    def _get(self, endpoint: str, params: dict, spent: _Call) -> dict:
        """GET /<endpoint> with the key and domain. Records the tokens consumed on `spent` and
        Keepa's view of the bucket; raises the typed error for a refusal."""
        if not settings.KEEPA_API_KEY:
            raise QuotaExhausted(self.missing_configuration())
        query = {"key": settings.KEEPA_API_KEY, "domain": self.domain, **params}
        try:
            response = self._client.get(f"/{endpoint}", params=query)
        except httpx.TimeoutException:
            raise RetryableSourceError(f"Keepa /{endpoint} did not answer in time",
                                       charged=self._money(spent.tokens)) from None
        except httpx.HTTPError as error:
            raise RetryableSourceError(f"Keepa could not be reached: {type(error).__name__}",
                                       charged=self._money(spent.tokens)) from None
        try:
            body = response.json()
            if not isinstance(body, dict):
                raise TypeError
        except (ValueError, TypeError):
            if response.status_code == 200:
                raise RetryableSourceError(f"Keepa /{endpoint} answered with a malformed payload",
                                           charged=self._money(spent.tokens)) from None
            body = {}
        consumed = body.get("tokensConsumed")
        if isinstance(consumed, int) and consumed > 0:
            spent.tokens += consumed
        if endpoint != "token" and "tokensLeft" in body:
            with self.state.update(self._bucket_name()) as bucket:
                self._learn(bucket, body)
        error = body.get("error") if isinstance(body.get("error"), dict) else None
        if response.status_code != 200 or error:
            self._raise_for(endpoint, response.status_code, body, error or {}, spent)
        return body

    def _key_accepted(self) -> bool:
        """After a 400: whether the key itself is fine (the free /token answers), so the request
        was what Keepa refused."""
        try:
            self._get("token", {}, _Call())
        except QuotaExhausted:
            return False
        except SourceError:
            return True
        return True

    def _money(self, tokens: int) -> Decimal:
        return self.token_price * tokens

    def _raise_for(self, endpoint: str, status: int, body: dict, error: dict, spent: _Call) -> None:
        message = self._scrub(" ".join(str(error.get(k) or "") for k in ("type", "message", "details")).strip()
                              or f"HTTP {status}")[:300]
        charged = self._money(spent.tokens)
        if status == 429:
            refill_in = body.get("refillIn")
            wait = int(refill_in) / 1000 if isinstance(refill_in, int) and refill_in >= 0 else 60.0
            raise Throttled(f"Keepa has no tokens left for /{endpoint} (HTTP 429): {message}",
                            retry_after=max(0.05, wait), charged=charged)
        if status == 402:
            raise QuotaExhausted(f"Keepa refused the key's plan for /{endpoint} (HTTP 402 payment required): "
                                 f"{message}", charged=charged)
        if status == 400 and (endpoint == "token" or not self._key_accepted()):
            raise QuotaExhausted(f"Keepa rejected the API key (HTTP 400 on /{endpoint}): {message}", charged=charged)
        if status >= 500:
            raise RetryableSourceError(f"Keepa server error on /{endpoint} (HTTP {status}): {message}", charged=charged)
        raise PermanentSourceError(f"Keepa refused /{endpoint} (HTTP {status}): {message}", charged=charged)

    # --- a page ----------------------------------------------------------------------------------

    def fetch_page(self, *, category, cursor):
        cursor = cursor or {}
        spent = _Call()
        self._take_tokens(self.page_tokens(cursor), spent)
        page_no, queue = int(cursor.get("page", 0)), list(cursor.get("sellers") or [])
        items, warnings, total, unreachable, more = [], [], None, 0, False
        if not cursor.get("asins_done"):
            if not str(category.external_id).isdigit():
                raise PermanentSourceError(f"{category.external_id!r} is not a Keepa category id (a positive number)")
            selection = {"categories_include": [int(category.external_id)], "perPage": self.page_size,
                         "page": page_no}
            body = self._get("query", {"selection": json.dumps(selection, separators=(",", ":"))}, spent)
            asins = [str(a) for a in body.get("asinList") or [] if a]
            reported = body.get("totalResults")
            if page_no == 0 and isinstance(reported, int):
                total = reported
                unreachable = max(0, reported - RESULT_CAP)
            more = len(asins) == self.page_size and (page_no + 2) * self.page_size <= RESULT_CAP
            unrefreshed = 0
            for start in range(0, len(asins), ASINS_PER_OFFERS_CALL):
                batch = asins[start:start + ASINS_PER_OFFERS_CALL]
                products = self._get("product", {"asin": ",".join(batch), "offers": self.offers,
                                                 "only-live-offers": 1}, spent).get("products") or []
                for product in products:
                    item = self._product(product)
                    if item is not None:
                        items.append(item)
                        unrefreshed += product.get("offersSuccessful") is False
            if unrefreshed:
                warnings.append(SourceWarning(code="offersSuccessful", message=(
                    f"Keepa could not refresh the offers of {unrefreshed} product(s); their last known offers are kept")))
            if self.sellers_per_page:
                queue += self._new_sellers(items, set(queue))
        lookup, rest = queue[:self.sellers_per_page], queue[self.sellers_per_page:]
        sellers = self._lookup_sellers(lookup, spent) if lookup else []
        if sellers is None:  # no tokens for the lookups now: they wait for the next page
            sellers, rest = [], queue
        if not items and not more and rest and cursor.get("asins_done") and not sellers:
            raise Throttled("Keepa has no tokens for seller lookups now", retry_after=5,
                            charged=self._money(spent.tokens))
        next_cursor = None
        if more:
            next_cursor = {"page": page_no + 1, "sellers": rest}
        elif rest:
            next_cursor = {"page": page_no + 1, "asins_done": True, "sellers": rest}
        return Page(items=items, next_cursor=next_cursor, cost=self._money(spent.tokens), total=total,
                    warnings=warnings, unreachable=unreachable, sellers=sellers)

    def _new_sellers(self, items: list[ProductItem], queued: set[str]) -> list[str]:
        """Sellers of these offers this process has not looked up lately, in order."""
        now, fresh = time.monotonic(), []
        with self._lock:
            for item in items:
                for offer in item.offers:
                    seller_id = offer.seller.external_id
                    seen = self._looked_up.get(seller_id)
                    if seller_id in queued or (seen is not None and now - seen < SELLER_CACHE_SECONDS):
                        continue
                    queued.add(seller_id)
                    fresh.append(seller_id)
        return fresh

    def _lookup_sellers(self, ids: list[str], spent: _Call) -> list[SellerItem] | None:
        """The sellers' names and ratings (100 a call); None when Keepa has no tokens for it."""
        found: list[SellerItem] = []
        for start in range(0, len(ids), SELLERS_PER_CALL):
            batch = ids[start:start + SELLERS_PER_CALL]
            try:
                body = self._get("seller", {"seller": ",".join(batch)}, spent)
            except Throttled:
                return None
            known = body.get("sellers") or {}
            for seller_id in batch:
                data = known.get(seller_id) if isinstance(known, dict) else None
                found.append(self._seller(seller_id, data) if isinstance(data, dict) else SellerItem(seller_id))
        now = time.monotonic()
        with self._lock:
            for seller_id in ids:
                self._looked_up[seller_id] = now
                self._looked_up.move_to_end(seller_id)
            while len(self._looked_up) > SELLER_CACHE_SIZE:
                self._looked_up.popitem(last=False)
        return found

    @staticmethod
    def _seller(seller_id: str, data: dict) -> SellerItem:
        rating, count = data.get("currentRating"), data.get("currentRatingCount")
        return SellerItem(
            external_id=seller_id, name=str(data.get("sellerName") or "")[:255],
            feedback_score=count if isinstance(count, int) and count >= 0 else None,
            feedback_percent=Decimal(rating) if isinstance(rating, int) and 0 <= rating <= 100 else None,
        )

    def _price(self, cents) -> Decimal | None:
        if not isinstance(cents, int) or cents < 0:  # -1 no offer, -2 unknown
            return None
        places = DOMAINS[self.domain][2]
        return Decimal(cents).scaleb(-places)

    def _product(self, product: dict) -> ProductItem | None:
        asin = product.get("asin")
        if not asin or product.get("productType") == INVALID_PRODUCT:
            return None
        site, currency, _ = DOMAINS[self.domain]
        offers, live = product.get("offers") or [], product.get("liveOffersOrder")
        chosen = [offers[i] for i in dict.fromkeys(live)] if isinstance(live, list) else offers
        result = []
        for offer in chosen:
            if not isinstance(offer, dict) or not offer.get("sellerId"):
                continue
            history = offer.get("offerCSV") or []
            price = self._price(history[-2]) if len(history) >= 3 else None
            result.append(OfferItem(
                seller=SellerItem(external_id=str(offer["sellerId"])[:128]), price=price,
                currency=currency if price is not None else "",
                condition=CONDITIONS.get(offer.get("condition"), "UNKNOWN"),
                fulfilled_by_platform=bool(offer["isFBA"]) if isinstance(offer.get("isFBA"), bool) else None,
            ))
        prices = [o.price for o in result if o.price is not None]
        categories = product.get("categories") or []
        return ProductItem(
            external_id=str(asin)[:128], title=str(product.get("title") or "")[:500], seller=None,
            price=min(prices) if prices else None, currency=currency if prices else "",
            url=f"https://www.{site}/dp/{asin}", offers=tuple(result),
            category_ids=tuple(str(c) for c in categories if isinstance(c, int)),
        )

    def look_up_category(self, external_id: str) -> CategoryInfo | None:
        """`/category` (1 token): Keepa's category object — name, parent (0: a root), children
        and productCount (an estimate)."""
        if not str(external_id).isdigit():
            return None
        spent = _Call()
        self._take_tokens(1, spent)
        body = self._get("category", {"category": external_id}, spent)
        found = (body.get("categories") or {}).get(str(external_id))
        if not isinstance(found, dict) or not found.get("name"):
            return None
        parent, count = found.get("parent"), found.get("productCount")
        return CategoryInfo(
            external_id=str(external_id), name=str(found["name"])[:255],
            parent=str(parent) if isinstance(parent, int) and parent > 0 else "", is_leaf=not found.get("children"),
            item_count=count if isinstance(count, int) and count >= 0 else None,
        )

    def probe(self, category) -> int:
        """Keepa's product count for the category (an estimate), from its category object."""
        info = self.look_up_category(category.external_id)
        if info is None:
            raise PermanentSourceError(f"Keepa does not know category {category.external_id}")
        if info.item_count is None:
            raise PermanentSourceError(f"Keepa has no product count for category {category.external_id}")
        return info.item_count
