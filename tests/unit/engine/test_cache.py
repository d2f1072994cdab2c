"""The read-through cache on a real Redis: what is kept, for how long, and what is never cached."""

from __future__ import annotations

import datetime as dt

import pytest

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


def test_closed_windows_never_expire_and_the_current_week_expires_soon(inner, redis):
    source = cached(inner, redis)
    source.company_news("AXP", ny(2026, 11, 6, 16), ny(2026, 11, 13, 16))
    source.company_news("AXP", ny(2026, 11, 20, 16), NOW)
    source.daily_closes(["AXP"], dt.date(2026, 11, 2), dt.date(2026, 11, 13))
    source.daily_closes(["KO"], dt.date(2026, 11, 2), dt.date(2026, 11, 25))
    source.profile("AXP")
    ttls = {key.decode().split(":")[3]: [] for key in redis.keys("*")}
    for key in redis.keys("*"):
        ttls[key.decode().split(":")[3]].append(redis.ttl(key))
    assert sorted(ttls["news"]) == [-1, CachePolicy().open_window_ttl_s]
    assert sorted(ttls["closes"]) == [-1, CachePolicy().open_window_ttl_s]
    assert 23 * 3600 < ttls["profile"][0] <= 24 * 3600


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


def test_memory_cache_expires_entries():
    now = [0.0]
    cache = MemoryCache(clock=lambda: now[0])
    cache.set("a", "1", 10)
    cache.set("b", "2", None)
    now[0] = 10.0
    assert (cache.get("a"), cache.get("b")) == (None, "2")
