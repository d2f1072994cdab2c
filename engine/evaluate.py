"""Evaluation runs: load test rows and predictions, generate with a model passed in, score, render a table.

No torch here: the caller loads the model and passes `generate`, so this module (and its tests) run on any
machine. Scoring is `engine.metrics`; see shared/reference/FINGPT_FORMAT.md §7 for what a report must hold.
"""

from __future__ import annotations

import csv
import json
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, Protocol

from engine.exceptions import EngineError, PromptError
from engine.metrics import EvalRow, label_bin, score, score_fingpt_compat
from engine.prompts import SYSTEM_PROMPT, fix_wording, llama_to_messages

REQUIRED_COLUMNS = ("prompt", "answer", "period", "label", "symbol")
HF_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Generation(Protocol):
    """What `generate` returns per prompt (engine.model's generation result has these attributes)."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


Generate = Callable[[list[list[dict]]], Sequence[Generation]]
Progress = Callable[[int, int, float], None]


# ---- Loading rows -------------------------------------------------------------------------------------------


def _read_arrow_folder(folder: Path) -> list[dict]:
    import pyarrow as pa
    import pyarrow.ipc

    files = sorted(folder.glob("data-*.arrow"))
    if not files:
        raise EngineError(
            f"{folder} holds no data-*.arrow files: expected a split folder written by datasets' save_to_disk "
            "(data-00000-of-00001.arrow, state.json), or a DatasetDict folder with dataset_dict.json."
        )
    tables = []
    for file in files:
        with open(file, "rb") as f:
            tables.append(pyarrow.ipc.open_stream(f).read_all())
    return pa.concat_tables(tables).to_pylist()


def _read_jsonl(path: Path) -> list[dict]:
    records = []
    with open(path, encoding="utf-8") as f:
        for number, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as e:
                raise EngineError(
                    f"{path}, line {number}: not valid JSON ({e.msg}); expected one object per line."
                ) from None
            if not isinstance(record, dict):
                raise EngineError(f"{path}, line {number}: expected a JSON object, got {type(record).__name__}.")
            records.append(record)
    return records


def _read_hub(dataset: str, split: str) -> list[dict]:
    try:
        import datasets
    except ImportError:
        raise EngineError(
            f"{dataset!r} is not a local path, so it was taken for a Hugging Face dataset id, but the `datasets` "
            "package is not installed. Run `pip install datasets`, or on a connected machine save the split "
            f"with `datasets.load_dataset({dataset!r}, split={split!r}).save_to_disk(FOLDER)` and pass FOLDER."
        ) from None
    try:
        return datasets.load_dataset(dataset, split=split).to_list()
    except Exception as e:  # network, unknown id or split: one clear message, the cause chained
        raise EngineError(f"Could not load split {split!r} of the Hugging Face dataset {dataset!r}: {e}") from e


def read_records(dataset: str, split: str) -> list[dict]:
    path = Path(dataset).expanduser()
    if path.is_dir():
        if (path / "dataset_dict.json").is_file():
            if not (path / split).is_dir():
                found = sorted(p.name for p in path.iterdir() if p.is_dir())
                raise EngineError(f"{path} is a DatasetDict without a {split!r} split (it has {found}).")
            path = path / split
        return _read_arrow_folder(path)
    if path.is_file():
        if path.suffix == ".parquet":
            import pyarrow.parquet

            return pyarrow.parquet.read_table(path).to_pylist()
        if path.suffix in (".jsonl", ".json"):
            return _read_jsonl(path)
        raise EngineError(f"{path}: unsupported file type {path.suffix!r}; expected .parquet or .jsonl.")
    if HF_ID_RE.match(dataset) and not dataset.startswith((".", "~")):
        return _read_hub(dataset, split)
    raise EngineError(
        f"Dataset {dataset!r} not found: expected a save_to_disk split folder, a DatasetDict folder, a .parquet "
        "or .jsonl file, or a Hugging Face id like 'FinGPT/fingpt-forecaster-dow30-202305-202405'."
    )


def check_columns(records: list[dict], source: str, split: str) -> None:
    """Raise a clear EngineError unless the rows carry FinGPT-Forecaster's columns."""
    missing = [c for c in REQUIRED_COLUMNS if c not in records[0]]
    if missing:
        raise EngineError(
            f"Dataset {source!r} (split {split!r}) lacks the columns {missing}: expected {list(REQUIRED_COLUMNS)} "
            f"(FinGPT-Forecaster format), found {sorted(records[0])}."
        )


