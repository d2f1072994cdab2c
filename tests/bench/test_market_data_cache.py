"""Benchmark: fetch 30 tickers × 4 weeks twice through the production sources (Finnhub + Yahoo behind the Redis
cache and the shared rate limiter), against fake servers on 127.0.0.1 with realistic latency.

Prints the calls made, the wall time of each pass and the uncached/cached ratio (goal ≥ 50×), and checks the
limiter kept Finnhub calls within 60 per rolling minute and 30 per second (the fake answers 429 beyond 60/min,
like the real free plan).

    make bench        # or: .venv/bin/python -m pytest tests/bench -s -m bench
"""

from __future__ import annotations

import datetime as dt
import time

import pytest

from engine.data.inputs import gather
from engine.data.prompts import build_user_prompt
from engine.market.dow30 import members
from engine.market.weeks import NEW_YORK
from engine.sources.factory import build_sources
from forecaster.settings import Settings
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.market import populate
from tests.fakes.yahoo import FakeYahoo

pytestmark = pytest.mark.usefixtures("fresh_yfinance")

FINNHUB_LATENCY_S = 0.12  # a typical round trip to api.finnhub.io from a US host
YAHOO_LATENCY_S = 0.15
DAY = dt.date(2024, 3, 8)


def max_in_window(times: list[float], window_s: float) -> int:
    times = sorted(times)
    best, lo = 0, 0
    for hi, t in enumerate(times):
        while t - times[lo] >= window_s:
            lo += 1
        best = max(best, hi - lo + 1)
    return best


def test_second_pass_of_30_tickers_comes_from_the_cache(redis_server, redis):
    symbols = members(DAY)
    cutoff = dt.datetime.combine(DAY, dt.time(23, 59), tzinfo=NEW_YORK)
    now = dt.datetime(2026, 11, 25, 12, tzinfo=NEW_YORK)
    with FakeFinnhub(latency_s=FINNHUB_LATENCY_S, per_minute_limit=60) as finnhub, \
            FakeYahoo(latency_s=YAHOO_LATENCY_S) as yahoo:
        populate(symbols, dt.date(2023, 12, 1), dt.date(2024, 3, 15), finnhub=finnhub, yahoo=yahoo)
        settings = Settings(_env_file=None, finnhub_api_key="bench-key-123", finnhub_api_url=finnhub.api_url,
                            redis_url=redis_server["url"])
        passes = []
        for _ in range(2):
            # A fresh build each pass, as a second process would: only Redis is shared.
            sources = build_sources(settings, conn=redis, yahoo_session=yahoo.session())
            calls_before = (len(finnhub.calls), len(yahoo.requests))
            started = time.perf_counter()
            results = gather(symbols, sources=sources, cutoff=cutoff, now=now, weeks=4)
            wall = time.perf_counter() - started
            passes.append({
                "wall_s": wall,
                "finnhub_calls": len(finnhub.calls) - calls_before[0],
                "yahoo_requests": len(yahoo.requests) - calls_before[1],
                "prompts": {s: build_user_prompt(r.parts) for s, r in results.items()},
                "failed": [s for s, r in results.items() if isinstance(r, Exception)],
            })
        finnhub_times = [c.at for c in finnhub.calls]
        rate_limited = sum(1 for c in finnhub.calls if c.status == 429)

    first, second = passes
    ratio = first["wall_s"] / second["wall_s"]
    per_minute = max_in_window(finnhub_times, 60.0)
    per_second = max_in_window(finnhub_times, 1.0)
    print()
    print(f"market data, {len(symbols)} tickers x 4 weeks (+ profile, financials), Finnhub latency "
          f"{FINNHUB_LATENCY_S * 1000:.0f} ms, Yahoo {YAHOO_LATENCY_S * 1000:.0f} ms, limiter 60/min + 30/s")
    print(f"  pass 1 (uncached): {first['wall_s']:8.2f} s  Finnhub calls {first['finnhub_calls']:4d}  "
          f"Yahoo requests {first['yahoo_requests']:4d}")
    print(f"  pass 2 (cached):   {second['wall_s']:8.3f} s  Finnhub calls {second['finnhub_calls']:4d}  "
          f"Yahoo requests {second['yahoo_requests']:4d}")
    print(f"  ratio uncached/cached: {ratio:.0f}x (goal >= 50x)")
    print(f"  Finnhub calls in the busiest rolling minute: {per_minute} (limit 60); busiest second: {per_second} "
          f"(limit 30); 429s received: {rate_limited}")

    assert first["failed"] == [] and second["failed"] == []
    assert first["prompts"] == second["prompts"]
    assert first["finnhub_calls"] == 30 * (4 + 2)
    assert second["finnhub_calls"] == 0 and second["yahoo_requests"] == 0
    assert per_minute <= 60 and per_second <= 30 and rate_limited == 0
    assert ratio >= 50
