"""The track record over the ledger: fetch outcomes for closed weeks, and read the record back cheaply.

`refresh_outcomes` is the only part that touches market data (the weekly summary job calls it); `report` and
`track_record` read stored outcomes only, so `/track` answers without a network call.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections import defaultdict

import redis

from engine.exceptions import DataError
from engine.market.weeks import NEW_YORK, Week
from engine.sources.base import PriceSource
from engine.track import price_window, realized_outcome, score_track, select_counted, week_from_period
from jobs import ledger

log = logging.getLogger(__name__)


def refresh_outcomes(conn: redis.Redis, prices: PriceSource, *, closed_by: dt.datetime,
                     scored_at: dt.datetime) -> tuple[int, dict[str, str]]:
    """Score every entry whose target week had closed by `closed_by`: one price call for all their tickers (one
    per ticker if that fails). Returns (entries scored, {ticker: why not}); an entry that could not be scored
    stays pending and is tried again next time."""
    waiting = ledger.awaiting_outcome(conn, closed_by=closed_by)
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
            stored += ledger.store_outcome(conn, entry["id"], outcome, scored_at=scored_at)
    if failures:
        log.warning("no outcome yet for %s", "; ".join(f"{t}: {why}" for t, why in sorted(failures.items())))
    return stored, failures


def report(conn: redis.Redis, *, latest: Week, ticker: str | None = None, bootstrap: int = 2000) -> dict:
    """`engine.track.score_track` over the ledger's stored outcomes, up to the week `latest`."""
    entries = [ledger.to_track_entry(e) for e in ledger.entries(conn, ticker=ticker, texts=False)]
    return score_track(entries, latest=latest, bootstrap=bootstrap)


def _recent_row(entry: dict, excluded: dict[str, str]) -> dict:
    return {
        "id": entry["id"], "ticker": entry["ticker"], "target_week": entry["target_week"],
        "requested_at": entry["requested_at"], "source": entry["source"], "parsed": entry["parsed"],
        "direction": entry["direction"], "label": entry["label"], "as_written": entry["as_written"],
        "actual_label": entry["actual_label"], "realized_return": entry["realized_return"], "hit": entry["hit"],
        "counted": entry["id"] not in excluded, "why_not_counted": excluded.get(entry["id"]),
    }


def track_record(conn: redis.Redis, ticker: str | None = None, recent: int = 5) -> dict:
    """What `/track [TICKER]` shows, from stored outcomes only (no network): the record up to the latest scored
    week (`report` is None when nothing has been scored yet) and the `recent` newest forecasts with their
    outcomes (None while pending)."""
    ticker = ticker.upper() if ticker else None
    raw = ledger.entries(conn, ticker=ticker, texts=False)
    entries = [ledger.to_track_entry(e) for e in raw]
    scored_weeks = [e.week for e in entries if e.scored]
    result = score_track(entries, latest=max(scored_weeks), bootstrap=1000) if scored_weeks else None
    _, excluded = select_counted(entries)
    return {
        "ticker": ticker,
        "recorded": len(raw),
        "report": result,
        "recent": [_recent_row(e, excluded) for e in raw[:max(recent, 0)]],
    }