def load_eval_rows(dataset: str, split: str = "test", limit: int | None = None) -> list[EvalRow]:
    """FinGPT-style rows (columns prompt, answer, period, label, symbol), in dataset order, first `limit`.

    `dataset` is a save_to_disk split folder, a DatasetDict folder (its `split` subfolder is used), a
    .parquet or .jsonl file, or a Hugging Face id (needs the `datasets` package). The stored Llama-2 prompt
    is unwrapped and its "cryptocurrency price movement" fixed to "stock price movement" (exactly once, or
    PromptError): the model is always prompted with the fixed wording.
    """
    if limit is not None and limit < 1:
        raise EngineError(f"limit must be at least 1, got {limit}.")
    records = read_records(str(dataset), split)
    if not records:
        raise EngineError(f"Dataset {dataset!r} (split {split!r}) has no rows.")
    check_columns(records, dataset, split)
    rows = []
    for i, record in enumerate(records[:limit]):
        where = f"Dataset row {i} ({record.get('symbol')}, {record.get('period')})"
        if any(not isinstance(record[c], str) or not record[c] for c in REQUIRED_COLUMNS):
            raise EngineError(f"{where}: every one of {list(REQUIRED_COLUMNS)} must be a non-empty string.")
        try:
            user = fix_wording(llama_to_messages(record["prompt"])[1]["content"])
        except PromptError as e:
            raise PromptError(f"{where}: {e}") from e
        label_bin(record["label"])  # fail now on an unknown label, not after an hour of generation
        rows.append(EvalRow(
            symbol=record["symbol"], period=record["period"], user_prompt=user,
            reference=record["answer"], label=record["label"],
        ))
    return rows


# ---- Loading predictions ------------------------------------------------------------------------------------


def load_predictions(path: Path, *, column: str = "prediction", expected: int, allow_more: bool = False) -> list[str]:
    """Answer texts from a CSV or JSONL file, one per evaluated row and in dataset order.

    The file must hold exactly `expected` rows. With `allow_more` (a `--limit N` run, `expected` = N) a
    longer file is accepted and its first `expected` rows are used. An empty or null cell reads as "" and
    will count as unparsed.
    """
    path = Path(path)
    if not path.is_file():
        raise EngineError(f"Predictions file {path} not found.")
    if path.suffix == ".csv":
        try:
            with open(path, encoding="utf-8", newline="") as f:
                reader = csv.DictReader(f)
                records = list(reader)
                columns = reader.fieldnames or []
        except csv.Error as e:
            raise EngineError(f"{path}: not a readable CSV ({e}).") from e
    elif path.suffix in (".jsonl", ".json"):
        records = _read_jsonl(path)
        columns = sorted({k for r in records for k in r})
    else:
        raise EngineError(f"{path}: unsupported predictions file type {path.suffix!r}; expected .csv or .jsonl.")
    if records and column not in columns:
        raise EngineError(f"{path} has no {column!r} column (it has {list(columns)}); pass the right column name.")
    if len(records) < expected or (len(records) > expected and not allow_more):
        hint = " (with --limit, a file with at least that many rows is accepted)" if not allow_more else ""
        raise EngineError(
            f"{path} holds {len(records)} predictions but {expected} rows are evaluated{hint}. Predictions pair "
            "with dataset rows by position, so the file must come from the same split in the same order."
        )
    return [str(r.get(column) or "") for r in records[:expected]]


# ---- Running ------------------------------------------------------------------------------------------------


