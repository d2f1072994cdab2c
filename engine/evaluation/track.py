"""The live track record: recorded forecasts scored against what the market then did. Pure and torch-free.

The numbers mean what `forecaster evaluate` means by them: `engine.evaluation.track_scores` applies the evaluator's
formulas (`engine.evaluation.metrics`, `engine.evaluation.calibration`) to per-week sums (`track_sums`), and the
tests hold them to the evaluator's own code run on the same forecasts:
- truth is the target week's close-to-close return, exactly as the dataset labels were made (`engine.market.weeks`:
  the last close on or before the end Sunday over the previous week's), in FinGPT's bins (`move_bin`);
- hit rate is direction right over *every* scored forecast, an unparsed answer counting as a miss
  (`binary_accuracy_all`), with a 95% week-clustered bootstrap interval (`week_bootstrap_ci`, seed 0);
- MSE is the squared difference of signed bin midpoints (percent²), over parsed forecasts;
- the baselines answer for the same tickers and weeks: constant "Down by 0-1%", constant "Up by 0-1%", and
  last-week momentum, the realized bin of the week before the target week (a flat week reads "down", as the
  prompt's "decreased" has it). Without prices for that week, momentum has no answer and counts as a miss, as in
  the evaluator;
- calibration is the evaluator's `probability_metrics` (Brier, log loss, ECE) of the model's P(up) against the
  realized direction, over the counted scored forecasts that carry a probability (older entries and backends
  without probabilities carry none). It is shown once MIN_CALIBRATED (`track_report`) forecasts have one: below
  that, the reliability bins hold a handful of forecasts each and an ECE says little.

Which forecasts count (`select_counted`): a track record is what the product said *before* the market moved.
- A forecast requested after its target week's Monday open (a dated what-if such as `/forecast AXP 2024-03-15`)
  is scored and kept, but never counted: it was made in hindsight.
- Several counted candidates for one ticker and target week (a `/forecast` on Friday, the Monday digest): the last
  one requested before the open counts, the standing forecast when trading began; the others are marked
  superseded. So no ticker-week is ever counted twice.

The report itself has one implementation, `track_scores.score_report`, fed by two gatherers of the same sums: the
ledger's, in SQL (`jobs.ledger.track_queries`), and `score_track` here, from entries in memory.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from engine.evaluation.track_report import LATE, SUPERSEDED, SYSTEMS, TrackReport
from engine.evaluation.track_scores import score_report
from engine.evaluation.track_sums import TrackSums, hits_matrix, outcome_terms, recorded_terms, system_sums
from engine.exceptions import NoPriceData
from engine.market.weeks import NEW_YORK, MoveBin, Week, move_bin, week_close, weekly_return
from engine.records import DailyClose

_PERIOD = re.compile(r"^(\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})$")


# ---- weeks ----------------------------------------------------------------------------------------------------


def week_from_period(period: str) -> Week:
    """The Week a `target_week` string names ("2024-03-10 to 2024-03-17"). Raises ValueError otherwise."""
    found = _PERIOD.match(period.strip())
    if not found:
        raise ValueError(f"not a week: {period!r}; expected 'YYYY-MM-DD to YYYY-MM-DD' (Sunday to Sunday)")
    return Week(dt.date.fromisoformat(found[1]), dt.date.fromisoformat(found[2]))


def closed_at(week: Week) -> dt.datetime:
    """When a week counts as closed for scoring: eight hours after its last session's close (Saturday 00:00 New
    York after a Friday 16:00 close; Friday 00:00 in a Good-Friday week), so a price source that lags a little still
    has the final close. A week without a session: its Saturday 00:00."""
    closes = week.closes
    if closes is None:
        return dt.datetime.combine(week.end - dt.timedelta(days=1), dt.time(0), tzinfo=NEW_YORK)
    return closes + dt.timedelta(hours=8)


def has_closed(week: Week, moment: dt.datetime) -> bool:
    return moment >= closed_at(week)


def last_closed_week(day: dt.date) -> Week:
    """The latest week whose Saturday is on or before `day`: for the Saturday summary, the week just ended."""
    week = Week.containing(day)
    return week if week.end - dt.timedelta(days=1) <= day else week.previous()


# ---- outcomes -------------------------------------------------------------------------------------------------


def momentum_bin(previous_return: float) -> MoveBin:
    """Last-week momentum from a realized return: the evaluator's rule (`engine.evaluation.baselines.momentum_bin`)
    without the prompt text: "up" only when the price rose, the bin of the move's size."""
    return MoveBin("up" if previous_return > 0 else "down", move_bin(previous_return).k)


@dataclass(frozen=True)
class Outcome:
    """What a target week did to one ticker."""

    start_close: DailyClose  # the previous week's last close
    end_close: DailyClose  # the target week's last close
    previous_return: float | None  # the week before the target week, for momentum; None when prices do not reach

    @property
    def realized_return(self) -> float:
        return weekly_return(self.start_close.close, self.end_close.close)

    @property
    def actual(self) -> MoveBin:
        return move_bin(self.realized_return)

    @property
    def momentum(self) -> MoveBin | None:
        return None if self.previous_return is None else momentum_bin(self.previous_return)


def realized_outcome(closes: Sequence[DailyClose], week: Week, *, symbol: str) -> Outcome:
    """The target week's outcome from daily closes (ascending) that reach back to the week before the previous
    one. Raises NoPriceData when the target week or the week before it has no close."""
    start = week_close(closes, week.previous(), symbol=symbol)
    end = week_close(closes, week, symbol=symbol)
    try:
        before = week_close(closes, week.previous(2), symbol=symbol)
        previous = weekly_return(before.close, start.close)
    except NoPriceData:
        previous = None
    return Outcome(start, end, previous)


