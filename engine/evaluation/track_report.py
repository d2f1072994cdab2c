"""The track record's report as a type: what `engine.evaluation.track_scores.score_report` computes and the ledger
stores, and what the Slack layouts, the weekly summary and its charts read.

Pydantic and the standard library only: the bot reads stored reports (`jobs.track_reads`) and must stay off the
numeric stack (pyproject.toml's "light-bot" contract). Readers use attributes, so a renamed field fails in type checks
and tests instead of reading as a missing key. One JSON form (`to_json`, `from_json`); a stored one carries
REPORT_VERSION beside it (`jobs.ledger.reports`).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Generic, TypeVar

from engine.typed_record import TypedRecord

# The report's rules and shape: raise it when this type or what `score_report` puts in it changes, so the reports an
# older release stored read as stale and are recomputed (`jobs.ledger.reports`). 2: this typed shape.
REPORT_VERSION = 2

# Why a recorded forecast is not counted (`engine.evaluation.track.select_counted`): the values of `excluded`.
LATE = "requested after the week opened"
SUPERSEDED = "superseded by a later forecast"
# Scored forecasts with a probability before the summary posts a calibration line and a reliability chart.
MIN_CALIBRATED = 20

T = TypeVar("T")


class _Frozen(TypedRecord):
    pass


class PerSystem(_Frozen, Generic[T]):
    """One value for the model and one for each naive baseline, over the same tickers and weeks. The baselines are
    `engine.evaluation.baselines`': constant "Down by 0-1%", constant "Up by 0-1%", last-week momentum."""

    model: T
    down: T
    up: T
    momentum: T

    def items(self) -> Iterator[tuple[str, T]]:
        """(system, value) in table order, the model first."""
        for name in SYSTEMS:
            yield name, getattr(self, name)


SYSTEMS = tuple(PerSystem.model_fields)  # ("model", "down", "up", "momentum"): the order of every table and sum


class DirectionCounts(_Frozen):
    up: int
    down: int
    none: int


class SystemScore(_Frozen):
    """One system's figures: `engine.evaluation.metrics`' DIRECTION_KEYS, plus `hits`."""

    n: int  # scored forecasts
    parsed: int
    parse_rate: float | None
    binary_accuracy: float | None  # over parsed answers
    binary_accuracy_all: float | None  # the hit rate: over every scored forecast, an unparsed one a miss
    ci95_binary_accuracy_all: tuple[float, float] | None  # week-clustered bootstrap; None with no draws
    mse: float | None  # of signed bin midpoints, percent², over parsed answers that name a bin
    mcc: float | None
    direction_counts: DirectionCounts
    hits: int


class Counts(_Frozen):
    scored: int
    scored_this_week: int
    pending: int  # counted, week not closed or no prices yet
    unparsed: int  # scored and counted as misses
    superseded: int
    late: int
    weeks: int
    tickers: int


class ReliabilityBin(_Frozen):
    """One bin of `engine.evaluation.calibration.reliability`: i/bins <= P(up) < (i+1)/bins."""

    lo: float
    hi: float
    n: int
    mean_p: float | None  # None for an empty bin
    frequency: float | None  # share of up weeks; None for an empty bin


class Calibration(_Frozen):
    """`engine.evaluation.calibration.probability_metrics` of the model's P(up), plus whether there are enough."""

    n: int
    missing: int
    brier: float
    log_loss: float
    ece: float
    mean_p_up: float
    up_rate: float
    reliability: tuple[ReliabilityBin, ...]
    enough: bool  # at least `min_n` forecasts carry a probability: shown in the summary
    min_n: int


class SeriesPoint(_Frozen):
    """The chart's point for one scored week: the cumulative hit rate of every system up to it."""

    period: str
    end: dt.date
    n: int  # scored forecasts up to this week
    hit_rates: PerSystem[float]


class Unparsed(_Frozen):
    entry_id: str
    symbol: str
    period: str


class Bootstrap(_Frozen):
    draws: int
    seed: int


class TrackReport(_Frozen):
    """The track record up to and including the week `latest_week`. `week`, `cumulative` and `calibration` are None
    when nothing in them is scored."""

    latest_week: str
    counts: Counts
    week: PerSystem[SystemScore] | None  # the latest week alone
    cumulative: PerSystem[SystemScore] | None
    by_ticker: dict[str, PerSystem[SystemScore]]  # cumulative, by ticker in order
    # The cumulative hit rate week by week, oldest first (the weekly summary's chart); None where it is not kept:
    # the stored `/track` reports, which draw no chart (`jobs.ledger.report_builder`).
    series: tuple[SeriesPoint, ...] | None
    calibration: Calibration | None
    unparsed: tuple[Unparsed, ...]
    excluded: dict[str, str]  # {entry id: LATE or SUPERSEDED}
    bootstrap: Bootstrap

