"""Yahoo Finance through yfinance: daily closes always; news and a company profile when no Finnhub key is set.

yfinance is imported lazily, on first use: it reads `YF_DISABLE_CURL_CFFI` when imported, and importing this
module must not touch the network or the environment.

How yfinance 1.7 reports trouble shapes most of this module:
- `yf.download` never raises for a ticker. It catches every error, logs a summary on the `yfinance` logger
  (`['ZZZZ']: possibly delisted; no timezone found`, `['AAPL']: YFRateLimitError('Too Many Requests. ...')`)
  and returns an empty column for that ticker. 1.7 keeps these errors in a per-call context, so
  `yf.shared._ERRORS` stays empty; the log is the only place that says *why* a ticker came back empty, so
  `_YfLog` listens to it (in this thread only) during each call.
- Any HTTP answer >= 400 is retried once by yfinance itself (after refreshing its cookie); a second 429 raises
  `YFRateLimitError`. A 404 is not an exception: the chart JSON carries `{"error": {"code": "Not Found"}}`.
- News and `Ticker.info` swallow HTTP errors and return `[]` / `{}`, which would look like "no news" or an
  unknown ticker; the log tells them apart here too.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import threading
import time
import warnings
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Protocol, TypeVar
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.exceptions import MissingApiKey, NoPriceData, SourceUnavailable, UnknownTicker
from engine.records import BasicFinancials, CompanyProfile, DailyClose, NewsItem
from engine.sources.base import in_window
from engine.sources.symbols import yahoo_symbol

if TYPE_CHECKING:
    import pandas as pd
    import requests

T = TypeVar("T")

MAX_BACKOFF_S = 30.0

# What a failed ticker's log lines can say, from most to least actionable.
_RATE_LIMITED = "rate limited"
_TRANSIENT = "transient"  # the request failed (5xx, timeout, garbled body): worth another try
_NOT_FOUND = "not found"  # Yahoo answered and had nothing: retrying cannot help
_UNSURE = "unsure"  # "no price data found" covers an empty window and a swallowed error alike

_RATE_LIMIT_MARKERS = ("YFRateLimitError", "Too Many Requests", "Rate limited")
# Lines that mean the request itself failed: exception reprs in download()'s summary, the timezone probe's
# failure line, news's "faulty response", an HTTPError text for a 5xx.
_TRANSIENT_PATTERN = re.compile(
    r"\w+(Error|Exception|Timeout)\(|Failed to get ticker|Could not get exchangeTimezoneName"
    r"|Failed to retrieve the news|\b5\d\d Server Error|CURRENTLY DOWN"
)
_AMBIGUOUS_MARKER = "no price data found"
# download()'s summary: "['AAPL', 'MSFT']: reason"; history()'s own line: "$AAPL: reason".
_SUMMARY_LINE = re.compile(r"^\[([^\]]*)\]: (.*)$", re.DOTALL)
_TICKER_LINE = re.compile(r"^\$([^:\s]+): (.*)$", re.DOTALL)
_TZ_PROBE_LINE = re.compile(r"ticker '([^']+)'")


class Limiter(Protocol):
    def acquire(self) -> None:
        """Block until one more call to the provider is allowed."""


class YahooSource:
    """Yahoo Finance behind the engine's PriceSource, NewsSource and FundamentalsSource protocols.

    `session` goes to yfinance as-is (a curl_cffi or plain requests Session; None lets yfinance build its
    curl_cffi one). Note that yfinance keeps ONE process-wide session: passing one here replaces it for every
    later yfinance call in the process. `limiter.acquire()` runs before each download, news or info call,
    retries included. Rate limits and failed requests are retried `retries` times, sleeping
    `backoff_s * 2**attempt` seconds (capped at 30 s) through `sleep`.
    """

    name = "yahoo"

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        limiter: Limiter | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
        sleep: Callable[[float], None] = time.sleep,
        news_count: int = 50,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.session = session
        self.limiter = limiter
        self.retries = retries
        self.backoff_s = backoff_s
        self.news_count = news_count
        self._sleep = sleep

    # -- PriceSource -------------------------------------------------------------------------------------

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        """Adjusted daily closes for each symbol with start <= date <= end, oldest first.

        One `yf.download` per attempt fetches every symbol still missing. Symbols that come back empty are
        fetched again with backoff when Yahoo rate-limited them or the request failed, or when nothing at all
        came back and the log does not say why; a ticker Yahoo does not know is not retried. Raises
        SourceUnavailable when the rate limit or the failures outlast the retries, and NoPriceData naming every
        symbol that is still empty otherwise. Class shares are asked for in Yahoo's spelling (BRK.B as BRK-B) and
        returned under the caller's.
        """
        asked = list(dict.fromkeys(symbols))
        found = self._closes_by_yahoo_symbol(list(dict.fromkeys(yahoo_symbol(s) for s in asked)), start, end)
        return {sym: found[yahoo_symbol(sym)] for sym in asked}

    def _closes_by_yahoo_symbol(self, wanted: list[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        if not wanted:
            return {}
        found: dict[str, list[DailyClose]] = {}
        kinds: dict[str, str] = {}
        last_said: dict[str, str] = {}  # yfinance's word on each failing symbol, for the error message
        pending = wanted
        for attempt in range(self.retries + 1):
            if attempt:
                self._backoff(attempt - 1)
                _forget_cached_responses()
            frame, log = self._download(pending, start, end)
            got = {sym: _closes_from_frame(frame, sym, len(pending), start, end) for sym in pending}
            found.update({sym: closes for sym, closes in got.items() if closes})
            missing = [sym for sym in pending if not got[sym]]
            if not missing:
                break
            said = {sym: log.messages_for(sym) for sym in missing}
            kinds.update({sym: _classify(lines) for sym, lines in said.items()})
            last_said.update({sym: _most_telling(lines) for sym, lines in said.items() if lines})
            nothing_came_back = len(missing) == len(pending)
            pending = [
                sym for sym in missing
                if kinds[sym] in (_RATE_LIMITED, _TRANSIENT) or (nothing_came_back and kinds[sym] == _UNSURE)
            ]
            if not pending:
                break

        missing = [sym for sym in wanted if sym not in found]
        failing = [sym for sym in missing if kinds.get(sym) in (_RATE_LIMITED, _TRANSIENT)]
        if failing:
            why = "rate-limited" if any(kinds[sym] == _RATE_LIMITED for sym in failing) else "failed"
            raise SourceUnavailable(
                f"Yahoo Finance {why} the price request for {', '.join(failing)} "
                f"({start.isoformat()} to {end.isoformat()}) {self.retries + 1} times in a row "
                f"(cause: {last_said.get(failing[0], 'no reason given')[:160]}); check the network and "
                "try again in a few minutes."
            )
        if missing:
            raise NoPriceData(
                f"no prices for {', '.join(missing)} between {start.isoformat()} and {end.isoformat()} "
                "(unknown or delisted ticker?)"
            )
        return {sym: found[sym] for sym in wanted}

    def _download(self, symbols: list[str], start: dt.date, end: dt.date) -> tuple[pd.DataFrame, _YfLog]:
        yf = _yfinance()
        self._acquire()
        with _YfLog.capture() as log, warnings.catch_warnings():
            # yfinance 1.7 on pandas 3 warns about its own `inplace=` calls on every download; not ours to fix,
            # and noise in every CLI run.
            warnings.filterwarnings("ignore", message=".*inplace.*")
            frame = yf.download(
                list(symbols),
                start=start,
                end=end + dt.timedelta(days=1),  # yfinance's end is exclusive; ours is inclusive
                interval="1d",
                auto_adjust=True,  # explicit: Close is then split- and dividend-adjusted, no "Adj Close"
                progress=False,
                threads=False,
                multi_level_index=True,
                group_by="column",
                **self._session_kwargs(),
            )
        return frame, log

    # -- NewsSource --------------------------------------------------------------------------------------

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        """Yahoo's latest news about `symbol` published in [start, end], oldest first, boilerplate removed.

        The fallback news source when no Finnhub key is set. Yahoo only serves the latest few dozen items
        (`news_count`, at most), so a window more than a few days or weeks old comes back empty: that is
        Yahoo's limit, not an error. Items without a title or publication time are skipped.
        """
        yf = _yfinance()

        def fetch() -> list[dict[str, Any]]:
            # A fresh Ticker per call: Ticker caches its news per instance.
            return yf.Ticker(yahoo_symbol(symbol), **self._session_kwargs()).get_news(count=self.news_count,
                                                                                      tab="news")

        raw = self._call(f"news for {symbol}", fetch)
        items = [item for item in (_news_item(entry) for entry in raw or []) if item is not None]
        return in_window(items, start, end)

    # -- FundamentalsSource ------------------------------------------------------------------------------

    def profile(self, symbol: str) -> CompanyProfile:
        """The company profile from `Ticker.info`, in Finnhub's field names and units (millions).

        Raises UnknownTicker when Yahoo has no name for the symbol.
        """
        yf = _yfinance()
        info = self._call(f"the profile of {symbol}",
                          lambda: yf.Ticker(yahoo_symbol(symbol), **self._session_kwargs()).info)
        info = info or {}
        name = info.get("longName") or info.get("shortName")
        if not name:
            raise UnknownTicker(
                f"no company profile for {symbol} on Yahoo Finance (unknown or delisted ticker?); "
                "check the symbol, or set a Finnhub key to use Finnhub's profiles."
            )
        return CompanyProfile(
            ticker=symbol,
            name=str(name),
            finnhubIndustry=str(info.get("industry") or info.get("sector") or ""),
            ipo=_first_trade_date(info),
            marketCapitalization=_millions(info.get("marketCap")),
            shareOutstanding=_millions(info.get("sharesOutstanding")),
            currency=str(info.get("currency") or ""),
            country=str(info.get("country") or ""),
            exchange=str(info.get("fullExchangeName") or info.get("exchange") or ""),
        )

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        """Not available: Yahoo's statements are not Finnhub's basic-financials series the model was tuned on.
        Raises MissingApiKey; forecasts then say "No basic financial reported." and note why."""
        raise MissingApiKey(
            f"basic financials for {symbol} come from Finnhub: set FINNHUB_API_KEY (the free plan is enough) "
            "or leave financials out"
        )

    # -- plumbing ----------------------------------------------------------------------------------------

    def _session_kwargs(self) -> dict[str, Any]:
        return {} if self.session is None else {"session": self.session}

    def _acquire(self) -> None:
        if self.limiter is not None:
            self.limiter.acquire()

    def _backoff(self, attempt: int) -> None:
        self._sleep(min(self.backoff_s * 2**attempt, MAX_BACKOFF_S))

    def _call(self, what: str, fetch: Callable[[], T]) -> T:
        """One yfinance call (news, info) with throttling and retries on rate limits and failed requests."""
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                self._backoff(attempt - 1)
            self._acquire()
            with _YfLog.capture() as log:
                try:
                    result = fetch()
                except Exception as exc:
                    if _is_rate_limit(exc):
                        problem = "rate limited"
                        continue
                    if _is_transient(exc):
                        problem = f"{type(exc).__name__}: {exc}"
                        continue
                    raise
            trouble = log.trouble()
            if not trouble:
                return result
            problem = trouble
        raise SourceUnavailable(
            f"Yahoo Finance kept failing to return {what} ({self.retries + 1} attempts, last: {problem}); "
            "try again in a few minutes."
        )


# -- yfinance's log -------------------------------------------------------------------------------------


class _YfLog(logging.Handler):
    """What yfinance logs in the current thread while one call runs (its only record of per-ticker errors).

    If the application raises the `yfinance` logger's level above ERROR, nothing is captured and every empty
    ticker counts as "unsure": retried when nothing came back, then reported as NoPriceData.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed record must not break the data call
            self.messages.append(str(record.msg))

    @classmethod
    @contextmanager
    def capture(cls) -> Iterator[_YfLog]:
        handler = cls()
        logger = logging.getLogger("yfinance")
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)

    def messages_for(self, symbol: str) -> list[str]:
        """The lines that name `symbol` (yfinance upper-cases tickers)."""
        wanted = symbol.upper()
        found = []
        for message in self.messages:
            text = message.strip()
            if match := _SUMMARY_LINE.match(text):
                if wanted in re.findall(r"'([^']*)'", match.group(1)):
                    found.append(match.group(2))
            elif match := _TICKER_LINE.match(text):
                if match.group(1).upper() == wanted:
                    found.append(match.group(2))
            elif (match := _TZ_PROBE_LINE.search(text)) and match.group(1).upper() == wanted:
                found.append(text)
        return found

    def trouble(self) -> str:
        """The first line saying a request failed or was rate-limited (yfinance then returned [] or {})."""
        for message in self.messages:
            if any(marker in message for marker in _RATE_LIMIT_MARKERS) and "continuing without crumb" not in message:
                return message.strip()[:200]
            if _TRANSIENT_PATTERN.search(message):
                return message.strip()[:200]
        return ""


