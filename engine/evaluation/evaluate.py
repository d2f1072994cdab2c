"""Evaluation runs: generate answers with a model passed in (or take saved ones), score them, time them.

No torch here: the caller loads the model and passes `generate`, so this module (and its tests) run on any
machine. Rows come from `engine.data.fingpt_rows`, saved answers from `engine.evaluation.predictions`, scoring is
`engine.evaluation.metrics` (baselines `engine.evaluation.baselines`) and the text table
`engine.evaluation.eval_report`; see shared/reference/FINGPT_FORMAT.md §7 for what a report must hold.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.data.fingpt_rows import EvalRow, load_eval_rows
from engine.data.prompt_parser import parse_user_prompt
from engine.data.prompts import SYSTEM_PROMPT
from engine.evaluation.baselines import BaseRates, base_rates
from engine.evaluation.calibration_fit import calibration_fit
from engine.evaluation.evidence import grounding, name_words
from engine.evaluation.metrics import score, score_fingpt_compat
from engine.evaluation.predictions import RowProbability, p_up_of, probability_json
from engine.exceptions import EngineError, PromptError
from engine.generation.bin_calibration import IDENTITY, BinCalibration
from engine.generation.grammar import call_text
from engine.generation.scaffold import SCAFFOLD
from engine.parsing import parse_answer
from engine.probabilities import BinDistribution, choose_call


class Generation(Protocol):
    """What `generate` returns per prompt (engine.generation.model's generation result has these attributes, and an
    optional `bin_distribution`: a BinDistribution, or None when the backend computed none)."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


Generate = Callable[[list[list[dict]]], Sequence[Generation]]
# Scaffold mode: batches of chat messages -> each row's raw 12-bin distribution after
# engine.generation.scaffold.SCAFFOLD.
ScoreBins = Callable[[list[list[dict]]], Sequence[BinDistribution | None]]
Progress = Callable[[int, int, float], None]

MODES = ("full", "scaffold")
# What a scaffold-mode "answer" holds after its call: it was scored, not written.
SCAFFOLD_ANALYSIS = " Scaffold mode scores the call alone, with no lists or analysis written."


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


def _timed_batches(rows: Sequence[EvalRow], call: Callable, batch_size: int, clock: Callable[[], float],
                   name: str):
    """`call` on the rows' chats, `batch_size` at a time: yields each batch's results (one per row, checked) and the
    seconds it took."""
    for start in range(0, len(rows), batch_size):
        batch = rows[start:start + batch_size]
        began = clock()
        results = list(call([messages_for(r) for r in batch]))
        seconds = clock() - began
        if len(results) != len(batch):
            raise EngineError(f"{name} returned {len(results)} results for a batch of {len(batch)} prompts.")
        yield results, seconds


def _generate_all(
    rows: Sequence[EvalRow], generate: Generate, batch_size: int, progress: Progress | None, clock: Callable[[], float]
) -> dict:
    texts: list[str] = []
    distributions: list[BinDistribution | None] = []
    raw: list[BinDistribution | None] = []
    new_tokens = prompt_tokens = 0
    wall = 0.0
    for results, seconds in _timed_batches(rows, generate, batch_size, clock, "generate"):
        wall += seconds
        texts.extend(r.text for r in results)
        distributions.extend(getattr(r, "bin_distribution", None) for r in results)
        raw.extend(getattr(r, "raw_bin_distribution", None) or getattr(r, "bin_distribution", None) for r in results)
        new_tokens += sum(int(r.new_tokens) for r in results)
        prompt_tokens += sum(int(r.prompt_tokens) for r in results)
        if progress is not None:
            progress(len(texts), len(rows), new_tokens / wall if wall > 0 else 0.0)
    return {
        "predictions": texts,
        "row_probabilities": distributions,
        "raw_probabilities": raw,
        "latency_s": wall / len(rows) if rows else None,  # each batch's wall time, shared by its rows
        "tokens_per_s": new_tokens / wall if wall > 0 else None,
        "new_tokens": new_tokens,
        "prompt_tokens": prompt_tokens,
        "generation_s": wall,
    }


def _scaffold_all(rows: Sequence[EvalRow], score_bins: ScoreBins, calibration: BinCalibration, batch_size: int,
                  progress: Progress | None, clock: Callable[[], float]) -> dict:
    """Scaffold mode: each row's bins scored after engine.generation.scaffold.SCAFFOLD (one prefill, nothing generated);
    its "answer" is the scaffold with the call the serving rule takes from the calibrated distribution."""
    texts: list[str] = []
    served: list[BinDistribution | None] = []
    raw: list[BinDistribution | None] = []
    wall = 0.0
    for scored, seconds in _timed_batches(rows, score_bins, batch_size, clock, "score_bins"):
        wall += seconds
        for distribution in scored:
            shown = None if distribution is None else calibration.apply(distribution)
            raw.append(distribution)
            served.append(shown)
            texts.append(SCAFFOLD if shown is None
                         else SCAFFOLD + call_text(choose_call(shown).code) + SCAFFOLD_ANALYSIS)
        if progress is not None:
            progress(len(texts), len(rows), 0.0)
    return {"predictions": texts, "row_probabilities": served, "raw_probabilities": raw,
            "latency_s": wall / len(rows) if rows else None, "tokens_per_s": None, "new_tokens": 0,
            "prompt_tokens": None, "generation_s": wall}


