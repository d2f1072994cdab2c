"""engine.evaluation.metrics: published numbers reproduced on the shared test split and model outputs, plus hand-made
cases.

The real-data tests pin what FINGPT_FORMAT.md §7 reports for FinGPT's own `calc_metrics` (compat mode) and what
our report measures on the same files. Hand-made answers are invented; no dataset text is copied into them.
"""

from __future__ import annotations

import math
import re

import pytest

from engine.data.fingpt_rows import EvalRow, label_bin
from engine.data.prompts import fix_wording, llama_to_messages
from engine.evaluation.baselines import (
    BASELINE_DOWN,
    BASELINE_MAJORITY,
    BASELINE_MOMENTUM,
    BASELINE_UP,
    BaseRates,
    base_rates,
    baseline_answer,
    baseline_answers,
    baseline_probabilities,
    momentum_bin,
)
from engine.evaluation.calibration import (
    abstention_table,
    brier_score,
    expected_calibration_error,
    log_loss,
    probability_metrics,
    reliability,
)
from engine.evaluation.metrics import COMPAT_KEYS, DIRECTION_KEYS, mcc, score, score_fingpt_compat, week_bootstrap_ci
from engine.exceptions import EngineError
from engine.market.weeks import MoveBin
from engine.parsing import parse_answer
from engine.upstream_parser import upstream_parse


def _row(record: dict) -> EvalRow:
    user = fix_wording(llama_to_messages(record["prompt"])[1]["content"])
    return EvalRow(record["symbol"], record["period"], user, record["answer"], record["label"])


@pytest.fixture(scope="module")
def rows(fingpt_test_rows) -> list[EvalRow]:
    return [_row(r) for r in fingpt_test_rows]


@pytest.fixture(scope="module")
def lora(rows, model_outputs) -> list[str]:
    predictions = [r["prediction"] for r in model_outputs["lora"]]
    assert len(predictions) == len(rows) == 300
    return predictions


# The two full reports with ROUGE take ~7 s each (rouge-score's LCS is pure Python): computed once per module.
@pytest.fixture(scope="module")
def lora_ours(rows, lora) -> dict:
    return score(rows, lora)


@pytest.fixture(scope="module")
def lora_compat(rows, lora) -> dict:
    return score_fingpt_compat(rows, lora)


# ---- Compat mode reproduces FINGPT_FORMAT.md §7 -------------------------------------------------------------


def test_compat_lora_reproduces_published_accuracy_and_mse(lora_compat):
    assert lora_compat["mode"] == "fingpt_compat"
    assert lora_compat["n"] == 300
    assert lora_compat["parsed"] == 297  # upstream's valid_count: the 3 references without a Prediction line
    assert round(lora_compat["binary_accuracy"], 3) == 0.505  # 150/297
    assert round(lora_compat["mse"], 2) == 10.07
    assert round(lora_compat["mse"], 3) == 10.074


def test_compat_lora_rouge_matches_the_published_table(lora_compat):
    got = {s: tuple(round(v, 3) for v in scores.values()) for s, scores in lora_compat["rouge"].items()}
    assert got == {
        "positive": (0.453, 0.172, 0.281),
        "concerns": (0.427, 0.150, 0.264),
        "analysis": (0.442, 0.136, 0.224),
    }


def test_compat_lora_mcc_and_week_bootstrap_match_the_reported_ones(lora_compat):
    # FINGPT_FORMAT.md §7: MCC 0.03, week-bootstrap 95% interval about 0.46-0.55. Measured: 0.0268, [0.459, 0.548].
    assert round(lora_compat["mcc"], 3) == 0.027
    assert [round(x, 3) for x in lora_compat["ci95_binary_accuracy"]] == [0.459, 0.548]
    assert lora_compat["direction_counts"] == {"up": 177, "down": 120, "none": 0}  # over the 297 kept pairs


