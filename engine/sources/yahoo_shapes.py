"""Yahoo's answers, as yfinance returns them, in the engine's records: closes, news items, a company profile.

Pure: no network, no yfinance (pandas is imported to read download()'s frame). engine.sources.yahoo fetches;
this module only reads what came back, and decides nothing about retries.
"""

from __future__ import annotations

import datetime as dt
from typing import TYPE_CHECKING, Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from engine.records import CompanyProfile, DailyClose, NewsItem

if TYPE_CHECKING:
    import pandas as pd


def closes_from_frame(frame: pd.DataFrame | None, symbol: str, n_symbols: int,
                       start: dt.date, end: dt.date) -> list[DailyClose]:
    """One symbol's non-NaN closes from download()'s frame, dated, inside [start, end], oldest first."""
    import pandas as pd

    if frame is None or frame.empty:
        return []
    ticker = symbol.upper()
    columns = frame.columns
    if isinstance(columns, pd.MultiIndex):
        level = next(
            (lvl for lvl in (["Ticker"] if "Ticker" in columns.names else range(columns.nlevels))
             if ticker in columns.get_level_values(lvl)),
            None,
        )
        if level is None:
            return []
        sub = frame.xs(ticker, axis=1, level=level)
    elif n_symbols == 1:  # a single ticker flattened by multi_level_index=False
        sub = frame
    else:
        return []
    if "Close" not in sub.columns:
        return []
    by_day: dict[dt.date, float] = {}
    for stamp, value in sub["Close"].dropna().items():
        # The wall date in the index's own timezone: tz-naive from download(), exchange-local midnight from
        # Ticker.history(). Converting would move non-US sessions to another day.
        day = pd.Timestamp(stamp).date()
        if start <= day <= end:
            by_day[day] = float(value)
    return [DailyClose(date=day, close=close) for day, close in sorted(by_day.items())]


def news_item(entry: Any) -> NewsItem | None:
    """One entry of `Ticker.get_news`; None without a title or a publication time."""
    if not isinstance(entry, dict):
        return None
    content = entry.get("content") or {}
    title = (content.get("title") or "").strip()
    published = _parse_utc(content.get("pubDate"))
    if not title or published is None:
        return None
    url = (content.get("canonicalUrl") or {}).get("url") or (content.get("clickThroughUrl") or {}).get("url") or ""
    return NewsItem(
        published=published,
        headline=title,
        summary=(content.get("summary") or content.get("description") or "").strip(),
        source=(content.get("provider") or {}).get("displayName") or "",
        url=url,
    )


def company_profile(symbol: str, info: dict[str, Any]) -> CompanyProfile | None:
    """`Ticker.info` in Finnhub's field names and units (millions); None when Yahoo has no name for the symbol."""
    name = info.get("longName") or info.get("shortName")
    if not name:
        return None
    return CompanyProfile(
        ticker=symbol,
        name=str(name),
        finnhubIndustry=str(info.get("industry") or info.get("sector") or ""),
        ipo=_first_trade_date(info),
        marketCapitalization=_millions(info.get("marketCap")),
        shareOutstanding=_millions(info.get("sharesOutstanding")),
        currency=str(info.get("currency") or ""),
        country=str(info.get("country") or ""),
        exchange=str(info.get("fullExchangeName") or info.get("exchange") or ""),
    )


def _parse_utc(value: Any) -> dt.datetime | None:
    if not isinstance(value, str) or not value:
        return None
    try:
        stamp = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    if stamp.tzinfo is None:
        stamp = stamp.replace(tzinfo=dt.UTC)
    return stamp.astimezone(dt.UTC)


def _first_trade_date(info: dict[str, Any]) -> str:
    """YYYY-MM-DD of the first trade, in the exchange's timezone when Yahoo gives it.

    yfinance 1.7's info carries `firstTradeDateMilliseconds` (v7 quote, ms) and `firstTradeDateEpochUtc`
    (quoteSummary, s); either may be missing.
    """
    if isinstance(info.get("firstTradeDateMilliseconds"), (int, float)):
        seconds = info["firstTradeDateMilliseconds"] / 1000
    elif isinstance(info.get("firstTradeDateEpochUtc"), (int, float)):
        seconds = info["firstTradeDateEpochUtc"]
    else:
        return ""
    zone: dt.tzinfo = dt.UTC
    name = info.get("exchangeTimezoneName") or info.get("timeZoneFullName")
    if isinstance(name, str) and name:
        try:
            zone = ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass
    return dt.datetime.fromtimestamp(seconds, tz=zone).date().isoformat()


def _millions(value: Any) -> float:
    return float(value) / 1e6 if isinstance(value, (int, float)) else 0.0