def messages_for(row: EvalRow) -> list[dict]:
    """The chat the model is given for a row: FinGPT's system prompt and the (fixed-wording) user prompt."""
    return [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": row.user_prompt}]


def _generate_all(
    rows: Sequence[EvalRow], generate: Generate, batch_size: int, progress: Progress | None, clock: Callable[[], float]
) -> dict:
    texts: list[str] = []
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
        new_tokens += sum(int(r.new_tokens) for r in results)
        prompt_tokens += sum(int(r.prompt_tokens) for r in results)
        if progress is not None:
            progress(len(texts), len(rows), new_tokens / wall if wall > 0 else 0.0)
    return {
        "predictions": texts,
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
    generate: Generate | None = None,
    fingpt_compat: bool = False,
    batch_size: int = 8,
    progress: Progress | None = None,
    train_majority: str | None = None,
    baselines: bool = True,
    bootstrap: int = 2000,
    seed: int = 0,
    rouge: bool = True,
    clock: Callable[[], float] = time.perf_counter,
) -> dict:
    """Score `predictions`, or generate them first with `generate` (batches of chat messages -> results with
    `.text`, `.prompt_tokens`, `.new_tokens`, `.seconds`), then score in our mode or FinGPT-compat mode.

    The report is the scorer's plus `predictions` (the texts scored) and, when generating, `latency_s`
    (mean wall seconds per row), `tokens_per_s` (new tokens over generation wall time), `new_tokens`,
    `prompt_tokens` and `generation_s`; these are None when predictions were given. `progress(done, total,
    tokens_per_s)` is called after each batch. `clock` times the batches (tests pass a fake one). The other
    keywords go to the scorer (`engine.metrics.score` / `score_fingpt_compat`).
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
    elif len(predictions) != len(rows):
        raise EngineError(f"{len(predictions)} predictions for {len(rows)} rows: they must pair up one to one.")
    scorer = score_fingpt_compat if fingpt_compat else score
    report = scorer(rows, list(predictions), baselines=baselines, train_majority=train_majority,
                    bootstrap=bootstrap, seed=seed, rouge=rouge)
    return {**report, **timing, "predictions": list(predictions)}


# ---- Rendering ----------------------------------------------------------------------------------------------


def _num(value: float | None, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _accuracy_all(metrics: dict) -> str:
    if "binary_accuracy_all" not in metrics:
        return "–"
    ci = metrics.get("ci95_binary_accuracy_all")
    text = _num(metrics["binary_accuracy_all"])
    return text + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def _accuracy_parsed(metrics: dict) -> str:
    ci = metrics.get("ci95_binary_accuracy")  # compat mode's interval is over the kept pairs
    return _num(metrics.get("binary_accuracy")) + (f" [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else "")


def render_report(report: dict, *, model_name: str = "model") -> list[str]:
    """The report as plain text lines: a table (model row first, baselines below, same columns), then ROUGE
    per section, parse failures and speed. Pure: print the lines, or put them in a code block."""
    compat = report.get("mode") == "fingpt_compat"
    header = ("system", "n", "parsed", "acc(parsed)", "acc(all) [95% CI]", "MSE", "MCC")
    table = [header]
    for name, metrics in [(model_name, report), *report.get("baselines", {}).items()]:
        table.append((
            name, str(metrics.get("n", "–")), str(metrics.get("parsed", "–")), _accuracy_parsed(metrics),
            _accuracy_all(metrics), _num(metrics.get("mse"), 2), _num(metrics.get("mcc")),
        ))
    widths = [max(len(r[i]) for r in table) for i in range(len(header))]
    lines = [
        "FinGPT-compatible scoring (upstream calc_metrics: pairs where both answer and reference parse)"
        if compat else "Our scoring (truth = label column; unparsed counts wrong in acc(all))"
    ]
    for i, row in enumerate(table):
        cells = zip(row, widths, strict=True)
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in enumerate(cells)))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))

    rouge = report.get("rouge")
    if rouge:
        where = "kept pairs" if compat else f"{report.get('rouge_rows', '?')} rows whose reference parses"
        lines.append(f"ROUGE F1 ({where}):")
        for section, scores in rouge.items():
            lines.append(f"  {section:<9} " + "  ".join(f"{k} {v:.3f}" for k, v in scores.items()))
    else:
        lines.append("ROUGE: – (nothing to score)")

    counts = report.get("direction_counts")
    if counts:
        line = "predicted directions: " + ", ".join(f"{k} {v}" for k, v in counts.items())
        if "label_counts" in report:
            line += "; truth: " + ", ".join(f"{k} {v}" for k, v in report["label_counts"].items())
        lines.append(line)
    if "parse_failures" in report:
        lines.append(f"parse failures: {len(report['parse_failures'])} of {report['n']}")
    else:
        dropped = report["n"] - report["parsed"]
        lines.append(f"rows dropped (answer or reference unparseable): {dropped} of {report['n']}")
    if report.get("latency_s") is not None:
        lines.append(f"latency {report['latency_s']:.2f} s/row, {report['tokens_per_s']:.1f} new tokens/s")
    return lines
