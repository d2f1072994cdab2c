"""FinGPT-Forecaster rows as the datasets store them: where they are read from, their columns, their labels.

A split comes from a save_to_disk split folder, a DatasetDict folder, a .parquet or .jsonl file, or a Hugging Face
id (`read_records`); the rows must carry FinGPT's columns (`check_columns`) and one of its twelve labels
(`label_bin`). `load_eval_rows` turns them into the `EvalRow`s the evaluator and the baselines score. pyarrow and
`datasets` are imported only when a file needs them; no torch, no numpy.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path

from engine.data.prepared import load_manifest, load_prepared
from engine.data.prompts import fix_wording, llama_to_messages
from engine.exceptions import EngineError, PromptError
from engine.market.weeks import MoveBin

REQUIRED_COLUMNS = ("prompt", "answer", "period", "label", "symbol")
HF_ID_RE = re.compile(r"^[A-Za-z0-9][\w.-]*/[\w.-]+$")

# Every label string the dataset uses, lower case as in its `label` column: "up by 2-3%" -> MoveBin.
LABELS: dict[str, MoveBin] = {
    b.label: b for b in (MoveBin(d, k) for d in ("up", "down") for k in range(1, 7))
}


@dataclass(frozen=True)
class EvalRow:
    """One test row: what the model is asked and what actually happened."""

    symbol: str
    period: str  # "YYYY-MM-DD to YYYY-MM-DD", the predicted week; the bootstrap resamples these
    user_prompt: str  # the user message the model is given (wording already fixed to "stock")
    reference: str  # the dataset's answer (GPT-4's, written knowing the label)
    label: str  # the dataset's label column, e.g. "up by 2-3%": the truth in our report


def label_bin(label: str) -> MoveBin:
    """The bin of a dataset label ("up by 2-3%", "Down by more than 5%"). Raises EngineError otherwise.

    Upstream wrote "up by 0" for a zero return (FINGPT_FORMAT.md §3); it is read as "up by 0-1%", the bin we
    give a zero return.
    """
    key = " ".join(label.strip().lower().split())
    if key == "up by 0":
        key = "up by 0-1%"
    try:
        return LABELS[key]
    except KeyError:
        raise EngineError(
            f"Unknown label {label!r}: expected one of the 12 FinGPT labels, e.g. 'up by 2-3%' or "
            "'down by more than 5%'."
        ) from None


# ---- Reading ------------------------------------------------------------------------------------------------


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


def read_jsonl(path: Path) -> list[dict]:
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
            return read_jsonl(path)
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
    .parquet or .jsonl file, a Hugging Face id (needs the `datasets` package), or a folder written by
    `forecaster dataset prepare` (its `split`: with `--test-weeks`, the weeks its train split never saw). The
    stored Llama-2 prompt is unwrapped and its "cryptocurrency price movement" fixed to "stock price movement"
    (exactly once, or PromptError): the model is always prompted with the fixed wording.
    """
    if limit is not None and limit < 1:
        raise EngineError(f"limit must be at least 1, got {limit}.")
    if (Path(dataset).expanduser() / "manifest.json").is_file():
        return _prepared_rows(Path(dataset).expanduser(), split)[:limit]
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


def _prepared_rows(folder: Path, split: str) -> list[EvalRow]:
    """A split of a folder written by `forecaster dataset prepare` (engine.data.dataset), as evaluation rows: what a
    model trained on that folder's other split never saw, prompted exactly as it was prepared (the same news kept
    within its max_length)."""
    wording = load_manifest(folder).get("wording", "stock")
    rows = []
    for i, record in enumerate(load_prepared(folder, split)):
        user = record["prompt"][-1]["content"]
        if wording != "stock":
            try:
                user = fix_wording(user)
            except PromptError as e:
                raise PromptError(f"{folder}, {split} row {i} ({record.get('symbol')}): {e}") from e
        label_bin(record["label"])
        rows.append(EvalRow(symbol=record["symbol"], period=record["period"], user_prompt=user,
                            reference=record["completion"][-1]["content"], label=record["label"]))
    if not rows:
        raise EngineError(f"{folder} has no rows in its {split!r} split.")
    return rows
