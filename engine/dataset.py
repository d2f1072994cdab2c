"""Prepare FinGPT-Forecaster rows for training: a self-describing folder that `engine.train` reads, nothing else.

`prepare_dataset(source, out, tokenizer_path=...)` reads rows (prompt, answer, period, label, symbol) with the
evaluator's reader, turns each stored Llama-2 prompt into system + user chat messages with the wording fixed,
counts tokens with the *target model's* chat template, and writes one `<split>.jsonl` per split in TRL's
conversational prompt/completion format plus a `manifest.json` that says where it came from and what was done.

What it does differently from upstream (shared/reference/FINGPT_FORMAT.md §6, LLM_NOTES.md §6):
- A row longer than `max_length` keeps its answer whole and loses news items from its oldest weeks instead of
  being dropped (upstream) or having its answer cut off (TRL's "keep_start" truncation). Only a row that cannot
  fit even with every news item gone is dropped, and it is listed with the reason.
- Answers without a parseable prediction are kept by default, but counted and listed by symbol and period.
- Per-ticker chronological test split (`test_weeks`): future weeks never land in training.

Counting is the way TRL counts: the prompt is the chat rendered with the generation prompt, the completion is
the rest of the full rendered chat (the answer, the end-of-turn token and whatever the template puts after it).
Only the short completion tail is tokenized on its own, and only over-budget rows are re-tokenized while fitting.
The tokenizer (transformers) is imported inside `prepare_dataset`, so importing this module stays light.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

from engine.evaluate import HF_ID_RE, check_columns, read_records
from engine.exceptions import EngineError, PromptError, PromptTooLong
from engine.metrics import label_bin
from engine.parsing import parse_answer, upstream_parse
from engine.prompts import (
    NEWS_ITEM,
    TEMPLATE_ID,
    PromptParts,
    build_user_prompt,
    drop_oldest_news,  # the order fit_to_budget drops in, so a pre-drop cannot disagree with it
    fit_to_budget,
    fix_wording,
    llama_to_messages,
    messages_to_llama,
    parse_user_prompt,
)

# Written into manifest.json; a folder whose manifest carries it is ours to overwrite.
FORMAT = "fingpt-prepared-dataset/1"
MANIFEST = "manifest.json"
_SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
_REFIT_ROUNDS = 4  # fit_to_budget counts the user text alone; a token merging across its edge needs a re-fit


@dataclass(frozen=True)
class Manifest:
    """What `manifest.json` holds (`to_dict()` is written as is), plus where the folder is."""

    out_dir: Path
    source: str
    source_splits: list[str]
    splits: dict[str, dict]  # name -> {"file", "rows", "sha256"}
    template_id: str
    wording: str
    tokenizer: dict  # path, name, class, vocab_size, end_of_turn, chat_template_sha256
    max_length: int
    test_weeks: int
    drop_unparseable: bool
    token_stats: dict[str, dict]  # split -> {"prompt"|"completion"|"total" -> {min, mean, p50, p95, max}}
    over_budget: int  # rows whose prompt + answer exceeded max_length as stored
    fitted_by_dropping_news: dict  # {"rows": n, "news_items": k}
    dropped_rows: list[dict]  # {"split", "symbol", "period", "reason"}
    answers_without_prediction: list[dict]  # {"split", "symbol", "period", "problems", "kept"}
    fingerprint: str  # "sha256:..." over the written jsonl files (name and bytes), in split-name order
    created: str
    seconds: float
    format: str = FORMAT

    def to_dict(self) -> dict:
        data = asdict(self)
        data.pop("out_dir")
        return {"format": data.pop("format"), **data}

    @property
    def rows(self) -> int:
        return sum(s["rows"] for s in self.splits.values())


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


# ---- tokens -------------------------------------------------------------------------------------------------


class _Counter:
    """Token counts exactly as TRL's prompt/completion path makes them, with as little tokenizing as possible."""

    def __init__(self, tokenizer: Any) -> None:
        self.tok = tokenizer
        # Every added token (special or not) is split out before the model's pre-tokenizer sees the text.
        specials = sorted({t for t in tokenizer.all_special_tokens if t} | set(_added_tokens(tokenizer)),
                          key=len, reverse=True)
        self._special = re.compile("|".join(re.escape(t) for t in specials)) if specials else None

    def ids(self, texts: list[str]) -> list[list[int]]:
        return self.tok(texts, add_special_tokens=False, verbose=False)["input_ids"] if texts else []

    def count(self, text: str) -> int:
        return len(self.ids([text])[0])

    def render(self, system: str, user: str, answer: str | None = None) -> str:
        messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
        if answer is None:
            return self.tok.apply_chat_template(messages, add_generation_prompt=True, tokenize=False)
        messages.append({"role": "assistant", "content": answer})
        return self.tok.apply_chat_template(messages, tokenize=False)

    def measure(self, rows: Sequence[_Row]) -> None:
        """Set each row's prompt and completion token counts. The prompts are tokenized in one batch; the
        completion is counted from the prompt's last special token on (special tokens split the text, so this
        is exact) and the long prompt is never tokenized twice."""
        prompts, heads, tails = [], [], []
        for row in rows:
            prompt = self.render(row.system, row.user)
            full = self.render(row.system, row.user, row.answer)
            if not full.startswith(prompt):
                raise EngineError(
                    "The tokenizer's chat template renders the prompt differently once the answer is appended "
                    f"(at {row.where()}), so prompt/completion training cannot mask the prompt. Use the target "
                    "model's own tokenizer and chat template."
                )
            last = self._last_special_end(prompt)
            prompts.append(prompt)
            heads.append(prompt[last:])
            tails.append(full[last:])
        counts = zip(self.ids(prompts), self.ids(heads), self.ids(tails), strict=True)
        for row, (prompt_ids, head_ids, tail_ids) in zip(rows, counts, strict=True):
            row.prompt_tokens = len(prompt_ids)
            row.completion_tokens = len(tail_ids) - len(head_ids)

    def _last_special_end(self, text: str) -> int:
        if self._special is None:
            return 0
        ends = [m.end() for m in self._special.finditer(text)]
        return ends[-1] if ends else 0


