"""Real forecast records (`engine.forecast.forecast_record`) without a real model: a canned analyst answers, everything
else (inputs from sources, prompt fitting, parsing) is the production path. Plus a small market whose weekly
returns are round numbers, so track-record tests can work their expectations out by hand."""

from __future__ import annotations

import datetime as dt
import time
from dataclasses import dataclass

from engine.data.inputs import Sources, gather
from engine.evaluation.baselines import baseline_answer
from engine.forecast import forecast_record, run_forecasts
from engine.forecast_record import ForecastRecord
from engine.probabilities import BinDistribution
from engine.records import DailyClose
from tests.fakes.sources import MemorySources, synthetic_profile


@dataclass
class _Generation:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float
    bin_distribution: BinDistribution | None = None


class CannedAnalyst:
    """A `engine.forecast.Model` that writes `answer` for every prompt (with `distribution` as its bin
    probabilities, None: a backend without probabilities). Asked with `on_text`, it tells the answer as a model
    would while writing it: a line at a time, `seconds_per_line` apart."""

    version = "canned-analyst (adapter v7)"

    def __init__(self, answer: str, distribution: BinDistribution | None = None, *,
                 seconds_per_line: float = 0.0) -> None:
        self.answer = answer
        self.distribution = distribution
        self.seconds_per_line = seconds_per_line

    def render(self, conversation) -> str:
        return "".join(f"<{m['role']}>{m['content']}" for m in conversation)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, conversations, *, max_new_tokens: int, on_text=None) -> list[_Generation]:
        if on_text is not None:
            lines = self.answer.split("\n")
            for end in range(1, len(lines) + 1):
                time.sleep(self.seconds_per_line)
                for row in range(len(conversations)):
                    on_text(row, "\n".join(lines[:end]))
        return [_Generation(self.answer, self.count_tokens(c[1]["content"]), 40, 1.25, self.distribution)
                for c in conversations]


def answer(prediction: str | None) -> str:
    """A FinGPT-format answer predicting e.g. "Down by 0-1%"; None: an answer no parser can read."""
    return "I would rather not say where this stock goes." if prediction is None else baseline_answer(prediction)


def canned_forecast(sources: Sources, symbol: str, *, at: dt.datetime, prediction: str | None, weeks: int = 2,
                    distribution: BinDistribution | None = None, signal_band: float = 0.0) -> ForecastRecord:
    """The forecast a live request at `at` would produce, with the analyst predicting `prediction` (and giving
    `distribution` as its bin probabilities, judged against `signal_band` for a clear signal)."""
    inputs = gather([symbol], sources=sources, cutoff=at, now=at, weeks=weeks)[symbol]
    if isinstance(inputs, Exception):
        raise inputs
    return forecast_record(run_forecasts([inputs], CannedAnalyst(answer(prediction), distribution),
                                         signal_band=signal_band)[0])


# Weekly price levels (every weekday of the week closes at its week's level), by the Sunday starting the week:
# the week of Feb 25 is +2% (up by 1-2%), Mar 3 -1% (down by 0-1%), Mar 10 +3% (up by 2-3%), Mar 17 -5% (down by
# 4-5%), Mar 24 flat.
WEEK_LEVELS = {
    dt.date(2024, 1, 28): 100.0, dt.date(2024, 2, 4): 100.0, dt.date(2024, 2, 11): 100.0,
    dt.date(2024, 2, 18): 100.0, dt.date(2024, 2, 25): 102.0, dt.date(2024, 3, 3): 100.98,
    dt.date(2024, 3, 10): 104.0094, dt.date(2024, 3, 17): 98.80893, dt.date(2024, 3, 24): 98.80893,
}


def stepped_market(symbols: tuple[str, ...] = ("AXP", "KO")) -> MemorySources:
    """Every symbol follows WEEK_LEVELS scaled by its position (the returns are the same for all)."""
    mem = MemorySources()
    for n, symbol in enumerate(symbols, 1):
        mem.profiles[symbol] = synthetic_profile(symbol)
        closes = []
        for sunday, level in WEEK_LEVELS.items():
            for offset in range(1, 6):
                closes.append(DailyClose(date=sunday + dt.timedelta(days=offset), close=round(level * n, 6)))
        mem.closes[symbol] = closes
    return mem


def distribution(p_up: float, *, top: str, p_top: float) -> BinDistribution:
    """A 12-bin distribution with P(up) = `p_up` and bin `top` ('U2', 'D1', …) at `p_top`; the rest of each side's
    mass is spread evenly over its other bins."""
    side_up = top.startswith("U")
    side = p_up if side_up else 1 - p_up
    if not 0 <= p_top <= side:
        raise ValueError(f"P({top}) = {p_top} does not fit in its side's mass {side}")
    weights = {}
    for code in ("U1", "U2", "U3", "U4", "U5", "U5+", "D1", "D2", "D3", "D4", "D5", "D5+"):
        same_side = code.startswith("U") == side_up
        if code == top:
            weights[code] = p_top
        elif same_side:
            weights[code] = (side - p_top) / 5
        else:
            weights[code] = (1 - side) / 6
    return BinDistribution(weights)
