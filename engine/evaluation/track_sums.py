"""What one counted forecast adds to the track record, and those additions summed: the one input of the report
(`engine.evaluation.track_scores.score_report`). Two gatherers fill it, and differ in nothing else: SQL over the
ledger's `track_weeks` rows, which hold these terms (`jobs.ledger.track_queries`), and Python over entries in memory
(`engine.evaluation.track.score_track`, with `system_sums`). Pure.

Each term is the evaluator's rule for that forecast: truth is the direction of the realized bin; a system's hit is
"parsed and the direction right"; its squared error is the squared difference of signed bin midpoints, where it named
a bin; momentum is the realized bin of the week before (none without its prices); the calibration terms are
`engine.evaluation.calibration.probability_metrics`' per-forecast Brier and clipped log loss.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.data.fingpt_rows import LABELS
from engine.evaluation.calibration import ECE_BINS, LOG_LOSS_EPS
from engine.evaluation.track_report import LATE, SUPERSEDED, SYSTEMS
from engine.market.weeks import MoveBin
from engine.parsing import MAGNITUDES

# Per system, in this order: the sums the report needs, labelled `<system>_<sum>` (system from SYSTEMS).
SUMS = ("parsed", "correct", "sq_error", "sq_n", "tp", "tn", "fp", "fn", "up", "down")
# The terms an outcome sets (the rest is known when the forecast is recorded); `scored` is 0 and the others None
# until then.
OUTCOME_TERMS = ("scored", "actual_up", "model_correct", "model_sq_error", "momentum_parsed", "momentum_up",
                 "momentum_down", "momentum_correct", "momentum_sq_error", "down_sq_error", "up_sq_error",
                 "p_sq_error", "p_log_loss")
_DOWN_MID, _UP_MID = MoveBin("down", 1).midpoint, MoveBin("up", 1).midpoint


def _direction(label: str | None) -> str:
    if label is None:
        return "none"
    return "up" if label.startswith("up") else "down" if label.startswith("down") else "none"


def _model_midpoint(direction: str, magnitude: str | None) -> float | None:
    if direction not in ("up", "down") or magnitude not in MAGNITUDES:
        return None
    return MoveBin(direction, MAGNITUDES.index(magnitude) + 1).midpoint


def _sq(a: float | None, b: float) -> float | None:
    return None if a is None else (a - b) * (a - b)


def recorded_terms(*, parsed: bool, direction: str, p_up: float | None) -> dict:
    """The terms known when the forecast is recorded."""
    return {"model_parsed": int(parsed), "model_up": int(direction == "up"), "model_down": int(direction == "down"),
            "p_up": p_up, "p_bin": None if p_up is None else min(int(math.floor(p_up * ECE_BINS)), ECE_BINS - 1)}


def outcome_terms(*, parsed: bool, direction: str, magnitude: str | None, p_up: float | None,
                  actual_label: str | None, momentum_label: str | None) -> dict:
    """The OUTCOME_TERMS of a forecast whose week went `actual_label` (None: not scored yet), the week before
    `momentum_label` (None: no prices for it)."""
    if actual_label is None:
        return {"scored": 0} | dict.fromkeys(OUTCOME_TERMS[1:])
    truth, actual_mid = LABELS[actual_label].direction, LABELS[actual_label].midpoint
    model_mid = _model_midpoint(direction, magnitude) if parsed else None
    momentum_direction = _direction(momentum_label)
    momentum_mid = LABELS[momentum_label].midpoint if momentum_label in LABELS else None
    up = 1.0 if truth == "up" else 0.0
    clipped = None if p_up is None else min(max(p_up, LOG_LOSS_EPS), 1 - LOG_LOSS_EPS)
    return {
        "scored": 1, "actual_up": int(truth == "up"),
        "model_correct": int(parsed and direction == truth), "model_sq_error": _sq(model_mid, actual_mid),
        "momentum_parsed": int(momentum_label is not None), "momentum_up": int(momentum_direction == "up"),
        "momentum_down": int(momentum_direction == "down"),
        "momentum_correct": int(momentum_label is not None and momentum_direction == truth),
        "momentum_sq_error": _sq(momentum_mid if momentum_label is not None else None, actual_mid),
        "down_sq_error": _sq(_DOWN_MID, actual_mid), "up_sq_error": _sq(_UP_MID, actual_mid),
        "p_sq_error": None if p_up is None else (p_up - up) * (p_up - up),
        "p_log_loss": None if p_up is None else -(up * math.log(clipped) + (1 - up) * math.log(1 - clipped)),
    }


def system_sums(rows: Sequence[dict]) -> dict:
    """`n` and every system's SUMS over scored rows of terms, as `jobs.ledger.track_queries` sums them in SQL. The
    constant baselines always answer, one way: their hit is the week's direction, their confusion counts follow
    from the ups."""
    n, ups = len(rows), sum(r["actual_up"] for r in rows)
    sums: dict = {"n": n}
    for key in SYSTEMS:
        if key in ("model", "momentum"):
            up, down = sum(r[f"{key}_up"] for r in rows), sum(r[f"{key}_down"] for r in rows)
            tp, fn = sum(r[f"{key}_up"] * r["actual_up"] for r in rows), sum(r[f"{key}_down"] * r["actual_up"]
                                                                             for r in rows)
            errors = [r[f"{key}_sq_error"] for r in rows if r[f"{key}_sq_error"] is not None]
            found = {"parsed": sum(r[f"{key}_parsed"] for r in rows), "correct": sum(r[f"{key}_correct"] for r in rows),
                     "sq_error": float(sum(errors)), "sq_n": len(errors), "tp": tp, "tn": down - fn, "fp": up - tp,
                     "fn": fn, "up": up, "down": down}
        elif key == "down":
            found = {"parsed": n, "correct": n - ups, "sq_error": float(sum(r["down_sq_error"] for r in rows)),
                     "sq_n": n, "tp": 0, "tn": n - ups, "fp": 0, "fn": ups, "up": 0, "down": n}
        else:
            found = {"parsed": n, "correct": ups, "sq_error": float(sum(r["up_sq_error"] for r in rows)),
                     "sq_n": n, "tp": ups, "tn": 0, "fp": n - ups, "fn": 0, "up": n, "down": 0}
        sums |= {f"{key}_{name}": found[name] for name in SUMS}
    return sums


@dataclass(frozen=True)
class TrackSums:
    """Every aggregate of the track record up to its latest week: all `score_report` reads."""

    excluded: dict[str, str]  # {entry id: why not counted}
    pending: int  # counted entries without an outcome yet
    by_ticker: list[dict]  # per ticker, in order: ticker, n and every `<system>_<sum>` (counted, scored, up to the
    # latest week), and `hits`: its (weeks × systems) 0/1 hits, oldest week first
    by_week: list[dict]  # per week, oldest first: week_start, week_end, target_week, n, <system>_correct
    this_week: dict | None  # the latest week's n and every `<system>_<sum>`; None when it has no scored forecast
    unparsed: list[dict]  # {"entry_id", "symbol", "period"} of the scored, counted, unparsed ones, by week, ticker
    calibration: list[dict]  # per reliability bin with a P(up), in order: bin, n, sum_p, ups, sq_error, log_loss

    @property
    def statuses(self) -> dict[str, int]:
        found = list(self.excluded.values())
        return {why: found.count(why) for why in (LATE, SUPERSEDED) if why in found}


def hits_matrix(rows: Sequence[dict]) -> np.ndarray:
    """The (rows × systems) 0/1 hits of rows holding `<system>_correct`, in their order."""
    return np.array([[row[f"{key}_correct"] for key in SYSTEMS] for row in rows], dtype=float).reshape(
        len(rows), len(SYSTEMS))
