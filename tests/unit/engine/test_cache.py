"""The read-through cache on a real Redis: what is kept, for how long, and what is never cached."""

from __future__ import annotations

import datetime as dt
import time

import pytest

from engine.data.inputs import Sources, gather
from engine.exceptions import NoPriceData, UnknownTicker
from engine.market.weeks import NEW_YORK
from engine.records import BasicFinancials, NewsItem
from engine.sources.cache import CachedSources, CachePolicy, MemoryCache, RedisCache
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=NEW_YORK)


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


@pytest.fixture
def inner() -> MemorySources:
    src = MemorySources()
    src.profiles["AXP"] = synthetic_profile("AXP")
    src.reports["AXP"] = [BasicFinancials(period="2026-09-30", metrics={"eps": 3.1})]
    src.closes["AXP"] = weekday_closes(dt.date(2026, 10, 1), dt.date(2026, 11, 24))
    src.closes["KO"] = weekday_closes(dt.date(2026, 10, 1), dt.date(2026, 11, 24), base=60)
    src.news["AXP"] = [NewsItem(published=ny(2026, 11, 10, 9), headline="Synthetic headline")]
    return src


def cached(inner: MemorySources, redis) -> CachedSources:
    return CachedSources(news=inner, fundamentals=inner, prices=inner, cache=RedisCache(redis), now=lambda: NOW)


def test_second_fetch_comes_from_the_cache(inner, redis):
    first, second = cached(inner, redis), cached(inner, redis)  # two processes, one Redis
    for source in (first, second):
        assert source.profile("AXP").ticker == "AXP"
        assert source.quarterly_financials("AXP")[0].metrics == {"eps": 3.1}
        assert len(source.company_news("AXP", ny(2026, 11, 6, 16), ny(2026, 11, 13, 16))) == 1
        assert set(source.daily_closes(["AXP", "KO"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))) == {"AXP", "KO"}
    assert inner.calls == {"profile": 1, "financials": 1, "news": 1, "prices": 1}
    assert second.stats.misses == 0 and second.stats.hits == 5


