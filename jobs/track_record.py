"""The track record over the ledger: fetch outcomes for closed weeks, and read the record back cheaply.

`refresh_outcomes` is the only part that touches market data (the weekly summary job calls it); `report` and
`track_record` read stored outcomes only, aggregated in SQL (`jobs.ledger.track_queries`), so `/track` answers
without a network call and without reading the ledger row by row.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

from engine.exceptions import DataError
from engine.market.weeks import NEW_YORK, Week
from engine.sources.base import PriceSource
from engine.track import price_window, realized_outcome, week_from_period
from jobs import ledger
from jobs.ledger import Ledger
from jobs.ledger.track_queries import COUNTED, latest_scored_week, statuses_of, track_sums
from jobs.ledger.track_scores import score_report

log = logging.getLogger(__name__)


def refresh_outcomes(store: Ledger, prices: PriceSource, *, closed_by: dt.datetime,
                     scored_at: dt.datetime) -> tuple[int, dict[str, str]]:
    """Score every entry whose target week had closed by `closed_by`: one price call for all their tickers (one
    per ticker if that fails). Returns (entries scored, {ticker: why not}); an entry that could not be scored
    stays pending and is tried again next time."""
    waiting = ledger.awaiting_outcome(store, closed_by=closed_by)
    if not waiting:
        return 0, {}
    by_ticker: dict[str, list[dict]] = defaultdict(list)
    for entry in waiting:
        by_ticker[entry["ticker"]].append(entry)
    start, end = price_window([week_from_period(e["target_week"]) for e in waiting])
    end = min(end, closed_by.astimezone(NEW_YORK).date())
    failures: dict[str, str] = {}
    try:
        closes = prices.daily_closes(sorted(by_ticker), start, end)
    except DataError:
        # One unknown or delisted ticker fails the batch call; the others still get their outcomes.
        closes = {}
        for ticker in sorted(by_ticker):
            try:
                closes.update(prices.daily_closes([ticker], start, end))
            except DataError as exc:
                failures[ticker] = str(exc)
    stored = 0
    for ticker, ticker_entries in by_ticker.items():
        if ticker not in closes:
            continue
        for entry in ticker_entries:
            try:
                outcome = realized_outcome(closes[ticker], week_from_period(entry["target_week"]), symbol=ticker)
            except DataError as exc:
                failures[ticker] = str(exc)
                continue
            stored += ledger.store_outcome(store, entry["id"], outcome, scored_at=scored_at)
    if failures:
        log.warning("no outcome yet for %s", "; ".join(f"{t}: {why}" for t, why in sorted(failures.items())))
    return stored, failures


def report(store: Ledger, *, latest: Week, ticker: str | None = None, bootstrap: int = 2000) -> dict:
    """`engine.track.score_track`'s report over the ledger's stored outcomes, up to the week `latest`."""
    ticker = ticker.upper() if ticker else None
    return score_report(track_sums(store, latest=latest, ticker=ticker), latest=latest, bootstrap=bootstrap)


def _recent_row(entry: dict, status: str) -> dict:
    return {
        "id": entry["id"], "ticker": entry["ticker"], "target_week": entry["target_week"],
        "requested_at": entry["requested_at"], "source": entry["source"], "parsed": entry["parsed"],
        "direction": entry["direction"], "label": entry["label"], "as_written": entry["as_written"],
        "actual_label": entry["actual_label"], "realized_return": entry["realized_return"], "hit": entry["hit"],
        "counted": status == COUNTED, "why_not_counted": None if status == COUNTED else status,
    }


def track_record(store: Ledger, ticker: str | None = None, recent: int = 5) -> dict:
    """What `/track [TICKER]` shows, from stored outcomes only (no network): the record up to the latest scored
    week (`report` is None when nothing has been scored yet) and the `recent` newest forecasts with their
    outcomes (None while pending)."""
    ticker = ticker.upper() if ticker else None
    latest = latest_scored_week(store, ticker=ticker)
    result = report(store, latest=week_from_period(latest), ticker=ticker, bootstrap=1000) if latest else None
    rows = ledger.entries(store, ticker=ticker, limit=max(recent, 0), texts=False)
    statuses = statuses_of(store, [row["id"] for row in rows])
    return {
        "ticker": ticker,
        "recorded": ledger.count(store, ticker=ticker),
        "report": result,
        "recent": [_recent_row(row, statuses[row["id"]]) for row in rows],
    }
