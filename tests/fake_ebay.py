"""A local fake of eBay's Browse API (real HTTP on 127.0.0.1) that follows eBay's published
contract, inconvenient parts included. Sources, quoted where it matters:

[SEARCH] https://developer.ebay.com/api-docs/buy/browse/resources/item_summary/methods/search
         (and the Browse OpenAPI spec it renders, buy_browse_v1_oas3)
[PAGED]  https://developer.ebay.com/api-docs/buy/browse/types/gct:SearchPagedCollection%3Cgct:ItemSummary%3E
[SELLER] https://developer.ebay.com/api-docs/buy/browse/types/gct:Seller
[LIMITS] https://developer.ebay.com/develop/api/buy/api_call_limits
[OAUTH]  https://developer.ebay.com/api-docs/static/oauth-client-credentials-grant.html

Rules it enforces:
* `limit` "Min: 1 … Max: 200 … Default: 50" (else 400, errorId 12006); `offset` "Min: 0 …
  Max: 9,999" (else 400, 12029: "The maximum number of listings that can be retrieved is
  10,000"); "the value of offset must be either zero or a multiple of the limit value" (400,
  12515). [SEARCH]
* `total` "is just an indicator … It could vary based on the number of listings with
  variations": an item group counts once in `total` but every variation is paged. `next` "is
  returned if there is an additional page of results". [PAGED]
* "Only listings where FIXED_PRICE (Buy It Now) is a buying option are returned by default";
  `buyingOptions:{A|B}` widens that. `currentBidPrice` is "only returned for auction items".
  [SEARCH]
* A top-level (L1) category without `q`: 409, errorId 12013 "Top level category browsing is
  not allowed". [SEARCH]
* An invalid or retired category id is not an error: 200 with `warnings[]` errorId 12009
  "The 'category_ids' query parameter is invalid." A `price` filter without `priceCurrency`
  is ignored with warning 12012. [SEARCH]
* `sellerAccountType` is returned only on EBAY_AT, BE, CH, DE, ES, FR, GB, IE, IT, PL; some
  applications receive an immutable `userId` in place of the username. [SELLER]
* Too many calls: 429 with errorId 2001 "The request limit has been reached". [LIMITS]
* Tokens: client credentials with HTTP Basic; `expires_in` 7200 — the fake can make them die
  earlier, as a revoked token would. [OAUTH]
"""

from __future__ import annotations

import base64
import bisect
import hashlib
import json
import re
import secrets
import threading
import time
from dataclasses import dataclass, field
from functools import cached_property
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlencode, urlparse

RESULT_CAP = 10_000
ACCOUNT_TYPE_MARKETPLACES = {"EBAY_AT", "EBAY_BE", "EBAY_CH", "EBAY_DE", "EBAY_ES", "EBAY_FR", "EBAY_GB", "EBAY_IE",
                             "EBAY_IT", "EBAY_PL"}
CONDITIONS = {"NEW": ("1000", "New"), "USED": ("3000", "Used"), "UNSPECIFIED": ("", "")}
COUNTRIES = ("US", "US", "US", "GB", "DE", "CN", "CA")