def _added_tokens(tokenizer: Any) -> list[str]:
    decoder = getattr(tokenizer, "added_tokens_decoder", None) or {}
    return [str(t) for t in decoder.values()]


def _news_texts(parts: PromptParts) -> list[str]:
    """Every news item of a prompt as it is rendered, in the order `fit_to_budget` drops them."""
    return [NEWS_ITEM.format(headline=n.headline, summary=n.summary) for w in parts.weeks for n in w.news]


def _predrop(parts: PromptParts, costs: list[int], excess: int) -> tuple[PromptParts, int]:
    """Drop, oldest first, as many news items as surely still leave the prompt over budget, so that
    `fit_to_budget` (which re-tokenizes the whole prompt after every single drop) has only a step or two left.

    `costs` are the items' tokens counted one by one; a margin covers tokens merging across their edges. If the
    estimate ever went too far, `fit_to_budget` finds the prompt already fits and the caller starts over.
    """
    removed = k = 0
    for cost in costs:
        if removed + cost + 2 * (k + 1) + 8 >= excess:
            break
        removed, k = removed + cost, k + 1
    for _ in range(k):
        parts = drop_oldest_news(parts)[0]  # type: ignore[index]  # k <= the number of items
    return parts, k


@dataclass
class _Fitting:
    row: _Row
    original: PromptParts
    user_tokens: int  # of the original user message, counted alone
    budget: int  # for the user message alone
    parts: PromptParts | None = None
    dropped: int = 0


