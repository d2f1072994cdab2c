"""What one counted forecast contributes to the track record, worked out once when it is recorded or scored, so the
reads are plain sums (`jobs.ledger.track_queries`). Pure.

Each value is `engine.evaluation.track.score_track`'s rule for that forecast: truth is the direction of the realized
bin; a system's hit is "parsed and the direction right"; its squared error is the squared difference of signed bin
midpoints, where it named a bin; momentum is the realized bin of the week before (none without its prices); the
calibration terms are `engine.evaluation.calibration.probability_metrics`' per-forecast Brier and clipped log loss.
"""

from __future__ import annotations

import math

from engine.data.fingpt_rows import LABELS
from engine.evaluation.calibration import ECE_BINS, LOG_LOSS_EPS
from engine.market.weeks import MoveBin
from engine.parsing import MAGNITUDES

# The track_weeks columns an outcome changes (the rest is known when the forecast is recorded).
OUTCOME_COLUMNS = ("scored", "actual_up", "model_correct", "model_sq_error", "momentum_parsed", "momentum_up",
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


def is_late(entry: dict) -> bool:
    """Requested at or after its week's Monday open: scored and kept, never counted (`select_counted`)."""
    return entry["requested_epoch"] >= entry["week_opens_epoch"]


def track_row(entry: dict) -> dict:
    """The `track_weeks` row of this entry (a FIELDS dict plus `requested_epoch`), were it the counted one."""
    parsed, direction = bool(entry["parsed"]), entry["direction"]
    p = entry["p_up"]
    row = {
        "ticker": entry["ticker"], "week_start": entry["week_start"], "week_end": entry["week_end"],
        "target_week": entry["target_week"], "entry_id": entry["id"], "requested_epoch": entry["requested_epoch"],
        "model_parsed": int(parsed), "model_up": int(direction == "up"), "model_down": int(direction == "down"),
        "p_up": p, "p_bin": None if p is None else min(int(math.floor(p * ECE_BINS)), ECE_BINS - 1),
    }
    return row | outcome_row(entry)


def outcome_row(entry: dict) -> dict:
    """The OUTCOME_COLUMNS of this entry: all empty (scored 0) until its outcome is stored."""
    actual = entry["actual_label"]
    if entry["realized_return"] is None or actual is None:
        return {"scored": 0} | dict.fromkeys(OUTCOME_COLUMNS[1:])
    truth, actual_mid = LABELS[actual].direction, LABELS[actual].midpoint
    parsed = bool(entry["parsed"])
    model_mid = _model_midpoint(entry["direction"], entry["magnitude"]) if parsed else None
    momentum = entry["momentum_label"]
    momentum_direction = _direction(momentum)
    momentum_mid = LABELS[momentum].midpoint if momentum in LABELS else None
    up = 1.0 if truth == "up" else 0.0
    p = entry["p_up"]
    clipped = None if p is None else min(max(p, LOG_LOSS_EPS), 1 - LOG_LOSS_EPS)
    return {
        "scored": 1, "actual_up": int(truth == "up"),
        "model_correct": int(parsed and entry["direction"] == truth), "model_sq_error": _sq(model_mid, actual_mid),
        "momentum_parsed": int(momentum is not None), "momentum_up": int(momentum_direction == "up"),
        "momentum_down": int(momentum_direction == "down"),
        "momentum_correct": int(momentum is not None and momentum_direction == truth),
        "momentum_sq_error": _sq(momentum_mid if momentum is not None else None, actual_mid),
        "down_sq_error": _sq(_DOWN_MID, actual_mid), "up_sq_error": _sq(_UP_MID, actual_mid),
        "p_sq_error": None if p is None else (p - up) * (p - up),
        "p_log_loss": None if p is None else -(up * math.log(clipped) + (1 - up) * math.log(1 - clipped)),
    }
