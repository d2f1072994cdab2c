"""A fake Yahoo Finance on 127.0.0.1, for running the real yfinance code offline.

yfinance talks to several hosts (fc.yahoo.com, query1/query2.finance.yahoo.com, finance.yahoo.com,
guce.yahoo.com) over HTTPS with hard-coded base URLs, so instead of patching yfinance we hand it a
`requests.Session` that rewrites every `https://<host>.yahoo.com/<path>` to
`http://127.0.0.1:PORT/<host>/<path>` (route 3 in reference/MARKET_DATA.md §2). The server then answers
from what the test registered:

    with FakeYahoo() as yahoo:
        yahoo.add_prices("AAPL", {date(2024, 3, 1): 100.0, date(2024, 3, 4): 101.0})
        source = YahooSource(session=yahoo.session())

Everything served is synthetic: invented headlines, round prices, fake ids (MARKET_DATA.md §5).

Endpoints answered (yfinance 1.7.0):
- `fc.yahoo.com/`                                   cookie: 200, empty body, a harmless Set-Cookie
- `query1|query2.finance.yahoo.com/v1/test/getcrumb` crumb: short text
- `guce.yahoo.com/consent`                          consent page without a csrfToken, so yfinance's
                                                    "csrf" cookie strategy fails fast and falls back
- `query2.finance.yahoo.com/v8/finance/chart/<T>`   chart JSON; honours period1/period2 and the range=1d
                                                    timezone probe; unknown ticker -> 404 chart error
- `query2.finance.yahoo.com/v10/finance/quoteSummary/<T>`  Ticker.info, part 1 (modules)
- `query1.finance.yahoo.com/v7/finance/quote?symbols=<T>`  Ticker.info, part 2 (flat quote)
- `query1.finance.yahoo.com/ws/fundamentals-timeseries/v1/finance/timeseries/<T>`  Ticker.info, part 3
- `POST finance.yahoo.com/xhr/ncp?queryRef=latestNews&serviceKey=ncp_fin`  Ticker.get_news
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit
from zoneinfo import ZoneInfo

import requests

NEW_YORK = ZoneInfo("America/New_York")
CRUMB = "FakeCrumb0001"

CHART_NOT_FOUND = {
    "chart": {"result": None, "error": {"code": "Not Found", "description": "No data found, symbol may be delisted"}}
}

# Where Ticker.info finds each key. quoteSummary groups keys into modules; yfinance flattens the modules and
# then overlays the v7 quote. A profile key listed nowhere goes into the v7 quote.
_QUOTE_SUMMARY_MODULES = {
    "assetProfile": {"industry", "sector", "country", "city", "state", "website", "longBusinessSummary",
                     "fullTimeEmployees"},
    "quoteType": {"longName", "shortName", "exchange", "quoteType", "firstTradeDateEpochUtc", "timeZoneFullName",
                  "timeZoneShortName"},
    "summaryDetail": {"marketCap", "currency", "previousClose", "dividendYield"},
    "defaultKeyStatistics": {"sharesOutstanding", "floatShares"},
    "financialData": {"currentPrice", "totalRevenue"},
}
_QUOTE_SUMMARY_ONLY = {"industry", "sector", "country", "city", "state", "website", "longBusinessSummary",
                       "fullTimeEmployees", "firstTradeDateEpochUtc", "timeZoneFullName", "timeZoneShortName"}


@dataclass
class _Failure:
    substring: str
    status: int
    remaining: int
    body: str | None


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeYahoo


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"  # keep-alive: yfinance makes several calls per operation
    disable_nagle_algorithm = True  # headers and body go out in two writes; Nagle would add ~40 ms each
    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server naming)
        self.server.fake._handle(self, "GET")

    def do_POST(self) -> None:  # noqa: N802
        self.server.fake._handle(self, "POST")

    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002
        pass  # keep pytest output clean; `FakeYahoo.requests` is the record


class YahooLoopbackSession(requests.Session):
    """A plain requests Session that sends every *.yahoo.com URL to the fake, and refuses any other host."""

    def __init__(self, port: int) -> None:
        super().__init__()
        self.trust_env = False  # never route 127.0.0.1 through an HTTP(S)_PROXY from the environment
        self._port = port

    def rewrite(self, url: str) -> str:
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if host == "127.0.0.1" and parts.port == self._port:
            return url
        if host != "yahoo.com" and not host.endswith(".yahoo.com"):
            raise requests.ConnectionError(f"FakeYahoo session refuses {url!r}: only *.yahoo.com is faked")
        return urlunsplit(("http", f"127.0.0.1:{self._port}", f"/{host}{parts.path or '/'}", parts.query, ""))

    def request(self, method, url, *args, **kwargs):  # type: ignore[override]
        return super().request(method, self.rewrite(str(url)), *args, **kwargs)


class FakeYahoo:
    """A loopback Yahoo Finance. Use as a context manager; register data, then hand out `session()`s."""

    def __init__(self, *, latency_s: float = 0.0) -> None:
        self.latency_s = latency_s
        self._lock = threading.Lock()
        self._requests: list[tuple[str, str, str]] = []
        self._prices: dict[str, dict[dt.date, tuple[float, float]]] = {}
        self._news: dict[str, list[dict[str, Any]]] = {}
        self._profiles: dict[str, dict[str, Any]] = {}
        self._failures: list[_Failure] = []
        self._sessions: list[requests.Session] = []
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------------------

    def __enter__(self) -> FakeYahoo:
        self.start()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    def start(self) -> None:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-yahoo", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        for session in self._sessions:
            session.close()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("FakeYahoo is not running; use `with FakeYahoo() as yahoo:`")
        return self._server.server_address[1]

    def session(self) -> YahooLoopbackSession:
        """A fresh requests Session whose *.yahoo.com traffic lands on this server."""
        session = YahooLoopbackSession(self.port)
        self._sessions.append(session)
        return session

    # -- configuration -----------------------------------------------------------------------------------

    def add_prices(self, symbol: str, closes: Mapping[dt.date, float],
                   *, adjusted: Mapping[dt.date, float] | None = None) -> None:
        """Daily closes (as traded) keyed by trading date; `adjusted` gives the dividend/split-adjusted close
        for some dates (default: same as the close)."""
        adjusted = adjusted or {}
        bars = self._prices.setdefault(symbol.upper(), {})
        for day, close in closes.items():
            bars[day] = (float(close), float(adjusted.get(day, close)))

    def add_news(self, symbol: str, items: Iterable[Mapping[str, Any]]) -> None:
        """News items: dicts with `title`, `summary`, `published` (aware datetime, or None to omit pubDate),
        optional `source`, `url`, `id`, `ad=True` (an advert, which yfinance drops). A dict that already has a
        `content` key is served as-is, for malformed-item tests."""
        stream = self._news.setdefault(symbol.upper(), [])
        for item in items:
            stream.append(dict(item) if "content" in item else _stream_item(symbol.upper(), len(stream), item))

    def add_profile(self, symbol: str, info: Mapping[str, Any]) -> None:
        """Flat `Ticker.info` keys (longName, industry, marketCap, firstTradeDateMilliseconds, ...). The fake
        splits them between quoteSummary modules and the v7 quote the way Yahoo does."""
        self._profiles[symbol.upper()] = dict(info)

    def fail_next(self, path_substring: str, status: int, times: int = 1, *, body: str | None = None) -> None:
        """Answer the next `times` requests whose `host/path?query` contains `path_substring` with `status`.
        Note that yfinance itself retries any >= 400 answer once (after refreshing its cookie), so one failure
        that yfinance should *see* takes `times=2`."""
        with self._lock:
            self._failures.append(_Failure(path_substring, status, times, body))

    # -- inspection --------------------------------------------------------------------------------------

    @property
    def requests(self) -> list[tuple[str, str, str]]:
        """(method, host, path-with-query) of every request so far, oldest first (a snapshot copy)."""
        with self._lock:
            return list(self._requests)

    def count(self, path_substring: str) -> int:
        """How many requests so far had `path_substring` in their `host/path?query`."""
        return sum(path_substring in f"{host}{path}" for _method, host, path in self.requests)

    # -- serving -----------------------------------------------------------------------------------------

    def _handle(self, handler: _Handler, method: str) -> None:
        body = b""
        length = int(handler.headers.get("Content-Length") or 0)
        if length:
            body = handler.rfile.read(length)
        parts = urlsplit(handler.path)
        _, _, rest = parts.path.partition("/")
        host, _, path = rest.partition("/")
        path = "/" + path
        full = path + (f"?{parts.query}" if parts.query else "")
        with self._lock:
            self._requests.append((method, host, full))
            failure = next((f for f in self._failures if f.substring in f"{host}{full}" and f.remaining > 0), None)
            if failure is not None:
                failure.remaining -= 1
        if self.latency_s:
            time.sleep(self.latency_s)
        if failure is not None:
            text = failure.body if failure.body is not None else _status_text(failure.status)
            _reply(handler, failure.status, text.encode(), "text/plain")
            return
        try:
            status, payload, headers = self._route(method, host, path, parse_qs(parts.query), body)
        except Exception as exc:  # a bug in the fake must show up as a loud 500, not a hang
            _reply(handler, 500, f"FakeYahoo error: {exc!r}".encode(), "text/plain")
            return
        if isinstance(payload, (dict, list)):
            _reply(handler, status, json.dumps(payload).encode(), "application/json", headers)
        else:
            _reply(handler, status, payload.encode(), "text/plain", headers)

    def _route(self, method: str, host: str, path: str, query: dict[str, list[str]],
               body: bytes) -> tuple[int, Any, dict[str, str]]:
        if host == "fc.yahoo.com":
            return 200, "", {"Set-Cookie": "A3=d=FAKE&S=FAKE; Path=/; HttpOnly"}
        if path == "/v1/test/getcrumb":
            return 200, CRUMB, {}
        if host in ("guce.yahoo.com", "consent.yahoo.com"):
            return 200, "<html><body>Consent (fake, no form)</body></html>", {}
        if path.startswith("/v8/finance/chart/"):
            return self._chart(path.rsplit("/", 1)[1].upper(), query)
        if path.startswith("/v10/finance/quoteSummary/"):
            return self._quote_summary(path.rsplit("/", 1)[1].upper(), query)
        if path == "/v7/finance/quote":
            return self._quote(query.get("symbols", [""])[0].upper())
        if path.startswith("/ws/fundamentals-timeseries/"):
            return 200, {"timeseries": {"result": [], "error": None}}, {}
        if method == "POST" and path == "/xhr/ncp":
            return self._news_stream(json.loads(body or b"{}"))
        return 404, {"finance": {"result": None, "error": {"code": "Not Found",
                                                           "description": f"FakeYahoo has no {host}{path}"}}}, {}

    def _chart(self, symbol: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        bars = self._prices.get(symbol)
        if bars is None:
            return 404, CHART_NOT_FOUND, {}
        days = sorted(bars)
        if "period1" in query:
            first = int(query["period1"][0])
            last = int(query.get("period2", [str(2**40)])[0])
            days = [day for day in days if first <= _open_epoch(day) < last]
        elif query.get("range", [""])[0] == "1d":
            days = days[-1:]
        meta = {
            "currency": "USD", "symbol": symbol, "exchangeName": "NMS", "fullExchangeName": "NasdaqGS",
            "instrumentType": "EQUITY", "gmtoffset": -14400, "timezone": "EDT",
            "exchangeTimezoneName": "America/New_York", "priceHint": 2, "dataGranularity": "1d", "range": "",
            "validRanges": ["1d", "5d", "1mo", "3mo", "6mo", "1y", "2y", "5y", "10y", "ytd", "max"],
        }
        result: dict[str, Any] = {"meta": meta}
        if days:
            closes = [bars[day][0] for day in days]
            result["timestamp"] = [_open_epoch(day) for day in days]
            result["indicators"] = {
                "quote": [{"open": closes, "high": closes, "low": closes, "close": closes,
                           "volume": [1_000_000] * len(days)}],
                "adjclose": [{"adjclose": [bars[day][1] for day in days]}],
            }
            meta["regularMarketPrice"] = closes[-1]
        else:  # what Yahoo sends for a window without trading days
            result["indicators"] = {"quote": [{}], "adjclose": [{}]}
        return 200, {"chart": {"result": [result], "error": None}}, {}

    def _quote_summary(self, symbol: str, query: dict[str, list[str]]) -> tuple[int, Any, dict[str, str]]:
        info = self._profiles.get(symbol)
        if info is None:
            error = {"code": "Not Found", "description": f"Quote not found for symbol: {symbol}"}
            return 404, {"quoteSummary": {"result": None, "error": error}}, {}
        wanted = query.get("modules", [""])[0].split(",")
        modules = {name: {k: v for k, v in info.items() if k in keys}
                   for name, keys in _QUOTE_SUMMARY_MODULES.items() if name in wanted}
        return 200, {"quoteSummary": {"result": [modules], "error": None}}, {}

    def _quote(self, symbol: str) -> tuple[int, Any, dict[str, str]]:
        info = self._profiles.get(symbol)
        if info is None:
            return 200, {"quoteResponse": {"result": [], "error": None}}, {}
        flat = {k: v for k, v in info.items() if k not in _QUOTE_SUMMARY_ONLY}
        return 200, {"quoteResponse": {"result": [{"symbol": symbol, **flat}], "error": None}}, {}

    def _news_stream(self, payload: dict[str, Any]) -> tuple[int, Any, dict[str, str]]:
        config = payload.get("serviceConfig", {})
        symbols = config.get("s") or [""]
        count = int(config.get("snippetCount", 10))
        stream = self._news.get(str(symbols[0]).upper(), [])
        newest_first = sorted(stream, key=lambda item: (item.get("content") or {}).get("pubDate") or "", reverse=True)
        return 200, {"data": {"tickerStream": {"stream": newest_first[:count], "nextPage": False}}}, {}


def _open_epoch(day: dt.date) -> int:
    """Yahoo stamps a daily bar with the session's 09:30 New York open, in epoch seconds."""
    return int(dt.datetime.combine(day, dt.time(9, 30), tzinfo=NEW_YORK).timestamp())