def _fit_rows(rows: Sequence[_Row], counter: _Counter, max_length: int) -> dict[int, str]:
    """Drop news from over-budget rows until prompt + completion fit; {id(row): reason} for those that cannot.

    Each row ends as dropping one item at a time (`fit_to_budget` alone) leaves it: the fewest, oldest items.
    Everything that can be is tokenized in batches across rows; `fit_to_budget` only makes the last step or two.
    """
    reasons: dict[int, str] = {}

    def too_long(row: _Row) -> str:
        return f"{row.total} tokens (prompt {row.prompt_tokens} + answer {row.completion_tokens}) > {max_length}"

    todo = []
    for row, ids in zip(rows, counter.ids([r.user for r in rows]), strict=True):
        overhead = row.prompt_tokens - len(ids)  # system prompt and chat template around the user message
        budget = max_length - row.completion_tokens - overhead
        if budget <= 0:
            reasons[id(row)] = (f"{too_long(row)}: the answer and the chat template alone take "
                                f"{row.completion_tokens + overhead} tokens; the answer is never cut")
            continue
        try:
            todo.append(_Fitting(row, parse_user_prompt(row.user), len(ids), budget))
        except PromptError as e:
            reasons[id(row)] = f"{too_long(row)}, and the prompt could not be parsed to drop news: {e}"

    for _ in range(_REFIT_ROUNDS):
        texts = [_news_texts(f.original) for f in todo]
        costs = iter(counter.ids([t for row_texts in texts for t in row_texts]))
        fitted = []
        for f, row_texts in zip(todo, texts, strict=True):
            parts, skipped = _predrop(f.original, [len(next(costs)) for _ in row_texts], f.user_tokens - f.budget)
            try:
                parts, gone = fit_to_budget(parts, count_tokens=counter.count, max_tokens=f.budget)
                if skipped and not gone:  # the estimate went too far (never seen): one item at a time
                    parts, gone = fit_to_budget(f.original, count_tokens=counter.count, max_tokens=f.budget)
                    skipped = 0
            except PromptTooLong:
                reasons[id(f.row)] = f"{too_long(f.row)}, and still over with every news item dropped; the " \
                    "answer is never cut"
                continue
            f.parts, f.dropped = parts, skipped + len(gone)
            fitted.append(f)
        users = [build_user_prompt(f.parts) for f in fitted]
        prompts = counter.ids([counter.render(f.row.system, user) for f, user in zip(fitted, users, strict=True)])
        todo = []
        for f, user, ids in zip(fitted, users, prompts, strict=True):
            excess = len(ids) + f.row.completion_tokens - max_length
            if excess <= 0:
                f.row.user, f.row.prompt_tokens, f.row.dropped_news = user, len(ids), f.dropped
            else:
                todo.append((f, user, len(ids), excess))
        if not todo:
            break
        # The user message counted alone disagreed with the chat (a token merging across its edge): measure the
        # overhead again on the fitted text, with the count fit_to_budget uses, and fit again to a smaller budget.
        for f, user, prompt_tokens, excess in todo:
            recalibrated = max_length - f.row.completion_tokens - (prompt_tokens - counter.count(user))
            f.budget = recalibrated if recalibrated < f.budget else f.budget - excess
        todo = [f for f, _, _, _ in todo]
    for f in todo:
        reasons[id(f.row)] = f"{too_long(f.row)}, and the counts would not settle after {_REFIT_ROUNDS} re-fits"
    return reasons


# ---- statistics and output ----------------------------------------------------------------------------------


def _percentile(ordered: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    at = (len(ordered) - 1) * q
    lo, hi = math.floor(at), math.ceil(at)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo))


def _stats(values: list[int]) -> dict | None:
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1),
            "p50": round(_percentile(ordered, 0.5), 1), "p95": round(_percentile(ordered, 0.95), 1), "max": ordered[-1]}


