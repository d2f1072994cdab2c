"""A fake Finnhub REST API on 127.0.0.1, for the real `finnhub.Client` (pointed at it through `API_URL`).

It serves synthetic data in Finnhub's real JSON shapes (MARKET_DATA.md §1), records every request, and can be
told to fail: a status for the next N matching calls (429 with `X-RateLimit-Reset`, 5xx, 403) or a stall longer
than the client's timeout. `per_minute_limit` makes it answer 429 like the real service when a client exceeds it,
counted over `window_s` (60 s, as Finnhub does; shorter in tests), and then every answer carries the rate-limit
headers Finnhub is reported to send: `X-Ratelimit-Limit`, `X-Ratelimit-Remaining`, `X-Ratelimit-Reset` (epoch
seconds, when the oldest counted call leaves the window).
"""

from __future__ import annotations

import collections
import datetime as dt
import math
import re
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

from tests.fakes.loopback import reply_json, start_server, stop_server


@dataclass
class _Failure:
    pattern: str
    status: int
    times: int
    headers: dict[str, str]
    body: dict
    stall_s: float = 0.0


@dataclass(frozen=True)
class Call:
    path: str
    params: dict[str, str]
    at: float  # time.monotonic()
    status: int
    epoch: float = 0.0  # time.time(), to compare with the epoch-seconds reset header


class FakeFinnhub:
    def __init__(self, *, latency_s: float = 0.0, per_minute_limit: int | None = None, window_s: float = 60.0) -> None:
        self.latency_s = latency_s
        self.per_minute_limit = per_minute_limit
        self.window_s = window_s
        self.news: dict[str, list[dict]] = {}
        self.profiles: dict[str, dict] = {}
        self.financials: dict[str, dict] = {}
        self.calls: list[Call] = []
        self._failures: list[_Failure] = []
        self._lock = threading.Lock()
        self._recent: collections.deque[float] = collections.deque()
        self._server: ThreadingHTTPServer | None = None

    # -- configuration -----------------------------------------------------------------------------------------

    def add_news(self, symbol: str, *items: dict[str, Any]) -> None:
        """Items need `headline` and `published` (aware datetime); other fields get synthetic defaults."""
        stored = self.news.setdefault(symbol, [])
        for item in items:
            stored.append({
                "category": "company",
                "datetime": int(item["published"].timestamp()),
                "headline": item["headline"],
                "id": item.get("id", 1000 + len(stored)),
                "image": "",
                "related": symbol,
                "source": item.get("source", "Synthetic Wire"),
                "summary": item.get("summary", f"Synthetic summary of: {item['headline']}"),
                "url": f"https://example.invalid/{symbol}/{len(stored)}",
            })

    def add_profile(self, symbol: str, **overrides: Any) -> None:
        self.profiles[symbol] = {
            "country": "US", "currency": "USD", "exchange": "NEW YORK STOCK EXCHANGE, INC.",
            "finnhubIndustry": "Financial Services", "ipo": "1977-05-18", "logo": "",
            "marketCapitalization": 150000.0, "name": f"{symbol} Synthetic Corp", "phone": "",
            "shareOutstanding": 720.5, "ticker": symbol, "weburl": "https://example.invalid", **overrides,
        }

    def add_financials(self, symbol: str, quarterly: dict[str, list[tuple[str, float]]]) -> None:
        """`quarterly` maps a metric to [(period, value), ...]."""
        self.financials[symbol] = {
            "symbol": symbol, "metricType": "all", "metric": {},
            "series": {"annual": {}, "quarterly": {
                metric: [{"period": p, "v": v} for p, v in sorted(points, reverse=True)]
                for metric, points in quarterly.items()
            }},
        }

    def fail_next(self, pattern: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
                  message: str = "synthetic failure") -> None:
        self._failures.append(_Failure(pattern, status, times, headers or {}, {"error": message}))

    def stall_next(self, pattern: str, seconds: float, *, times: int = 1) -> None:
        self._failures.append(_Failure(pattern, 200, times, {}, {}, stall_s=seconds))

    def count(self, pattern: str) -> int:
        with self._lock:
            return sum(1 for c in self.calls if pattern in c.path)

    # -- server ------------------------------------------------------------------------------------------------

    @property
    def api_url(self) -> str:
        assert self._server is not None, "use FakeFinnhub as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/v1"

    def __enter__(self) -> FakeFinnhub:
        self._server = start_server(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_server(self._server)

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.pattern in path and failure.times > 0:
                    failure.times -= 1
                    return failure
        return None

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        url = urlsplit(req.path)
        path = re.sub(r"/+", "/", url.path)
        params = {k: v[0] for k, v in parse_qs(url.query).items()}
        if self.latency_s:
            time.sleep(self.latency_s)
        status, body, headers = self._route(path, params)
        with self._lock:
            self.calls.append(Call(path, params, time.monotonic(), status, time.time()))
        reply_json(req, status, body, headers)

    def _route(self, path: str, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if not params.get("token"):
            return 401, {"error": "Please use an API key."}, {}
        status, body, headers = self._answer(path, params)
        return status, body, {**self._rate_limit_headers(), **headers}

    def _rate_limit_headers(self) -> dict[str, str]:
        if self.per_minute_limit is None:
            return {}
        with self._lock:
            remaining = max(0, self.per_minute_limit - len(self._recent))
            oldest = self._recent[0] if self._recent else time.time()
        return {"X-Ratelimit-Limit": str(self.per_minute_limit), "X-Ratelimit-Remaining": str(remaining),
                "X-Ratelimit-Reset": str(math.ceil(oldest + self.window_s))}

    def _answer(self, path: str, params: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self.per_minute_limit is not None:
            now = time.time()  # epoch: the reset header is an epoch time
            with self._lock:
                while self._recent and self._recent[0] <= now - self.window_s:
                    self._recent.popleft()
                over = len(self._recent) >= self.per_minute_limit
                if not over:
                    self._recent.append(now)
            if over:
                return 429, {"error": "API limit reached. Please try again later."}, {}
        failure = self._take_failure(path)
        if failure is not None:
            if failure.stall_s:
                time.sleep(failure.stall_s)
            else:
                return failure.status, failure.body, failure.headers
        symbol = params.get("symbol", "")
        if path.endswith("/company-news"):
            first = dt.date.fromisoformat(params["from"])
            last = dt.date.fromisoformat(params["to"])
            items = [
                n for n in self.news.get(symbol, [])
                if first <= dt.datetime.fromtimestamp(n["datetime"], dt.UTC).date() <= last
            ]
            return 200, sorted(items, key=lambda n: -n["datetime"]), {}
        if path.endswith("/stock/profile2"):
            return 200, self.profiles.get(symbol, {}), {}
        if path.endswith("/stock/metric"):
            empty = {"symbol": symbol, "metricType": "all", "metric": {}, "series": {}}
            return 200, self.financials.get(symbol, empty), {}
        return 404, {"error": f"no such endpoint {path}"}, {}