def _most_telling(messages: list[str]) -> str:
    """The line that best explains a failure: a rate limit or a failed request beats a vague 'delisted?'."""
    for message in messages:
        if _classify([message]) in (_RATE_LIMITED, _TRANSIENT):
            return message
    return messages[-1]


def _classify(messages: list[str]) -> str:
    if any(marker in message for message in messages for marker in _RATE_LIMIT_MARKERS):
        return _RATE_LIMITED
    if any(_TRANSIENT_PATTERN.search(message) for message in messages):
        return _TRANSIENT
    if not messages or any(_AMBIGUOUS_MARKER in message for message in messages):
        return _UNSURE
    # "possibly delisted; no timezone found" (the chart probe got Yahoo's 404 JSON) or Yahoo's own reason,
    # e.g. "No data found, symbol may be delisted".
    return _NOT_FOUND


def _is_rate_limit(exc: BaseException) -> bool:
    return type(exc).__name__ == "YFRateLimitError"


def _is_transient(exc: BaseException) -> bool:
    """Network trouble or a garbled answer (e.g. an HTML error page where JSON was expected)."""
    if isinstance(exc, (TimeoutError, ConnectionError, json.JSONDecodeError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError",
                         "RemoteDisconnected", "JSONDecodeError"})


# -- shapes ---------------------------------------------------------------------------------------------


