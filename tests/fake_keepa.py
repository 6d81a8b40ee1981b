"""A local fake of Keepa's API (real HTTP on 127.0.0.1) that follows Keepa's documented contract,
inconvenient parts included. Sources (see collection/sources/keepa.py for the full list):

[CLIENT] keepacom/api_backend KeepaAPI.java, structs/Request.java, Response.java, Offer.java,
         Product.java, Seller.java, Category.java — the official client, documented by Keepa
[PLANS]  keepa.com "How our API Plans work"
[PY]     akaszynski/keepa keepa_sync.py / constants.py (quoting keepa.com/api-docs)

Rules it enforces:
* `key` and `domain` on every request; a wrong key: 400 REQUEST_REJECTED [CLIENT, PY issue #4].
* A token bucket per key: `refill_rate` tokens every "minute" (a test compresses the minute),
  never more than 60 minutes' worth ("Unused tokens expire after 60 minutes" [PLANS]). A
  request runs while the balance is positive and may drive it negative; at 0 or below the
  answer is 429 NOT_ENOUGH_TOKEN with the envelope (tokensLeft, refillIn, refillRate,
  tokensConsumed 0) [CLIENT retries after refillIn]. `/token` is free and always answers.
* Every answer carries `timestamp`, `tokensLeft`, `refillIn` (ms), `refillRate`,
  `tokensConsumed`, `tokenFlowReduction`, `processingTimeInMs` [CLIENT Response.java], and is
  gzip-compressed as Keepa's are (the Java client always reads a GZIPInputStream).
* `/query?selection=`: perPage at least 50, (page+1)·perPage ≤ 10,000, else 400; `asinList`
  and `totalResults` — an *estimate* ("Estimated count of all matched products"): it is not the
  true count here either. Cost 10 + 1 per 100 ASINs returned.
* `/product`: at most 100 ASINs, "or max 20 ASINs if the offers parameter is used"; `offers`
  20-100. Cost with offers: 6 per found page of 10 offers (at most `offers` offers, the best
  first), 5 when there are none; else 1 per ASIN. `only-live-offers=1` drops historical
  offers; `liveOffersOrder` may name an index twice ("[ 3, 5, 2, 18, 5 ]" in Product.java).
  Prices in cents in `offerCSV` [time, price, shipping, …]; -2 an unknown price;
  `offersSuccessful` false when Keepa could not refresh them; `productType` 4 an invalid ASIN.
* `/seller`: at most 100 ids, 1 token per seller found, none for one not found.
* `/category`: at most 10 ids, 1 token; `productCount` is an estimate.
* 402 PAYMENT_REQUIRED when the key's plan does not cover the request (`plan_expired`).
"""

from __future__ import annotations

import gzip
import hashlib
import json
import math
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse

RESULT_CAP = 10_000
KEEPA_EPOCH_MINUTES = 21_564_000


def _hash(*parts) -> int:
    return int.from_bytes(hashlib.blake2b("|".join(map(str, parts)).encode(), digest_size=8).digest(), "big")


