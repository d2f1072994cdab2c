"""Prepare FinGPT-Forecaster rows for training: a self-describing folder that `engine.training.train` reads, nothing
else.

`prepare_dataset(source, out, tokenizer_path=...)` reads rows (prompt, answer, period, label, symbol) with the
evaluator's reader (`engine.data.fingpt_rows`), turns each stored Llama-2 prompt into system + user chat messages with
the wording fixed, counts tokens with the *target model's* chat template (`engine.data.token_budget`), and writes one
`<split>.jsonl` per split in TRL's conversational prompt/completion format plus a `manifest.json` that says where
it came from and what was done (the folder's format and reading it back: `engine.data.prepared`).

What it does differently from upstream (shared/reference/FINGPT_FORMAT.md §6, LLM_NOTES.md §6):
- A row longer than `max_length` keeps its answer whole and loses news items from its oldest weeks instead of
  being dropped (upstream) or having its answer cut off (TRL's "keep_start" truncation). Only a row that cannot
  fit even with every news item gone is dropped, and it is listed with the reason.
- Answers without a parseable prediction are kept by default, but counted and listed by symbol and period.
- Per-ticker chronological test split (`test_weeks`): future weeks never land in training.

Counting is the way TRL counts (`engine.data.token_budget`), and only over-budget rows are re-tokenized while fitting.
The tokenizer (transformers) is imported inside `prepare_dataset`, so importing this module stays light.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from engine.data.fingpt_rows import HF_ID_RE, check_columns, label_bin, read_records
from engine.data.prepared import (
    SPLIT_NAME,
    Manifest,
    fingerprint,
    length_stats,
    previous_manifest,
    write_manifest,
    write_splits,
)
from engine.data.prompts import TEMPLATE_ID, fix_wording, llama_to_messages, messages_to_llama
from engine.data.token_budget import TokenCounter, fit_rows
from engine.exceptions import EngineError
from engine.parsing import parse_answer
from engine.upstream_parser import upstream_parse


@dataclass
class _Row:
    source_split: str
    index: int  # position in its source split, for messages
    symbol: str
    period: str
    label: str
    system: str
    user: str
    answer: str
    split: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    dropped_news: int = 0
    problems: tuple[str, ...] = ()  # why the answer would not teach the format; empty when it parses

    @property
    def total(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def where(self) -> str:
        return f"{self.source_split} row {self.index} ({self.symbol}, {self.period})"

    def ref(self, **extra: Any) -> dict:
        return {"split": self.split or self.source_split, "symbol": self.symbol, "period": self.period, **extra}


# ---- reading ------------------------------------------------------------------------------------------------


def _source_splits(source: str, split: str | None) -> list[tuple[str, list[dict]]]:
    """(split name, records) for every split to read: the one asked for, or all a DatasetDict folder holds."""
    path = Path(source).expanduser()
    if split is not None:
        return [(split, read_records(source, split))]
    if path.is_dir() and (path / "dataset_dict.json").is_file():
        try:
            names = json.loads((path / "dataset_dict.json").read_text())["splits"]
        except (ValueError, KeyError, TypeError) as e:
            raise EngineError(f"{path / 'dataset_dict.json'} is not a DatasetDict index ({e}).") from None
        return [(name, read_records(source, name)) for name in names]
    if path.is_dir():  # a save_to_disk split folder names its split in state.json
        try:
            name = json.loads((path / "state.json").read_text()).get("_split") or "train"
        except (OSError, ValueError, AttributeError):
            name = "train"
        return [(name, read_records(source, name))]
    if path.is_file():
        return [("train", read_records(source, "train"))]
    if HF_ID_RE.match(source) and not source.startswith((".", "~")):
        try:
            import datasets

            names = datasets.get_dataset_split_names(source)
        except Exception as e:  # no `datasets`, no network, unknown id: say so, suggest --split
            raise EngineError(f"Could not list the splits of the Hugging Face dataset {source!r} ({e}); "
                              "pass a split explicitly.") from e
        return [(name, read_records(source, name)) for name in names]
    return [("train", read_records(source, "train"))]  # raises the reader's "not found" message


def _from_conversational(record: dict) -> dict:
    """A row written by `forecaster dataset build` (chat prompt/completion, wording already fixed) in FinGPT's
    column layout, so both kinds of source go through the same checks."""
    return {
        "prompt": messages_to_llama(record["prompt"]),
        "answer": record["completion"][0]["content"] if record.get("completion") else "",
        **{k: record.get(k) for k in ("period", "label", "symbol")},
    }


def _to_rows(name: str, records: list[dict], source: str, wording: str) -> list[_Row]:
    if not records:
        return []
    conversational = isinstance(records[0].get("prompt"), list)
    if conversational:
        records = [_from_conversational(r) for r in records]
    check_columns(records, source, name)
    rows = []
    for i, record in enumerate(records):
        where = f"Dataset {source!r}, {name} row {i} ({record.get('symbol')}, {record.get('period')})"
        bad = [c for c in ("prompt", "period", "label", "symbol") if not isinstance(record.get(c), str)
               or not record[c].strip()]
        if bad:
            raise EngineError(f"{where}: {bad} must be non-empty strings.")
        answer = record.get("answer")
        if answer is not None and not isinstance(answer, str):
            raise EngineError(f"{where}: the answer must be a string, got {type(answer).__name__}.")
        try:
            system, user = (m["content"] for m in llama_to_messages(record["prompt"]))
            if wording == "stock" and not conversational:  # built rows already say "stock price movement"
                user = fix_wording(user)
            label_bin(record["label"])
        except EngineError as e:
            raise type(e)(f"{where}: {e}") from e
        rows.append(_Row(name, i, record["symbol"], record["period"], record["label"], system, user, answer or ""))
    return rows


def _check_answers(rows: list[_Row]) -> None:
    """Note on each row why its answer would not teach the format: empty, or a parser rejects it."""
    for row in rows:
        if not row.answer.strip():
            row.problems = ("empty answer",)
            continue
        forecast = parse_answer(row.answer)
        problems = () if forecast.parsed else forecast.problems or ("does not parse",)
        if upstream_parse(row.answer) is None:
            problems += ("FinGPT's upstream parser rejects it",)
        row.problems = tuple(problems)


def _assign_splits(rows: list[_Row], test_weeks: int) -> None:
    """The last `test_weeks` periods of each symbol go to "test", the rest to "train"; else keep the source's."""
    if test_weeks <= 0:
        for row in rows:
            row.split = row.source_split
        return
    periods: dict[str, set[str]] = {}
    for row in rows:
        periods.setdefault(row.symbol, set()).add(row.period)
    # "YYYY-MM-DD to YYYY-MM-DD" sorts chronologically as text.
    test = {symbol: set(sorted(found)[-test_weeks:]) for symbol, found in periods.items()}
    for row in rows:
        row.split = "test" if row.period in test[row.symbol] else "train"