def _line(row: _Row) -> str:
    record = {
        "prompt": [{"role": "system", "content": row.system}, {"role": "user", "content": row.user}],
        "completion": [{"role": "assistant", "content": row.answer}],
        "symbol": row.symbol,
        "period": row.period,
        "label": row.label,
        "prompt_tokens": row.prompt_tokens,
        "completion_tokens": row.completion_tokens,
        "dropped_news": row.dropped_news,
    }
    return json.dumps(record, ensure_ascii=False) + "\n"


def _previous_manifest(out: Path) -> dict | None:
    """The manifest of a folder we wrote before, None for a missing or empty folder; raise for anything else."""
    if out.exists() and not out.is_dir():
        raise EngineError(f"{out} exists and is not a folder; give a folder for the prepared dataset.")
    if not out.exists() or not any(out.iterdir()):
        return None
    try:
        manifest = json.loads((out / MANIFEST).read_text(encoding="utf-8"))
        if manifest.get("format") == FORMAT:
            return manifest
    except (OSError, ValueError, AttributeError):
        pass
    raise EngineError(
        f"{out} is not empty and is not a prepared dataset folder (no {MANIFEST} with format {FORMAT!r}); "
        "refusing to overwrite its files. Give a new or empty folder."
    )


def _write(out: Path, previous: dict | None, by_split: dict[str, list[_Row]]) -> dict[str, dict]:
    out.mkdir(parents=True, exist_ok=True)
    if previous is not None:  # remove only what the previous run wrote, manifest first
        (out / MANIFEST).unlink(missing_ok=True)
        for entry in (previous.get("splits") or {}).values():
            name = str(entry.get("file", ""))
            if _SPLIT_NAME.match(name.removesuffix(".jsonl")) and name.endswith(".jsonl"):
                (out / name).unlink(missing_ok=True)
    written = {}
    for name in sorted(by_split):
        data = "".join(_line(r) for r in by_split[name]).encode("utf-8")
        tmp = out / f".{name}.jsonl.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out / f"{name}.jsonl")
        written[name] = {"file": f"{name}.jsonl", "rows": len(by_split[name]),
                         "sha256": hashlib.sha256(data).hexdigest()}
    return written


def _fingerprint(splits: dict[str, dict]) -> str:
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(f"{splits[name]['file']}\0{splits[name]['sha256']}\n".encode())
    return "sha256:" + digest.hexdigest()


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
    previous = _previous_manifest(out)  # before any slow work

    sources = _source_splits(str(source), split)
    names = [name for name, _ in sources]
    bad = [n for n in names if not _SPLIT_NAME.match(n)]
    if bad:
        raise EngineError(f"Split names {bad} cannot be file names; use letters, digits, '_', '-' or '.'.")
    rows = [row for name, records in sources for row in _to_rows(name, records, str(source), wording)]
    if not rows:
        raise EngineError(f"Dataset {source!r} has no rows (splits read: {names}).")
    _check_answers(rows)
    _assign_splits(rows, test_weeks)

    tokenizer = _load_tokenizer(tokenizer_path)
    counter = _Counter(tokenizer)
    counter.measure(rows)

    over = [r for r in rows if r.total > max_length]
    reasons = _fit_rows(over, counter, max_length)
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
    splits = _write(out, previous, by_split)
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
            name: {kind: _stats([getattr(r, attr) for r in kept])
                   for kind, attr in (("prompt", "prompt_tokens"), ("completion", "completion_tokens"),
                                      ("total", "total"))}
            for name, kept in sorted(by_split.items())
        },
        over_budget=len(over),
        fitted_by_dropping_news={"rows": len(fitted), "news_items": sum(r.dropped_news for r in fitted)},
        dropped_rows=dropped_rows,
        answers_without_prediction=without_prediction,
        fingerprint=_fingerprint(splits),
        created=dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        seconds=round(time.perf_counter() - started, 2),
    )
    tmp = out / f".{MANIFEST}.tmp"  # written last: a folder with a manifest is complete
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, out / MANIFEST)
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


# ---- reading back and reporting -----------------------------------------------------------------------------