def test_closed_windows_are_kept_a_month_and_the_current_week_expires_soon(inner, redis):
    source = cached(inner, redis)
    source.company_news("AXP", ny(2026, 11, 6, 16), ny(2026, 11, 13, 16))
    source.company_news("AXP", ny(2026, 11, 20, 16), NOW)
    source.daily_closes(["AXP"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    source.daily_closes(["KO"], dt.date(2026, 11, 2), dt.date(2026, 11, 25))
    source.profile("AXP")
    ttls = {key.decode().split(":")[3]: [] for key in redis.keys("*")}
    for key in redis.keys("*"):
        ttls[key.decode().split(":")[3]].append(redis.ttl(key))
    # Redis runs without eviction (AOF, noeviction): nothing the cache writes may live forever.
    assert sorted(ttls["news"]) == [CachePolicy().open_window_ttl_s, CachePolicy().closed_window_ttl_s]
    assert sorted(ttls["closes"]) == [CachePolicy().open_window_ttl_s, CachePolicy().closed_window_ttl_s]
    assert 23 * 3600 < ttls["profile"][0] <= 24 * 3600


def test_a_closed_window_read_again_is_kept_another_full_term(inner, redis):
    """A window still read (an old week every forecast's history spans) stays; one nobody reads lapses. Real
    time, at a test's scale: a 3 s term, read again after 1.5 s."""
    policy = CachePolicy(closed_window_ttl_s=3)
    source = CachedSources(news=inner, fundamentals=inner, prices=inner, cache=RedisCache(redis), policy=policy,
                           now=lambda: NOW)
    source.company_news("AXP", ny(2026, 11, 6, 16), ny(2026, 11, 13, 16))
    source.daily_closes(["AXP"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    time.sleep(1.5)
    [news_key], [closes_key] = redis.keys("*:news:*"), redis.keys("*:closes:*")
    assert redis.pttl(news_key) < 2000 and redis.pttl(closes_key) < 2000
    assert len(source.company_news("AXP", ny(2026, 11, 6, 16), ny(2026, 11, 13, 16))) == 1
    source.daily_closes(["AXP"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    assert redis.pttl(news_key) > 2500 and redis.pttl(closes_key) > 2500  # renewed by the read
    assert inner.calls["news"] == 1 and inner.calls["prices"] == 1


def test_a_live_forecast_asked_a_minute_later_reads_every_news_window_from_the_cache(inner, redis):
    """A live forecast's newest news window ends at the moment it is asked: the second forecast, a minute later
    (its own `now`), finds every window, the open one included, in the cache."""
    now = [NOW]
    inner.news["AXP"].append(NewsItem(published=ny(2026, 11, 24, 9), headline="This week's headline"))
    source = CachedSources(news=inner, fundamentals=inner, prices=inner, cache=RedisCache(redis),
                           now=lambda: now[0])
    sources = Sources(source, source, source)
    first = gather(["AXP"], sources=sources, cutoff=now[0], now=now[0])["AXP"]
    calls = dict(inner.calls)
    now[0] = NOW + dt.timedelta(minutes=1)
    second = gather(["AXP"], sources=sources, cutoff=now[0], now=now[0])["AXP"]
    assert inner.calls == calls, "the second forecast fetched again"
    assert (second.parts, second.news) == (first.parts, first.news)
    assert second.news[-1].available == 1  # the open week's article, read from the cache


def test_an_open_window_is_answered_from_the_cache_only_as_far_as_it_reaches(inner, redis):
    now = [ny(2026, 11, 20, 18)]
    source = CachedSources(news=inner, fundamentals=inner, prices=inner, cache=RedisCache(redis),
                           now=lambda: now[0])
    start = ny(2026, 11, 13, 16)
    inner.news["AXP"] = [NewsItem(published=ny(2026, 11, 20, 15), headline="before the close"),
                         NewsItem(published=ny(2026, 11, 20, 17), headline="after the close")]
    # Fetched up to 18:00 (now): a window ending at the 16:00 close reads its part of it.
    assert len(source.company_news("AXP", start, now[0])) == 2
    assert [n.headline for n in source.company_news("AXP", start, ny(2026, 11, 20, 16))] == ["before the close"]
    assert inner.calls["news"] == 1
    # Fetched up to 16:00 at 18:00 (a dated forecast): it does not reach a live one's end, which fetches.
    redis.flushdb()
    assert len(source.company_news("AXP", start, ny(2026, 11, 20, 16))) == 1
    assert len(source.company_news("AXP", start, now[0])) == 2
    assert inner.calls["news"] == 3


def test_only_the_missing_symbols_are_fetched_together(inner, redis):
    source = cached(inner, redis)
    source.daily_closes(["AXP"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    inner.closes["KO"] = inner.closes["KO"][:]  # unchanged; just count calls
    result = source.daily_closes(["KO", "AXP"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    assert list(result) == ["KO", "AXP"]
    assert inner.calls["prices"] == 2


def test_errors_are_not_cached(inner, redis):
    source = cached(inner, redis)
    with pytest.raises(UnknownTicker):
        source.profile("ZZZZ")
    with pytest.raises(NoPriceData):
        source.daily_closes(["ZZZZ"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    inner.profiles["ZZZZ"] = synthetic_profile("ZZZZ")
    assert source.profile("ZZZZ").ticker == "ZZZZ"
    assert redis.keys("*:closes:*") == []


def test_an_empty_week_is_cached_as_an_answer(inner, redis):
    source = cached(inner, redis)
    assert source.company_news("AXP", ny(2026, 10, 9, 16), ny(2026, 10, 16, 16)) == []
    assert source.company_news("AXP", ny(2026, 10, 9, 16), ny(2026, 10, 16, 16)) == []
    assert inner.calls["news"] == 1


def test_memory_cache_renews_an_entry_read_with_a_new_term():
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    cache.set("a", "1", 10)
    now[0] = 8.0
    assert cache.get("a", renew_ttl_s=10) == "1"
    now[0] = 15.0
    assert cache.get("a") == "1"


def test_memory_cache_expires_entries():
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    cache.set("a", "1", 10)
    cache.set("b", "2", None)
    now[0] = 10.0
    assert (cache.get("a"), cache.get("b")) == (None, "2")