def test_compat_constant_baselines_reproduce_published_numbers(lora_compat):
    down, up = lora_compat["baselines"][BASELINE_DOWN], lora_compat["baselines"][BASELINE_UP]
    assert down["parsed"] == up["parsed"] == 297
    assert (round(down["binary_accuracy"], 3), round(down["mse"], 2)) == (0.542, 7.10)  # 161/297
    assert (round(up["binary_accuracy"], 3), round(up["mse"], 2)) == (0.458, 7.65)  # 136/297
    assert down["mcc"] == up["mcc"] == 0.0
    # Momentum, measured: 0.512 (152/297), MSE 13.70, MCC 0.026.
    momentum = lora_compat["baselines"][BASELINE_MOMENTUM]
    assert (momentum["parsed"], round(momentum["binary_accuracy"], 3), round(momentum["mse"], 2)) == (297, 0.512, 13.70)
    assert round(momentum["mcc"], 3) == 0.026


def base_predictions(model_outputs) -> list[str]:
    return [r["prediction"] for r in model_outputs["base"]]


def test_compat_base_model_keeps_no_rows_and_reports_nulls(rows, model_outputs):
    report = score_fingpt_compat(rows, base_predictions(model_outputs))
    assert report["parsed"] == 0
    assert report["binary_accuracy"] is report["mse"] is report["mcc"] is report["rouge"] is None
    assert report["ci95_binary_accuracy"] is None
    assert report["baselines"][BASELINE_DOWN]["parsed"] == 297  # baselines do not depend on the model


# ---- Our report on the same files ---------------------------------------------------------------------------


def test_ours_lora_measured_numbers(lora_ours):
    r = lora_ours
    assert (r["n"], r["parsed"], r["parse_rate"]) == (300, 300, 1.0)
    # Truth is the label column on all 300 rows (the 3 rows compat drops are included): 151/300 right.
    assert round(r["binary_accuracy"], 3) == round(r["binary_accuracy_all"], 3) == 0.503
    assert round(r["mse"], 3) == 10.033
    assert round(r["mcc"], 3) == 0.023
    assert [round(x, 3) for x in r["ci95_binary_accuracy_all"]] == [0.457, 0.547]
    assert r["direction_counts"] == {"up": 178, "down": 122, "none": 0}
    # FINGPT_FORMAT.md §1 says "139 up / 161 down", but its own label table sums to 137 / 163, as the data does.
    assert r["label_counts"] == {"up": 137, "down": 163}
    assert r["parse_failures"] == []


def test_ours_lora_rouge_over_rows_whose_reference_parses(lora_ours):
    # Item texts joined by "\n" (numbering stripped), so pros/cons sit a little below compat's raw-text scores.
    assert lora_ours["rouge_rows"] == 297
    got = {s: tuple(round(v, 3) for v in scores.values()) for s, scores in lora_ours["rouge"].items()}
    assert got == {
        "positive": (0.433, 0.163, 0.267),
        "concerns": (0.408, 0.144, 0.251),
        "analysis": (0.442, 0.136, 0.224),
    }


def test_ours_baselines_measured_numbers(lora_ours):
    b = lora_ours["baselines"]
    assert list(b) == [BASELINE_DOWN, BASELINE_UP, BASELINE_MOMENTUM]  # no majority without train_majority
    got = {
        name: (m["parsed"], round(m["binary_accuracy_all"], 3), round(m["mse"], 3), round(m["mcc"], 3),
               [round(x, 3) for x in m["ci95_binary_accuracy_all"]])
        for name, m in b.items()
    }
    assert got == {
        BASELINE_DOWN: (300, 0.543, 7.1, 0.0, [0.43, 0.66]),  # 163/300
        BASELINE_UP: (300, 0.457, 7.633, 0.0, [0.34, 0.57]),
        BASELINE_MOMENTUM: (300, 0.507, 13.86, 0.016, [0.447, 0.56]),
    }


def test_ours_base_model_barely_parses_and_unparsed_rows_count_wrong(rows, model_outputs):
    report = score(rows, base_predictions(model_outputs), rouge=False)
    # The tolerant parser reads markdown headers, but base Qwen rarely states one of the 12 bins: 3 of 300 rows
    # (24, 66, 178) give a FinGPT bin; the others forecast in prose or without a magnitude.
    assert report["parsed"] == 3
    assert report["binary_accuracy_all"] <= report["parse_rate"]
    assert len(report["parse_failures"]) == 300 - report["parsed"]
    assert all(f["problems"] for f in report["parse_failures"])


