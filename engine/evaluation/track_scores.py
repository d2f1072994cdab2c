"""The track record's report (`engine.evaluation.track_report.TrackReport`) from its sums
(`engine.evaluation.track_sums.TrackSums`), however they were gathered: in SQL by the ledger
(`jobs.ledger.track_queries`), or in Python from entries in memory (`engine.evaluation.track.score_track`). The one
place its formulas live.

Pure functions. Each figure is the evaluator's own formula (`engine.evaluation.metrics`) applied to counts: the hit
rates, parse rate, MSE and MCC come out exactly as the evaluator computes them over the same forecasts (the counts are
integers, the squared bin midpoint errors multiples of 0.25), and the week-clustered bootstrap draws the same weeks
with the same seed (`week_bootstrap_ci`), summing whole weeks through a draws × weeks multiplicity matrix, so a
ticker's interval costs one small matrix product. The calibration sums are floating point: they can differ from
numpy's in the last digits.
"""

from __future__ import annotations

import math
from functools import cache

import numpy as np

from engine.evaluation.calibration import ECE_BINS
from engine.evaluation.track_report import (
    LATE,
    MIN_CALIBRATED,
    SUPERSEDED,
    SYSTEMS,
    Bootstrap,
    Calibration,
    Counts,
    DirectionCounts,
    PerSystem,
    ReliabilityBin,
    SeriesPoint,
    SystemScore,
    TrackReport,
    Unparsed,
)
from engine.evaluation.track_sums import SUMS, TrackSums, hits_matrix
from engine.market.weeks import Week


@cache
def _multiplicity(weeks: int, draws: int, seed: int) -> np.ndarray:
    """How often each week is drawn in each bootstrap draw: `week_bootstrap_ci`'s draws, counted."""
    drawn = np.random.default_rng(seed).integers(0, weeks, size=(draws, weeks))
    offsets = drawn + (np.arange(draws) * weeks)[:, None]
    matrix = np.bincount(offsets.ravel(), minlength=draws * weeks).reshape(draws, weeks).astype(float)
    matrix.setflags(write=False)
    return matrix


def bootstrap_cis(correct: np.ndarray, counts: np.ndarray, *, draws: int,
                  seed: int) -> list[tuple[float, float] | None]:
    """`week_bootstrap_ci` for several systems at once: `correct` (weeks × systems) hits per sorted week,
    `counts` (weeks) forecasts per week. One (lo, hi) per system, or None each when draws is 0 or no weeks."""
    weeks = len(counts)
    if draws <= 0 or weeks == 0:
        return [None] * correct.shape[1]
    matrix = _multiplicity(weeks, draws, seed)
    means = (matrix @ correct) / (matrix @ counts)[:, None]
    tail = (1 - 0.95) / 2 * 100  # written as week_bootstrap_ci writes it: the same float, the same interpolation
    lo, hi = np.percentile(means, [tail, 100 - tail], axis=0)
    return [(float(a), float(b)) for a, b in zip(lo, hi, strict=True)]


def _mcc(tp: float, tn: float, fp: float, fn: float) -> float | None:
    if tp + tn + fp + fn == 0:
        return None
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def system_score(row: dict, key: str, ci: tuple[float, float] | None) -> SystemScore:
    """`engine.evaluation.metrics`' DIRECTION_KEYS figures plus `hits`, for system `key`, from one row of sums."""
    n = row["n"]
    s = {name: row[f"{key}_{name}"] for name in SUMS}
    up, down = int(s["up"]), int(s["down"])
    return SystemScore(
        n=n,
        parsed=int(s["parsed"]),
        parse_rate=s["parsed"] / n if n else None,
        binary_accuracy=s["correct"] / s["parsed"] if s["parsed"] else None,
        binary_accuracy_all=s["correct"] / n if n else None,
        ci95_binary_accuracy_all=ci,
        mse=float(s["sq_error"]) / s["sq_n"] if s["sq_n"] else None,
        mcc=_mcc(float(s["tp"]), float(s["tn"]), float(s["fp"]), float(s["fn"])),
        direction_counts=DirectionCounts(up=up, down=down, none=n - up - down),
        hits=int(s["correct"]),
    )


def _systems(row: dict, cis: list) -> PerSystem[SystemScore]:
    return PerSystem[SystemScore](**{key: system_score(row, key, ci) for key, ci in zip(SYSTEMS, cis, strict=True)})


