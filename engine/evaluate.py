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
from engine.metrics import BaseRates, EvalRow, base_rates, label_bin, score, score_fingpt_compat
from engine.probabilities import ALL_BINS, BinDistribution
from engine.prompts import SYSTEM_PROMPT, fix_wording, llama_to_messages

REQUIRED_COLUMNS = ("prompt", "answer", "period", "label", "symbol")
# Optional columns of a saved predictions file (and of the file --save-predictions writes): the model's P(up),
# and its 12-bin distribution as a JSON object {"U1": p, …, "D5+": p} (engine.probabilities codes).
P_UP_COLUMN = "p_up"
BINS_COLUMN = "bin_probabilities"
HF_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")


class Generation(Protocol):
    """What `generate` returns per prompt (engine.model's generation result has these attributes, and an optional
    `bin_distribution`: a BinDistribution, or None when the backend computed none)."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


# One row's probability: the full distribution, P(up) alone (a saved file with only a p_up column), or none.
RowProbability = BinDistribution | float | None


def p_up_of(probability: RowProbability) -> float | None:
    return probability.p_up if isinstance(probability, BinDistribution) else probability


def probability_json(probability: RowProbability) -> dict | None:
    """A row's probability as the report (and a saved predictions file) stores it."""
    if probability is None:
        return None
    if isinstance(probability, BinDistribution):
        return {P_UP_COLUMN: round(probability.p_up, 6), BINS_COLUMN: probability.to_json()}
    return {P_UP_COLUMN: probability, BINS_COLUMN: None}


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


def _cell_probability(value: object, where: str) -> float | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    try:
        p = float(value)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        raise EngineError(f"{where}: {P_UP_COLUMN} must be a number between 0 and 1, got {value!r}.") from None
    if not 0 <= p <= 1:
        raise EngineError(f"{where}: {P_UP_COLUMN} must lie between 0 and 1, got {p}.")
    return p


def _cell_bins(value: object, where: str) -> BinDistribution | None:
    if value is None or (isinstance(value, str) and not value.strip()):
        return None
    codes = [b.code for b in ALL_BINS]
    try:
        mapping = json.loads(value) if isinstance(value, str) else value
        return BinDistribution({str(code): float(p) for code, p in mapping.items()})
    except (json.JSONDecodeError, AttributeError, TypeError, ValueError) as e:
        raise EngineError(f"{where}: {BINS_COLUMN} must be a JSON object of the 12 bins {codes} with probabilities "
                          f"that sum to 1 ({e}).") from None


def load_probabilities(path: Path, *, expected: int) -> list[RowProbability] | None:
    """The optional probability columns of a predictions file (see `load_predictions`), one per row: `p_up`
    (P(up), 0 to 1) and/or `bin_probabilities` (the 12-bin distribution, a JSON object keyed 'U1' … 'U5+',
    'D1' … 'D5+'; in JSONL it may be an object). The distribution wins when both are there, and they must agree.
    An empty cell is "no probability for this row". None when the file has neither column. The row count was
    already checked by `load_predictions`; the first `expected` rows are read."""
    path = Path(path)
    if path.suffix == ".csv":
        with open(path, encoding="utf-8", newline="") as f:
            records = list(csv.DictReader(f))
    else:
        records = _read_jsonl(path)
    if not any(P_UP_COLUMN in r or BINS_COLUMN in r for r in records):
        return None
    result: list[RowProbability] = []
    for i, record in enumerate(records[:expected]):
        where = f"{path}, row {i + 1}"
        p_up, bins = _cell_probability(record.get(P_UP_COLUMN), where), _cell_bins(record.get(BINS_COLUMN), where)
        if bins is not None and p_up is not None and abs(bins.p_up - p_up) > 1e-3:
            raise EngineError(f"{where}: {P_UP_COLUMN} {p_up} disagrees with the {BINS_COLUMN}' P(up) {bins.p_up:.6f}.")
        result.append(bins if bins is not None else p_up)
    return result


def save_predictions(path: Path, rows: Sequence[EvalRow], report: dict) -> None:
    """Write an evaluation's answers as JSONL that `--predictions` reads back: symbol, period, prediction, and the
    probability columns (`p_up`, `bin_probabilities`; null where the backend gave none)."""
    probabilities = report.get("probabilities") or [None] * len(rows)
    with open(path, "w", encoding="utf-8") as f:
        for row, text, probability in zip(rows, report["predictions"], probabilities, strict=True):
            record = {"symbol": row.symbol, "period": row.period, "prediction": text,
                      **(probability or {P_UP_COLUMN: None, BINS_COLUMN: None})}
            f.write(json.dumps(record, ensure_ascii=False) + "\n")


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


def _aligned(table: list[tuple[str, ...]]) -> list[str]:
    """Rows of cells as text columns, the first left-aligned, the others right-aligned, a rule under the header."""
    widths = [max(len(r[i]) for r in table) for i in range(len(table[0]))]
    lines = []
    for i, row in enumerate(table):
        cells = enumerate(zip(row, widths, strict=True))
        lines.append("  ".join(c.ljust(w) if j == 0 else c.rjust(w) for j, (c, w) in cells))
        if i == 0:
            lines.append("  ".join("-" * w for w in widths))
    return lines


def render_calibration(report: dict, *, model_name: str = "model") -> list[str]:
    """The probability part of the report as text lines: Brier, log loss and ECE of every system's P(up), where
    the baselines' rates come from, and the abstention table. Empty in compat mode (no probabilities there)."""
    calibration = report.get("calibration")
    if not calibration:
        return []
    lines = [f"Calibration of P(up) (truth = the label's direction; ECE over {calibration['ece_bins']} equal-width "
             "bins of P(up); Brier 0.25 and log loss 0.693 = always saying 50%):"]
    table = [("system", "n", "Brier", "log loss", "ECE")]
    systems = [(model_name, calibration["model"]), *calibration["baselines"].items()]
    for name, m in systems:
        table.append((name, str(m["n"]), _num(m["brier"]), _num(m["log_loss"]), _num(m["ece"])) if m
                     else (name, "–", "–", "–", "–"))
    lines += _aligned(table)
    if calibration["model"] is None:
        lines.append(f"  {model_name}: the predictions carry no probabilities")
    elif calibration["model"]["missing"]:
        lines.append(f"  {model_name}: {calibration['model']['missing']} rows without a probability left out")
    for name, m in calibration["baselines"].items():
        if m is None:
            lines.append(f"  {name}: no probability (its rates after an up or a down week need training data: "
                         "--train-dataset / --train-split)")
    rates = calibration.get("base_rates")
    if rates:
        conditional = ("" if rates["after_up"] is None else
                       f", after an up week {rates['after_up']:.3f}, after a down week {rates['after_down']:.3f}")
        warning = (" (IN-SAMPLE: optimistic; pass --train-dataset / --train-split or --train-up-rate)"
                   if rates["in_sample"] else "")
        lines.append(f"baselines' P(up) = base rate of up weeks {rates['up']:.3f}{conditional}; from "
                     f"{rates['source']}{warning}")
    abstain = report.get("abstain")
    if abstain:
        lines.append("Abstaining ('no clear signal') when max(P(up), P(down)) < threshold:")
        table = [("threshold", "covered", "coverage", "accuracy")]
        for row in abstain:
            table.append((f"{row['threshold']:.2f}", str(row["covered"]), f"{100 * row['coverage']:.0f}%",
                          _num(row["accuracy"])))
        lines += _aligned(table)
    return lines


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

    lines += render_calibration(report, model_name=model_name)

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
