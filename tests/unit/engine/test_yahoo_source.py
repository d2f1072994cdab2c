"""Contract tests for YahooSource: the real yfinance 1.7 code against a fake Yahoo on 127.0.0.1.

Every number and headline here is synthetic. yfinance keeps process-wide state (a session singleton, an LRU
of chart responses, SQLite tz/cookie caches), so `fresh_yfinance` resets it around each test.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator

import pytest

from engine.exceptions import MissingApiKey, NoPriceData, SourceUnavailable, UnknownTicker
from engine.records import CompanyProfile, DailyClose, NewsItem
from engine.sources.base import FundamentalsSource, NewsSource, PriceSource
from engine.sources.yahoo import YahooSource
from tests.fakes.yahoo import FakeYahoo

pytestmark = pytest.mark.usefixtures("fresh_yfinance")

UTC = dt.UTC
MON, TUE, WED, THU, FRI = (dt.date(2024, 3, day) for day in (4, 5, 6, 7, 8))
# FinGPT drops summaries that start with this Zacks promotion; so must every news source.
PROMO = "Looking for stock market analysis and research with proves results?"
WEEK = {MON: 100.0, TUE: 101.0, WED: 102.0, THU: 103.0, FRI: 104.0}


@pytest.fixture
def yahoo() -> Iterator[FakeYahoo]:
    with FakeYahoo() as fake:
        yield fake


class CountingLimiter:
    def __init__(self) -> None:
        self.calls = 0

    def acquire(self) -> None:
        self.calls += 1


@pytest.fixture
def sleeps() -> list[float]:
    return []


@pytest.fixture
def limiter() -> CountingLimiter:
    return CountingLimiter()


@pytest.fixture
def source(yahoo: FakeYahoo, sleeps: list[float], limiter: CountingLimiter) -> YahooSource:
    return YahooSource(session=yahoo.session(), limiter=limiter, sleep=sleeps.append)


def closes(rows: list[DailyClose]) -> dict[dt.date, float]:
    return {row.date: row.close for row in rows}


# -- daily closes ---------------------------------------------------------------------------------------


def test_daily_closes_are_adjusted_ascending_and_include_the_end_date(yahoo, source):
    yahoo.add_prices("AAPL", {dt.date(2024, 3, 1): 99.0, **WEEK, dt.date(2024, 3, 11): 105.0},
                     adjusted={MON: 99.0, TUE: 100.0})  # as if an ex-dividend day followed Tuesday

    result = source.daily_closes(["AAPL"], MON, FRI)

    assert list(result) == ["AAPL"]
    rows = result["AAPL"]
    assert [row.date for row in rows] == [MON, TUE, WED, THU, FRI]  # ascending, Friday included
    assert all(type(row.date) is dt.date for row in rows)
    assert closes(rows) == pytest.approx({MON: 99.0, TUE: 100.0, WED: 102.0, THU: 103.0, FRI: 104.0})


def test_several_symbols_are_flattened_without_nan_rows(yahoo, source):
    yahoo.add_prices("AAPL", WEEK)
    yahoo.add_prices("MSFT", {MON: 400.0, TUE: 401.0, THU: 403.0, FRI: 404.0})  # no bar on Wednesday

    result = source.daily_closes(["MSFT", "AAPL"], MON, FRI)

    assert list(result) == ["MSFT", "AAPL"]  # the caller's order, not yfinance's column order
    assert closes(result["AAPL"]) == pytest.approx(WEEK)
    assert closes(result["MSFT"]) == pytest.approx({MON: 400.0, TUE: 401.0, THU: 403.0, FRI: 404.0})
    assert yahoo.count("/v8/finance/chart/MSFT?period1") == 1  # one download, one chart request per symbol
    assert yahoo.count("/v8/finance/chart/AAPL?period1") == 1


def test_holiday_week_ends_on_the_last_trading_day(yahoo, source):
    # Good Friday 2024-03-29: NYSE closed, Yahoo has no bar.
    week = {dt.date(2024, 3, 25): 100.0, dt.date(2024, 3, 26): 101.0, dt.date(2024, 3, 27): 102.0,
            dt.date(2024, 3, 28): 103.0}
    yahoo.add_prices("AAPL", {**week, dt.date(2024, 4, 1): 104.0})

    rows = source.daily_closes(["AAPL"], dt.date(2024, 3, 25), dt.date(2024, 3, 29))["AAPL"]

    assert closes(rows) == pytest.approx(week)
    assert rows[-1].date == dt.date(2024, 3, 28)


def test_unknown_ticker_raises_no_price_data_without_retrying(yahoo, source, sleeps):
    with pytest.raises(NoPriceData, match=r"no prices for ZZZZ between 2024-03-04 and 2024-03-08"):
        source.daily_closes(["ZZZZ"], MON, FRI)

    assert sleeps == []  # Yahoo's 404 says "not found": a retry cannot help


def test_one_unknown_symbol_among_good_ones_is_the_only_one_named(yahoo, source, sleeps):
    yahoo.add_prices("AAPL", WEEK)

    with pytest.raises(NoPriceData) as raised:
        source.daily_closes(["AAPL", "ZZZZ"], MON, FRI)

    assert "ZZZZ" in str(raised.value)
    assert "AAPL" not in str(raised.value)
    assert sleeps == []


def test_rate_limit_is_retried_with_backoff(yahoo, source, sleeps, limiter):
    yahoo.add_prices("AAPL", WEEK)
    # yfinance retries any >= 400 once by itself; two 429s make it give up with YFRateLimitError.
    yahoo.fail_next("/v8/finance/chart/AAPL", 429, times=2)

    result = source.daily_closes(["AAPL"], MON, FRI)

    assert closes(result["AAPL"]) == pytest.approx(WEEK)
    assert sleeps == [1.0]
    assert limiter.calls == 2  # one download per attempt
    assert yahoo.count("/v8/finance/chart/AAPL") >= 3  # two 429s, then the answers


def test_persistent_rate_limit_raises_source_unavailable(yahoo, source, sleeps, limiter):
    yahoo.add_prices("AAPL", WEEK)
    yahoo.fail_next("/v8/finance/chart/AAPL", 429, times=1000)

    with pytest.raises(SourceUnavailable, match=r"rate-limited .*AAPL"):
        source.daily_closes(["AAPL"], MON, FRI)

    assert sleeps == [1.0, 2.0, 4.0]  # retries=3, backoff_s * 2**attempt
    assert limiter.calls == 4


def test_backoff_is_capped_at_thirty_seconds(yahoo, sleeps):
    yahoo.add_prices("AAPL", WEEK)
    yahoo.fail_next("/v8/finance/chart/AAPL", 429, times=1000)
    source = YahooSource(session=yahoo.session(), sleep=sleeps.append, retries=3, backoff_s=20.0)

    with pytest.raises(SourceUnavailable):
        source.daily_closes(["AAPL"], MON, FRI)

    assert sleeps == [20.0, 30.0, 30.0]


def test_server_error_is_retried_and_not_replayed_from_yfinance_cache(yahoo, source, sleeps):
    yahoo.add_prices("AAPL", WEEK)
    yahoo.fail_next("/v8/finance/chart/AAPL", 500, times=2)  # yfinance's own retry sees the second one

    result = source.daily_closes(["AAPL"], MON, FRI)

    assert closes(result["AAPL"]) == pytest.approx(WEEK)
    assert sleeps == [1.0]


def test_rate_limited_symbol_is_retried_alone(yahoo, source, sleeps):
    yahoo.add_prices("AAPL", WEEK)
    yahoo.add_prices("MSFT", WEEK)
    yahoo.fail_next("/v8/finance/chart/MSFT", 429, times=2)

    result = source.daily_closes(["AAPL", "MSFT"], MON, FRI)

    assert closes(result["MSFT"]) == pytest.approx(WEEK)
    assert sleeps == [1.0]
    assert yahoo.count("/v8/finance/chart/AAPL?period1") == 1  # AAPL was not fetched again


def test_window_without_trading_days_is_retried_then_raises_no_price_data(yahoo, source, sleeps):
    yahoo.add_prices("AAPL", WEEK)
    saturday, sunday = dt.date(2024, 3, 9), dt.date(2024, 3, 10)

    # Yahoo's empty answer reads exactly like a swallowed request error ("no price data found"), and nothing
    # at all came back, so the adapter retries before giving up.
    with pytest.raises(NoPriceData, match="AAPL between 2024-03-09 and 2024-03-10"):
        source.daily_closes(["AAPL"], saturday, sunday)

    assert sleeps == [1.0, 2.0, 4.0]


# -- news -----------------------------------------------------------------------------------------------


def test_news_is_mapped_and_filtered_to_the_window(yahoo, source, limiter):
    start, end = dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 8, 21, tzinfo=UTC)
    yahoo.add_news("AAPL", [
        dict(title="Example Corp ships a widget", summary="A synthetic summary.", source="Example Wire",
             url="https://news.example.invalid/widget", published=dt.datetime(2024, 3, 6, 15, 30, tzinfo=UTC)),
        dict(title="Example Corp opens an office", summary="Another synthetic summary.",
             published=dt.datetime(2024, 3, 5, 9, tzinfo=UTC)),
        dict(title="Before the window", summary="Too early.", published=dt.datetime(2024, 3, 3, 23, tzinfo=UTC)),
        dict(title="After the window", summary="Too late.", published=dt.datetime(2024, 3, 8, 22, tzinfo=UTC)),
        dict(title="Promotional item", summary=PROMO + " Sign up.",
             published=dt.datetime(2024, 3, 6, 12, tzinfo=UTC)),
        dict(title="No publication time", summary="Skipped.", published=None),
        dict(title="An advert", summary="Dropped by yfinance.", published=dt.datetime(2024, 3, 6, tzinfo=UTC),
             ad=True),
    ])

    items = source.company_news("AAPL", start, end)

    assert [item.headline for item in items] == ["Example Corp opens an office", "Example Corp ships a widget"]
    assert items[1] == NewsItem(published=dt.datetime(2024, 3, 6, 15, 30, tzinfo=UTC),
                                headline="Example Corp ships a widget", summary="A synthetic summary.",
                                source="Example Wire", url="https://news.example.invalid/widget")
    assert all(item.published.utcoffset() == dt.timedelta(0) for item in items)
    assert limiter.calls == 1


def test_news_uses_a_fresh_ticker_per_call(yahoo, source):
    window = (dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 9, tzinfo=UTC))
    assert source.company_news("AAPL", *window) == []

    yahoo.add_news("AAPL", [dict(title="Example Corp later news", summary="Synthetic.",
                                 published=dt.datetime(2024, 3, 6, tzinfo=UTC))])

    assert [item.headline for item in source.company_news("AAPL", *window)] == ["Example Corp later news"]


def test_news_server_error_is_not_reported_as_no_news(yahoo, source, sleeps):
    yahoo.add_news("AAPL", [dict(title="Example headline", summary="Synthetic.",
                                 published=dt.datetime(2024, 3, 6, tzinfo=UTC))])
    yahoo.fail_next("/xhr/ncp", 500, times=1000)

    with pytest.raises(SourceUnavailable, match="news for AAPL"):
        source.company_news("AAPL", dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 9, tzinfo=UTC))

    assert sleeps == [1.0, 2.0, 4.0]


def test_news_rate_limit_once_is_retried(yahoo, source, sleeps, limiter):
    yahoo.add_news("AAPL", [dict(title="Example headline", summary="Synthetic.",
                                 published=dt.datetime(2024, 3, 6, tzinfo=UTC))])
    yahoo.fail_next("/xhr/ncp", 429, times=2)

    items = source.company_news("AAPL", dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 9, tzinfo=UTC))

    assert [item.headline for item in items] == ["Example headline"]
    assert sleeps == [1.0]
    assert limiter.calls == 2


# -- profile --------------------------------------------------------------------------------------------


def test_profile_is_mapped_in_finnhub_units(yahoo, source, limiter):
    yahoo.add_profile("AAPL", dict(
        longName="Example Devices Inc.", shortName="Example Devices", industry="Consumer Electronics",
        sector="Technology", marketCap=3_000_000_000_000, sharesOutstanding=15_000_000_000, currency="USD",
        country="United States", fullExchangeName="NasdaqGS", exchange="NMS",
        firstTradeDateMilliseconds=345_479_400_000,  # 1980-12-12 14:30 UTC
        exchangeTimezoneName="America/New_York",
    ))

    profile = source.profile("AAPL")

    assert profile == CompanyProfile(
        ticker="AAPL", name="Example Devices Inc.", finnhubIndustry="Consumer Electronics", ipo="1980-12-12",
        marketCapitalization=3_000_000.0, shareOutstanding=15_000.0, currency="USD", country="United States",
        exchange="NasdaqGS",
    )
    assert limiter.calls == 1


def test_profile_falls_back_to_short_name_sector_and_epoch_seconds(yahoo, source):
    yahoo.add_profile("XMPL", dict(
        shortName="Example Holdings", sector="Industrials", marketCap=2_500_000_000, sharesOutstanding=50_000_000,
        currency="USD", country="United States", exchange="NYQ",
        firstTradeDateEpochUtc=946_909_800,  # 2000-01-03 14:30 UTC
    ))

    profile = source.profile("XMPL")

    assert (profile.name, profile.finnhubIndustry, profile.exchange) == ("Example Holdings", "Industrials", "NYQ")
    assert profile.ipo == "2000-01-03"
    assert profile.marketCapitalization == pytest.approx(2_500.0)
    assert profile.shareOutstanding == pytest.approx(50.0)


def test_unknown_ticker_profile_raises_unknown_ticker(yahoo, source, sleeps):
    with pytest.raises(UnknownTicker, match="no company profile for ZZZZ"):
        source.profile("ZZZZ")

    assert sleeps == []  # quoteSummary's 404 is an answer, not a failure


def test_profile_rate_limit_raises_source_unavailable(yahoo, source, sleeps):
    yahoo.add_profile("AAPL", dict(longName="Example Devices Inc."))
    yahoo.fail_next("/v10/finance/quoteSummary/AAPL", 429, times=1000)

    with pytest.raises(SourceUnavailable, match="profile of AAPL"):
        source.profile("AAPL")

    assert sleeps == [1.0, 2.0, 4.0]


# -- the whole source -----------------------------------------------------------------------------------


def test_limiter_is_acquired_once_per_operation(yahoo, source, limiter):
    yahoo.add_prices("AAPL", WEEK)
    yahoo.add_prices("MSFT", WEEK)
    yahoo.add_profile("AAPL", dict(longName="Example Devices Inc."))

    source.daily_closes(["AAPL", "MSFT"], MON, FRI)
    assert limiter.calls == 1
    source.company_news("AAPL", dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 9, tzinfo=UTC))
    assert limiter.calls == 2
    source.profile("AAPL")
    assert limiter.calls == 3


def test_implements_the_engine_protocols_and_has_no_financials(source):
    assert isinstance(source, PriceSource)
    assert isinstance(source, NewsSource)
    assert isinstance(source, FundamentalsSource)
    assert source.name == "yahoo"
    with pytest.raises(MissingApiKey, match="FINNHUB_API_KEY"):
        source.quarterly_financials("AAPL")


# -- ticker spelling ------------------------------------------------------------------------------------


def test_class_shares_are_asked_for_in_yahoos_spelling_and_returned_under_the_callers(yahoo, source, sleeps):
    # Yahoo knows Berkshire's class B shares only as BRK-B; BRK.B is a 404 there.
    yahoo.add_prices("BRK-B", WEEK)
    yahoo.add_profile("BRK-B", dict(longName="Berkshire Hathaway Inc.", industry="Insurance - Diversified",
                                    marketCap=900_000_000_000, sharesOutstanding=2_000_000_000, currency="USD"))
    yahoo.add_news("BRK-B", [dict(title="Berkshire synthetic item", summary="Synthetic.",
                                  published=dt.datetime(2024, 3, 6, 15, tzinfo=UTC))])

    prices = source.daily_closes(["BRK.B"], MON, FRI)
    assert list(prices) == ["BRK.B"] and closes(prices["BRK.B"]) == WEEK
    both = source.daily_closes(["BRK.B", "BRK-B"], MON, FRI)  # either spelling, one download
    assert closes(both["BRK.B"]) == closes(both["BRK-B"]) == WEEK
    profile = source.profile("BRK.B")
    assert (profile.ticker, profile.name) == ("BRK.B", "Berkshire Hathaway Inc.")
    window = (dt.datetime(2024, 3, 4, tzinfo=UTC), dt.datetime(2024, 3, 9, tzinfo=UTC))
    assert [i.headline for i in source.company_news("BRK.B", *window)] == ["Berkshire synthetic item"]
    assert sleeps == []
    asked = " ".join(path for _method, _host, path in yahoo.requests)
    assert "BRK-B" in asked and "BRK.B" not in asked


def test_exchange_suffixes_are_not_taken_for_share_classes():
    from engine.sources.symbols import finnhub_symbol, yahoo_symbol

    assert [yahoo_symbol(s) for s in ("BRK.B", "BRK-B", "brk.b", "BF/B", "AXP", "SHOP.TO", "RY.TO")] == [
        "BRK-B", "BRK-B", "BRK-B", "BF-B", "AXP", "SHOP.TO", "RY.TO"]
    assert [finnhub_symbol(s) for s in ("BRK-B", "BRK.B", "AXP", "SAP.DE")] == ["BRK.B", "BRK.B", "AXP", "SAP.DE"]
