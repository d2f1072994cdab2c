"""From the model's raw scores over the 12 bins to the probabilities a user reads. Torch-free.

Two corrections, applied in this order to a raw `BinDistribution` (engine.generation.bin_scoring):

1. **Contextual calibration** (Zhao et al. 2021, "Calibrate Before Use"). The bin strings themselves carry a
   prior: an untuned Qwen2.5 gives "Up by 0-1" a fraction of a percent whatever the news, though 0-1% moves are
   the commonest. The bins are scored once after a content-free prompt (every slot "N/A", engine.generation.scaffold),
   and those log-probabilities are subtracted from every answer's: log p'(k) = log p(k) − log p_cf(k). A content-free
   prompt then reads as uniform, and only what the news moves is left.
2. **Temperature.** The corrected log-probabilities are divided by T and renormalised. T is fitted on
   evaluation rows by the realized bin's likelihood (`fit_temperature`), per served model (the bare base, or an
   adapter version), and stored with it (`calibration.json`); unfitted, T = 1.

The evaluator fits T cross-fitted (`cross_fitted`: a row's probability always comes from a T fitted on other
weeks), so the figures it prints before and after are out of sample.
"""

from __future__ import annotations

import json
import logging
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from engine.market.weeks import MoveBin
from engine.probabilities import ALL_BINS, BinDistribution

log = logging.getLogger(__name__)

CALIBRATION_FILE = "calibration.json"
# Temperatures searched (log-uniformly, then refined): below 0.05 or above 20 the fit is telling you the scores
# carry no signal or are wildly over-confident, and the edge value is kept.
T_MIN, T_MAX = 0.05, 20.0
# Probabilities are floored here before logs: a bin the model gives exactly 0 stays finite.
_FLOOR = 1e-12


@dataclass(frozen=True)
class BinCalibration:
    """What turns one model's raw bin scores into served probabilities. `bias`: the content-free log-probability
    per bin code (empty: no contextual correction); `temperature`: T; `fitted_rows`: rows T was fitted on (0:
    not fitted, T = 1); `model`: what it was measured on (a model version string), for the log and the file."""

    bias: Mapping[str, float] = field(default_factory=dict)
    temperature: float = 1.0
    fitted_rows: int = 0
    model: str = ""

    def __post_init__(self) -> None:
        if not (self.temperature > 0 and math.isfinite(self.temperature)):
            raise ValueError(f"temperature must be a positive number, got {self.temperature}")
        if self.bias and set(self.bias) != {b.code for b in ALL_BINS}:
            raise ValueError("a contextual bias needs all 12 bins")

    def apply(self, raw: BinDistribution) -> BinDistribution:
        if not self.bias and self.temperature == 1.0:
            return raw  # nothing to correct: the raw distribution, unchanged to the last bit
        return calibrate(raw, self.bias, self.temperature)

    def describe(self) -> str:
        parts = ["contextual" if self.bias else "no contextual correction",
                 f"T={self.temperature:.3g}" + (f" (fitted on {self.fitted_rows} rows)" if self.fitted_rows
                                                else " (not fitted)")]
        return ", ".join(parts)

    def to_json(self) -> dict:
        return {"bias": {code: round(v, 6) for code, v in self.bias.items()}, "temperature": self.temperature,
                "fitted_rows": self.fitted_rows, "model": self.model}

    @classmethod
    def from_json(cls, data: Mapping) -> BinCalibration:
        return cls(bias={str(k): float(v) for k, v in (data.get("bias") or {}).items()},
                   temperature=float(data.get("temperature", 1.0)), fitted_rows=int(data.get("fitted_rows", 0)),
                   model=str(data.get("model", "")))


IDENTITY = BinCalibration()


def calibrate(raw: BinDistribution, bias: Mapping[str, float], temperature: float) -> BinDistribution:
    """p'(k) ∝ exp((log p(k) − bias(k)) / T), computed stably."""
    logits = {code: (math.log(max(p, _FLOOR)) - bias.get(code, 0.0)) / temperature
              for code, p in raw.probabilities.items()}
    top = max(logits.values())
    return BinDistribution.from_codes({code: math.exp(v - top) for code, v in logits.items()})


def content_free_bias(content_free: BinDistribution) -> dict[str, float]:
    """The contextual correction from the distribution scored after the content-free prompt."""
    return {code: math.log(max(p, _FLOOR)) for code, p in content_free.probabilities.items()}


def _nll_function(raw: Sequence[BinDistribution], realized: Sequence[MoveBin], bias: Mapping[str, float]):
    """NLL(T) of the realized bins, vectorised once over the rows (numpy, imported here: the bot never needs it)."""
    import numpy as np

    codes = [b.code for b in ALL_BINS]
    index = {code: i for i, code in enumerate(codes)}
    logits = np.log(np.maximum(np.array([[d.probabilities[c] for c in codes] for d in raw]), _FLOOR))
    logits -= np.array([bias.get(c, 0.0) for c in codes])
    truth = np.array([index[b.code] for b in realized])
    picked = logits[np.arange(len(raw)), truth]

    def nll(temperature: float) -> float:
        scaled = logits / temperature
        top = scaled.max(axis=1)
        normaliser = top + np.log(np.exp(scaled - top[:, None]).sum(axis=1))
        return float((normaliser - picked / temperature).mean())

    return nll