def keepa_now() -> int:
    return int(time.time() // 60) - KEEPA_EPOCH_MINUTES


@dataclass
class Scenario:
    key: str = field(default_factory=lambda: secrets.token_hex(32))  # Keepa keys are 64 characters
    refill_rate: int = 100_000  # tokens a "minute"
    minute_seconds: float = 60.0
    tokens: float = 100_000
    categories: dict[str, list[str]] = field(default_factory=dict)  # category id -> its ASINs (best-selling first)
    counts: dict[str, int] = field(default_factory=dict)  # productCount /category reports (an estimate)
    offers: dict[str, list[dict]] = field(default_factory=dict)  # ASIN -> offers (live and historical)
    sellers: dict[str, dict] = field(default_factory=dict)  # seller id -> seller object
    invalid: set[str] = field(default_factory=set)  # ASINs Keepa returns as productType 4
    unrefreshed: set[str] = field(default_factory=set)  # ASINs whose offers Keepa could not refresh
    plan_expired: bool = False
    latency: float = 0.0
    # call number -> the balance another client of the same key has driven the bucket to by then
    drain_on_call: dict[int, int] = field(default_factory=dict)
    fail_calls: dict[int, int] = field(default_factory=dict)  # call number -> HTTP status to answer instead
    consumed: int = 0  # every token the fake reported as consumed
    calls: int = 0
    rejected: int = 0  # 429 answers
    requests: list[tuple[str, dict]] = field(default_factory=list)  # (endpoint, params without the key)
    lock: threading.Lock = field(default_factory=threading.Lock)
    _refilled_at: float = field(default_factory=time.monotonic)

    # --- the bucket --------------------------------------------------------------------------

    def refill(self) -> None:
        now = time.monotonic()
        minutes = int((now - self._refilled_at) // self.minute_seconds)
        if minutes:
            self._refilled_at += minutes * self.minute_seconds
            cap = self.refill_rate * 60
            self.tokens = max(self.tokens, min(cap, self.tokens + minutes * self.refill_rate))

    def envelope(self, consumed: int) -> dict:
        refill_in = self._refilled_at + self.minute_seconds - time.monotonic()
        return {"timestamp": int(time.time() * 1000), "tokensLeft": int(self.tokens),
                "refillIn": max(0, int(refill_in * 1000)), "refillRate": self.refill_rate,
                "tokensConsumed": consumed, "tokenFlowReduction": 0.0, "processingTimeInMs": 3}

    # --- the catalog ---------------------------------------------------------------------------

    def add_category(self, category: str, asins: list[str], *, count: int | None = None) -> None:
        self.categories[category] = asins
        self.counts[category] = len(asins) if count is None else count

    def live_offers(self, asin: str, limit: int) -> list[dict]:
        """The offers Keepa returns as live for `offers=limit`: the best `limit`."""
        return [o for o in self.offers.get(asin, []) if o["_live"]][:limit]


def build_catalog(scenario: Scenario, sizes: dict[str, int], *, shared: int = 10, seller_pool: int = 60,
                  max_offers: int = 25) -> None:
    """Categories of the given sizes; `shared` ASINs of each also belong to the next category (an
    Amazon product sits in several); each ASIN has 0..max_offers offers from a pool of sellers
    shared by every category, some of them historical, some with an unknown price, a seller
    sometimes selling one ASIN in two conditions."""
    names = list(sizes)
    for category in names:
        asins = [f"B{_hash(category, i) % 10**9:09d}" for i in range(sizes[category])]
        scenario.add_category(category, asins, count=sizes[category] + 7)  # productCount: an estimate
    for position, category in enumerate(names[1:], start=1):
        previous = scenario.categories[names[position - 1]]
        scenario.categories[category] += previous[:shared]
    for asins in list(scenario.categories.values()):
        for asin in asins:
            if asin in scenario.offers:
                continue
            count = _hash("n", asin) % (max_offers + 1)
            offers = []
            for i in range(count):
                seller = f"A{_hash('s', asin, i) % seller_pool:05d}SELL"
                condition = 1 if i % 4 else (_hash("c", asin, i) % 6) + 1
                price = -2 if _hash("p", asin, i) % 13 == 0 else 500 + _hash("p", asin, i) % 10_000
                offers.append({"offerId": i, "sellerId": seller, "condition": condition,
                               "isFBA": bool(_hash("f", asin, i) % 2), "isPrime": bool(_hash("f", asin, i) % 2),
                               "isAmazon": False, "isShippable": True, "lastSeen": keepa_now(),
                               "offerCSV": [keepa_now() - 600, price + 100, 0, keepa_now(), price, 399],
                               "_live": _hash("l", asin, i) % 7 != 0})
            scenario.offers[asin] = offers
    for asins in scenario.categories.values():
        for asin in asins:
            for offer in scenario.offers[asin]:
                seller = offer["sellerId"]
                if seller not in scenario.sellers and _hash("known", seller) % 10:  # a few Keepa does not know
                    scenario.sellers[seller] = {"sellerId": seller, "sellerName": f"Shop {seller[:6]}",
                                                "currentRating": 80 + _hash("r", seller) % 21,
                                                "currentRatingCount": _hash("rc", seller) % 5000, "domainId": 1}


def expected(scenario: Scenario, categories: list[str], *, offers: int = 20) -> tuple[set, set, set]:
    """(ASINs, (ASIN, seller, condition) offers, sellers) a complete run stores."""
    from collection.sources.keepa import CONDITIONS

    asins = {a for c in categories for a in scenario.categories[c]} - scenario.invalid
    found_offers, sellers = set(), set()
    for asin in asins:
        for offer in scenario.live_offers(asin, offers):
            found_offers.add((asin, offer["sellerId"], CONDITIONS[offer["condition"]]))
            sellers.add(offer["sellerId"])
    return asins, found_offers, sellers


class _Handler(BaseHTTPRequestHandler):
    scenario: Scenario

    def log_message(self, *args):  # quiet
        pass

    def _send(self, status: int, body: dict) -> None:
        data = gzip.compress(json.dumps(body).encode())
        self.send_response(status)
        self.send_header("Content-Type", "application/json;charset=UTF-8")
        self.send_header("Content-Encoding", "gzip")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):  # noqa: N802
        url = urlparse(self.path)
        endpoint = url.path.strip("/")
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        sc = self.scenario
        if sc.latency:
            time.sleep(sc.latency)
        with sc.lock:
            sc.refill()
            sc.requests.append((endpoint, {k: v for k, v in params.items() if k != "key"}))
            status, body = self._answer(sc, endpoint, params)
        self._send(status, body)

    def _error(self, sc: Scenario, status: int, kind: str, message: str) -> tuple[int, dict]:
        return status, {**sc.envelope(0), "error": {"type": kind, "message": message, "details": None}}

    def _answer(self, sc: Scenario, endpoint: str, params: dict) -> tuple[int, dict]:
        if params.get("key") != sc.key:
            return self._error(sc, 400, "REQUEST_REJECTED", "Invalid API key.")
        if params.get("domain") not in {"1", "2", "3", "4", "5", "6", "8", "9", "10", "11", "12"}:
            return self._error(sc, 400, "REQUEST_REJECTED", "Invalid domain.")
        if endpoint == "token":
            return 200, sc.envelope(0)
        sc.calls += 1
        if sc.calls in sc.drain_on_call:  # another client of the same key has spent the tokens
            sc.tokens = min(sc.tokens, sc.drain_on_call[sc.calls])
        if sc.calls in sc.fail_calls:
            return self._error(sc, sc.fail_calls[sc.calls], "INTERNAL_SERVER_ERROR", "Try again later.")
        if sc.plan_expired:
            return self._error(sc, 402, "PAYMENT_REQUIRED", "Your subscription has expired. Please renew.")
        if sc.tokens <= 0:
            sc.rejected += 1
            return self._error(sc, 429, "NOT_ENOUGH_TOKEN", "Not enough tokens.")
        handler = {"query": self._query, "product": self._product, "seller": self._seller,
                   "category": self._category}.get(endpoint)
        if handler is None:
            return self._error(sc, 404, "NOT_FOUND", f"Unknown endpoint {endpoint}.")
        result = handler(sc, params)
        if result[0] != 200:
            return result
        cost, body = result[1]
        sc.tokens -= cost  # may go negative: the request ran on a positive balance
        sc.consumed += cost
        return 200, {**sc.envelope(cost), **body}

    def _query(self, sc: Scenario, params: dict):
        try:
            selection = json.loads(params["selection"])
            per_page, page = int(selection.get("perPage", 50)), int(selection.get("page", 0))
            categories = [str(c) for c in selection.get("categories_include") or []]
        except (KeyError, ValueError, TypeError, AttributeError):
            return self._error(sc, 400, "REQUEST_REJECTED", "Invalid selection.")
        if per_page < 50 or page < 0 or (page + 1) * per_page > RESULT_CAP:
            return self._error(sc, 400, "REQUEST_REJECTED", "perPage must be at least 50 and (page+1)*perPage "
                                                            "at most 10000.")
        matched = [a for c in categories for a in sc.categories.get(c, [])]
        matched = list(dict.fromkeys(matched))
        asins = matched[page * per_page:(page + 1) * per_page]
        total = len(matched) + (len(matched) // 20) + 3 if matched else 0  # "Estimated count"
        return 200, (10 + math.ceil(len(asins) / 100), {"asinList": asins, "totalResults": total})

    def _product(self, sc: Scenario, params: dict):
        asins = [a for a in params.get("asin", "").split(",") if a]
        offers = params.get("offers")
        if offers is not None and (not offers.isdigit() or not 20 <= int(offers) <= 100):
            return self._error(sc, 400, "REQUEST_REJECTED", "offers must be between 20 and 100.")
        limit = 20 if offers is not None else 100
        if not asins or len(asins) > limit:
            return self._error(sc, 400, "REQUEST_REJECTED", f"Between 1 and {limit} ASINs per request.")
        cost, products = 0, []
        live_only = params.get("only-live-offers") == "1"
        for asin in asins:
            product = {"asin": asin, "domainId": 1, "productType": 4 if asin in sc.invalid else 0,
                       "title": f"Product {asin}", "categories": [int(c) for c, a in sc.categories.items() if asin in a],
                       "rootCategory": 0, "csv": [], "lastUpdate": keepa_now()}
            if offers is None:
                cost += 1
            else:
                every = sc.offers.get(asin, [])
                live = sc.live_offers(asin, int(offers))
                listed = live if live_only else [o for o in every if o["_live"] or o in live]
                product["offers"] = [{k: v for k, v in o.items() if k != "_live"} for o in listed]
                order = [listed.index(o) for o in live]
                if len(order) > 2:
                    order.append(order[1])  # "[ 3, 5, 2, 18, 5 ]": an index may repeat
                product["liveOffersOrder"] = order
                product["offersSuccessful"] = asin not in sc.unrefreshed
                cost += 6 * math.ceil(len(live) / 10) if live else 5
            products.append(product)
        return 200, (cost, {"products": products})

    def _seller(self, sc: Scenario, params: dict):
        ids = [s for s in params.get("seller", "").split(",") if s]
        if not ids or len(ids) > 100:
            return self._error(sc, 400, "REQUEST_REJECTED", "Between 1 and 100 sellers per request.")
        found = {s: sc.sellers[s] for s in ids if s in sc.sellers}
        return 200, (len(found), {"sellers": found})

    def _category(self, sc: Scenario, params: dict):
        ids = [c for c in params.get("category", "").split(",") if c]
        if not ids or len(ids) > 10:
            return self._error(sc, 400, "REQUEST_REJECTED", "Between 1 and 10 categories per request.")
        found = {c: {"catId": int(c), "name": f"Category {c}", "parent": 0, "children": [], "domainId": 1,
                     "productCount": sc.counts[c], "highestRank": sc.counts[c]} for c in ids if c in sc.categories}
        return 200, (1, {"categories": found})


class FakeKeepa:
    def __init__(self, scenario: Scenario):
        self.scenario = scenario
        handler = type("Handler", (_Handler,), {"scenario": scenario})
        self.server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> FakeKeepa:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.server.shutdown()
        self.server.server_close()
