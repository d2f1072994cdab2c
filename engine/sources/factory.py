"""Build the production sources from the engine's settings: which provider serves what, behind which cache and limiter.

- DATA_SNAPSHOT_DIR set: everything from the snapshot, no network at all.
- FINNHUB_API_KEY set: news, profile and financials from Finnhub; prices from Yahoo.
- no key: news and profile from Yahoo (recent articles only), no basic financials; prices from Yahoo.
Everything live sits behind the cache (Redis when a connection is given, else this process's memory) and a rate
limiter per provider (shared through Redis across processes when a connection is given).
"""

from __future__ import annotations

import time
from collections.abc import Callable

import redis
import requests

from engine.data.inputs import Sources
from engine.settings import EngineSettings
from engine.sources.cache import CachedSources, MemoryCache, RedisCache
from engine.sources.finnhub import FinnhubSource, RetryPolicy, build_client
from engine.sources.ratelimit import Limit, LocalRateLimiter, RedisRateLimiter, finnhub_limits
from engine.sources.snapshot import SnapshotSource
from engine.sources.yahoo import YahooSource

LIMITER_KEY_PREFIX = "fc:ratelimit"


def build_sources(
    settings: EngineSettings,
    *,
    conn: redis.Redis | None = None,
    yahoo_session: requests.Session | None = None,
    sleep: Callable[[float], None] = time.sleep,
    retry_policy: RetryPolicy = RetryPolicy(),
) -> Sources:
    if settings.data_snapshot_dir is not None:
        snapshot = SnapshotSource(settings.data_snapshot_dir)
        return Sources(news=snapshot, fundamentals=snapshot, prices=snapshot)

    def limiter(provider: str, limits: tuple[Limit, ...]) -> RedisRateLimiter | LocalRateLimiter:
        if conn is not None:
            return RedisRateLimiter(conn, key=f"{LIMITER_KEY_PREFIX}:{provider}", limits=limits, sleep=sleep)
        return LocalRateLimiter(limits=limits, sleep=sleep)

    yahoo = YahooSource(
        session=yahoo_session,
        limiter=limiter("yahoo", (Limit(settings.yahoo_calls_per_minute, 60.0),)),
        sleep=sleep,
    )
    news, fundamentals = yahoo, yahoo
    if settings.finnhub_api_key is not None:
        client = build_client(
            settings.finnhub_api_key.get_secret_value(),
            api_url=str(settings.finnhub_api_url) if settings.finnhub_api_url else None,
            timeout_s=settings.http_timeout_s,
        )
        limits = finnhub_limits(settings.finnhub_calls_per_minute, settings.finnhub_calls_per_second)
        finnhub = FinnhubSource(client, limiter=limiter("finnhub", limits), policy=retry_policy, sleep=sleep)
        news, fundamentals = finnhub, finnhub
    cache = RedisCache(conn) if conn is not None else MemoryCache()
    cached = CachedSources(news=news, fundamentals=fundamentals, prices=yahoo, cache=cache)
    return Sources(news=cached, fundamentals=cached, prices=cached)
