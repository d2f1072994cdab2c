"""Which calibration to serve, and what it buys, measured out of sample. Pure (numpy through engine.evaluation.metrics).

`calibration_fit` takes an evaluation's raw 12-bin distributions (engine.generation.bin_scoring, before any calibration)
and the realized bins, and scores four ways of reading them, each row's probability coming from corrections fitted
without that row's week (engine.generation.bin_calibration.cross_fitted):

- raw: the model's scores as they are;
- contextual: the content-free prompt's bias subtracted (no fitting: nothing to hold out);
- temperature: T fitted on the other weeks;
- contextual+temperature: both.

For each: the 12-bin log loss of the realized bin, the direction accuracy of the serving rule (P(up) ≥ 0.5 → up)
with its week-bootstrap interval, and Brier / log loss / ECE of P(up). The calibration to serve is the fitted
variant with the lowest out-of-sample 12-bin log loss, refitted on every row; `bands` is its accuracy and
coverage when calls within 0.5 ± band are shown as "no clear signal" (how SIGNAL_BAND is chosen), and
`bands_by_variant` the same for every variant (the raw one is what a model without a calibration.json serves).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from engine.data.fingpt_rows import EvalRow, label_bin
from engine.evaluation.calibration import probability_metrics
from engine.evaluation.metrics import week_bootstrap_ci
from engine.generation.bin_calibration import (
    BinCalibration,
    calibrate,
    content_free_bias,
    cross_fitted,
    fit_temperature,
)
from engine.probabilities import BinDistribution

BANDS = (0.0, 0.02, 0.05, 0.1, 0.15, 0.2)
_FLOOR = 1e-12


def _variant(distributions: Sequence[BinDistribution], rows: Sequence[EvalRow], *, bootstrap: int,
             seed: int) -> dict:
    realized = [label_bin(r.label) for r in rows]
    up = [b.direction == "up" for b in realized]
    p_up = [d.p_up for d in distributions]
    correct = [float((p >= 0.5) == u) for p, u in zip(p_up, up, strict=True)]
    probability = probability_metrics(p_up, up) or {}
    return {
        "nll_bins": sum(-math.log(max(d.p(b), _FLOOR)) for d, b in zip(distributions, realized, strict=True))
        / len(rows),
        "accuracy": sum(correct) / len(rows),
        "ci95_accuracy": week_bootstrap_ci(correct, [r.period for r in rows], draws=bootstrap, seed=seed),
        "calls_up": sum(p >= 0.5 for p in p_up),
        **{k: probability.get(k) for k in ("brier", "log_loss", "ece", "mean_p_up", "up_rate")},
    }


def band_table(distributions: Sequence[BinDistribution], rows: Sequence[EvalRow],
               bands: Sequence[float] = BANDS) -> list[dict]:
    """For each band: how many calls stay clear (|P(up) − 0.5| > band; band 0 keeps every call), their share,
    and the accuracy of the serving rule on them (None when none stays)."""
    table = []
    for band in bands:
        kept = [(d.p_up >= 0.5) == (label_bin(r.label).direction == "up")
                for d, r in zip(distributions, rows, strict=True) if band == 0 or abs(d.p_up - 0.5) > band]
        table.append({"band": band, "covered": len(kept), "coverage": len(kept) / len(rows),
                      "accuracy": sum(kept) / len(kept) if kept else None})
    return table


def calibration_fit(rows: Sequence[EvalRow], raw: Sequence[BinDistribution | None], *,
                    content_free: BinDistribution | None = None, model: str = "", bootstrap: int = 2000,
                    seed: int = 0, folds: int = 5) -> dict | None:
    """The comparison above over the rows that have a distribution; None when fewer than two weeks have one
    (nothing to hold out). `calibration` is the chosen variant refitted on every row, as `BinCalibration.to_json`
    stores it (with `model`)."""
    if len(raw) != len(rows):
        raise ValueError(f"{len(raw)} distributions for {len(rows)} rows")
    kept = [(r, d) for r, d in zip(rows, raw, strict=True) if d is not None]
    if len({r.period for r, _ in kept}) < 2:
        return None
    rows_kept, dists = [r for r, _ in kept], [d for _, d in kept]
    realized = [label_bin(r.label) for r in rows_kept]
    weeks = [r.period for r in rows_kept]
    bias = content_free_bias(content_free) if content_free is not None else None
    variants: dict[str, list[BinDistribution]] = {"raw": dists}
    fold_temperatures: dict[str, list[float]] = {}
    if bias is not None:
        variants["contextual"] = [calibrate(d, bias, 1.0) for d in dists]
    variants["temperature"], fold_temperatures["temperature"] = cross_fitted(dists, realized, weeks, None,
                                                                            folds=folds)
    if bias is not None:
        variants["contextual+temperature"], fold_temperatures["contextual+temperature"] = cross_fitted(
            dists, realized, weeks, bias, folds=folds)
    scores = {name: _variant(ds, rows_kept, bootstrap=bootstrap, seed=seed) for name, ds in variants.items()}
    chosen = min(fold_temperatures, key=lambda name: scores[name]["nll_bins"])
    chosen_bias = bias if chosen == "contextual+temperature" else None
    temperature = fit_temperature(dists, realized, chosen_bias)
    served = BinCalibration(bias=chosen_bias or {}, temperature=temperature, fitted_rows=len(dists), model=model)
    return {
        "rows": len(dists), "weeks": len(set(weeks)), "folds": min(folds, len(set(weeks))),
        "variants": scores, "fold_temperatures": fold_temperatures, "chosen": chosen,
        "calibration": served.to_json(), "bands": band_table(variants[chosen], rows_kept),
        "bands_by_variant": {name: band_table(ds, rows_kept) for name, ds in variants.items()},
        "content_free_p_up": None if content_free is None else content_free.p_up,
    }
