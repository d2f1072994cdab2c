"""What `/track [TICKER]` shows, as the bot reads it: the scope's stored report, the newest forecasts and the
feedback people gave (👍/👎: two small queries on the votes table), in indexed queries whatever the ledger's size.
No market data, no numpy: the writers did the scoring (`jobs.ledger.report_builder`), and `jobs.track_record` is
the worker's side.
"""

from __future__ import annotations

import logging

from jobs.ledger import Ledger, count, reports, votes
from jobs.ledger.columns import COUNTED
from jobs.ledger.store import newest_with_standing
from jobs.ledger.views import RecentForecast, TrackView

log = logging.getLogger(__name__)


def _recent_row(entry: dict, status: str, votes_up: int, votes_down: int) -> RecentForecast:
    return RecentForecast(
        id=entry["id"], ticker=entry["ticker"], target_week=entry["target_week"],
        requested_at=entry["requested_at"], source=entry["source"], parsed=entry["parsed"],
        direction=entry["direction"], label=entry["label"], as_written=entry["as_written"],
        clear_signal=entry["clear_signal"],  # False: shown without an arrow, as "no clear signal"
        actual_label=entry["actual_label"], realized_return=entry["realized_return"], hit=entry["hit"],
        counted=status == COUNTED, why_not_counted=None if status == COUNTED else status,
        votes_up=votes_up, votes_down=votes_down)


def track_record(store: Ledger, ticker: str | None = None, recent: int = 5) -> TrackView:
    """The record of `ticker` (all tickers when None) up to its latest scored week (`report`, a
    `engine.evaluation.track_report.TrackReport` as the last write left it; None when nothing has been scored yet),
    how many forecasts are recorded, the `recent` newest with their outcomes (None while pending) and votes, and the
    feedback: a `jobs.ledger.views.TrackView`."""
    ticker = ticker.upper() if ticker else None
    stored = reports.read(store, reports.scope_of(ticker))
    if stored is None or not stored.readable:
        # Not computed yet (a ledger from before the stored reports, until its next write or weekly summary), or
        # by an older release (until the worker's start or weekly rebuild recomputes it): shown as nothing scored.
        recorded, report = count(store, ticker=ticker), None
    else:
        recorded, report = stored.recorded, stored.report
        if stored.stale:
            log.debug("track report %s is behind its writes (generation %d, computed %d)", stored.scope,
                      stored.generation, stored.computed_generation)
    rows = newest_with_standing(store, ticker=ticker, limit=max(recent, 0))
    voted = votes.counts(store, [row["id"] for row, _ in rows])
    return TrackView(
        ticker=ticker,
        recorded=recorded,
        report=report,
        recent=tuple(_recent_row(row, status, *voted.get(row["id"], (0, 0))) for row, status in rows),
        feedback=votes.tally(store, ticker=ticker),  # the 👍/👎 people gave (jobs.ledger.votes)
    )