def _stream_item(symbol: str, index: int, item: Mapping[str, Any]) -> dict[str, Any]:
    uid = str(item.get("id") or f"00000000-fake-{symbol.lower()}-{index:04d}")
    published = item.get("published")
    url = item.get("url", f"https://finance.example.invalid/news/{uid}.html")
    content: dict[str, Any] = {
        "id": uid,
        "contentType": "STORY",
        "title": item.get("title"),
        "description": "",
        "summary": item.get("summary", ""),
        "isHosted": True,
        "thumbnail": None,
        "provider": {"displayName": item.get("source", "Example Wire"), "url": "https://wire.example.invalid/"},
        "canonicalUrl": {"url": url, "site": "finance", "region": "US", "lang": "en-US"},
        "clickThroughUrl": {"url": url, "site": "finance", "region": "US", "lang": "en-US"},
        "metadata": {"editorsPick": False},
        "storyline": None,
    }
    if published is not None:
        stamp = published.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        content["pubDate"] = stamp
        content["displayTime"] = stamp
    stream_item: dict[str, Any] = {"id": uid, "content": content}
    if item.get("ad"):
        stream_item["ad"] = [{"id": f"ad-{uid}"}]
    return stream_item


def _status_text(status: int) -> str:
    if status == 429:
        return "Too Many Requests\r\n"
    return f"{status} Fake Yahoo failure\r\n"


def _reply(handler: _Handler, status: int, body: bytes, content_type: str,
           headers: Mapping[str, str] | None = None) -> None:
    handler.send_response(status)
    handler.send_header("Content-Type", f"{content_type}; charset=utf-8")
    handler.send_header("Content-Length", str(len(body)))
    for name, value in (headers or {}).items():
        handler.send_header(name, value)
    handler.end_headers()
    handler.wfile.write(body)
