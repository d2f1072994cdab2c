"""Predictions files: the answers (and their probabilities) an evaluation scores, read and written.

A saved predictions file is CSV or JSONL, one row per evaluated dataset row and in dataset order; `--predictions`
reads it back, `--save-predictions` writes it. Next to the answer text it may carry the model's P(up) and its
12-bin distribution, which `RowProbability` holds per row and `probability_json` stores in a report.
"""

from __future__ import annotations

import csv
import json
from collections.abc import Sequence
from pathlib import Path

from engine.data.fingpt_rows import EvalRow, read_jsonl
from engine.exceptions import EngineError
from engine.probabilities import ALL_BINS, BinDistribution

# Optional columns of a saved predictions file (and of the file --save-predictions writes): the model's P(up),
# and its 12-bin distribution as a JSON object {"U1": p, …, "D5+": p} (engine.probabilities codes).
P_UP_COLUMN = "p_up"
BINS_COLUMN = "bin_probabilities"

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
        records = read_jsonl(path)
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
        records = read_jsonl(path)
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