def _closes_from_frame(frame: pd.DataFrame | None, symbol: str, n_symbols: int,
                       start: dt.date, end: dt.date) -> list[DailyClose]:
    """One symbol's non-NaN closes from download()'s frame, dated, inside [start, end], oldest first."""
    import pandas as pd

    if frame is None or frame.empty:
        return []
    ticker = symbol.upper()
    columns = frame.columns
    if isinstance(columns, pd.MultiIndex):
        level = next(
            (lvl for lvl in (["Ticker"] if "Ticker" in columns.names else range(columns.nlevels))
             if ticker in columns.get_level_values(lvl)),
            None,
        )
        if level is None:
            return []
        sub = frame.xs(ticker, axis=1, level=level)
    elif n_symbols == 1:  # a single ticker flattened by multi_level_index=False
        sub = frame
    else:
        return []
    if "Close" not in sub.columns:
        return []
    by_day: dict[dt.date, float] = {}
    for stamp, value in sub["Close"].dropna().items():
        # The wall date in the index's own timezone: tz-naive from download(), exchange-local midnight from
        # Ticker.history(). Converting would move non-US sessions to another day.
        day = pd.Timestamp(stamp).date()
        if start <= day <= end:
            by_day[day] = float(value)
    return [DailyClose(date=day, close=close) for day, close in sorted(by_day.items())]