def test_momentum_matches_the_last_price_sentence_of_every_prompt(rows):
    head = re.compile(r"stock price (increased|decreased) from (-?\d+\.\d{2}) to (-?\d+\.\d{2})\. News during")
    for row in rows:
        direction, start, end = head.findall(row.user_prompt)[-1]
        k = max(1, min(6, -(-round(abs(float(end) / float(start) - 1) * 100, 9) // 1)))  # ceil, at least 1
        expected = MoveBin("up" if direction == "increased" else "down", int(k))
        assert momentum_bin(row.user_prompt) == expected, (row.symbol, row.period)


# ---- Hand-made cases ----------------------------------------------------------------------------------------


def _answer(prediction: str, *, analysis: str = "Steady demand.") -> str:
    return (
        "[Positive Developments]:\n1. Orders grew.\n2. Margins widened.\n\n"
        "[Potential Concerns]:\n1. Costs rose.\n2. A lawsuit is pending.\n\n"
        f"[Prediction & Analysis]:\nPrediction: {prediction}\nAnalysis: {analysis}"
    )


def _rows(labels: list[str], periods: list[str] | None = None) -> list[EvalRow]:
    periods = periods or ["2024-03-03 to 2024-03-10"] * len(labels)
    return [
        EvalRow("TEST", p, "not a FinGPT prompt", _answer(label.capitalize()), label)
        for label, p in zip(labels, periods, strict=True)
    ]


def test_the_answer_helper_parses_with_both_parsers():
    assert parse_answer(_answer("Up by 1-2%")).parsed
    assert upstream_parse(_answer("Up by 1-2%"))[2:4] == (1, 1.5)


def test_mcc_of_perfect_inverse_constant_and_empty_predictors():
    truth = [1, 1, -1, -1, 1]
    assert mcc(truth, truth) == pytest.approx(1.0)
    assert mcc(truth, [-t for t in truth]) == pytest.approx(-1.0)
    assert mcc(truth, [1] * 5) == 0.0  # 0/0: sklearn's convention, chosen so constant baselines show 0
    assert mcc([1] * 5, [1, -1, 1, -1, 1]) == 0.0  # constant truth: also 0/0
    assert mcc([], []) is None
    assert mcc([1, 1, -1, -1], [1, -1, -1, -1]) == pytest.approx(2 / 12**0.5)


def test_week_bootstrap_is_deterministic_for_a_seed():
    values = [(i * 7919) % 13 / 13 for i in range(60)]  # varied per-week means, so seeds give distinct draws
    periods = [f"week {i % 6}" for i in range(60)]
    first = week_bootstrap_ci(values, periods, draws=500, seed=7)
    assert first == week_bootstrap_ci(values, periods, draws=500, seed=7)
    assert first != week_bootstrap_ci(values, periods, draws=500, seed=8)
    # The row order does not matter, only which rows belong to which week.
    order = sorted(range(60), key=lambda i: (-i) % 7)
    shuffled = week_bootstrap_ci([values[i] for i in order], [periods[i] for i in order], draws=500, seed=7)
    assert shuffled == pytest.approx(first, abs=1e-12)  # summation order may move the last bit


def test_week_bootstrap_resamples_whole_weeks_not_rows():
    # Week A all right, week B all wrong: a draw gives AA=1, AB=0.5 or BB=0, so the interval spans [0, 1].
    # A row bootstrap over these 60 rows would give roughly [0.37, 0.63].
    values = [1.0] * 30 + [0.0] * 30
    periods = ["A"] * 30 + ["B"] * 30
    assert week_bootstrap_ci(values, periods, draws=2000, seed=0) == [0.0, 1.0]
    # Each draw is the mean over all drawn rows, so uneven weeks weigh by their rows: 1 right + 3 wrong -> 0.25.
    assert week_bootstrap_ci([1, 0, 0, 0], ["A", "B", "B", "B"], draws=2000, seed=0, level=0.0) == [0.25, 0.25]
    assert week_bootstrap_ci([], [], draws=10) is None
    assert week_bootstrap_ci([1.0], ["A"], draws=0) is None


def test_unparsed_and_directionless_predictions_count_wrong_in_accuracy_all():
    rows = _rows(["up by 1-2%", "down by 2-3%", "up by 0-1%", "down by 0-1%"])
    predictions = [_answer("Up by 1-2%"), _answer("Down by 3-4%"), "I cannot say.", _answer("Flat, about 0-1%")]
    report = score(rows, predictions, baselines=False, bootstrap=0, rouge=False)
    assert (report["parsed"], report["parse_rate"]) == (2, 0.5)
    assert report["binary_accuracy"] == 1.0
    assert report["binary_accuracy_all"] == 0.5
    assert report["mse"] == pytest.approx((0**2 + 1**2) / 2)
    assert report["direction_counts"] == {"up": 1, "down": 1, "none": 2}
    assert [f["index"] for f in report["parse_failures"]] == [2, 3]
    assert report["ci95_binary_accuracy_all"] is None  # bootstrap=0


def test_truth_is_the_label_column_not_the_reference():
    row = EvalRow("TEST", "2024-03-03 to 2024-03-10", "p", _answer("Up by 1-2%"), "down by 1-2%")
    report = score([row], [_answer("Up by 1-2%")], baselines=False, bootstrap=0, rouge=False)
    assert report["binary_accuracy_all"] == 0.0
    assert report["mse"] == pytest.approx(9.0)
    compat = score_fingpt_compat([row], [_answer("Up by 1-2%")], baselines=False, bootstrap=0)
    assert compat["binary_accuracy"] == 1.0  # upstream compares against the reference's prediction line


def test_rouge_scores_a_missing_section_zero_and_skips_rows_whose_reference_fails():
    rows = _rows(["up by 1-2%", "up by 1-2%"])
    rows.append(EvalRow("TEST", rows[0].period, "p", "No sections at all.", "up by 1-2%"))
    report = score(rows, [rows[0].reference, "No sections here either.", "whatever"], baselines=False, bootstrap=0)
    assert report["rouge_rows"] == 2
    for section in ("positive", "concerns", "analysis"):
        assert report["rouge"][section] == pytest.approx({"rouge1": 0.5, "rouge2": 0.5, "rougeL": 0.5})


def test_baselines_have_the_model_metric_keys_and_majority_only_when_given():
    rows = _rows(["up by 1-2%", "down by 2-3%", "down by 0-1%"])
    report = score(rows, [r.reference for r in rows], train_majority="down by 0-1%", bootstrap=50, rouge=False)
    assert list(report["baselines"]) == [BASELINE_DOWN, BASELINE_UP, BASELINE_MAJORITY, BASELINE_MOMENTUM]
    for metrics in report["baselines"].values():
        assert set(metrics) == set(DIRECTION_KEYS)
        assert set(metrics) <= set(report)
    assert report["baselines"][BASELINE_MAJORITY] == report["baselines"][BASELINE_DOWN]
    # A prompt that is not FinGPT's gives momentum no answer: unparsed, counted wrong, never an exception.
    assert report["baselines"][BASELINE_MOMENTUM]["parsed"] == 0
    assert report["baselines"][BASELINE_MOMENTUM]["binary_accuracy_all"] == 0.0
    compat = score_fingpt_compat(rows, [r.reference for r in rows], train_majority="down by 0-1%", bootstrap=50)
    for metrics in compat["baselines"].values():
        assert set(metrics) == set(COMPAT_KEYS)


def test_baseline_answers_parse_with_both_parsers_and_state_their_bins():
    answers = baseline_answers(_rows(["up by 1-2%"]), train_majority="up by more than 5%")
    expected = {BASELINE_DOWN: ("down", "0-1%"), BASELINE_UP: ("up", "0-1%"), BASELINE_MAJORITY: ("up", "more than 5%")}
    for name, (direction, magnitude) in expected.items():
        forecast = parse_answer(answers[name][0])
        assert (forecast.parsed, forecast.direction, forecast.magnitude) == (True, direction, magnitude)
        assert upstream_parse(answers[name][0]) is not None
    assert answers[BASELINE_MOMENTUM] == [""]
    assert baseline_answer("Down by 0-1%").startswith("[Positive Developments]:")


def test_compat_with_no_kept_rows_returns_nulls_and_never_raises():
    rows = _rows(["up by 1-2%", "down by 1-2%"])
    report = score_fingpt_compat(rows, ["### Positive Developments:\n1. x", ""])
    assert report["parsed"] == 0
    assert all(report[k] is None for k in ("binary_accuracy", "mse", "mcc", "ci95_binary_accuracy", "rouge"))
    empty = score_fingpt_compat([], [])
    assert (empty["n"], empty["parsed"], empty["binary_accuracy"]) == (0, 0, None)


def test_compat_zero_direction_prediction_counts_wrong_and_margin_zero():
    rows = _rows(["up by 1-2%"])
    report = score_fingpt_compat(rows, [_answer("Neutral")], baselines=False, bootstrap=0)
    assert (report["parsed"], report["binary_accuracy"], report["mse"]) == (1, 0.0, pytest.approx(1.5**2))


def test_compat_accuracy_is_plain_equality_as_sklearn_so_a_zero_reference_matches_a_zero_prediction():
    # Never happens on the published split (every reference says up or down), but it is what upstream computes.
    row = EvalRow("TEST", "2024-03-03 to 2024-03-10", "p", _answer("Flat"), "up by 0-1%")
    report = score_fingpt_compat([row], [_answer("Neutral")], baselines=False, bootstrap=0, rouge=False)
    assert (report["parsed"], report["binary_accuracy"], report["mse"]) == (1, 1.0, 0.0)


def test_score_rejects_unpaired_predictions_and_unknown_labels():
    rows = _rows(["up by 1-2%"])
    with pytest.raises(EngineError, match="1 rows"):
        score(rows, [], rouge=False)
    with pytest.raises(EngineError, match="Unknown label"):
        score([EvalRow("T", "p", "u", "r", "sideways")], ["x"], rouge=False)


@pytest.mark.parametrize(
    ("label", "expected"),
    [("up by 2-3%", MoveBin("up", 3)), ("Down by more than 5%", MoveBin("down", 6)), ("up by 0", MoveBin("up", 1))],
)
def test_label_bin_reads_dataset_labels(label, expected):
    assert label_bin(label) == expected


# ---- Probabilities: checked against arithmetic done by hand ------------------------------------------------

# Five forecasts of P(up) and what happened (1 = up), plus one row without a probability (left out everywhere).
P_UP = [0.82, 0.88, 0.33, 0.62, 0.15, None]
WENT_UP = [True, False, False, True, False, True]


def test_brier_log_loss_and_ece_match_the_hand_computed_values():
    # Brier: squared distance of P(up) from the outcome, averaged over the 5 rows with a probability:
    #   (1-0.82)² + (0-0.88)² + (0-0.33)² + (1-0.62)² + (0-0.15)²
    #   = 0.0324 + 0.7744 + 0.1089 + 0.1444 + 0.0225 = 1.0826;  / 5 = 0.21652
    assert brier_score(P_UP, WENT_UP) == pytest.approx(0.21652)
    # Log loss: minus the mean natural log of the probability given to what happened:
    #   -(ln 0.82 + ln 0.12 + ln 0.67 + ln 0.62 + ln 0.85) / 5
    #   = -(-0.19845 - 2.12026 - 0.40048 - 0.47804 - 0.16252) / 5 = 3.35975 / 5 = 0.67195
    assert log_loss(P_UP, WENT_UP) == pytest.approx(0.671950, abs=1e-5)
    assert log_loss(P_UP, WENT_UP) == pytest.approx(
        -(math.log(0.82) + math.log(0.12) + math.log(0.67) + math.log(0.62) + math.log(0.85)) / 5)
    # ECE, 10 equal-width bins of P(up):
    #   bin [0.8, 0.9): 0.82 and 0.88, mean P 0.85, up 1 of 2 = 0.5 -> |0.5 - 0.85| = 0.35, weight 2/5 -> 0.140
    #   bin [0.3, 0.4): 0.33, up 0 of 1                  -> |0 - 0.33| = 0.33, weight 1/5   -> 0.066
    #   bin [0.6, 0.7): 0.62, up 1 of 1                  -> |1 - 0.62| = 0.38, weight 1/5   -> 0.076
    #   bin [0.1, 0.2): 0.15, up 0 of 1                  -> 0.15,               weight 1/5   -> 0.030
    #   ECE = 0.140 + 0.066 + 0.076 + 0.030 = 0.312
    assert expected_calibration_error(P_UP, WENT_UP) == pytest.approx(0.312)
    bins = reliability(P_UP, WENT_UP)
    assert len(bins) == 10 and [b["n"] for b in bins] == [0, 1, 0, 1, 0, 0, 1, 0, 2, 0]
    assert bins[8] == {"lo": 0.8, "hi": 0.9, "n": 2, "mean_p": pytest.approx(0.85), "frequency": 0.5}
    assert bins[0]["mean_p"] is None and bins[0]["frequency"] is None
    metrics = probability_metrics(P_UP, WENT_UP)
    assert (metrics["n"], metrics["missing"]) == (5, 1)
    assert metrics["brier"] == pytest.approx(0.21652) and metrics["ece"] == pytest.approx(0.312)
    assert metrics["mean_p_up"] == pytest.approx((0.82 + 0.88 + 0.33 + 0.62 + 0.15) / 5)
    assert metrics["up_rate"] == pytest.approx(2 / 5)


def test_the_reference_points_always_50_percent_and_perfect_and_p_of_one_in_the_last_bin():
    assert brier_score([0.5] * 4, [True, False, True, True]) == 0.25
    assert log_loss([0.5] * 4, [True, False, True, True]) == pytest.approx(math.log(2))
    assert brier_score([1.0, 0.0], [True, False]) == 0.0
    assert expected_calibration_error([1.0, 0.0], [True, False]) == 0.0
    assert reliability([1.0], [True])[9]["n"] == 1  # P = 1 is in the last bin, not an 11th
    # A confident miss is clipped, not infinite: -ln(1e-6) = 13.8.
    assert log_loss([1.0], [False]) == pytest.approx(-math.log(1e-6), rel=1e-6)
    assert probability_metrics([None, None], [True, False]) is None and brier_score([], []) is None
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        brier_score([1.2], [True])


def test_abstaining_trades_coverage_for_accuracy_by_hand():
    # Confidence max(P, 1-P): 0.82, 0.88, 0.67, 0.62, 0.85; the stated direction right: yes, no, yes, yes, no.
    correct = [True, False, True, True, False, True]  # the last row has no probability: not in the table
    table = abstention_table(P_UP, correct)
    assert [(r["threshold"], r["covered"]) for r in table] == [(0.5, 5), (0.55, 5), (0.6, 5), (0.65, 4), (0.7, 3)]
    # >= 0.65 drops 0.62 (a right one): 2 of 4 right; >= 0.7 also drops 0.67 (right): 1 of 3 (the 0.82).
    assert [r["accuracy"] for r in table] == [pytest.approx(v) for v in (0.6, 0.6, 0.6, 0.5, 1 / 3)]
    assert [r["coverage"] for r in table] == [pytest.approx(v) for v in (1, 1, 1, 0.8, 0.6)]
    assert abstention_table([None], [True]) is None
    assert abstention_table([0.5], [True], thresholds=(0.9,))[0]["accuracy"] is None  # nothing covered


def test_base_rates_come_from_the_labels_and_the_previous_week_as_momentum_reads_it(rows):
    rates = base_rates(rows, source="the test split, as a stand-in for training data")
    ups = [r.label.startswith("up") for r in rows]
    previous_up = [momentum_bin(r.user_prompt).direction == "up" for r in rows]
    assert rates.up == pytest.approx(sum(ups) / 300)
    after_up = [u for u, p in zip(ups, previous_up, strict=True) if p]
    after_down = [u for u, p in zip(ups, previous_up, strict=True) if not p]
    assert rates.after_up == pytest.approx(sum(after_up) / len(after_up))
    assert rates.after_down == pytest.approx(sum(after_down) / len(after_down))
    probabilities = baseline_probabilities(rows, rates)
    assert probabilities[BASELINE_DOWN] == probabilities[BASELINE_UP] == [rates.up] * 300
    assert probabilities[BASELINE_MOMENTUM] == [rates.after_up if p else rates.after_down for p in previous_up]


def test_score_reports_the_model_calibration_and_training_rate_baselines():
    rows = _rows(["up by 1-2%", "down by 0-1%", "down by 2-3%", "up by 0-1%"])
    predictions = [_answer("Up by 1-2%"), _answer("Up by 0-1%"), _answer("Down by 1-2%"), "garbled"]
    rates = BaseRates(up=0.6, after_up=0.7, after_down=0.4, source="training split 'train'")
    report = score(rows, predictions, p_up=[0.7, 0.6, 0.2, None], rates=rates, bootstrap=0, rouge=False)
    model = report["calibration"]["model"]
    # Model, 3 rows with a probability: (1-0.7)² + (0-0.6)² + (0-0.2)² = 0.09 + 0.36 + 0.04 = 0.49; / 3.
    assert (model["n"], model["missing"]) == (3, 1) and model["brier"] == pytest.approx(0.49 / 3)
    # Constant baselines say the training rate 0.6 on all 4 rows (2 up, 2 down): (2·0.4² + 2·0.6²) / 4 = 0.26.
    for name in (BASELINE_DOWN, BASELINE_UP):
        assert report["calibration"]["baselines"][name]["brier"] == pytest.approx(0.26)
    # These prompts show no past week, so momentum says the overall rate too.
    assert report["calibration"]["baselines"][BASELINE_MOMENTUM]["brier"] == pytest.approx(0.26)
    assert report["calibration"]["base_rates"] == {"up": 0.6, "after_up": 0.7, "after_down": 0.4,
                                                   "source": "training split 'train'", "in_sample": False}
    # Abstention: confidences 0.7, 0.6, 0.8; right, wrong (said up, went down), right; the unparsed row has none.
    assert [(r["covered"], r["accuracy"]) for r in report["abstain"]] == [
        (3, pytest.approx(2 / 3)), (3, pytest.approx(2 / 3)), (3, pytest.approx(2 / 3)), (2, 1.0), (2, 1.0)]


def test_without_training_rates_the_baselines_use_in_sample_rates_and_say_so():
    rows = _rows(["up by 1-2%", "down by 0-1%", "down by 2-3%", "down by 0-1%"])
    report = score(rows, [r.reference for r in rows], bootstrap=0, rouge=False)
    rates = report["calibration"]["base_rates"]
    assert rates["in_sample"] is True and rates["up"] == 0.25 and "in-sample" in rates["source"]
    assert report["calibration"]["model"] is None and report["abstain"] is None  # the answers carry none
    # Momentum without conditional rates (a rate given alone) gets no probability, never a made-up one.
    given = BaseRates(up=0.5, after_up=None, after_down=None, source="--train-up-rate")
    report = score(rows, [r.reference for r in rows], rates=given, bootstrap=0, rouge=False)
    assert report["calibration"]["baselines"][BASELINE_MOMENTUM] is None
    assert report["calibration"]["baselines"][BASELINE_UP]["brier"] == 0.25
    with pytest.raises(EngineError, match="3 probabilities for 4 rows"):
        score(rows, [r.reference for r in rows], p_up=[0.5] * 3, bootstrap=0, rouge=False)
    with pytest.raises(EngineError, match="must lie in"):
        BaseRates(up=1.5, after_up=None, after_down=None, source="typo")
