"""The track record over the ledger, the worker's side: fetch outcomes for closed weeks, report on them, and keep
the stored reports `/track` reads (`jobs.track_reads`) in step.

`refresh_outcomes` is the only part that touches market data (the weekly summary job calls it); `report` reads
stored outcomes only, aggregated in SQL (`jobs.ledger.track_queries`). The writers recompute the stored report of
each scope they change (`jobs.ledger.report_builder`); `rebuild_reports` catches up any a crash left stale.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from engine.evaluation.track import price_window, realized_outcome, week_from_period
from engine.evaluation.track_report import TrackReport
from engine.evaluation.track_scores import score_report
from engine.exceptions import DataError
from engine.market.weeks import NEW_YORK, Week
from engine.sources.base import PriceSource
from engine.sources.notices import told
from jobs import ledger
from jobs.ledger import Ledger, report_builder, writes
from jobs.ledger.track_queries import track_sums

log = logging.getLogger(__name__)


def refresh_outcomes(store: Ledger, prices: PriceSource, *, closed_by: dt.datetime,
                     scored_at: dt.datetime) -> tuple[int, dict[str, str]]:
    """Score every entry whose target week had closed by `closed_by`: one price call for all their tickers (one
    per ticker if that fails). Returns (entries scored, {ticker: why not, in words for the channel: see
    `engine.sources.notices.told`}); the log has the sources' own messages. An entry that could not be scored
    stays pending and is tried again next time. The stored reports of the scored tickers, and of all, are
    recomputed once, at the end."""
    waiting = ledger.awaiting_outcome(store, closed_by=closed_by)
    if not waiting:
        return 0, {}
    by_ticker: dict[str, list[dict]] = defaultdict(list)
    for entry in waiting:
        by_ticker[entry["ticker"]].append(entry)
    start, end = price_window([week_from_period(e["target_week"]) for e in waiting])
    end = min(end, closed_by.astimezone(NEW_YORK).date())
    failures: dict[str, DataError] = {}
    try:
        closes = prices.daily_closes(sorted(by_ticker), start, end)
    except DataError:
        # One unknown or delisted ticker fails the batch call; the others still get their outcomes.
        closes = {}
        for ticker in sorted(by_ticker):
            try:
                closes.update(prices.daily_closes([ticker], start, end))
            except DataError as exc:
                failures[ticker] = exc
    stored = 0
    with writes.batched_reports():
        for ticker, ticker_entries in by_ticker.items():
            if ticker not in closes:
                continue
            for entry in ticker_entries:
                try:
                    outcome = realized_outcome(closes[ticker], week_from_period(entry["target_week"]), symbol=ticker)
                except DataError as exc:
                    failures[ticker] = exc
                    continue
                stored += writes.store_outcome(store, entry["id"], outcome, scored_at=scored_at)
    if failures:
        log.warning("no outcome yet for %s", "; ".join(f"{t}: {why}" for t, why in sorted(failures.items())))
    return stored, {ticker: told(exc).what for ticker, exc in failures.items()}


def report(store: Ledger, *, latest: Week, ticker: str | None = None, bootstrap: int = 2000) -> TrackReport:
    """The track record over the ledger's stored outcomes, up to the week `latest`, its series included."""
    ticker = ticker.upper() if ticker else None
    return score_report(track_sums(store, latest=latest, ticker=ticker), latest=latest, bootstrap=bootstrap)


def rebuild_reports(store: Ledger, *, everything: bool = False) -> list[str]:
    """Recompute every stored `/track` report that is stale (a write whose recompute never ran: a crash in between,
    or an older release's report) or missing (a ledger from before they were stored); all of them with
    `everything`. Returns the scopes ("*" or a ticker) recomputed."""
    return report_builder.rebuild(store, everything=everything)