def fit_temperature(raw: Sequence[BinDistribution], realized: Sequence[MoveBin],
                    bias: Mapping[str, float] | None = None) -> float:
    """The T in [T_MIN, T_MAX] that maximises the realized bins' likelihood after the bias correction: a coarse
    log-spaced scan, then golden-section search around the best point (the NLL is smooth and, in log T, nearly
    convex). ValueError without rows."""
    if not raw or len(raw) != len(realized):
        raise ValueError(f"fitting a temperature needs rows and one realized bin each ({len(raw)}, {len(realized)})")
    nll = _nll_function(raw, realized, bias or {})
    grid = [math.exp(math.log(T_MIN) + i * (math.log(T_MAX) - math.log(T_MIN)) / 40) for i in range(41)]
    losses = [nll(t) for t in grid]
    best = min(range(len(grid)), key=losses.__getitem__)
    lo, hi = math.log(grid[max(best - 1, 0)]), math.log(grid[min(best + 1, len(grid) - 1)])
    ratio = (math.sqrt(5) - 1) / 2
    for _ in range(40):
        a, b = hi - ratio * (hi - lo), lo + ratio * (hi - lo)
        if nll(math.exp(a)) <= nll(math.exp(b)):
            hi = b
        else:
            lo = a
    return math.exp((lo + hi) / 2)


def cross_fitted(raw: Sequence[BinDistribution], realized: Sequence[MoveBin], groups: Sequence[str],
                 bias: Mapping[str, float] | None = None, *, folds: int = 5) -> tuple[list[BinDistribution],
                                                                                        list[float]]:
    """Out-of-sample calibrated distributions: the groups (weeks) are dealt into `folds` folds in sorted order,
    and each fold's rows are calibrated with a T fitted on the other folds. Returns the distributions, in row
    order, and the T of each fold. With a single group there is nothing to hold out: ValueError."""
    names = sorted(set(groups))
    if len(names) < 2:
        raise ValueError("cross-fitting needs rows from at least two weeks")
    folds = min(folds, len(names))
    fold_of = {name: i % folds for i, name in enumerate(names)}
    result: list[BinDistribution | None] = [None] * len(raw)
    temperatures = []
    for fold in range(folds):
        train = [i for i, g in enumerate(groups) if fold_of[g] != fold]
        t = fit_temperature([raw[i] for i in train], [realized[i] for i in train], bias)
        temperatures.append(t)
        for i, g in enumerate(groups):
            if fold_of[g] == fold:
                result[i] = calibrate(raw[i], bias or {}, t)
    return [d for d in result if d is not None], temperatures


def read_calibration(folder: Path | None) -> BinCalibration | None:
    """The `calibration.json` stored in `folder` (an adapter version, or MODEL_DIR for the bare base), or None
    when there is none. A damaged file is logged and ignored: serving goes on, uncalibrated."""
    if folder is None:
        return None
    path = Path(folder) / CALIBRATION_FILE
    if not path.is_file():
        return None
    try:
        return BinCalibration.from_json(json.loads(path.read_text()))
    except (ValueError, TypeError, AttributeError) as exc:
        log.error("ignoring %s: %s", path, exc)
        return None


def base_calibration_dir(model_dir: Path) -> Path:
    """Where the bare base's calibration lives: MODEL_DIR/base/calibration.json (an adapter's lives in its own
    version folder, so it travels with the adapter)."""
    return Path(model_dir) / "base"


def served_calibration(adapter: Path | None, model_dir: Path | None, base_name: str) -> BinCalibration:
    """The calibration to serve with `adapter` (None: the bare base): the adapter folder's `calibration.json`, or
    for the bare base MODEL_DIR/base's when it was fitted on this base (`base_name`, engine.provenance); else the
    identity (raw probabilities)."""
    if adapter is not None:
        found = read_calibration(adapter)
    else:
        found = read_calibration(base_calibration_dir(model_dir)) if model_dir is not None else None
        if found is not None and found.model and found.model != base_name:
            log.warning("ignoring the base calibration fitted on %s: the base served is %s", found.model, base_name)
            found = None
    if found is not None:
        log.info("serving calibrated bin probabilities: %s", found.describe())
    return found or IDENTITY


def write_calibration(folder: Path, calibration: BinCalibration, **extra: object) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / CALIBRATION_FILE
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps({**calibration.to_json(), **extra}, indent=2) + "\n")
    tmp.replace(path)
    return path
