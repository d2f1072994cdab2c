"""A read-through cache in front of every market data source.

What lives how long (MARKET_DATA.md §1): news and prices of a closed window never change, so they are kept a month
after they were last read (Redis runs without eviction: nothing may be kept forever, and a window no forecast reads
any more is dropped); profiles and basic financials live about a day; anything touching the current week lives a
few minutes. Errors are never cached; an empty result is (a quiet week is a real answer).

A window still open (its end within `settle_s` of now) is cached by its start alone, not by its end: a live
forecast's newest window ends at the moment it is asked, so a key naming the end was never read twice. The entry
says up to when it was fetched and when; a later request for the same window is answered from it (its articles up
to the request's end) when the entry reaches as far, or when it reached everything known at its fetch (then it is
as stale as its TTL allows, a few minutes, like any cached open window).

The cache stores our own records as JSON, so a cached answer is byte-for-byte what the source returned.
"""

from __future__ import annotations

import datetime as dt
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import redis
from pydantic import BaseModel, TypeAdapter

from engine.market.weeks import NEW_YORK
from engine.records import BasicFinancials, CompanyProfile, DailyClose, NewsItem
from engine.sources.base import FundamentalsSource, NewsSource, PriceSource

# Bump when a record's shape changes, so old entries are simply never read again.
CACHE_VERSION = "v1"
KEY_PREFIX = f"fc:md:{CACHE_VERSION}"


@dataclass(frozen=True)
class CachePolicy:
    fundamentals_ttl_s: int = 24 * 3600
    open_window_ttl_s: int = 10 * 60
    # A closed window is kept this long after it was last read (each read renews it).
    closed_window_ttl_s: int = 30 * 24 * 3600
    # News providers index articles a little late; a window counts as closed only this long after it ends.
    settle_s: int = 6 * 3600


class Cache(Protocol):
    def get(self, key: str, *, renew_ttl_s: int | None = None) -> str | None:
        """The value, or None; `renew_ttl_s`: a value found lives that long from now."""
        ...

    def set(self, key: str, value: str, ttl_s: int | None) -> None: ...


class RedisCache:
    def __init__(self, conn: redis.Redis) -> None:
        self._conn = conn

    def get(self, key: str, *, renew_ttl_s: int | None = None) -> str | None:
        if renew_ttl_s is None:
            value = self._conn.get(key)
        else:  # one round trip; EXPIRE of a missing key does nothing (GETEX would want Redis 6.2)
            with self._conn.pipeline(transaction=False) as pipe:
                value, _ = pipe.get(key).expire(key, renew_ttl_s).execute()
        return value.decode() if isinstance(value, bytes) else value

    def set(self, key: str, value: str, ttl_s: int | None) -> None:
        self._conn.set(key, value, ex=ttl_s)


class MemoryCache:
    """Per-process cache for when no Redis is configured (CLI runs)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._items: dict[str, tuple[str, float | None]] = {}
        self._clock = clock
        self._lock = threading.Lock()

    def get(self, key: str, *, renew_ttl_s: int | None = None) -> str | None:
        with self._lock:
            item = self._items.get(key)
            if item is None:
                return None
            value, expires = item
            if expires is not None and self._clock() >= expires:
                del self._items[key]
                return None
            if renew_ttl_s is not None:
                self._items[key] = (value, self._clock() + renew_ttl_s)
            return value

    def set(self, key: str, value: str, ttl_s: int | None) -> None:
        with self._lock:
            self._items[key] = (value, None if ttl_s is None else self._clock() + ttl_s)


_NEWS = TypeAdapter(list[NewsItem])


class _OpenWindowNews(BaseModel):
    """An open window's cached news: fetched up to `to`, at `at`."""

    to: dt.datetime
    at: dt.datetime
    items: list[NewsItem]

_CLOSES = TypeAdapter(list[DailyClose])
_REPORTS = TypeAdapter(list[BasicFinancials])

Now = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass
class CacheStats:
    hits: int = 0
    misses: int = 0


