"""Inputs → prompt → model → parsed forecast. One forecast is a batch of one; a digest is one batch of thirty.

Torch-free: the model arrives as any object with `render`, `count_tokens`, `generate` and `version` (the
`engine.generation.model.Analyst`, or a stub in tests of what sits above).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from engine.data.inputs import ForecastInputs
from engine.data.prompts import SYSTEM_PROMPT, DroppedNews, PromptParts, build_messages, fit_to_budget
from engine.evaluation.evidence import evidence_of
from engine.forecast_record import (
    RECORD_VERSION,
    BinProbability,
    DroppedHeadline,
    Evidence,
    ForecastRecord,
    LikelyBin,
    NewsWeek,
    Prediction,
    Probabilities,
)
from engine.market.weeks import MoveBin
from engine.parsing import Forecast, parse_answer
from engine.probabilities import BinDistribution, clear_signal


class GenerationLike(Protocol):
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


class Model(Protocol):
    @property
    def version(self) -> str: ...
    def render(self, conversation: Sequence[dict[str, str]]) -> str: ...
    def count_tokens(self, text: str) -> int: ...
    def generate(self, conversations: Sequence[Sequence[dict[str, str]]], *, max_new_tokens: int,
                 on_text: Callable[[int, str], None] | None = None) -> list[GenerationLike]: ...


@dataclass(frozen=True)
class ForecastResult:
    inputs: ForecastInputs
    forecast: Forecast
    generation: GenerationLike
    dropped: tuple[DroppedNews, ...]
    model_version: str
    prompt_sha256: str = ""  # of the exact chat messages generated from: the ledger's link to its prompt
    signal_band: float = 0.0  # SIGNAL_BAND when it was made: P(up) within 0.5 ± this is "no clear signal"
    evidence: Evidence | None = None  # engine.evaluation.evidence.evidence_of: the news read and each claim's matches


def prompt_sha256(messages: Sequence[dict[str, str]]) -> str:
    """A stable hash of the chat messages (system + user) a forecast was generated from."""
    text = json.dumps(list(messages), ensure_ascii=False, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def fit_prompt(parts: PromptParts, model: Model, *, context_tokens: int, max_new_tokens: int
               ) -> tuple[PromptParts, list[DroppedNews]]:
    """Drop the oldest news items until system + user prompt + the answer's room fit the context."""
    overhead = model.count_tokens(model.render([{"role": "system", "content": SYSTEM_PROMPT},
                                                {"role": "user", "content": ""}]))
    budget = context_tokens - max_new_tokens - overhead
    return fit_to_budget(parts, count_tokens=model.count_tokens, max_tokens=budget)


def run_forecasts(
    inputs: Sequence[ForecastInputs],
    model: Model,
    *,
    context_tokens: int = 4096,
    max_new_tokens: int = 700,
    batch_size: int = 8,
    signal_band: float = 0.0,
    on_text: Callable[[int, str], None] | None = None,
    on_done: Callable[[int, int], None] | None = None,
) -> list[ForecastResult]:
    """Forecasts for every input, in input order, generated `batch_size` at a time. Prompts of similar length
    share a batch, so little compute goes to left padding. `on_text(k, text)`: input k's answer as far as it is
    written (engine.generation.streaming reads it; the model must take `on_text`); `on_done(done, total)`: after each
    batch."""
    fitted = [fit_prompt(i.parts, model, context_tokens=context_tokens, max_new_tokens=max_new_tokens)
              for i in inputs]
    messages = [build_messages(parts) for parts, _ in fitted]
    order = sorted(range(len(inputs)), key=lambda k: len(messages[k][1]["content"]))
    results: dict[int, ForecastResult] = {}
    for start in range(0, len(order), batch_size):
        chunk = order[start:start + batch_size]
        told = None if on_text is None else (lambda row, text, chunk=chunk: on_text(chunk[row], text))
        generations = model.generate([messages[k] for k in chunk], max_new_tokens=max_new_tokens, on_text=told)
        for k, generation in zip(chunk, generations, strict=True):
            forecast = parse_answer(generation.text)
            results[k] = ForecastResult(
                inputs=inputs[k],
                forecast=forecast,
                generation=generation,
                dropped=tuple(fitted[k][1]),
                model_version=model.version,
                prompt_sha256=prompt_sha256(messages[k]),
                signal_band=signal_band,
                evidence=evidence_of(forecast.positives, forecast.concerns, fitted[k][0]),
            )
        if on_done is not None:
            on_done(len(results), len(inputs))
    return [results[k] for k in range(len(inputs))]


def probabilities(distribution: BinDistribution | None, stated: MoveBin | None, *,
                  signal_band: float = 0.0) -> Probabilities | None:
    """The model's distribution and what follows from it: every bin's probability, P(up), P(down), the most likely
    bin and its probability, the stated bin's probability (None when the answer names no bin), the expected weekly
    move in percent (bin midpoints), and `clear_signal`: whether P(up) lies outside 0.5 ± `signal_band`
    (`signal_band` is recorded beside it). None when the backend computed no distribution."""
    if distribution is None:
        return None
    likely = distribution.most_likely
    return Probabilities(
        clear_signal=clear_signal(distribution.p_up, signal_band),
        signal_band=signal_band,
        bins=distribution.to_json(),
        p_up=round(distribution.p_up, 6),
        p_down=round(distribution.p_down, 6),
        most_likely=LikelyBin(code=likely.code, label=likely.label, p=round(distribution.p(likely), 6)),
        stated=None if stated is None else BinProbability(code=stated.code, p=round(distribution.p(stated), 6)),
        expected_move=round(distribution.expected_move, 4),
    )


def forecast_record(result: ForecastResult) -> ForecastRecord:
    """The structured forecast: what `forecaster forecast --json` prints, the jobs post and the ledger stores. Its
    `probabilities` come from the generation's bin distribution (None when the backend had none)."""
    f, i = result.forecast, result.inputs
    move = f.move_bin
    distribution = getattr(result.generation, "bin_distribution", None)
    return ForecastRecord(
        record_version=RECORD_VERSION,
        symbol=i.symbol,
        target_week=i.target.period,
        prediction=Prediction(direction=f.direction, magnitude=f.magnitude, label=move.label if move else None,
                              as_written=f.prediction),
        probabilities=probabilities(distribution, move if f.parsed else None, signal_band=result.signal_band),
        positive_developments=f.positives,
        potential_concerns=f.concerns,
        analysis=f.analysis,
        parsed=f.parsed,
        problems=f.problems,
        raw=f.raw,
        model=result.model_version,
        cutoff=i.cutoff.isoformat(),
        data_as_of=i.data_as_of.isoformat(),
        news=tuple(NewsWeek(week=w.week.period, available=w.available, used=w.used) for w in i.news),
        dropped_news=tuple(DroppedHeadline(week=d.week_start, headline=d.headline) for d in result.dropped),
        notes=tuple(i.notes),
        prompt_tokens=result.generation.prompt_tokens,
        new_tokens=result.generation.new_tokens,
        seconds=round(result.generation.seconds, 3),
        prompt_sha256=result.prompt_sha256,
        evidence=result.evidence,
    )
