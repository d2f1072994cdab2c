"""How good a stated probability of an up week, P(up), is: Brier score, log loss, expected calibration error, the
reliability diagram's bins and the abstention table. Pure numpy, no I/O.

The one implementation the evaluator (engine.evaluation.metrics), `/track` and the weekly summary all use. Rows without
a probability (None: an older forecast, a backend that gave none) are left out of every figure, never counted as 50%.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

# Expected calibration error and the reliability diagram: this many equal-width bins of P(up) over [0, 1].
ECE_BINS = 10
# Log loss clips probabilities to [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS], so one confident miss costs ~13.8, not infinity.
LOG_LOSS_EPS = 1e-6
# The decision rule "abstain below a threshold", measured at these thresholds of max(P(up), P(down)).
ABSTAIN_THRESHOLDS = (0.5, 0.55, 0.6, 0.65, 0.7)


def _mean(values: np.ndarray) -> float | None:
    return float(values.mean()) if values.size else None


def _probability_pairs(p_up: Sequence[float | None], up: Sequence[bool]) -> tuple[np.ndarray, np.ndarray]:
    """(probabilities, outcomes as 0/1) for the rows that have a probability; ValueError outside [0, 1]."""
    if len(p_up) != len(up):
        raise ValueError(f"{len(p_up)} probabilities but {len(up)} outcomes")
    kept = [(float(p), bool(y)) for p, y in zip(p_up, up, strict=True) if p is not None]
    p = np.array([k[0] for k in kept], dtype=float)
    if p.size and (np.any(~np.isfinite(p)) or p.min() < 0 or p.max() > 1):
        raise ValueError("P(up) must lie in [0, 1]")
    return p, np.array([k[1] for k in kept], dtype=float)


def brier_score(p_up: Sequence[float | None], up: Sequence[bool]) -> float | None:
    """Mean of (P(up) - outcome)², outcome 1 for an up week: 0 is perfect, 0.25 is always saying 50%.
    Rows without a probability (None) are left out; None when none is left."""
    p, y = _probability_pairs(p_up, up)
    return _mean((p - y) ** 2)


def log_loss(p_up: Sequence[float | None], up: Sequence[bool]) -> float | None:
    """Mean of -log P(what happened) (natural log; ln 2 ≈ 0.693 is always saying 50%), P clipped to
    [LOG_LOSS_EPS, 1 - LOG_LOSS_EPS]. Rows without a probability are left out; None when none is left."""
    p, y = _probability_pairs(p_up, up)
    p = np.clip(p, LOG_LOSS_EPS, 1 - LOG_LOSS_EPS)
    return _mean(-(y * np.log(p) + (1 - y) * np.log(1 - p)))


def reliability(p_up: Sequence[float | None], up: Sequence[bool], *, bins: int = ECE_BINS) -> list[dict]:
    """The reliability diagram's data: `bins` equal-width bins of P(up), bin i holding i/bins <= P < (i+1)/bins
    (the last one also holds P = 1). Each: lo, hi, n, mean_p (mean P(up) in the bin) and frequency (share of
    up weeks in it); mean_p and frequency are None for an empty bin."""
    p, y = _probability_pairs(p_up, up)
    index = np.minimum((p * bins).astype(int), bins - 1)
    result = []
    for i in range(bins):
        inside = index == i
        result.append({"lo": i / bins, "hi": (i + 1) / bins, "n": int(inside.sum()),
                       "mean_p": _mean(p[inside]), "frequency": _mean(y[inside])})
    return result


def expected_calibration_error(p_up: Sequence[float | None], up: Sequence[bool], *, bins: int = ECE_BINS
                               ) -> float | None:
    """Σ over the `reliability` bins of (n_bin / n) · |frequency − mean_p|: how far, on average over rows, the
    stated P(up) is from how often up actually happened among rows given about that P(up). 0 is perfectly
    calibrated. Binned on P(up) itself (not on max(P(up), P(down))), so the diagram reads left to right from
    "sure it goes down" to "sure it goes up". None without rows."""
    table = reliability(p_up, up, bins=bins)
    n = sum(b["n"] for b in table)
    if not n:
        return None
    return float(sum(b["n"] / n * abs(b["frequency"] - b["mean_p"]) for b in table if b["n"]))


def probability_metrics(p_up: Sequence[float | None], up: Sequence[bool], *, bins: int = ECE_BINS) -> dict | None:
    """Every figure of one system's P(up) against the outcomes (`up`: True for an up week), over the rows that
    have a probability: n, missing (rows without one), brier, log_loss, ece, mean_p_up, up_rate (share of up
    weeks among those rows) and the reliability bins. None when no row has a probability."""
    p, y = _probability_pairs(p_up, up)
    if not p.size:
        return None
    return {
        "n": int(p.size), "missing": len(p_up) - int(p.size),
        "brier": brier_score(p_up, up), "log_loss": log_loss(p_up, up),
        "ece": expected_calibration_error(p_up, up, bins=bins),
        "mean_p_up": float(p.mean()), "up_rate": float(y.mean()),
        "reliability": reliability(p_up, up, bins=bins),
    }


def abstention_table(p_up: Sequence[float | None], correct: Sequence[bool],
                     thresholds: Sequence[float] = ABSTAIN_THRESHOLDS) -> list[dict] | None:
    """The decision rule "say *no clear signal* when max(P(up), P(down)) < threshold", measured: for each
    threshold, how many rows would still get a forecast (covered, coverage = covered over the rows with a
    probability) and how often the stated direction was right among those (accuracy; None when none is
    covered). `correct` is whether the stated direction was right, an unparsed answer counting wrong, as in
    `binary_accuracy_all`. None when no row has a probability."""
    kept = [(float(p), bool(c)) for p, c in zip(p_up, correct, strict=True) if p is not None]
    if not kept:
        return None
    confidence = np.array([max(p, 1 - p) for p, _ in kept])
    right = np.array([c for _, c in kept], dtype=float)
    table = []
    for threshold in thresholds:
        covered = confidence >= threshold
        table.append({"threshold": float(threshold), "covered": int(covered.sum()),
                      "coverage": float(covered.mean()), "accuracy": _mean(right[covered])})
    return table
