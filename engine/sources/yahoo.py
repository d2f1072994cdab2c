"""Yahoo Finance through yfinance: daily closes always; news and a company profile when no Finnhub key is set.

yfinance is imported lazily, on first use: it reads `YF_DISABLE_CURL_CFFI` when imported, and importing this
module must not touch the network or the environment.

yfinance never raises for a ticker it failed to fetch (`yf.download`) and swallows HTTP errors into `[]` / `{}`
(news, `Ticker.info`): what went wrong is only in its log, which engine.sources.yahoo_log reads and classifies to
decide what is retried. Reading the answers into the engine's records is engine.sources.yahoo_shapes.
"""

from __future__ import annotations

import datetime as dt
import time
import warnings
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from engine.exceptions import MissingApiKey, NoPriceData, SourceUnavailable, UnknownTicker
from engine.records import BasicFinancials, CompanyProfile, DailyClose, NewsItem
from engine.retry import Backoff, RetriesExhausted, Retryable, RetryPolicy, call_with_retries
from engine.sources.base import in_window
from engine.sources.symbols import yahoo_symbol
from engine.sources.yahoo_log import (
    RATE_LIMITED,
    TRANSIENT,
    UNSURE,
    YfLog,
    classify,
    is_rate_limit,
    is_transient,
    most_telling,
)
from engine.sources.yahoo_shapes import closes_from_frame, company_profile, news_item

if TYPE_CHECKING:
    import pandas as pd
    import requests

T = TypeVar("T")

MAX_BACKOFF_S = 30.0  # any one wait
MAX_TOTAL_WAIT_S = 120.0  # all the waits of one call together


class Limiter(Protocol):
    def acquire(self) -> None:
        """Block until one more call to the provider is allowed."""


class YahooSource:
    """Yahoo Finance behind the engine's PriceSource, NewsSource and FundamentalsSource protocols.

    `session` goes to yfinance as-is (a curl_cffi or plain requests Session; None lets yfinance build its
    curl_cffi one). Note that yfinance keeps ONE process-wide session: passing one here replaces it for every
    later yfinance call in the process. `limiter.acquire()` runs before each download, news or info call,
    retries included. Rate limits and failed requests are retried `retries` times, sleeping
    `backoff_s * 2**attempt` seconds (capped at 30 s, and at `max_total_wait_s` for all the waits of one call)
    through `sleep`, by `engine.retry`'s loop. yfinance hides the HTTP answer, so no Retry-After is read here.
    """

    name = "yahoo"

    def __init__(
        self,
        *,
        session: requests.Session | None = None,
        limiter: Limiter | None = None,
        retries: int = 3,
        backoff_s: float = 1.0,
        max_total_wait_s: float = MAX_TOTAL_WAIT_S,
        sleep: Callable[[float], None] = time.sleep,
        news_count: int = 50,
    ) -> None:
        if retries < 0:
            raise ValueError(f"retries must be >= 0, got {retries}")
        self.session = session
        self.limiter = limiter
        self.retries = retries
        self.backoff_s = backoff_s
        self.max_total_wait_s = max_total_wait_s
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
        tries = 0

        def attempt() -> None:
            nonlocal pending, tries
            if tries:
                _forget_cached_responses()
            tries += 1
            frame, log = self._download(pending, start, end)
            got = {sym: closes_from_frame(frame, sym, len(pending), start, end) for sym in pending}
            found.update({sym: closes for sym, closes in got.items() if closes})
            missing = [sym for sym in pending if not got[sym]]
            if not missing:
                return
            said = {sym: log.messages_for(sym) for sym in missing}
            kinds.update({sym: classify(lines) for sym, lines in said.items()})
            last_said.update({sym: most_telling(lines) for sym, lines in said.items() if lines})
            nothing_came_back = len(missing) == len(pending)
            pending = [
                sym for sym in missing
                if kinds[sym] in (RATE_LIMITED, TRANSIENT) or (nothing_came_back and kinds[sym] == UNSURE)
            ]
            if pending:  # only these are fetched again
                raise Retryable(f"{len(pending)} of {len(wanted)} symbols still missing")

        try:
            call_with_retries(attempt, self._policy(), sleep=self._sleep)
        except RetriesExhausted:
            pass  # what is still missing, and why, is said below

        missing = [sym for sym in wanted if sym not in found]
        failing = [sym for sym in missing if kinds.get(sym) in (RATE_LIMITED, TRANSIENT)]
        if failing:
            why = "rate-limited" if any(kinds[sym] == RATE_LIMITED for sym in failing) else "failed"
            raise SourceUnavailable(
                f"Yahoo Finance {why} the price request for {', '.join(failing)} "
                f"({start.isoformat()} to {end.isoformat()}) {tries} times in a row "
                f"(cause: {last_said.get(failing[0], 'no reason given')[:160]}); check the network and "
                "try again in a few minutes."
            )
        if missing:
            raise NoPriceData(
                f"no prices for {', '.join(missing)} between {start.isoformat()} and {end.isoformat()} "
                "(unknown or delisted ticker?)"
            )
        return {sym: found[sym] for sym in wanted}

    def _download(self, symbols: list[str], start: dt.date, end: dt.date) -> tuple[pd.DataFrame, YfLog]:
        yf = _yfinance()
        self._acquire()
        with YfLog.capture() as log, warnings.catch_warnings():
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
        items = [item for item in (news_item(entry) for entry in raw or []) if item is not None]
        return in_window(items, start, end)

    # -- FundamentalsSource ------------------------------------------------------------------------------

    def profile(self, symbol: str) -> CompanyProfile:
        """The company profile from `Ticker.info`, in Finnhub's field names and units (millions).

        Raises UnknownTicker when Yahoo has no name for the symbol.
        """
        yf = _yfinance()
        info = self._call(f"the profile of {symbol}",
                          lambda: yf.Ticker(yahoo_symbol(symbol), **self._session_kwargs()).info)
        profile = company_profile(symbol, info or {})
        if profile is None:
            raise UnknownTicker(
                f"no company profile for {symbol} on Yahoo Finance (unknown or delisted ticker?); "
                "check the symbol, or set a Finnhub key to use Finnhub's profiles."
            )
        return profile

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

    def _policy(self) -> RetryPolicy:
        return RetryPolicy(attempts=self.retries + 1, backoff=Backoff(self.backoff_s, MAX_BACKOFF_S),
                           max_wait_s=MAX_BACKOFF_S, max_total_wait_s=self.max_total_wait_s)

    def _call(self, what: str, fetch: Callable[[], T]) -> T:
        """One yfinance call (news, info) with throttling and retries on rate limits and failed requests."""

        def attempt() -> T:
            self._acquire()
            with YfLog.capture() as log:
                try:
                    result = fetch()
                except Exception as exc:
                    if is_rate_limit(exc):
                        raise Retryable("rate limited") from exc
                    if is_transient(exc):
                        raise Retryable(f"{type(exc).__name__}: {exc}") from exc
                    raise
            trouble = log.trouble()
            if trouble:
                raise Retryable(trouble)
            return result

        try:
            return call_with_retries(attempt, self._policy(), sleep=self._sleep)
        except RetriesExhausted as gave_up:
            raise SourceUnavailable(
                f"Yahoo Finance kept failing to return {what} ({gave_up.attempts} attempts, last: "
                f"{gave_up.last.reason}); try again in a few minutes."
            ) from None


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
