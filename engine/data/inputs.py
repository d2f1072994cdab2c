"""Gather everything one forecast needs from the sources and turn it into prompt parts.

This is the only place that decides *which* data a forecast sees: the weeks, the price closes, the news window
of each week, the quarterly report, the sampled headlines. Sources are passed in, so the same code runs live, on
a snapshot, in backtests and in tests.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from engine.data.prompts import PromptParts, WeekBlock, Wording, sample_news
from engine.exceptions import DataError, MissingApiKey
from engine.market.weeks import (
    NEW_YORK,
    Week,
    close_time,
    forecast_week,
    past_weeks,
    week_prices,
)
from engine.records import BasicFinancials, DailyClose
from engine.sources.base import FundamentalsSource, NewsSource, PriceSource
from engine.sources.notices import notices_to

log = logging.getLogger(__name__)
NEWS_PER_WEEK = 5


@dataclass(frozen=True)
class WeekNews:
    week: Week
    available: int  # articles in the window after boilerplate removal
    used: int  # sampled into the prompt (at most 5)


@dataclass(frozen=True)
class ForecastInputs:
    """A forecast's prompt parts plus what a reader should know about the data behind them."""

    symbol: str
    target: Week
    cutoff: dt.datetime
    parts: PromptParts
    news: tuple[WeekNews, ...]
    latest_close: DailyClose
    notes: tuple[str, ...] = field(default=())

    @property
    def empty_weeks(self) -> int:
        """Weeks that read 'No relative news reported.'"""
        return sum(1 for w in self.news if w.used == 0)

    @property
    def data_as_of(self) -> dt.datetime:
        return close_time(self.latest_close.date)


@dataclass(frozen=True)
class Sources:
    news: NewsSource
    fundamentals: FundamentalsSource
    prices: PriceSource


def select_report(
    reports: Sequence[BasicFinancials], *, cutoff: dt.date, lag_days: int
) -> BasicFinancials | None:
    """The newest quarterly report counted as public by `cutoff`: its quarter end plus `lag_days` (filings come
    weeks after the quarter ends; FinGPT used the quarter end itself and so leaked unreported figures)."""
    known = [r for r in reports if dt.date.fromisoformat(r.period) + dt.timedelta(days=lag_days) < cutoff]
    return max(known, key=lambda r: r.period, default=None)


def gather(
    symbols: Sequence[str],
    *,
    sources: Sources,
    cutoff: dt.datetime,
    now: dt.datetime,
    weeks: int = 3,
    with_financials: bool = True,
    financials_lag_days: int = 45,
    wording: Wording = "stock",
    seed: int = 0,
    progress: Callable[[str], None] | None = None,
) -> dict[str, ForecastInputs | DataError]:
    """Inputs for each symbol, forecasting the week after `cutoff` from `weeks` past weeks.

    Prices for every symbol come from one call. A symbol whose data fails maps to its error (a digest lists
    those and goes on); nothing fails silently. `now` decides whether this is live (financials as published) or
    a backtest (financials only once `financials_lag_days` have passed since the quarter end). `progress` hears
    what a source wants the waiting user to know, e.g. "rate-limited by Finnhub, retrying in 2 s".
    """
    with notices_to(progress):
        return _gather(symbols, sources=sources, cutoff=cutoff, now=now, weeks=weeks, with_financials=with_financials,
                       financials_lag_days=financials_lag_days, wording=wording, seed=seed)


def _gather(
    symbols: Sequence[str],
    *,
    sources: Sources,
    cutoff: dt.datetime,
    now: dt.datetime,
    weeks: int,
    with_financials: bool,
    financials_lag_days: int,
    wording: Wording,
    seed: int,
) -> dict[str, ForecastInputs | DataError]:
    cutoff = min(cutoff, now).astimezone(NEW_YORK)  # dates below are New York dates
    target = forecast_week(cutoff)
    history = past_weeks(target, weeks)
    live = now - cutoff < dt.timedelta(days=1)
    first_day = history[0].previous().start
    last_day = min(cutoff.date(), target.start)

    results: dict[str, ForecastInputs | DataError] = {}
    try:
        all_closes = sources.prices.daily_closes(list(symbols), first_day, last_day)
    except DataError as exc:
        # One bad symbol fails the batch call; retry one by one so the others still get their forecast.
        if len(symbols) == 1:
            return {symbols[0]: exc}
        all_closes = {}
        for symbol in symbols:
            try:
                all_closes.update(sources.prices.daily_closes([symbol], first_day, last_day))
            except DataError as single:
                results[symbol] = single

    for symbol in symbols:
        if symbol in results:
            continue
        try:
            # A close struck after the cutoff (today's, during market hours) is not known yet.
            closes = [c for c in all_closes[symbol] if close_time(c.date) <= cutoff]
            results[symbol] = _gather_one(
                symbol, closes, sources=sources, target=target, history=history, cutoff=cutoff,
                with_financials=with_financials, lag_days=0 if live else financials_lag_days,
                wording=wording, seed=seed,
            )
        except DataError as exc:
            log.info("no forecast inputs for %s: %s", symbol, exc)
            results[symbol] = exc
    return results


def _gather_one(
    symbol: str,
    closes: list[DailyClose],
    *,
    sources: Sources,
    target: Week,
    history: list[Week],
    cutoff: dt.datetime,
    with_financials: bool,
    lag_days: int,
    wording: Wording,
    seed: int,
) -> ForecastInputs:
    profile = sources.fundamentals.profile(symbol)
    notes: list[str] = []
    blocks, counts = [], []
    for wp in week_prices(closes, history, symbol=symbol, cutoff=cutoff):
        # The window is (previous close, this close]; the source takes inclusive bounds.
        items = sources.news.company_news(symbol, wp.news_from + dt.timedelta(microseconds=1), wp.news_to)
        lines = sample_news(items, symbol=symbol, week_start=wp.week.start.isoformat(), k=NEWS_PER_WEEK, seed=seed)
        counts.append(WeekNews(wp.week, available=len(items), used=len(lines)))
        blocks.append(
            WeekBlock(
                symbol=symbol,
                start=wp.week.start.isoformat(),
                end=wp.week.end.isoformat(),
                start_price=wp.start_close.close,
                end_price=wp.end_close.close,
                news=lines,
            )
        )
    empty = [c.week.period for c in counts if c.used == 0]
    if empty:
        notes.append(f"no news found for {symbol} in {', '.join(empty)} ({sources.news.name})")

    financials = None
    if with_financials:
        try:
            reports = sources.fundamentals.quarterly_financials(symbol)
            why_none = (f"no quarterly basic financials for {symbol} known by {cutoff.date()} "
                        f"({sources.fundamentals.name})")
        except MissingApiKey as exc:
            # Financials are optional in the FinGPT format: the forecast goes on and says why they are absent.
            reports, why_none = [], str(exc)
        financials = select_report(reports, cutoff=cutoff.date(), lag_days=lag_days)
        if financials is None:
            notes.append(why_none)

    parts = PromptParts(
        symbol=symbol,
        profile=profile,
        weeks=tuple(blocks),
        financials=financials,
        target_start=target.start.isoformat(),
        target_end=target.end.isoformat(),
        wording=wording,
    )
    return ForecastInputs(
        symbol=symbol,
        target=target,
        cutoff=cutoff,
        parts=parts,
        news=tuple(counts),
        latest_close=closes[-1],
        notes=tuple(notes),
    )