def price_window(weeks: Sequence[Week]) -> tuple[dt.date, dt.date]:
    """The daily-close range (inclusive) that `realized_outcome` needs for every week in `weeks`."""
    return min(w.previous(2).start for w in weeks), max(w.end for w in weeks)


# ---- what gets scored -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TrackEntry:
    """One recorded forecast as scoring sees it (the ledger's hash, reduced)."""

    entry_id: str
    symbol: str
    week: Week
    requested_at: dt.datetime  # timezone-aware
    parsed: bool
    direction: str  # "up", "down" or "none"
    magnitude: str | None  # one of engine.parsing.MAGNITUDES
    as_written: str  # the prediction line as the model wrote it
    realized_return: float | None = None  # None until the week has closed and prices were fetched
    previous_return: float | None = None  # the week before the target week (momentum); None when unknown
    p_up: float | None = None  # the model's P(up); None when its backend had none (or the entry predates them)

    @property
    def scored(self) -> bool:
        return self.realized_return is not None


def select_counted(entries: Sequence[TrackEntry]) -> tuple[list[TrackEntry], dict[str, str]]:
    """(the entries the track record counts, {entry_id: why another one is not}); see the module docstring."""
    excluded: dict[str, str] = {}
    standing: dict[tuple[str, Week], TrackEntry] = {}
    for entry in sorted(entries, key=lambda e: (e.requested_at, e.entry_id)):
        opens = entry.week.opens
        if opens is None or entry.requested_at >= opens:
            excluded[entry.entry_id] = LATE
            continue
        earlier = standing.get((entry.symbol, entry.week))
        if earlier is not None:
            excluded[earlier.entry_id] = SUPERSEDED
        standing[(entry.symbol, entry.week)] = entry
    counted = sorted(standing.values(), key=lambda e: (e.week, e.symbol))
    return counted, excluded


# ---- the report, from entries in memory -----------------------------------------------------------------------


def _terms(entry: TrackEntry) -> dict:
    """What `entry` adds to the sums: `engine.evaluation.track_sums`' terms, from its returns."""
    actual = None if entry.realized_return is None else move_bin(entry.realized_return).label
    momentum = None if entry.previous_return is None else momentum_bin(entry.previous_return).label
    return (recorded_terms(parsed=entry.parsed, direction=entry.direction, p_up=entry.p_up)
            | outcome_terms(parsed=entry.parsed, direction=entry.direction, magnitude=entry.magnitude,
                            p_up=entry.p_up, actual_label=actual, momentum_label=momentum))


def _calibration_bins(scored: list[tuple[TrackEntry, dict]]) -> list[dict]:
    bins: dict[int, list[dict]] = defaultdict(list)
    for _, terms in scored:
        if terms["p_up"] is not None:
            bins[terms["p_bin"]].append(terms)
    return [{"bin": i, "n": len(rows), "sum_p": sum(r["p_up"] for r in rows), "ups": sum(r["actual_up"] for r in rows),
             "sq_error": sum(r["p_sq_error"] for r in rows), "log_loss": sum(r["p_log_loss"] for r in rows)}
            for i, rows in sorted(bins.items())]


def _week_row(week: Week, rows: list[dict]) -> dict:
    sums = system_sums(rows)
    return {"week_start": week.start.isoformat(), "week_end": week.end.isoformat(), "target_week": week.period,
            "n": sums["n"], **{f"{key}_correct": sums[f"{key}_correct"] for key in SYSTEMS}}


def track_sums(entries: Sequence[TrackEntry], *, latest: Week) -> TrackSums:
    """The sums of the track record up to and including the week `latest`, gathered in Python: what
    `jobs.ledger.track_queries.track_sums` gathers in SQL from the ledger's stored terms."""
    counted, excluded = select_counted(entries)
    scored = [(e, _terms(e)) for e in counted if e.scored and e.week <= latest]  # by week, then ticker
    by_symbol: dict[str, list[dict]] = defaultdict(list)
    by_week: dict[Week, list[dict]] = defaultdict(list)
    for entry, terms in scored:
        by_symbol[entry.symbol].append(terms)
        by_week[entry.week].append(terms)
    return TrackSums(
        excluded=excluded,
        pending=sum(1 for e in counted if not e.scored),
        by_ticker=[{"ticker": symbol, **system_sums(rows), "hits": hits_matrix([system_sums([r]) for r in rows])}
                   for symbol, rows in sorted(by_symbol.items())],
        by_week=[_week_row(week, rows) for week, rows in sorted(by_week.items())],
        this_week=system_sums(by_week[latest]) if by_week.get(latest) else None,
        unparsed=[{"entry_id": e.entry_id, "symbol": e.symbol, "period": e.week.period}
                  for e, _ in scored if not e.parsed],
        calibration=_calibration_bins(scored),
    )


def score_track(entries: Sequence[TrackEntry], *, latest: Week, bootstrap: int = 2000, seed: int = 0) -> TrackReport:
    """The track record up to and including the week `latest` of these entries (`score_report`'s report): the
    ledger's report, gathered from entries in memory instead of in SQL. Entries with no outcome yet are counted as
    pending."""
    return score_report(track_sums(entries, latest=latest), latest=latest, bootstrap=bootstrap, seed=seed)
