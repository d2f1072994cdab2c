"""Score forecasts against FinGPT-style test rows. Pure functions: numpy and rouge-score, no torch, no I/O.

Two reports (shared/reference/FINGPT_FORMAT.md §5 and §7):

- `score`: our honest report. Truth is each row's `label` column (all rows, including the three whose
  reference answer has no `Prediction:` line), the production parser `engine.parsing.parse_answer` reads
  the predictions, and the parse rate, accuracy over *all* rows (unparsed = wrong), MCC and a block bootstrap
  over weeks sit next to the usual accuracy and MSE.
- `score_fingpt_compat`: FinGPT `utils.py` `calc_metrics`, exactly: `engine.upstream_parser.upstream_parse` on
  both prediction and reference, only pairs where both parse are kept, accuracy and MSE over those.

Both run the same baselines (`engine.evaluation.baselines`: constant "Down by 0-1%", constant "Up by 0-1%", the train
majority label when given, and last-week momentum). A baseline is a list of answer strings that goes through
exactly the same scoring code as the model's predictions, so a parser quirk hits both alike.

Our report also scores the probability of an up week, P(up), when the predictions carry one (`calibration`):
Brier score, log loss and expected calibration error (`probability_metrics`, the one implementation the
evaluator, `/track` and the weekly summary all use). The baselines get probabilities of their own from base
rates (`BaseRates`): a constant guess says P(up) = the share of up weeks, momentum says P(up) = the share of up
weeks after an up (or a down) week. Those rates come from the training data when the caller has it; otherwise
from the evaluated rows themselves, and the report says "in-sample" (an optimistic baseline: it has seen the
answers' base rate).

Why a week bootstrap: the published test split is 10 weeks x 30 Dow tickers and Dow stocks move together
(5 to 22 of 30 up in a test week), so rows are not independent and a row bootstrap would give far too
narrow an interval. Resampling whole weeks keeps that dependence.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Sequence

import numpy as np

from engine import parsing, upstream_parser  # attribute access at call time: parse_answer / upstream_parse
from engine.data.fingpt_rows import EvalRow, label_bin
from engine.evaluation.baselines import BaseRates, base_rates, baseline_answers, baseline_probabilities
from engine.evaluation.calibration import ECE_BINS, abstention_table, probability_metrics
from engine.exceptions import EngineError

ROUGE_TYPES = ("rouge1", "rouge2", "rougeL")
SECTIONS = ("positive", "concerns", "analysis")

# The per-system keys every our-mode baseline carries; the model's report has all of them too.
DIRECTION_KEYS = (
    "n", "parsed", "parse_rate", "binary_accuracy", "binary_accuracy_all", "ci95_binary_accuracy_all",
    "mse", "mcc", "direction_counts",
)
# The same for compat mode. `mcc` and `ci95_binary_accuracy` are ours, added next to upstream's numbers.
COMPAT_KEYS = ("n", "parsed", "binary_accuracy", "mse", "mcc", "ci95_binary_accuracy", "direction_counts")


# ---- Small statistics -------------------------------------------------------------------------------------


def mcc(truth: Sequence[int], predicted: Sequence[int]) -> float | None:
    """Matthews correlation of two +1/-1 sequences (up = positive class).

    None when there are no pairs. When a class is empty on either side (a constant predictor, or a constant
    truth) the formula is 0/0; we return 0.0 there, as sklearn does: a constant predictor has no skill at
    telling up from down, and a 0.0 keeps the constant baselines comparable in the same column.
    """
    t = np.asarray(truth) > 0
    p = np.asarray(predicted) > 0
    if t.size == 0:
        return None
    tp = float(np.sum(t & p))
    tn = float(np.sum(~t & ~p))
    fp = float(np.sum(~t & p))
    fn = float(np.sum(t & ~p))
    denominator = math.sqrt((tp + fp) * (tp + fn) * (tn + fp) * (tn + fn))
    return 0.0 if denominator == 0 else (tp * tn - fp * fn) / denominator


def week_bootstrap_ci(
    values: Sequence[float], periods: Sequence[str], *, draws: int = 2000, seed: int = 0, level: float = 0.95
) -> list[float] | None:
    """Percentile interval for the mean of `values`, resampling whole weeks (`periods`) with replacement.

    Each draw picks as many weeks as there are distinct periods, with replacement, takes every row of the
    drawn weeks and recomputes the mean over those rows. Weeks are sorted before indexing, so the result
    depends on the seed and the data, not the row order. None when `draws` is 0 or there are no rows.
    """
    v = np.asarray(values, dtype=float)
    if draws <= 0 or v.size == 0:
        return None
    if v.size != len(periods):
        raise ValueError(f"{v.size} values but {len(periods)} periods")
    weeks = sorted(set(periods))
    index = {w: i for i, w in enumerate(weeks)}
    week_of_row = np.array([index[p] for p in periods])
    sums = np.bincount(week_of_row, weights=v, minlength=len(weeks))
    counts = np.bincount(week_of_row, minlength=len(weeks))
    drawn = np.random.default_rng(seed).integers(0, len(weeks), size=(draws, len(weeks)))
    means = sums[drawn].sum(axis=1) / counts[drawn].sum(axis=1)  # every week has >= 1 row: no 0 division
    tail = (1 - level) / 2 * 100
    lo, hi = np.percentile(means, [tail, 100 - tail])
    return [float(lo), float(hi)]


def _mean(values: np.ndarray) -> float | None:
    return float(np.mean(values)) if values.size else None


@functools.cache
def _scorer():
    from rouge_score import rouge_scorer  # imported on first use: only ROUGE needs it

    return rouge_scorer.RougeScorer(list(ROUGE_TYPES), use_stemmer=True)


def _rouge_means(pairs: Sequence[tuple[str, str]]) -> dict[str, float]:
    """Mean ROUGE F1 over (reference, prediction) pairs; an empty prediction scores 0 without being scored."""
    totals = dict.fromkeys(ROUGE_TYPES, 0.0)
    for reference, prediction in pairs:
        if not prediction.strip():
            continue
        scores = _scorer().score(reference, prediction)
        for kind in ROUGE_TYPES:
            totals[kind] += scores[kind].fmeasure
    return {kind: totals[kind] / len(pairs) for kind in ROUGE_TYPES}


# ---- Our report ---------------------------------------------------------------------------------------------


def _sign(direction: str) -> int:
    return {"up": 1, "down": -1}.get(direction, 0)


def _check_lengths(rows: Sequence[EvalRow], predictions: Sequence[str]) -> None:
    if len(rows) != len(predictions):
        raise EngineError(f"{len(predictions)} predictions for {len(rows)} rows: they must pair up one to one.")


def _direction_metrics(
    rows: Sequence[EvalRow], forecasts: Sequence[parsing.Forecast], *, bootstrap: int, seed: int
) -> dict:
    """The DIRECTION_KEYS metrics of one system. The model and every baseline come through here."""
    truth = [label_bin(r.label) for r in rows]
    true_sign = np.array([_sign(b.direction) for b in truth], dtype=int)
    pred_sign = np.array([_sign(f.direction) for f in forecasts], dtype=int)
    parsed = np.array([f.parsed for f in forecasts], dtype=bool)
    # Unparsed answers and answers without a direction are wrong: the denominator is every row.
    correct = parsed & (pred_sign != 0) & (pred_sign == true_sign)

    errors = [
        (f.move_bin.midpoint - t.midpoint) ** 2
        for f, t, ok in zip(forecasts, truth, parsed, strict=True)
        if ok and f.move_bin is not None
    ]
    # MCC over every row whose prediction names a direction, parsed or not: MCC is a two-class statistic and
    # "no direction" has no place in it; the unparsed rows are already charged in binary_accuracy_all.
    has_direction = pred_sign != 0
    n = len(rows)
    return {
        "n": n,
        "parsed": int(parsed.sum()),
        "parse_rate": float(parsed.mean()) if n else None,
        "binary_accuracy": _mean(correct[parsed].astype(float)),
        "binary_accuracy_all": _mean(correct.astype(float)),
        "ci95_binary_accuracy_all": week_bootstrap_ci(
            correct.astype(float), [r.period for r in rows], draws=bootstrap, seed=seed
        ),
        "mse": _mean(np.array(errors, dtype=float)),
        "mcc": mcc(true_sign[has_direction], pred_sign[has_direction]),
        "direction_counts": {d: sum(f.direction == d for f in forecasts) for d in ("up", "down", "none")},
    }


def _section_texts(forecast: parsing.Forecast) -> dict[str, str]:
    return {
        "positive": "\n".join(forecast.positives),
        "concerns": "\n".join(forecast.concerns),
        "analysis": forecast.analysis,
    }


def _truth_up(rows: Sequence[EvalRow]) -> list[bool]:
    return [label_bin(r.label).direction == "up" for r in rows]


def _calibration(
    rows: Sequence[EvalRow],
    forecasts: Sequence[parsing.Forecast],
    p_up: Sequence[float | None] | None,
    *,
    rates: BaseRates | None,
    baselines: bool,
    train_majority: str | None,
) -> tuple[dict, list[dict] | None]:
    """(the report's `calibration` section, its `abstain` table): the model's P(up) and each baseline's."""
    up = _truth_up(rows)
    if p_up is not None and len(p_up) != len(rows):
        raise EngineError(f"{len(p_up)} probabilities for {len(rows)} rows: they must pair up one to one.")
    model_p = list(p_up) if p_up is not None else [None] * len(rows)
    section: dict = {"ece_bins": ECE_BINS, "model": probability_metrics(model_p, up), "baselines": {}}
    if baselines:
        if rates is None:
            rates = base_rates(rows, source="in-sample: the evaluated rows' own rates", in_sample=True)
        section["base_rates"] = {"up": rates.up, "after_up": rates.after_up, "after_down": rates.after_down,
                                 "source": rates.source, "in_sample": rates.in_sample}
        for name, probabilities in baseline_probabilities(rows, rates, train_majority=train_majority).items():
            section["baselines"][name] = probability_metrics(probabilities, up)
    correct = [f.parsed and f.direction == label_bin(r.label).direction for r, f in zip(rows, forecasts, strict=True)]
    return section, abstention_table(model_p, correct)


def score(
    rows: Sequence[EvalRow],
    predictions: Sequence[str],
    *,
    baselines: bool = True,
    train_majority: str | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    rouge: bool = True,
    p_up: Sequence[float | None] | None = None,
    rates: BaseRates | None = None,
) -> dict:
    """Our honest report of `predictions` (one answer text per row, in row order).

    - Truth is `row.label` for every row; the references are used only for ROUGE.
    - `binary_accuracy` is over parsed predictions, `binary_accuracy_all` over every row (unparsed or
      direction-less = wrong), with a 95% week-bootstrap interval (`bootstrap` draws, numpy Generator seeded
      with `seed`; baselines reuse the seed, so every system sees the same drawn weeks).
    - `mse` is on signed bin midpoints (percent²) over parsed predictions; `mcc` see `mcc` and
      `_direction_metrics`.
    - `rouge` is the mean F1 per section over rows whose reference parses, section text = the parsed items
      joined with "\\n" (analysis: its text). A prediction missing a section, parsed or not, scores 0 there.
    - `baselines` maps each baseline's name to the same DIRECTION_KEYS metrics, on the same rows.
    - `rouge=False` skips ROUGE (report None): rouge-score's pure-Python LCS takes seconds on 300 answers.
    - `p_up` is the model's P(up) per row (None where it has none). `calibration` holds `probability_metrics`
      of the model (None without probabilities) and of each baseline, whose P(up) comes from `rates` (the
      training data's, when the caller has them; else the evaluated rows' own, marked in-sample), plus
      `base_rates` saying which. `abstain` is `abstention_table` of the model (None without probabilities).
    """
    _check_lengths(rows, predictions)
    forecasts = [parsing.parse_answer(p) for p in predictions]
    report = {"mode": "ours", **_direction_metrics(rows, forecasts, bootstrap=bootstrap, seed=seed)}
    report["label_counts"] = {
        d: sum(label_bin(r.label).direction == d for r in rows) for d in ("up", "down")
    }

    pairs: dict[str, list[tuple[str, str]]] = {s: [] for s in SECTIONS}
    for row, forecast in zip(rows, forecasts, strict=True):
        reference = parsing.parse_answer(row.reference)
        if not reference.parsed:
            continue
        ref_texts, pred_texts = _section_texts(reference), _section_texts(forecast)
        for section in SECTIONS:
            pairs[section].append((ref_texts[section], pred_texts[section]))
    report["rouge_rows"] = len(pairs["analysis"])
    report["rouge"] = {s: _rouge_means(pairs[s]) for s in SECTIONS} if rouge and pairs["analysis"] else None

    report["parse_failures"] = [
        {"index": i, "symbol": r.symbol, "period": r.period, "problems": list(f.problems)}
        for i, (r, f) in enumerate(zip(rows, forecasts, strict=True))
        if not f.parsed
    ]
    report["bootstrap"] = {"draws": bootstrap, "seed": seed, "weeks": len({r.period for r in rows})}
    report["baselines"] = {}
    if baselines:
        for name, answers in baseline_answers(rows, train_majority=train_majority).items():
            parsed_answers = [parsing.parse_answer(a) for a in answers]
            report["baselines"][name] = _direction_metrics(rows, parsed_answers, bootstrap=bootstrap, seed=seed)
    report["calibration"], report["abstain"] = _calibration(rows, forecasts, p_up, rates=rates, baselines=baselines,
                                                            train_majority=train_majority)
    return report


# ---- FinGPT-compatible report -------------------------------------------------------------------------------


def _compat_core(
    rows: Sequence[EvalRow], predictions: Sequence[str], *, bootstrap: int, seed: int, with_rouge: bool
) -> dict:
    """calc_metrics on one system: the COMPAT_KEYS metrics, plus ROUGE when asked."""
    kept = []  # (row, upstream tuple of the prediction, of the reference)
    for row, prediction in zip(rows, predictions, strict=True):
        answer, reference = upstream_parser.upstream_parse(prediction), upstream_parser.upstream_parse(row.reference)
        if answer is not None and reference is not None:
            kept.append((row, answer, reference))

    gt_sign = np.array([ref[2] for _, _, ref in kept], dtype=int)
    pred_sign = np.array([ans[2] for _, ans, _ in kept], dtype=int)
    gt_margin = np.array([ref[3] for _, _, ref in kept], dtype=float)
    pred_margin = np.array([ans[3] for _, ans, _ in kept], dtype=float)
    # sklearn accuracy_score is plain equality. References always say up or down, so a 0 ("Neutral")
    # prediction is always wrong, as upstream's numbers have it; a 0 reference would match a 0 prediction.
    correct = (gt_sign == pred_sign).astype(float)
    has_direction = pred_sign != 0
    result = {
        "n": len(rows),
        "parsed": len(kept),  # upstream's valid_count
        "binary_accuracy": _mean(correct),
        "mse": _mean((gt_margin - pred_margin) ** 2),
        # Ours, not upstream's: MCC over kept pairs with a predicted direction, and a week bootstrap.
        "mcc": mcc(gt_sign[has_direction], pred_sign[has_direction]),
        "ci95_binary_accuracy": week_bootstrap_ci(
            correct, [row.period for row, _, _ in kept], draws=bootstrap, seed=seed
        ),
        "direction_counts": {
            "up": int(np.sum(pred_sign == 1)), "down": int(np.sum(pred_sign == -1)), "none": int(np.sum(pred_sign == 0))
        },
    }
    if with_rouge:
        # Upstream scores the raw section texts (pros = group 1, cons = group 2, analysis after "Analysis:").
        result["rouge"] = {
            section: _rouge_means([(ref[i], ans[i]) for _, ans, ref in kept])
            for section, i in zip(SECTIONS, (0, 1, 4), strict=True)
        } if kept else None
    return result


def score_fingpt_compat(
    rows: Sequence[EvalRow],
    predictions: Sequence[str],
    *,
    baselines: bool = True,
    train_majority: str | None = None,
    bootstrap: int = 2000,
    seed: int = 0,
    rouge: bool = True,
) -> dict:
    """FinGPT `utils.py` `calc_metrics`, reproduced exactly, so numbers compare with published ones.

    Pairs are kept only when both prediction and reference parse with upstream's regexes (`parsed` =
    upstream's `valid_count`); `binary_accuracy` is the share of kept pairs with equal directions, `mse`
    the mean squared difference of signed bin midpoints, `rouge` the mean F1 per raw section text. The row
    `label` is not used. With no kept pairs the metrics are None (upstream returned {}); nothing raises.
    `mcc` and `ci95_binary_accuracy` are our additions over the same kept pairs. `rouge=False` skips ROUGE.
    """
    _check_lengths(rows, predictions)
    core = _compat_core(rows, predictions, bootstrap=bootstrap, seed=seed, with_rouge=rouge)
    report = {"mode": "fingpt_compat", **core, "rouge": core.get("rouge")}
    report["bootstrap"] = {"draws": bootstrap, "seed": seed, "weeks": len({r.period for r in rows})}
    report["baselines"] = {}
    if baselines:
        for name, answers in baseline_answers(rows, train_majority=train_majority).items():
            report["baselines"][name] = _compat_core(rows, answers, bootstrap=bootstrap, seed=seed, with_rouge=False)
    return report