# ---- the step -----------------------------------------------------------------------------------------------


def prepare_dataset(
    source: str,
    out: Path,
    *,
    tokenizer_path: str,
    split: str | None = None,
    max_length: int = 4096,
    test_weeks: int = 0,
    wording: Literal["stock", "cryptocurrency"] = "stock",
    drop_unparseable: bool = False,
) -> Manifest:
    """Turn FinGPT-format rows into `out/<split>.jsonl` (TRL conversational prompt/completion) and
    `out/manifest.json`.

    - `source`: a save_to_disk split folder, a DatasetDict folder, a .parquet or .jsonl file, or a Hugging Face
      id (the evaluator's reader). With `split=None` every split of a DatasetDict is read and keeps its name;
      a split folder keeps the name in its state.json; a single file becomes "train".
    - `tokenizer_path`: the target model's tokenizer (its chat template decides the token counts).
    - `max_length`: prompt + completion tokens per row, as TRL will count them. Longer rows lose news items from
      their oldest weeks; a row that still does not fit is dropped and listed. The answer is never cut.
    - `test_weeks`: when > 0, re-split chronologically: the last N periods of each symbol are "test".
    - `wording`: "stock" fixes upstream's "cryptocurrency price movement" (exactly once per prompt, or
      PromptError); "cryptocurrency" keeps the dataset's text.
    - `drop_unparseable`: drop rows whose answer is empty or has no parseable prediction (default: keep them;
      either way they are listed in the manifest).

    Raises EngineError for a bad source, missing columns, a bad row, an unusable tokenizer, or a non-empty `out`
    that is not a previous prepared dataset.
    """
    started = time.perf_counter()
    out = Path(out)
    if max_length < 1:
        raise EngineError(f"max_length must be at least 1, got {max_length}.")
    if test_weeks < 0:
        raise EngineError(f"test_weeks must be 0 (keep the source's splits) or more, got {test_weeks}.")
    if wording not in ("stock", "cryptocurrency"):
        raise EngineError(f"wording must be 'stock' or 'cryptocurrency', not {wording!r}.")
    previous = previous_manifest(out)  # before any slow work

    sources = _source_splits(str(source), split)
    names = [name for name, _ in sources]
    bad = [n for n in names if not SPLIT_NAME.match(n)]
    if bad:
        raise EngineError(f"Split names {bad} cannot be file names; use letters, digits, '_', '-' or '.'.")
    rows = [row for name, records in sources for row in _to_rows(name, records, str(source), wording)]
    if not rows:
        raise EngineError(f"Dataset {source!r} has no rows (splits read: {names}).")
    _check_answers(rows)
    _assign_splits(rows, test_weeks)

    tokenizer = _load_tokenizer(tokenizer_path)
    counter = TokenCounter(tokenizer)
    counter.measure(rows)

    over = [r for r in rows if r.total > max_length]
    reasons = fit_rows(over, counter, max_length)
    dropped_rows = [row.ref(reason=reasons[id(row)]) for row in over if id(row) in reasons]
    dropped = set(reasons)
    without_prediction = []
    for row in (r for r in rows if r.problems):
        if drop_unparseable and id(row) not in dropped:
            dropped.add(id(row))
            dropped_rows.append(row.ref(reason="answer has no parseable prediction: " + "; ".join(row.problems)))
        without_prediction.append(row.ref(problems=list(row.problems), kept=id(row) not in dropped))

    by_split: dict[str, list[_Row]] = {name: [] for name in ({r.split for r in rows})}
    for row in rows:
        if id(row) not in dropped:
            by_split[row.split].append(row)
    if not any(by_split.values()):
        reasons = "; ".join(f"{d['symbol']} {d['period']}: {d['reason']}" for d in dropped_rows[:3])
        raise EngineError(f"Every one of the {len(rows)} rows was dropped, nothing written (e.g. {reasons}). "
                          "Raise max_length or use a model with a larger context.")
    splits = write_splits(out, previous, {name: [_record(r) for r in kept] for name, kept in by_split.items()})
    fitted = [r for r in over if id(r) not in dropped]
    manifest = Manifest(
        out_dir=out,
        source=str(source),
        source_splits=names,
        splits=splits,
        template_id=TEMPLATE_ID,
        wording=wording,
        tokenizer={
            "path": str(tokenizer_path),
            "name": getattr(tokenizer, "name_or_path", None),
            "class": type(tokenizer).__name__,
            "vocab_size": len(tokenizer),
            "end_of_turn": tokenizer.eos_token,
            "chat_template_sha256": hashlib.sha256(str(tokenizer.chat_template).encode()).hexdigest(),
        },
        max_length=max_length,
        test_weeks=test_weeks,
        drop_unparseable=drop_unparseable,
        token_stats={
            name: {kind: length_stats([getattr(r, attr) for r in kept])
                   for kind, attr in (("prompt", "prompt_tokens"), ("completion", "completion_tokens"),
                                      ("total", "total"))}
            for name, kept in sorted(by_split.items())
        },
        over_budget=len(over),
        fitted_by_dropping_news={"rows": len(fitted), "news_items": sum(r.dropped_news for r in fitted)},
        dropped_rows=dropped_rows,
        answers_without_prediction=without_prediction,
        fingerprint=fingerprint(splits),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 2),
    )
    write_manifest(manifest)  # written last: a folder with a manifest is complete
    return manifest


def _load_tokenizer(path: str) -> Any:
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
    except Exception as e:  # missing folder, unknown id offline, broken files: one clear message
        raise EngineError(f"Could not load a tokenizer from {path!r} ({type(e).__name__}: {e}). Pass the target "
                          "model's folder or id; its chat template decides the token counts.") from e
    if not getattr(tokenizer, "chat_template", None):
        raise EngineError(f"The tokenizer at {path!r} has no chat template; use the Instruct model's tokenizer.")
    return tokenizer


def _record(row: _Row) -> dict:
    """The JSON line a row becomes in its split file."""
    return {
        "prompt": [{"role": "system", "content": row.system}, {"role": "user", "content": row.user}],
        "completion": [{"role": "assistant", "content": row.answer}],
        "symbol": row.symbol,
        "period": row.period,
        "label": row.label,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "dropped_news": row.dropped_news,
    }
