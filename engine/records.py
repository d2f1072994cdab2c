"""Typed records that flow from the data sources to the prompt builder.

Pure data: no I/O, no third-party imports beyond pydantic. Every source (Finnhub, Yahoo, a snapshot on disk)
returns these, so the rest of the engine never sees a vendor's JSON shape.
"""

from __future__ import annotations

import datetime as dt

from pydantic import BaseModel, ConfigDict, Field


class _Record(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class NewsItem(_Record):
    """One news article about a company."""

    published: dt.datetime = Field(description="Publication time, timezone-aware (UTC from the sources).")
    headline: str
    summary: str = ""
    source: str = ""
    url: str = ""


class CompanyProfile(_Record):
    """What the FinGPT company introduction needs (Finnhub `company_profile2` field names)."""

    ticker: str
    name: str
    finnhubIndustry: str
    ipo: str = Field(description="IPO date as the source writes it, e.g. 1977-05-18.")
    marketCapitalization: float = Field(description="Market capitalisation in millions of `currency`.")
    shareOutstanding: float = Field(description="Shares outstanding, in millions.")
    currency: str
    country: str
    exchange: str


MetricValue = int | float | str


class BasicFinancials(_Record):
    """One quarterly report of Finnhub basic financials, metrics in the order they are rendered."""

    period: str = Field(description="Quarter end, YYYY-MM-DD (not the filing date).")
    metrics: dict[str, MetricValue]


class DailyClose(_Record):
    """One trading day's close for one symbol."""

    date: dt.date
    close: float = Field(description="Close as used for returns (adjusted when auto_adjust=True).")