def _hash(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


@dataclass(frozen=True)
class Listing:
    index: int
    price_cents: int
    auction: bool
    condition: str  # NEW | USED | UNSPECIFIED
    seller: int
    group: int | None  # item group (variations share one): counted once in `total`


@dataclass
class Catalog:
    """A category's listings. `simple` ones (the older scenarios) are Buy It Now only, with
    prices 10.00-99.99 and 97 sellers; rich ones have auctions, conditions, a price spread
    over 1.00-2,000.00 with `spike` listings at exactly 9.99, item groups, and `sellers`."""

    category: str
    count: int
    simple: bool = True
    sellers: int = 97
    auction_share: float = 0.0
    auction_only_sellers: int = 0  # the last N sellers sell by auction only (never Buy It Now)
    spike: int = 0  # listings at exactly 9.99 (a single price point: price bands cannot split it)
    spike_auctions: int = 0  # of which auctions
    group_share: float = 0.0  # share of listings that are variations of an item group (3 per group)
    one_condition: str = ""  # every listing in this condition (NEW, USED, UNSPECIFIED)
    level: int = 2  # 1 = top level: eBay refuses to browse it without keywords
    retired: bool = False
    matches: dict = field(default_factory=dict, repr=False)  # filter -> matching listings (cache)

    def listing(self, i: int) -> Listing:
        if self.simple:
            return Listing(i, (10 + i % 90) * 100 + i % 100, False, "NEW", (i * 7 + len(self.category)) % 97, None)
        h = _hash(self.category, i)
        if i < self.spike:
            price, auction = 999, i < self.spike_auctions
        else:
            u = (h % 1_000_003) / 1_000_003
            price, auction = int(100 * 2000 ** u), (h >> 20) % 1000 < self.auction_share * 1000
        condition = self.one_condition or ("NEW", "USED", "UNSPECIFIED")[(h >> 30) % 3]
        # Every seller has at least one listing (i < sellers); the rest are skewed to big sellers.
        seller = i if i < self.sellers else int(((h >> 40) % 1_000_003 / 1_000_003) ** 2 * self.sellers)
        auction = auction or seller >= self.sellers - self.auction_only_sellers
        group = i // 3 if (h >> 50) % 1000 < self.group_share * 1000 else None
        return Listing(i, price, auction, condition, seller, group)

    @cached_property
    def by_price(self) -> list[Listing]:
        return sorted((self.listing(i) for i in range(self.count)), key=lambda x: (x.price_cents, x.index))

    @cached_property
    def prices(self) -> list[int]:
        return [x.price_cents for x in self.by_price]

    def seller_name(self, n: int) -> str:
        return f"seller_{n}" if self.simple else f"{self.category}_seller_{n:05d}"

    def summary(self, x: Listing, *, marketplace: str, immutable_ids: bool) -> dict:
        legacy = f"{self.category}{x.index:07d}"
        price = {"value": f"{x.price_cents // 100}.{x.price_cents % 100:02d}", "currency": "USD"}
        seller = {"username": self.seller_name(x.seller), "feedbackPercentage": "99.1",
                  "feedbackScore": 1000 + x.seller % 97}
        if immutable_ids:
            seller = {**seller, "userId": f"u{_hash('user', self.category, x.seller) % 10**12:012d}"}
            del seller["username"]
        if marketplace in ACCOUNT_TYPE_MARKETPLACES:
            seller["sellerAccountType"] = "BUSINESS" if x.seller % 3 else "INDIVIDUAL"
        summary = {
            "itemId": f"v1|{legacy}|0", "legacyItemId": legacy, "title": f"Item {x.index} in {self.category}",
            "price": price, "seller": seller, "buyingOptions": ["AUCTION"] if x.auction else ["FIXED_PRICE"],
            "categories": [{"categoryId": self.category, "categoryName": f"Category {self.category}"}],
            "itemWebUrl": f"https://www.ebay.com/itm/{legacy}",
            "itemLocation": {"country": COUNTRIES[x.seller % len(COUNTRIES)]},
        }
        condition_id, condition = CONDITIONS[x.condition]
        if condition:
            summary.update(condition=condition, conditionId=condition_id)
        if x.auction:
            bid = x.price_cents + 50
            summary["currentBidPrice"] = {"value": f"{bid // 100}.{bid % 100:02d}", "currency": "USD"}
            summary["bidCount"] = 1
        if x.group is not None:
            summary["itemGroupType"] = "SELLER_DEFINED_VARIATIONS"
        return summary


@dataclass
class Scenario:
    client_id: str = "test-client"
    client_secret: str = "s3cr3t-VALUE-xyz"
    totals: dict[str, int] = field(default_factory=dict)  # simple catalogs: category id -> listings
    catalogs: dict[str, Catalog] = field(default_factory=dict)  # rich catalogs
    immutable_ids: bool = False
    token_lifetime: float = 3600.0  # how long tokens really stay valid (they claim 7200)
    faults: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (category, offset) -> faults in order
    every_search: str | None = None  # a fault for every search: "401", "429-quota", ...
    slow_seconds: float = 2.0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    minted: int = 0
    searches: list[tuple[str, int, int]] = field(default_factory=list)  # (category, offset, limit)
    requests: list[dict] = field(default_factory=list)  # every search's parameters
    lock: threading.Lock = field(default_factory=threading.Lock)

    def catalog(self, category: str) -> Catalog | None:
        if category in self.catalogs:
            return self.catalogs[category]
        if category in self.totals:
            self.catalogs[category] = Catalog(category, self.totals[category])
            return self.catalogs[category]
        return None


def expected(scenario: Scenario, category: str, *, buying_options=("FIXED_PRICE", "AUCTION")) -> tuple[set[str], set[str]]:
    """The item ids and seller ids a complete collection of `category` stores."""
    catalog = scenario.catalog(category)
    listings = [x for x in catalog.by_price if ("AUCTION" if x.auction else "FIXED_PRICE") in buying_options]
    summaries = [catalog.summary(x, marketplace="EBAY_US", immutable_ids=scenario.immutable_ids) for x in listings]
    return ({s["itemId"] for s in summaries},
            {s["seller"].get("userId") or s["seller"]["username"] for s in summaries})


def error_body(error_id: int, message: str, *, category: str = "REQUEST") -> dict:
    return {"errors": [{"errorId": error_id, "domain": "API_BROWSE", "category": category, "message": message,
                        "longMessage": message, "parameters": []}]}


def warning(error_id: int, message: str) -> dict:
    return {"errorId": error_id, "domain": "API_BROWSE", "category": "REQUEST", "message": message,
            "longMessage": message}


FILTER_PART = re.compile(r"(\w+):(\{[^}]*\}|\[[^\]]*\]|[^,]*)")


def parse_filter(text: str) -> dict[str, str]:
    return {name: value for name, value in FILTER_PART.findall(text or "")}


def _price_bounds(value: str) -> tuple[int | None, int | None]:
    low, _, high = value.strip("[]").partition("..")
    if not _:
        high = None  # "[10]": 10 or more
    to_cents = lambda v: None if v in (None, "") else round(float(v) * 100)  # noqa: E731
    return to_cents(low), to_cents(high)


class Handler(BaseHTTPRequestHandler):
    scenario: Scenario

    def log_message(self, *args):  # keep test output quiet
        pass

    def _send(self, status: int, body, *, raw: bytes | None = None, headers: dict | None = None):
        payload = raw if raw is not None else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        for key, value in (headers or {}).items():
            self.send_header(key, value)
        self.end_headers()
        self.wfile.write(payload)

    def do_POST(self):
        s = self.scenario
        if urlparse(self.path).path != "/identity/v1/oauth2/token":
            return self._send(404, error_body(1, "not found"))
        length = int(self.headers.get("Content-Length", 0))
        form = parse_qs(self.rfile.read(length).decode())
        expected_auth = "Basic " + base64.b64encode(f"{s.client_id}:{s.client_secret}".encode()).decode()
        if self.headers.get("Authorization") != expected_auth or form.get("grant_type") != ["client_credentials"]:
            return self._send(401, {"error": "invalid_client", "error_description": "client authentication failed"})
        token = "v^1.1#" + secrets.token_urlsafe(24)
        with s.lock:
            s.tokens[token] = time.monotonic() + s.token_lifetime
            s.minted += 1
        return self._send(200, {"access_token": token, "expires_in": 7200, "token_type": "Application Access Token"})

    def do_GET(self):
        s = self.scenario
        url = urlparse(self.path)
        if url.path != "/buy/browse/v1/item_summary/search":
            return self._send(404, error_body(1, "not found"))
        token = (self.headers.get("Authorization") or "").removeprefix("Bearer ")
        with s.lock:
            valid = s.tokens.get(token, 0) > time.monotonic()
        if not valid or s.every_search == "401":
            return self._send(401, error_body(1001, "Invalid access token"))
        query = {k: v[0] for k, v in parse_qs(url.query).items()}
        category = query.get("category_ids", "")
        try:
            limit, offset = int(query.get("limit", "50")), int(query.get("offset", "0"))
        except ValueError:
            return self._send(400, error_body(12005, "The 'offset' or 'limit' value is invalid."))
        with s.lock:
            s.searches.append((category, offset, limit))
            s.requests.append(query)
            script = s.faults.get((category, offset))
            fault = script.pop(0) if script else s.every_search
        if fault == "429-quota":
            return self._send(429, error_body(2001, "The request limit has been reached for the resource.",
                                              category="REQUEST"))
        if fault == "429":
            return self._send(429, error_body(2002, "Too many requests"), headers={"Retry-After": "0"})
        if fault == "503":
            return self._send(503, error_body(2003, "Service unavailable"))
        if fault == "slow":
            time.sleep(s.slow_seconds)
        if fault == "malformed":
            return self._send(200, None, raw=b'{"total": 10, "itemSummaries": [{"itemId": ')
        if not category and not query.get("q"):
            return self._send(400, error_body(12001, "Please specify a query (q), category_ids, epid or gtin."))
        if not 1 <= limit <= 200:
            return self._send(400, error_body(12006, "The 'limit' value should be between 1 and 200 (inclusive)."))
        if offset > RESULT_CAP - 1:
            return self._send(400, error_body(12029, "The maximum number of listings that can be retrieved is "
                                                     "10,000, so your offset value must be less than 10,000."))
        if offset % limit:
            return self._send(400, error_body(12515, "The 'offset' value must be either zero or a multiple of the "
                                                     "'limit' value."))
        catalog = s.catalog(category)
        warnings = []
        if catalog is None or catalog.retired:
            warnings.append(warning(12009, "The 'category_ids' query parameter is invalid."))
            return self._send(200, {"href": self.path, "total": 0, "limit": limit, "offset": offset,
                                    "warnings": warnings})
        if catalog.level == 1 and not query.get("q"):
            return self._send(409, error_body(12013, "Top level category browsing is not allowed. Please provide "
                                                     "keywords or more filters for the applied top level category.",
                                              category="BUSINESS"))
        matching = self._matching(catalog, parse_filter(query.get("filter", "")), warnings)
        groups = {x.group for x in matching if x.group is not None}
        total = sum(1 for x in matching if x.group is None) + len(groups)  # an item group counts once
        served = matching[offset:min(offset + limit, RESULT_CAP)]
        marketplace = self.headers.get("X-EBAY-C-MARKETPLACE-ID", "EBAY_US")
        body = {"href": self.path, "total": total, "limit": limit, "offset": offset,
                "itemSummaries": [catalog.summary(x, marketplace=marketplace, immutable_ids=s.immutable_ids)
                                  for x in served]}
        following = offset + limit
        if following < min(len(matching), RESULT_CAP):
            body["next"] = f"{url.path}?{urlencode({**query, 'offset': following})}"
        if offset:
            body["prev"] = f"{url.path}?{urlencode({**query, 'offset': max(0, offset - limit)})}"
        if warnings:
            body["warnings"] = warnings
        if not body["itemSummaries"]:
            del body["itemSummaries"]
        return self._send(200, body)

    @staticmethod
    def _matching(catalog: Catalog, filters: dict[str, str], warnings: list) -> list[Listing]:
        key = tuple(sorted(filters.items()))
        if key not in catalog.matches:
            catalog.matches[key] = Handler._match(catalog, filters, warnings)
        elif "price" in filters and "priceCurrency" not in filters:
            Handler._match(catalog, filters, warnings)
        return catalog.matches[key]

    @staticmethod
    def _match(catalog: Catalog, filters: dict[str, str], warnings: list) -> list[Listing]:
        options = set(filters.get("buyingOptions", "{FIXED_PRICE}").strip("{}").split("|"))
        conditions = set(filters["conditions"].strip("{}").split("|")) if "conditions" in filters else None
        listings, prices = catalog.by_price, catalog.prices
        if "price" in filters:
            if "priceCurrency" not in filters:
                warnings.append(warning(12012, "A valid 'price' filter and a valid 'priceCurrency' filter is "
                                               "necessary to filter based on price."))
            else:
                low, high = _price_bounds(filters["price"])
                start = 0 if low is None else bisect.bisect_left(prices, low)
                end = len(prices) if high is None else bisect.bisect_right(prices, high)
                listings = listings[start:end]
        matched = [x for x in listings if ("AUCTION" if x.auction else "FIXED_PRICE") in options
                   and (conditions is None or x.condition in conditions)]
        return sorted(matched, key=lambda x: x.index)  # best match: a stable order


class FakeEbay:
    def __init__(self, scenario: Scenario):
        handler = type("ScenarioHandler", (Handler,), {"scenario": scenario})
        self.scenario = scenario
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server.server_address[1]}"

    def __enter__(self):
        self.thread.start()
        return self

    def __exit__(self, *exc):
        self.server.shutdown()
        self.server.server_close()
