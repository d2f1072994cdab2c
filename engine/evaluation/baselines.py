"""The naive baselines every evaluation runs next to the model, and the base rates behind their probabilities.

A baseline is a list of answer strings (constant "Down by 0-1%", constant "Up by 0-1%", the train majority label
when given, last-week momentum read from the prompt) that goes through exactly the same scoring code as the
model's predictions (`engine.evaluation.metrics`), so a parser quirk hits both alike. Their P(up) comes from base rates
(`BaseRates`): a constant guess says the share of up weeks, momentum the share of up weeks after an up (or a down)
week; `engine.evaluation.track` and the ledger's `/track` figures use the same names.
"""

from __future__ import annotations

import functools
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from engine.data.fingpt_rows import EvalRow, label_bin
from engine.data.prompt_parser import parse_user_prompt
from engine.exceptions import EngineError, PromptError
from engine.market.weeks import MoveBin, move_bin, weekly_return

BASELINE_DOWN = "constant Down by 0-1%"
BASELINE_UP = "constant Up by 0-1%"
BASELINE_MAJORITY = "majority direction (train)"
BASELINE_MOMENTUM = "last-week momentum"

# ---- Base rates: the baselines' probabilities -----------------------------------------------------------


@dataclass(frozen=True)
class BaseRates:
    """Shares of up weeks the baselines turn into probabilities.

    up: over all rows; after_up / after_down: among rows whose previous week went up / down (the momentum
    baseline's P(up)), None when unknown; source: where the rates come from, as a report shows it; in_sample:
    True when they were taken from the evaluated rows themselves.
    """

    up: float
    after_up: float | None
    after_down: float | None
    source: str
    in_sample: bool = False

    def __post_init__(self) -> None:
        for name in ("up", "after_up", "after_down"):
            value = getattr(self, name)
            if value is not None and not 0 <= value <= 1:
                raise EngineError(f"base rate {name} must lie in [0, 1], got {value}")


def base_rates(rows: Sequence[EvalRow], *, source: str, in_sample: bool = False) -> BaseRates:
    """The up-week rates of `rows` (by their labels), overall and after an up or a down previous week (read from
    the prompt, as the momentum baseline reads it). A group with no rows falls back to the overall rate."""
    if not rows:
        raise EngineError(f"no rows to take base rates from ({source})")
    up = np.array([label_bin(r.label).direction == "up" for r in rows], dtype=float)
    previous = [momentum_bin(r.user_prompt) for r in rows]
    overall = float(up.mean())

    def after(direction: str) -> float:
        group = up[[p is not None and p.direction == direction for p in previous]]
        return float(group.mean()) if group.size else overall

    return BaseRates(up=overall, after_up=after("up"), after_down=after("down"), source=source, in_sample=in_sample)


def baseline_probabilities(rows: Sequence[EvalRow], rates: BaseRates, *, train_majority: str | None = None
                           ) -> dict[str, list[float | None]]:
    """P(up) of each baseline, per row: the constant guesses say the overall rate (the best constant probability
    there is), momentum the rate after last week's direction (the overall rate when the prompt shows no past
    week; None for every row when the conditional rates are unknown)."""
    n = len(rows)
    result: dict[str, list[float | None]] = {BASELINE_DOWN: [rates.up] * n, BASELINE_UP: [rates.up] * n}
    if train_majority is not None:
        result[BASELINE_MAJORITY] = [rates.up] * n
    if rates.after_up is None or rates.after_down is None:
        result[BASELINE_MOMENTUM] = [None] * n
    else:
        previous = [momentum_bin(r.user_prompt) for r in rows]
        result[BASELINE_MOMENTUM] = [
            rates.up if p is None else (rates.after_up if p.direction == "up" else rates.after_down) for p in previous
        ]
    return result


# ---- Baselines ----------------------------------------------------------------------------------------------


def baseline_answer(prediction: str) -> str:
    """A complete answer in the FinGPT format whose prediction line reads `prediction` ("Down by 0-1%").

    Placeholder factors fill the other sections so both parsers accept it; their ROUGE is never reported.
    """
    return (
        "[Positive Developments]:\n1. Baseline: no factors.\n\n"
        "[Potential Concerns]:\n1. Baseline: no factors.\n\n"
        f"[Prediction & Analysis]:\nPrediction: {prediction}\nAnalysis: Baseline: no analysis."
    )


def momentum_bin(user_prompt: str) -> MoveBin | None:
    """Last-week momentum: the direction the prompt's last price sentence states ("increased"/"decreased",
    so a flat week reads down, as upstream writes it) and the bin of that week's move, from the same two
    prices. None when the prompt does not parse or shows no past week."""
    try:
        weeks = parse_user_prompt(user_prompt).weeks
    except PromptError:
        return None
    if not weeks:
        return None
    last = weeks[-1]
    k = move_bin(weekly_return(last.start_price, last.end_price)).k
    return MoveBin("up" if last.direction == "increased" else "down", k)


@functools.lru_cache(maxsize=4096)
def _momentum_answer(user_prompt: str) -> str:
    found = momentum_bin(user_prompt)
    return "" if found is None else baseline_answer(found.prediction_text)  # "" parses nowhere: counted wrong


def baseline_answers(rows: Sequence[EvalRow], *, train_majority: str | None = None) -> dict[str, list[str]]:
    """Answer strings for each baseline, one per row, in row order."""
    n = len(rows)
    answers = {
        BASELINE_DOWN: [baseline_answer("Down by 0-1%")] * n,
        BASELINE_UP: [baseline_answer("Up by 0-1%")] * n,
    }
    if train_majority is not None:
        answers[BASELINE_MAJORITY] = [baseline_answer(label_bin(train_majority).prediction_text)] * n
    answers[BASELINE_MOMENTUM] = [_momentum_answer(r.user_prompt) for r in rows]
    return answers
