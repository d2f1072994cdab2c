"""The three small protocols every market data source implements.

Window building, prompt building, caching and snapshots take these as arguments, so a test can pass an
in-memory fake and production passes Finnhub/Yahoo behind a cache.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Protocol, runtime_checkable

from engine.data.prompts import PROMO_SUMMARY_PREFIX
from engine.records import BasicFinancials, CompanyProfile, DailyClose, NewsItem


@runtime_checkable
class NewsSource(Protocol):
    name: str

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        """Articles about `symbol` published in [start, end] (aware datetimes), oldest first, boilerplate
        removed. An empty list means the provider really has none; errors raise."""


@runtime_checkable
class FundamentalsSource(Protocol):
    name: str

    def profile(self, symbol: str) -> CompanyProfile:
        """The company profile. Raises UnknownTicker when the provider has none."""

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        """Every quarterly report the provider has, newest first. Empty when it has none."""


@runtime_checkable
class PriceSource(Protocol):
    name: str

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        """Daily closes for each symbol with start <= date <= end (both inclusive), oldest first.
        Raises NoPriceData naming every symbol that came back empty."""


def is_boilerplate(item: NewsItem) -> bool:
    """Zacks promotes its own service in thousands of Finnhub summaries; FinGPT drops these and so do we."""
    return item.summary.startswith(PROMO_SUMMARY_PREFIX)


def in_window(items: Sequence[NewsItem], start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
    """Items with start <= published <= end, boilerplate removed, oldest first."""
    kept = [item for item in items if start <= item.published <= end and not is_boilerplate(item)]
    return sorted(kept, key=lambda item: item.published)
