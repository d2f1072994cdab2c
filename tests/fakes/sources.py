"""In-memory sources with synthetic data, counting calls: for tests of what sits above the sources."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Sequence

from engine.exceptions import NoPriceData, UnknownTicker
from engine.records import BasicFinancials, CompanyProfile, DailyClose, NewsItem
from engine.sources.base import in_window


def synthetic_profile(symbol: str) -> CompanyProfile:
    return CompanyProfile(
        ticker=symbol, name=f"{symbol} Synthetic Corp", finnhubIndustry="Financial Services", ipo="1977-05-18",
        marketCapitalization=150000.0, shareOutstanding=720.5, currency="USD", country="US",
        exchange="NEW YORK STOCK EXCHANGE, INC.",
    )


def weekday_closes(start: dt.date, end: dt.date, *, base: float = 100.0, step: float = 0.5,
                   holidays: Sequence[dt.date] = ()) -> list[DailyClose]:
    out, day, price = [], start, base
    while day <= end:
        if day.weekday() < 5 and day not in holidays:
            out.append(DailyClose(date=day, close=round(price, 2)))
            price += step
        day += dt.timedelta(days=1)
    return out


class MemorySources:
    """NewsSource + FundamentalsSource + PriceSource over dicts."""

    def __init__(self, name: str = "memory") -> None:
        self.name = name
        self.news: dict[str, list[NewsItem]] = {}
        self.profiles: dict[str, CompanyProfile] = {}
        self.reports: dict[str, list[BasicFinancials]] = {}
        self.closes: dict[str, list[DailyClose]] = {}
        self.calls: Counter[str] = Counter()

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        self.calls["news"] += 1
        return in_window(self.news.get(symbol, []), start, end)

    def profile(self, symbol: str) -> CompanyProfile:
        self.calls["profile"] += 1
        if symbol not in self.profiles:
            raise UnknownTicker(f"no company profile for {symbol}")
        return self.profiles[symbol]

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        self.calls["financials"] += 1
        return self.reports.get(symbol, [])

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        self.calls["prices"] += 1
        result = {s: [c for c in self.closes.get(s, []) if start <= c.date <= end] for s in symbols}
        empty = [s for s, v in result.items() if not v]
        if empty:
            raise NoPriceData(f"no prices for {', '.join(empty)} between {start} and {end}")
        return result