def consistency(predictions: Sequence[str], served: Sequence[BinDistribution | None]) -> dict:
    """Whether every stated call is the serving rule applied to its own served distribution: `checked` answers
    (those with both a parsed call and a distribution), how many `agree`, and the row indices that do not."""
    checked, disagree = 0, []
    for i, (text, distribution) in enumerate(zip(predictions, served, strict=True)):
        stated = parse_answer(text).move_bin
        if stated is None or distribution is None:
            continue
        checked += 1
        if stated != choose_call(distribution):
            disagree.append(i)
    return {"checked": checked, "agree": checked - len(disagree), "disagree": disagree}


def grounding_report(rows: Sequence[EvalRow], predictions: Sequence[str]) -> dict | None:
    """The grounding rate of the answers (engine.evaluation.evidence.grounding): each Positive Development and Concern
    matched against the news its row's prompt held (parsed from the prompt), plus `rows`, the rows whose prompt had news
    and parsed. None when no row did (news not available: the rate would mean nothing)."""
    claims: list = []
    used = 0
    for row, text in zip(rows, predictions, strict=True):
        try:
            parts = parse_user_prompt(row.user_prompt)
        except PromptError:
            continue
        news = [n for w in parts.weeks for n in w.news]
        if not news:
            continue
        used += 1
        answer, ignore = parse_answer(text), name_words(parts)
        claims += [(claim, news, ignore) for claim in (*answer.positives, *answer.concerns)]
    return {**grounding(claims), "rows": used} if used else None


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
    mode: str = "full",
    score_bins: ScoreBins | None = None,
    calibration: BinCalibration = IDENTITY,
    content_free: BinDistribution | None = None,
    model: str = "",
) -> dict:
    """Score `predictions`, or generate them first with `generate` (batches of chat messages -> results with
    `.text`, `.prompt_tokens`, `.new_tokens`, `.seconds`), then score in our mode or FinGPT-compat mode.

    The report is the scorer's plus `predictions` (the texts scored) and, when generating, `latency_s`
    (mean wall seconds per row), `tokens_per_s` (new tokens over generation wall time), `new_tokens`,
    `prompt_tokens` and `generation_s`; these are None when predictions were given. `progress(done, total,
    tokens_per_s)` is called after each batch. `clock` times the batches (tests pass a fake one). The other
    keywords go to the scorer (`engine.evaluation.metrics.score` / `score_fingpt_compat`).

    Probabilities: with given `predictions`, `probabilities` (one per row: a BinDistribution, a P(up) or None);
    when generating, each result's `bin_distribution`. Our mode scores their P(up) (`calibration`, `abstain`;
    the baselines' probabilities use `rates`, see `engine.evaluation.metrics.score`); FinGPT-compat mode reproduces
    upstream, which had no probabilities, and reports `calibration` None. `probabilities` in the report holds
    each row's as `probability_json` writes it (None per row where there was none).

    `mode` "scaffold" scores the bins after a fixed scaffold with `score_bins` instead of generating (one prefill
    per row: cheap enough for every row on a CPU); its calls are the serving rule on `calibration` applied to
    those scores. Either mode, with raw distributions at hand (generated, or scored), the report gains
    `calibration_fit` (engine.evaluation.calibration_fit: raw / contextual / temperature, cross-fitted by week, with
    `content_free` the content-free prompt's distribution) and, when generating, `consistency` (every stated call
    against the rule on its served distribution). `evidence` names the mode. In full mode, `grounding` is
    `grounding_report`: the share of the answers' items the news in their prompts supports (None without news).
    """
    if not rows:
        raise EngineError("No rows to evaluate.")
    if batch_size < 1:
        raise EngineError(f"batch_size must be at least 1, got {batch_size}.")
    if mode not in MODES:
        raise EngineError(f"Unknown evaluation mode {mode!r}: use one of {', '.join(MODES)}.")
    timing: dict[str, Any] = dict.fromkeys(("latency_s", "tokens_per_s", "new_tokens", "prompt_tokens", "generation_s"))
    raw: Sequence[BinDistribution | None] | None = None
    evidence = {"scaffold": "scaffold", "full": "generated"}[mode] if predictions is None else "saved"
    if mode == "scaffold":
        if score_bins is None:
            raise EngineError("Scaffold mode scores the bins with the model: give score_bins.")
        timing = _scaffold_all(rows, score_bins, calibration, batch_size, progress, clock)
        predictions = timing.pop("predictions")
        probabilities = timing.pop("row_probabilities")
        raw = timing.pop("raw_probabilities")
        rouge = False  # the scaffold's placeholder lists are not the model's
    elif predictions is None:
        if generate is None:
            raise EngineError("Give either predictions to score or a generate function to produce them.")
        timing = _generate_all(rows, generate, batch_size, progress, clock)
        predictions = timing.pop("predictions")
        probabilities = timing.pop("row_probabilities")
        raw = timing.pop("raw_probabilities")
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
    extra: dict[str, Any] = {"evidence": evidence}
    if mode == "full":  # the scaffold's placeholder lists claim nothing
        extra["grounding"] = grounding_report(rows, predictions)
    if raw is not None and any(d is not None for d in raw):
        extra["calibration_fit"] = calibration_fit(rows, raw, content_free=content_free, model=model,
                                                   bootstrap=bootstrap, seed=seed)
        if mode == "full" and probabilities is not None:
            extra["consistency"] = consistency(predictions, [p if isinstance(p, BinDistribution) else None
                                                             for p in probabilities])
    return {**report, **timing, **extra, "predictions": list(predictions), "probabilities": stored}