class CachedSources:
    """Wraps one news, one fundamentals and one price source; implements all three protocols."""

    def __init__(
        self,
        *,
        news: NewsSource,
        fundamentals: FundamentalsSource,
        prices: PriceSource,
        cache: Cache,
        policy: CachePolicy = CachePolicy(),
        now: Now = _utcnow,
    ) -> None:
        self._news, self._fundamentals, self._prices = news, fundamentals, prices
        self._cache = cache
        self._policy = policy
        self._now = now
        self.stats = CacheStats()
        # Named after the news/fundamentals provider: that is what notes shown to users refer to.
        self.name = news.name

    # -- policy ------------------------------------------------------------------------------------------------

    def _closed(self, end: dt.datetime) -> bool:
        return end + dt.timedelta(seconds=self._policy.settle_s) <= self._now()

    def _ttl_for_window_end(self, end: dt.datetime) -> int:
        return self._policy.closed_window_ttl_s if self._closed(end) else self._policy.open_window_ttl_s

    def _through(self, key: str, ttl_s: int, fetch: Callable[[], str], *, renew: bool = False) -> str:
        """`renew`: a hit lives `ttl_s` from now (a closed window, kept while it is read)."""
        cached = self._cache.get(key, renew_ttl_s=ttl_s if renew else None)
        if cached is not None:
            self.stats.hits += 1
            return cached
        self.stats.misses += 1
        fresh = fetch()
        self._cache.set(key, fresh, ttl_s)
        return fresh

    # -- NewsSource --------------------------------------------------------------------------------------------

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        window = f"{KEY_PREFIX}:news:{self._news.name}:{symbol}:{start.isoformat()}"
        if not self._closed(end):
            return self._open_window_news(f"{window}:open", symbol, start, end)
        raw = self._through(
            f"{window}:{end.isoformat()}",
            self._policy.closed_window_ttl_s,
            lambda: _NEWS.dump_json(self._news.company_news(symbol, start, end)).decode(),
            renew=True,
        )
        return _NEWS.validate_json(raw)

    def _open_window_news(self, key: str, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        """A window still open, cached by its start (see the module docstring): {"to", "at", "items"}."""
        raw = self._cache.get(key)
        if raw is not None:
            entry = _OpenWindowNews.model_validate_json(raw)
            if entry.to >= end or entry.to >= entry.at:  # it reaches this end, or all there was at its fetch
                self.stats.hits += 1
                return [item for item in entry.items if item.published <= end]
        self.stats.misses += 1
        at = self._now()
        items = self._news.company_news(symbol, start, end)
        self._cache.set(key, _OpenWindowNews(to=end, at=at, items=items).model_dump_json(),
                        self._policy.open_window_ttl_s)
        return items

    # -- FundamentalsSource ------------------------------------------------------------------------------------

    def profile(self, symbol: str) -> CompanyProfile:
        key = f"{KEY_PREFIX}:profile:{self._fundamentals.name}:{symbol}"
        raw = self._through(
            key, self._policy.fundamentals_ttl_s, lambda: self._fundamentals.profile(symbol).model_dump_json()
        )
        return CompanyProfile.model_validate_json(raw)

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        key = f"{KEY_PREFIX}:financials:{self._fundamentals.name}:{symbol}"
        raw = self._through(
            key,
            self._policy.fundamentals_ttl_s,
            lambda: _REPORTS.dump_json(self._fundamentals.quarterly_financials(symbol)).decode(),
        )
        return _REPORTS.validate_json(raw)

    # -- PriceSource -------------------------------------------------------------------------------------------

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        """Cached per symbol; the symbols not in the cache are fetched together in one call."""

        def key(symbol: str) -> str:
            return f"{KEY_PREFIX}:closes:{self._prices.name}:{symbol}:{start.isoformat()}:{end.isoformat()}"

        result: dict[str, list[DailyClose]] = {}
        missing = []
        # A closed range's hit is renewed for another closed_window_ttl_s; an open one's just expires.
        renew = self._policy.closed_window_ttl_s if self._closed(self._last_close(end)) else None
        for symbol in dict.fromkeys(symbols):
            raw = self._cache.get(key(symbol), renew_ttl_s=renew)
            if raw is None:
                missing.append(symbol)
            else:
                result[symbol] = _CLOSES.validate_json(raw)
        self.stats.hits += len(result)
        self.stats.misses += len(missing)
        if missing:
            ttl = self._ttl_for_window_end(self._last_close(end))
            fetched = self._prices.daily_closes(missing, start, end)
            for symbol in missing:
                closes = fetched[symbol]
                self._cache.set(key(symbol), _CLOSES.dump_json(closes).decode(), ttl)
                result[symbol] = closes
        return {symbol: result[symbol] for symbol in dict.fromkeys(symbols)}

    @staticmethod
    def _last_close(day: dt.date) -> dt.datetime:
        """The day's close is final from 16:00 New York (settled a little longer for late corrections)."""
        return dt.datetime.combine(day, dt.time(16, 0), tzinfo=NEW_YORK)
