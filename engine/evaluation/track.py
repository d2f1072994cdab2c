"""The live track record: recorded forecasts scored against what the market then did. Pure and torch-free.

The numbers mean what `forecaster evaluate` means by them, because they come out of the evaluator's own code
(`engine.evaluation.metrics`):
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
  without probabilities carry none). It is shown once MIN_CALIBRATED forecasts have one: below that, the
  reliability bins hold a handful of forecasts each and an ECE says little.

Which forecasts count (`select_counted`): a track record is what the product said *before* the market moved.
- A forecast requested after its target week's Monday open (a dated what-if such as `/forecast AXP 2024-03-15`)
  is scored and kept, but never counted: it was made in hindsight.
- Several counted candidates for one ticker and target week (a `/forecast` on Friday, the Monday digest): the last
  one requested before the open counts, the standing forecast when trading began; the others are marked
  superseded. So no ticker-week is ever counted twice.
"""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

from engine.data.fingpt_rows import EvalRow
from engine.evaluation.baselines import BASELINE_DOWN, BASELINE_MOMENTUM, BASELINE_UP
from engine.evaluation.calibration import probability_metrics
from engine.evaluation.metrics import (
    _direction_metrics as evaluator_metrics,  # the evaluator's per-system numbers, reused
)
from engine.exceptions import NoPriceData
from engine.market.weeks import NEW_YORK, MoveBin, Week, move_bin, week_close, weekly_return
from engine.parsing import MAGNITUDES, Forecast
from engine.records import DailyClose

BASELINES = (BASELINE_DOWN, BASELINE_UP, BASELINE_MOMENTUM)
SYSTEMS = ("model", *BASELINES)
LATE = "requested after the week opened"
SUPERSEDED = "superseded by a later forecast"
# Scored forecasts with a probability before the summary posts a calibration line and a reliability chart.
MIN_CALIBRATED = 20

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

    @property
    def forecast(self) -> Forecast:
        """The stored prediction as the evaluator's Forecast: scored as the user saw it, not re-parsed."""
        return Forecast(raw=self.as_written, positives=(), concerns=(), direction=self.direction,
                        magnitude=self.magnitude, prediction=self.as_written, analysis="", parsed=self.parsed)


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


# ---- metrics --------------------------------------------------------------------------------------------------


def _bin_answer(b: MoveBin | None) -> Forecast:
    if b is None:  # momentum without a previous week: no answer, a miss (the evaluator scores "" the same way)
        return Forecast(raw="", positives=(), concerns=(), direction="none", magnitude=None, prediction="",
                        analysis="", parsed=False, problems=("no previous week",))
    return Forecast(raw=b.prediction_text, positives=(), concerns=(), direction=b.direction,
                    magnitude=MAGNITUDES[b.k - 1], prediction=b.prediction_text, analysis="", parsed=True)


def _answers(entries: Sequence[TrackEntry]) -> dict[str, list[Forecast]]:
    return {
        "model": [e.forecast for e in entries],
        BASELINE_DOWN: [_bin_answer(MoveBin("down", 1))] * len(entries),
        BASELINE_UP: [_bin_answer(MoveBin("up", 1))] * len(entries),
        BASELINE_MOMENTUM: [_bin_answer(None if e.previous_return is None else momentum_bin(e.previous_return))
                            for e in entries],
    }


def system_metrics(entries: Sequence[TrackEntry], *, bootstrap: int = 2000, seed: int = 0) -> dict[str, dict]:
    """{system: the evaluator's DIRECTION_KEYS metrics plus `hits`} for the model and each baseline, over the same
    scored entries. Every system reuses the seed, so their intervals resample the same weeks."""
    rows = [EvalRow(e.symbol, e.week.period, "", "", move_bin(e.realized_return).label) for e in entries]
    result = {}
    for system, answers in _answers(entries).items():
        metrics = evaluator_metrics(rows, answers, bootstrap=bootstrap, seed=seed)
        accuracy = metrics["binary_accuracy_all"]
        metrics["hits"] = 0 if accuracy is None else round(accuracy * len(rows))
        result[system] = metrics
    return result


def calibration(entries: Sequence[TrackEntry]) -> dict | None:
    """`probability_metrics` of the model's P(up) over scored `entries` that carry one, plus `enough` (at least
    MIN_CALIBRATED of them) and `min_n`. None when none carries a probability."""
    with_p = [e for e in entries if e.scored and e.p_up is not None]
    metrics = probability_metrics([e.p_up for e in with_p], [move_bin(e.realized_return).direction == "up"
                                                             for e in with_p])
    if metrics is None:
        return None
    return {**metrics, "enough": metrics["n"] >= MIN_CALIBRATED, "min_n": MIN_CALIBRATED}


def score_track(entries: Sequence[TrackEntry], *, latest: Week, bootstrap: int = 2000, seed: int = 0) -> dict:
    """The track record up to and including the week `latest`: that week, cumulative, by ticker, and the
    cumulative hit rate week by week (the chart's series), and the calibration of the model's P(up) over the
    counted scored forecasts (`calibration`). Entries with no outcome yet are counted as pending."""
    counted, excluded = select_counted(entries)
    scored = [e for e in counted if e.scored and e.week <= latest]
    this_week = [e for e in scored if e.week == latest]
    weeks = sorted({e.week for e in scored})
    by_symbol: dict[str, list[TrackEntry]] = defaultdict(list)
    for entry in scored:
        by_symbol[entry.symbol].append(entry)

    series, running = [], {s: [0, 0] for s in SYSTEMS}  # system -> [hits, n] so far
    for week in weeks:
        week_metrics = system_metrics([e for e in scored if e.week == week], bootstrap=0)
        for system, m in week_metrics.items():
            running[system][0] += m["hits"]
            running[system][1] += m["n"]
        series.append({"period": week.period, "end": week.end.isoformat(), "n": running["model"][1],
                       **{s: hits / n for s, (hits, n) in running.items()}})

    return {
        "latest_week": latest.period,
        "counts": {
            "scored": len(scored),
            "scored_this_week": len(this_week),
            "pending": sum(1 for e in counted if not e.scored),
            "unparsed": sum(1 for e in scored if not e.parsed),
            "superseded": sum(1 for why in excluded.values() if why == SUPERSEDED),
            "late": sum(1 for why in excluded.values() if why == LATE),
            "weeks": len(weeks),
            "tickers": len(by_symbol),
        },
        "week": system_metrics(this_week, bootstrap=bootstrap, seed=seed) if this_week else None,
        "cumulative": system_metrics(scored, bootstrap=bootstrap, seed=seed) if scored else None,
        "by_ticker": {s: system_metrics(rows, bootstrap=bootstrap, seed=seed) for s, rows in sorted(by_symbol.items())},
        "series": series,
        "calibration": calibration(scored),
        "unparsed": [{"entry_id": e.entry_id, "symbol": e.symbol, "period": e.week.period}
                     for e in scored if not e.parsed],
        "excluded": excluded,
        "bootstrap": {"draws": bootstrap, "seed": seed},
    }