def load_manifest(path: Path) -> dict:
    """The manifest of a prepared dataset folder; EngineError when `path` is not one."""
    path = Path(path)
    try:
        manifest = json.loads((path / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise EngineError(f"{path} is not a prepared dataset (no {MANIFEST}); run the dataset prepare step "
                          "(`prepare_dataset`) first.") from None
    except ValueError as e:
        raise EngineError(f"{path / MANIFEST} is not valid JSON ({e}); prepare the dataset again.") from None
    if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
        raise EngineError(f"{path / MANIFEST} is not a prepared dataset manifest (format {FORMAT!r}).")
    return manifest


def load_prepared(path: Path, split: str) -> list[dict]:
    """The rows of one split of a prepared dataset folder, as written. The file must match its manifest hash."""
    path = Path(path)
    manifest = load_manifest(path)
    entry = manifest.get("splits", {}).get(split)
    if entry is None:
        raise EngineError(f"{path} has no {split!r} split (it has {sorted(manifest.get('splits', {}))}).")
    file = path / entry["file"]
    try:
        data = file.read_bytes()
    except FileNotFoundError:
        raise EngineError(f"{file} is missing although {MANIFEST} lists it; prepare the dataset again.") from None
    if hashlib.sha256(data).hexdigest() != entry["sha256"]:
        raise EngineError(f"{file} changed after it was prepared (its sha256 no longer matches {MANIFEST}); "
                          "prepare the dataset again rather than editing it.")
    return [json.loads(line) for line in data.decode("utf-8").splitlines() if line.strip()]


def _triple(stats: dict | None) -> str:
    return "–" if not stats else f"{stats['p50']:.0f}/{stats['p95']:.0f}/{stats['max']}"


def render_summary(manifest: Manifest | dict, *, limit: int = 10) -> list[str]:
    """A prepared dataset in a few plain text lines: splits with token lengths (p50/p95/max), what was fitted
    or dropped, and the answers without a prediction (at most `limit` of each listed)."""
    m = manifest.to_dict() if isinstance(manifest, Manifest) else manifest
    tok = m["tokenizer"]
    lines = [f"Prepared {sum(s['rows'] for s in m['splits'].values())} rows from {m['source']} "
             f"(template {m['template_id']}, wording {m['wording']!r}, tokenizer {tok.get('name') or tok['path']}, "
             f"max_length {m['max_length']})"]
    table = [("split", "rows", "prompt p50/p95/max", "completion p50/p95/max", "total p50/p95/max")]
    for name, entry in sorted(m["splits"].items()):
        stats = m["token_stats"].get(name) or {}
        table.append((name, str(entry["rows"]), _triple(stats.get("prompt")), _triple(stats.get("completion")),
                      _triple(stats.get("total"))))
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    for row in table:
        lines.append("  " + "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                                      for i, (c, w) in enumerate(zip(row, widths, strict=True))))
    fitted = m["fitted_by_dropping_news"]
    lines.append(f"over max_length: {m['over_budget']} rows; fitted {fitted['rows']} by dropping "
                 f"{fitted['news_items']} news items; dropped {len(m['dropped_rows'])} rows")
    for entry in m["dropped_rows"][:limit]:
        lines.append(f"  dropped {entry['symbol']} {entry['period']} ({entry['split']}): {entry['reason']}")
    missing = m["answers_without_prediction"]
    if missing:
        kept = sum(1 for e in missing if e["kept"])
        lines.append(f"answers without a parseable prediction: {len(missing)} ({kept} kept)")
        for entry in missing[:limit]:
            lines.append(f"  {entry['symbol']} {entry['period']} ({entry['split']}): {'; '.join(entry['problems'])}")
    if len(m["dropped_rows"]) > limit or len(missing) > limit:
        lines.append(f"  … the full lists are in {MANIFEST}")
    lines.append(f"fingerprint {m['fingerprint']}")
    return lines
