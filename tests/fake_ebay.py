"""A local fake of eBay's Browse API (real HTTP on 127.0.0.1) speaking its documented shapes:
the OAuth client-credentials token, item_summary/search with total/limit/offset/next and
itemSummaries, and error bodies {"errors": [{"errorId", "message", "longMessage", ...}]}.

Tests script it: category sizes, how long a token really lives, and faults keyed by
(category id, offset) or applied to every search.
"""

from __future__ import annotations

import base64
import json
import secrets
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlparse


@dataclass
class Scenario:
    client_id: str = "test-client"
    client_secret: str = "s3cr3t-VALUE-xyz"
    totals: dict[str, int] = field(default_factory=dict)  # category id -> items
    token_lifetime: float = 3600.0  # how long tokens really stay valid (they claim 7200)
    faults: dict[tuple[str, int], list[str]] = field(default_factory=dict)  # (category, offset) -> faults in order
    every_search: str | None = None  # a fault for every search: "401", "429-quota", ...
    slow_seconds: float = 2.0
    tokens: dict[str, float] = field(default_factory=dict)  # token -> expiry
    minted: int = 0
    searches: list[tuple[str, int, int]] = field(default_factory=list)  # (category, offset, limit)
    lock: threading.Lock = field(default_factory=threading.Lock)


def item(category: str, index: int) -> dict:
    seller = f"seller_{(index * 7 + len(category)) % 97}"
    return {
        "itemId": f"v1|{category}|{index}|0", "title": f"Item {index} in {category}",
        "price": {"value": f"{10 + index % 90}.{index % 100:02d}", "currency": "USD"},
        "seller": {"username": seller, "feedbackPercentage": "99.1", "feedbackScore": 1000 + index % 97},
        "categories": [{"categoryId": category}], "itemWebUrl": f"https://www.ebay.com/itm/{category}{index}",
        "condition": "New",
    }


def expected(scenario: Scenario, category: str) -> tuple[set[str], set[str]]:
    count = min(scenario.totals.get(category, 0), 10_000)
    items = [item(category, i) for i in range(count)]
    return {i["itemId"] for i in items}, {i["seller"]["username"] for i in items}


def error_body(error_id: int, message: str) -> dict:
    return {"errors": [{"errorId": error_id, "domain": "API_BROWSE", "category": "REQUEST", "message": message,
                        "longMessage": message, "parameters": []}]}


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
        query = parse_qs(url.query)
        category = query.get("category_ids", [""])[0]
        limit, offset = int(query.get("limit", ["50"])[0]), int(query.get("offset", ["0"])[0])
        with s.lock:
            s.searches.append((category, offset, limit))
            script = s.faults.get((category, offset))
            fault = script.pop(0) if script else s.every_search
        if fault == "429-quota":
            return self._send(429, error_body(2001, "The request limit has been reached for the resource."))
        if fault == "429":
            return self._send(429, error_body(2002, "Too many requests"), headers={"Retry-After": "0"})
        if fault == "503":
            return self._send(503, error_body(2003, "Service unavailable"))
        if fault == "slow":
            time.sleep(s.slow_seconds)
        if fault == "malformed":
            return self._send(200, None, raw=b'{"total": 10, "itemSummaries": [{"itemId": ')
        if category not in s.totals:
            return self._send(400, error_body(12001, f"The category id {category} is invalid."))
        if not 1 <= limit <= 200 or offset % limit or offset > 9999:
            return self._send(400, error_body(12002, "The offset/limit combination is invalid."))
        total = s.totals[category]
        end = min(offset + limit, total, 10_000)
        body = {"href": self.path, "total": total, "limit": limit, "offset": offset,
                "itemSummaries": [item(category, i) for i in range(offset, end)]}
        if end < min(total, 10_000):
            body["next"] = f"/buy/browse/v1/item_summary/search?category_ids={category}&limit={limit}&offset={end}"
        return self._send(200, body)


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