def _news_item(entry: Any) -> NewsItem | None:
    if not isinstance(entry, dict):
        return None
    content = entry.get("content") or {}
    title = (content.get("title") or "").strip()
    published = _parse_utc(content.get("pubDate"))
    if not title or published is None:
        return None
    url = (content.get("canonicalUrl") or {}).get("url") or (content.get("clickThroughUrl") or {}).get("url") or ""
    return NewsItem(
        published=published,
        headline=title,
        summary=(content.get("summary") or content.get("description") or "").strip(),
        source=(content.get("provider") or {}).get("displayName") or "",
        url=url,
    )


def _parse_utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def _first_trade_date(info: dict[str, Any]) -> str:
    """YYYY-MM-DD of the first trade, in the exchange's timezone when Yahoo gives it.

    yfinance 1.7's info carries `firstTradeDateMilliseconds` (v7 quote, ms) and `firstTradeDateEpochUtc`
    (quoteSummary, s); either may be missing.
    """
    if isinstance(info.get("firstTradeDateMilliseconds"), (int, float)):
        seconds = info["firstTradeDateMilliseconds"] / 1000
    elif isinstance(info.get("firstTradeDateEpochUtc"), (int, float)):
        seconds = info["firstTradeDateEpochUtc"]
    else:
        return ""
    zone: dt.tzinfo = dt.UTC
    name = info.get("exchangeTimezoneName") or info.get("timeZoneFullName")
    if isinstance(name, str) and name:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return dt.datetime.fromtimestamp(seconds, tz=zone).date().isoformat()


def _millions(value: Any) -> float:
    return float(value) / 1e6 if isinstance(value, (int, float)) else 0.0


# -- yfinance access ------------------------------------------------------------------------------------


def _yfinance() -> Any:
    import yfinance

    return yfinance


def _forget_cached_responses() -> None:
    """Drop yfinance's in-memory response cache before a retry.

    yfinance memoizes chart GETs (the timezone probe always, history when the window ended > 30 min ago) in a
    process-wide LRU, error answers included: without this a retry after a 5xx replays the cached 5xx. Rate
    limits raise inside the call and are never cached. Private API, so guarded.
    """
    from yfinance.data import YfData

    cache_get = getattr(YfData, "cache_get", None)
    if cache_get is not None and hasattr(cache_get, "cache_clear"):
        cache_get.cache_clear()