def _total(rows: list[dict]) -> dict:
    return {name: sum(row[name] for row in rows) for name in rows[0]
            if name == "n" or name.startswith(tuple(f"{key}_" for key in SYSTEMS))}


def _correct_matrix(rows: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    return hits_matrix(rows), np.array([row["n"] for row in rows], dtype=float)


def calibration(bins: list[dict]) -> Calibration | None:
    """`engine.evaluation.calibration.probability_metrics` from per-bin sums, plus `enough` (at least MIN_CALIBRATED
    forecasts) and `min_n`; None when no counted scored forecast has a P(up)."""
    n = sum(b["n"] for b in bins)
    if not n:
        return None
    found = {b["bin"]: b for b in bins}
    reliability = []
    for i in range(ECE_BINS):
        b = found.get(i)
        reliability.append(ReliabilityBin(lo=i / ECE_BINS, hi=(i + 1) / ECE_BINS, n=b["n"] if b else 0,
                                          mean_p=float(b["sum_p"]) / b["n"] if b else None,
                                          frequency=float(b["ups"]) / b["n"] if b else None))
    return Calibration(
        n=n, missing=0,
        brier=float(sum(b["sq_error"] for b in bins)) / n,
        log_loss=float(sum(b["log_loss"] for b in bins)) / n,
        ece=float(sum(r.n / n * abs(r.frequency - r.mean_p) for r in reliability if r.n)),
        mean_p_up=float(sum(b["sum_p"] for b in bins)) / n,
        up_rate=float(sum(b["ups"] for b in bins)) / n,
        reliability=tuple(reliability),
        enough=n >= MIN_CALIBRATED, min_n=MIN_CALIBRATED,
    )


def score_report(sums: TrackSums, *, latest: Week, bootstrap: int = 2000, seed: int = 0) -> TrackReport:
    """The track record up to and including the week `latest`: that week, cumulative, by ticker, the cumulative hit
    rate week by week (the chart's series) and the calibration of the model's P(up) (see `engine.evaluation.track`
    for what each number means), from its sums. Every system's intervals reuse the seed: they resample the same
    weeks."""
    weeks, tickers, this_week = sums.by_week, sums.by_ticker, sums.this_week

    series, running = [], {key: [0, 0] for key in SYSTEMS}
    for week in weeks:
        for key in SYSTEMS:
            running[key][0] += week[f"{key}_correct"]
            running[key][1] += week["n"]
        rates = PerSystem[float](**{key: hits / n for key, (hits, n) in running.items()})
        series.append(SeriesPoint(period=week["target_week"], end=week["week_end"], n=running["model"][1],
                                  hit_rates=rates))

    cumulative = None
    if weeks:
        correct, counts = _correct_matrix(weeks)
        # by_ticker covers the same forecasts as by_week: its totals are the cumulative sums
        cumulative = _systems(_total(tickers), bootstrap_cis(correct, counts, draws=bootstrap, seed=seed))
    week_scores = None
    if this_week:
        correct, counts = _correct_matrix([this_week])
        week_scores = _systems(this_week, bootstrap_cis(correct, counts, draws=bootstrap, seed=seed))
    by_ticker = {}
    for row in tickers:
        # one counted forecast per ticker and week: each of its weeks weighs 1
        hits = row["hits"]
        by_ticker[row["ticker"]] = _systems(row, bootstrap_cis(hits, np.ones(len(hits)), draws=bootstrap,
                                                               seed=seed))

    return TrackReport(
        latest_week=latest.period,
        counts=Counts(
            scored=sum(w["n"] for w in weeks),
            scored_this_week=this_week["n"] if this_week else 0,
            pending=sums.pending,
            unparsed=len(sums.unparsed),
            superseded=sums.statuses.get(SUPERSEDED, 0),
            late=sums.statuses.get(LATE, 0),
            weeks=len(weeks),
            tickers=len(tickers),
        ),
        week=week_scores,
        cumulative=cumulative,
        by_ticker=by_ticker,
        series=tuple(series),
        calibration=calibration(sums.calibration),
        unparsed=tuple(Unparsed(**u) for u in sums.unparsed),
        excluded=sums.excluded,
        bootstrap=Bootstrap(draws=bootstrap, seed=seed),
    )
