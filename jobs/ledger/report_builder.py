"""The stored track reports, computed: what `/track [TICKER]` shows, worked out by the writer after each write that
changes it (numpy: the bootstrap), so the bot only reads a row (`jobs.ledger.reports`).

A write recomputes its scopes (its tickers' and "*") as soon as it commits (`reports_changed`). A batch of writes,
a digest's thirty forecasts or a week's outcomes, runs inside `batched_reports` instead: each scope it touched is
recomputed once, when the batch ends. A recompute that fails is logged and leaves the report stale (a later write,
or `rebuild`, which the weekly summary runs, catches it up): the write it follows has committed, and a forecast
that reached the user must never be lost over its track record.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass

from engine.evaluation.track import week_from_period
from engine.evaluation.track_report import TrackReport
from engine.evaluation.track_scores import score_report
from jobs.ledger import reports
from jobs.ledger.database import Ledger
from jobs.ledger.reports import ALL
from jobs.ledger.store import count
from jobs.ledger.track_queries import latest_scored_week, track_sums

log = logging.getLogger(__name__)

# /track's interval: 1000 draws of weeks (the weekly summary draws 2000, `jobs.track_record.report`)
TRACK_BOOTSTRAP = 1000


@dataclass(frozen=True)
class ScopeReport:
    report: TrackReport | None  # up to the scope's latest scored week, without its series; None before any
    latest_week: str | None
    recorded: int


def compute(ledger: Ledger, scope: str) -> ScopeReport:
    """`scope`'s report from the ledger as it is now: up to its latest scored week (any entry's, counted or not),
    with TRACK_BOOTSTRAP draws."""
    ticker = None if scope == ALL else scope
    latest = latest_scored_week(ledger, ticker=ticker)
    report = None
    if latest:
        week = week_from_period(latest)
        report = score_report(track_sums(ledger, latest=week, ticker=ticker), latest=week, bootstrap=TRACK_BOOTSTRAP)
        # /track draws no chart. The week-by-week series (a point per week, growing with the record) is the weekly
        # summary's, computed fresh there; without it the stored row, and /track's read, stay the same size.
        report = report.model_copy(update={"series": None})
    return ScopeReport(report=report, latest_week=latest, recorded=count(ledger, ticker=ticker))


def recompute(ledger: Ledger, scopes: Iterable[str]) -> list[str]:
    """Compute and store these scopes' reports; returns the scopes, sorted."""
    scopes = sorted(set(scopes))
    if not scopes:
        return []
    with ledger.connect() as conn:
        # Before the data: what is computed next includes at least every write up to these generations.
        generations = reports.generations(conn, scopes)
    computed = {scope: compute(ledger, scope) for scope in scopes}
    now = dt.datetime.now(dt.UTC)
    with ledger.begin() as conn:
        for scope in scopes:
            found = computed[scope]
            reports.save(conn, scope, generation=generations[scope], report=found.report,
                         latest_week=found.latest_week, recorded=found.recorded, now=now)
    return scopes


def rebuild(ledger: Ledger, *, everything: bool = False) -> list[str]:
    """Recompute the stale and missing reports (every scope's with `everything`); returns the scopes recomputed."""
    return recompute(ledger, reports.all_scopes(ledger) if everything else reports.needing_rebuild(ledger))


# {ledger URL: (the ledger, the scopes its writes changed)} of the batch under way in this context, if any
_BATCH: ContextVar[dict[str, tuple[Ledger, set[str]]] | None] = ContextVar("report_batch", default=None)


def _recompute_logged(ledger: Ledger, scopes: Iterable[str]) -> None:
    try:
        recompute(ledger, scopes)
    except Exception:  # noqa: BLE001 — the write committed; its report stays stale until the next recompute
        log.exception("could not recompute the track reports of %s in %r; they stay stale until the next write "
                      "or the weekly summary's rebuild", ", ".join(sorted(scopes)), ledger)


def reports_changed(ledger: Ledger, scopes: Iterable[str]) -> None:
    """A write to `ledger` that changed these scopes has committed: recompute them now, or note them for the end
    of the batch under way."""
    scopes = set(scopes)
    if not scopes:
        return
    batch = _BATCH.get()
    if batch is None:
        _recompute_logged(ledger, scopes)
    else:
        batch.setdefault(ledger.url, (ledger, set()))[1].update(scopes)


@contextmanager
def batched_reports() -> Iterator[None]:
    """Writes inside recompute each changed scope once, on the way out (also when the block raises: what it wrote
    has committed). Nested, the outer batch recomputes. Per thread and task (a context variable)."""
    if _BATCH.get() is not None:
        yield
        return
    pending: dict[str, tuple[Ledger, set[str]]] = {}
    token = _BATCH.set(pending)
    try:
        yield
    finally:
        _BATCH.reset(token)
        for ledger, scopes in pending.values():
            _recompute_logged(ledger, scopes)
