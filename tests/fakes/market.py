"""Fill FakeFinnhub and FakeYahoo with one consistent synthetic market (invented headlines, round prices)."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from engine.market.weeks import NEW_YORK
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.yahoo import FakeYahoo


def trading_days(start: dt.date, end: dt.date, holidays: Iterable[dt.date] = ()) -> list[dt.date]:
    skip = set(holidays)
    days, day = [], start
    while day <= end:
        if day.weekday() < 5 and day not in skip:
            days.append(day)
        day += dt.timedelta(days=1)
    return days


def populate(
    symbols: Iterable[str],
    start: dt.date,
    end: dt.date,
    *,
    finnhub: FakeFinnhub | None = None,
    yahoo: FakeYahoo | None = None,
    news_per_day: int = 2,
    holidays: Iterable[dt.date] = (),
) -> None:
    """Every symbol gets daily closes, two articles per trading day (10:00 and 18:00 New York), a profile and
    two quarterly reports. Symbol i trades around 50 + 10 i and moves a little each day."""
    days = trading_days(start, end, holidays)
    for i, symbol in enumerate(symbols):
        base = 50.0 + 10 * i
        if yahoo is not None:
            yahoo.add_prices(symbol, {d: round(base + ((n * 7 + i) % 11) - 5 + n * 0.1, 2) for n, d in enumerate(days)})
            yahoo.add_profile(symbol, {
                "longName": f"{symbol} Synthetic Inc", "industry": "Synthetic Goods", "marketCap": 2.5e11,
                "sharesOutstanding": 1.2e9, "currency": "USD", "country": "United States",
                "fullExchangeName": "NYSE", "firstTradeDateMilliseconds": 345_000_000_000,
            })
            yahoo.add_news(symbol, [
                {"title": f"{symbol} synthetic update {n}", "summary": f"Invented summary {n} for {symbol}.",
                 "published": dt.datetime.combine(d, dt.time(10), tzinfo=NEW_YORK)}
                for n, d in enumerate(days[-10:])
            ])
        if finnhub is not None:
            finnhub.add_profile(symbol, name=f"{symbol} Synthetic Inc", marketCapitalization=250000.0 + i)
            finnhub.add_financials(symbol, {
                "eps": [("2023-09-30", 1.5 + i), ("2023-12-31", 1.75 + i)],
                "roeTTM": [("2023-09-30", 0.2), ("2023-12-31", 0.21)],
            })
            finnhub.add_news(symbol, *[
                {"headline": f"{symbol} synthetic story {n}.{k}", "summary": f"Invented text {n}.{k}.",
                 "published": dt.datetime.combine(d, dt.time(10 + 8 * k), tzinfo=NEW_YORK)}
                for n, d in enumerate(days) for k in range(news_per_day)
            ])
