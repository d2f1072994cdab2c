"""Evaluation runs: generate answers with a model passed in (or take saved ones), score them, time them.

No torch here: the caller loads the model and passes `generate`, so this module (and its tests) run on any
machine. Rows come from `engine.fingpt_rows`, saved answers from `engine.predictions`, scoring is `engine.metrics`
(baselines `engine.baselines`) and the text table `engine.eval_report`; see shared/reference/FINGPT_FORMAT.md §7
for what a report must hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.baselines import BaseRates, base_rates
from engine.exceptions import EngineError
from engine.fingpt_rows import EvalRow, load_eval_rows
from engine.metrics import score, score_fingpt_compat
from engine.predictions import RowProbability, p_up_of, probability_json
from engine.probabilities import BinDistribution
from engine.prompts import SYSTEM_PROMPT


class Generation(Protocol):
    """What `generate` returns per prompt (engine.model's generation result has these attributes, and an optional
    `bin_distribution`: a BinDistribution, or None when the backend computed none)."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


Generate = Callable[[list[list[dict]]], Sequence[Generation]]
Progress = Callable[[int, int, float], None]


# ---- Base rates from training data --------------------------------------------------------------------------


def _single_split(dataset: str) -> bool:
    """A local file or split folder holds one split whatever split is asked for (a DatasetDict or Hub id has many)."""
    path = Path(dataset).expanduser()
    return path.exists() and not (path / "dataset_dict.json").is_file()


def training_rates(dataset: str, split: str, *, evaluated: tuple[str, str] | None = None) -> BaseRates:
    """The baselines' base rates from a training split (rows as `load_eval_rows` reads them). `evaluated` is the
    (dataset, split) being scored: rates that would come from those very rows are refused, since they would be
    in-sample under a "training" label (the same split, or a single-split file or folder, which has no other)."""
    if evaluated is not None and Path(dataset).expanduser() == Path(evaluated[0]).expanduser():
        if split == evaluated[1] or _single_split(dataset):
            raise EngineError(
                f"The base rates would come from the evaluated rows themselves ({dataset} holds one split, or the "
                f"split {split!r} is the one evaluated). Name a training split of a DatasetDict folder or Hub id "
                "(--train-split train), or give the training data's file with --train-dataset."
            )
    rows = load_eval_rows(dataset, split=split)
    where = dataset if _single_split(dataset) else f"split {split!r} of {dataset}"
    return base_rates(rows, source=f"training data: {where} ({len(rows)} rows)")


# ---- Running ------------------------------------------------------------------------------------------------


def messages_for(row: EvalRow) -> list[dict]:
    """The chat the model is given for a row: FinGPT's system prompt and the (fixed-wording) user prompt."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": row.user_prompt}]


def _generate_all(
    rows: Sequence[EvalRow], generate: Generate, batch_size: int, progress: Progress | None, clock: Callable[[], float]
) -> dict:
    texts: list[str] = []
    distributions: list[BinDistribution | None] = []
    new_tokens = prompt_tokens = 0
    wall = 0.0
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        began = clock()
        results = list(generate([messages_for(r) for r in batch]))
        wall += clock() - began
        if len(results) != len(batch):
            raise EngineError(f"generate returned {len(results)} results for a batch of {len(batch)} prompts.")
        texts.extend(r.text for r in results)
        distributions.extend(getattr(r, "bin_distribution", None) for r in results)
        new_tokens += sum(int(r.new_tokens) for r in results)
        prompt_tokens += sum(int(r.prompt_tokens) for r in results)
        if progress is not None:
            progress(len(texts), len(rows), new_tokens / wall if wall > 0 else 0.0)
    return {
        "predictions": texts,
        "row_probabilities": distributions,
        "latency_s": wall / len(rows) if rows else None,  # each batch's wall time, shared by its rows
        "tokens_per_s": new_tokens / wall if wall > 0 else None,
        "new_tokens": new_tokens,
        "prompt_tokens": prompt_tokens,
        "generation_s": wall,
    }


def evaluate(
    rows: Sequence[EvalRow],
    *,
    predictions: Sequence[str] | None = None,
    probabilities: Sequence[RowProbability] | None = None,
    generate: Generate | None = None,
    fingpt_compat: bool = False,
    batch_size: int = 8,
    progress: Progress | None = None,
    train_majority: str | None = None,
    baselines: bool = True,
    bootstrap: int = 2000,
    seed: int = 0,
    rouge: bool = True,
    rates: BaseRates | None = None,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Score `predictions`, or generate them first with `generate` (batches of chat messages -> results with
    `.text`, `.prompt_tokens`, `.new_tokens`, `.seconds`), then score in our mode or FinGPT-compat mode.

    The report is the scorer's plus `predictions` (the texts scored) and, when generating, `latency_s`
    (mean wall seconds per row), `tokens_per_s` (new tokens over generation wall time), `new_tokens`,
    `prompt_tokens` and `generation_s`; these are None when predictions were given. `progress(done, total,
    tokens_per_s)` is called after each batch. `clock` times the batches (tests pass a fake one). The other
    keywords go to the scorer (`engine.metrics.score` / `score_fingpt_compat`).

    Probabilities: with given `predictions`, `probabilities` (one per row: a BinDistribution, a P(up) or None);
    when generating, each result's `bin_distribution`. Our mode scores their P(up) (`calibration`, `abstain`;
    the baselines' probabilities use `rates`, see `engine.metrics.score`); FinGPT-compat mode reproduces
    upstream, which had no probabilities, and reports `calibration` None. `probabilities` in the report holds
    each row's as `probability_json` writes it (None per row where there was none).
    """
    if not rows:
        raise EngineError("No rows to evaluate.")
    if batch_size < 1:
        raise EngineError(f"batch_size must be at least 1, got {batch_size}.")
    timing: dict[str, Any] = dict.fromkeys(("latency_s", "tokens_per_s", "new_tokens", "prompt_tokens", "generation_s"))
    if predictions is None:
        if generate is None:
            raise EngineError("Give either predictions to score or a generate function to produce them.")
        timing = _generate_all(rows, generate, batch_size, progress, clock)
        predictions = timing.pop("predictions")
        probabilities = timing.pop("row_probabilities")
    elif len(predictions) != len(rows):
        raise EngineError(f"{len(predictions)} predictions for {len(rows)} rows: they must pair up one to one.")
    if probabilities is not None and len(probabilities) != len(rows):
        raise EngineError(f"{len(probabilities)} probabilities for {len(rows)} rows: they must pair up one to one.")
    if probabilities is not None and all(p is None for p in probabilities):
        probabilities = None  # a backend without probabilities: the report says so once, not row by row
    common = dict(baselines=baselines, train_majority=train_majority, bootstrap=bootstrap, seed=seed, rouge=rouge)
    if fingpt_compat:
        report = {**score_fingpt_compat(rows, list(predictions), **common), "calibration": None, "abstain": None}
    else:
        p_up = None if probabilities is None else [p_up_of(p) for p in probabilities]
        report = score(rows, list(predictions), p_up=p_up, rates=rates, **common)
    stored = None if probabilities is None else [probability_json(p) for p in probabilities]
    return {**report, **timing, "predictions": list(predictions), "probabilities": stored}
