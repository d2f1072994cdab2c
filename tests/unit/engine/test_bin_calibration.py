"""From raw bin scores to served probabilities: the serving rule, contextual calibration, temperature fitting
(it recovers a known temperature), cross-fitting by week, and which calibration a served model reads."""

from __future__ import annotations

import json
import math
import random

import pytest

from engine.generation.bin_calibration import (
    IDENTITY,
    BinCalibration,
    base_calibration_dir,
    calibrate,
    content_free_bias,
    cross_fitted,
    fit_temperature,
    served_calibration,
    write_calibration,
)
from engine.market.weeks import MoveBin
from engine.probabilities import ALL_BINS, BinDistribution, choose_call, clear_signal

CODES = [b.code for b in ALL_BINS]


def softmax(logits: list[float], temperature: float = 1.0) -> BinDistribution:
    top = max(logits)
    return BinDistribution.from_codes({c: math.exp((v - top) / temperature) for c, v in zip(CODES, logits,
                                                                                             strict=True)})


def synthetic(n: int, true_temperature: float, seed: int) -> tuple[list[BinDistribution], list[MoveBin]]:
    """Rows whose raw scores are softmax(l) while the truth is drawn from softmax(l / T): a model whose logits
    are T times too sharp. Temperature scaling should find T."""
    rng = random.Random(seed)
    raw, realized = [], []
    for _ in range(n):
        logits = [rng.gauss(0, 3) for _ in CODES]
        truth = softmax(logits, true_temperature)
        raw.append(softmax(logits))
        realized.append(rng.choices(ALL_BINS, weights=[truth.p(b) for b in ALL_BINS])[0])
    return raw, realized


@pytest.mark.parametrize("true_temperature", [0.5, 1.0, 2.5])
def test_fitting_recovers_a_known_temperature_on_synthetic_logits(true_temperature):
    raw, realized = synthetic(3000, true_temperature, seed=7)
    fitted = fit_temperature(raw, realized)
    assert abs(math.log(fitted / true_temperature)) < 0.12, fitted


def test_the_rule_takes_the_likelier_direction_then_its_likeliest_bin():
    # P(up) = 0.6 spread thin over six bins; one down bin (0.3) is the likeliest single bin: the call is still up.
    spread = {c: 0.1 for c in CODES[:6]} | {"D1": 0.3, "D2": 0.1} | {c: 0.0 for c in CODES[8:]}
    d = BinDistribution(spread)
    assert d.most_likely.code == "D1" and choose_call(d).direction == "up"
    assert choose_call(d) == MoveBin("up", 1)  # ties within a direction: the first (smallest) bin
    even = BinDistribution({c: 1 / 12 for c in CODES})
    assert choose_call(even).direction == "up"  # P(up) = 0.5 exactly: the documented ">= 0.5 -> up"
    assert not clear_signal(0.52, 0.05) and clear_signal(0.56, 0.05) and clear_signal(0.5001, 0.0)


def test_contextual_calibration_reads_the_content_free_prompt_as_uniform():
    rng = random.Random(1)
    content_free = softmax([rng.gauss(0, 4) for _ in CODES])
    bias = content_free_bias(content_free)
    flat = calibrate(content_free, bias, 1.0)
    assert all(abs(p - 1 / 12) < 1e-9 for p in flat.probabilities.values())
    # A row the news moved keeps only what moved it: twice the content-free odds on U2, the same elsewhere.
    moved = BinDistribution.from_codes({c: content_free.probabilities[c] * (2 if c == "U2" else 1) for c in CODES})
    after = calibrate(moved, bias, 1.0)
    assert after.most_likely.code == "U2" and abs(after.p(MoveBin("up", 2)) - 2 / 13) < 1e-9


def test_the_identity_leaves_the_raw_distribution_untouched():
    d = softmax([float(i) for i in range(12)])
    assert IDENTITY.apply(d) is d
    assert BinCalibration(temperature=2.0).apply(d) != d


def test_cross_fitting_never_scores_a_row_with_a_temperature_fitted_on_its_own_week():
    """Two kinds of weeks, one T apart: each week's rows are calibrated with the T of the other folds."""
    raw_a, realized_a = synthetic(400, 0.5, seed=2)
    raw_b, realized_b = synthetic(400, 3.0, seed=3)
    raw, realized = raw_a + raw_b, realized_a + realized_b
    weeks = ["2024-01-01"] * 400 + ["2024-01-08"] * 400
    calibrated, temperatures = cross_fitted(raw, realized, weeks, folds=2)
    # Fold 0 is the first week (sorted): its T comes from week two's rows alone, and vice versa.
    assert abs(math.log(temperatures[0] / fit_temperature(raw_b, realized_b))) < 1e-6
    assert abs(math.log(temperatures[1] / fit_temperature(raw_a, realized_a))) < 1e-6
    assert calibrated[0] == calibrate(raw[0], {}, temperatures[0])
    assert calibrated[-1] == calibrate(raw[-1], {}, temperatures[1])
    with pytest.raises(ValueError, match="two weeks"):
        cross_fitted(raw_a, realized_a, ["2024-01-01"] * 400)


def test_a_served_model_reads_its_own_calibration_and_never_another_bases(tmp_path):
    adapter = tmp_path / "versions" / "v0001"
    chosen = BinCalibration(bias={c: -float(i) for i, c in enumerate(CODES)}, temperature=1.7, fitted_rows=60)
    write_calibration(adapter, chosen)
    assert served_calibration(adapter, tmp_path, "qwen2 1.5B") == chosen
    assert served_calibration(tmp_path / "versions" / "v0002", tmp_path, "qwen2 1.5B") is IDENTITY
    write_calibration(base_calibration_dir(tmp_path), BinCalibration(temperature=2.0, model="qwen2 1.5B"))
    assert served_calibration(None, tmp_path, "qwen2 1.5B").temperature == 2.0
    assert served_calibration(None, tmp_path, "qwen2 7B") is IDENTITY  # fitted on another base: not applied
    assert served_calibration(None, None, "qwen2 1.5B") is IDENTITY
    (adapter / "calibration.json").write_text(json.dumps({"temperature": -1}))
    assert served_calibration(adapter, tmp_path, "qwen2 1.5B") is IDENTITY  # damaged: logged, raw served
