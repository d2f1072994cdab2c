"""A prepared dataset folder: what `engine.data.dataset` writes, `engine.training.train` reads back, and a person reads.

The folder holds one `<split>.jsonl` per split, in TRL's conversational prompt/completion format, and a
`manifest.json` (`Manifest`) that says where the rows came from and what was done to them. The manifest is written
last, so a folder that has one is complete; it records each file's sha256, so a split edited afterwards is refused
rather than trained on. A folder is ours to overwrite only when its manifest carries FORMAT.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from engine.exceptions import EngineError

# Written into manifest.json; a folder whose manifest carries it is ours to overwrite.
FORMAT = "fingpt-prepared-dataset/1"
MANIFEST = "manifest.json"
SPLIT_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")  # a split's name is its file's name


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


# ---- writing ------------------------------------------------------------------------------------------------


def _percentile(ordered: list[int], q: float) -> float:
    """Linear interpolation between closest ranks (numpy's default)."""
    at = (len(ordered) - 1) * q
    lo, hi = math.floor(at), math.ceil(at)
    return float(ordered[lo] + (ordered[hi] - ordered[lo]) * (at - lo))


def length_stats(values: list[int]) -> dict | None:
    """min, mean, p50, p95 and max of token lengths, as the manifest's `token_stats` holds them."""
    if not values:
        return None
    ordered = sorted(values)
    return {"min": ordered[0], "mean": round(sum(ordered) / len(ordered), 1),
            "p50": round(_percentile(ordered, 0.5), 1), "p95": round(_percentile(ordered, 0.95), 1), "max": ordered[-1]}


def previous_manifest(out: Path) -> dict | None:
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


def write_splits(out: Path, previous: dict | None, by_split: dict[str, list[dict]]) -> dict[str, dict]:
    """Write one `<split>.jsonl` per split (a JSON line per record), replacing what the `previous` run wrote;
    {split: {"file", "rows", "sha256"}} for the manifest."""
    out.mkdir(parents=True, exist_ok=True)
    if previous is not None:  # remove only what the previous run wrote, manifest first
        (out / MANIFEST).unlink(missing_ok=True)
        for entry in (previous.get("splits") or {}).values():
            name = str(entry.get("file", ""))
            if SPLIT_NAME.match(name.removesuffix(".jsonl")) and name.endswith(".jsonl"):
                (out / name).unlink(missing_ok=True)
    written = {}
    for name in sorted(by_split):
        data = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in by_split[name]).encode("utf-8")
        tmp = out / f".{name}.jsonl.tmp"
        tmp.write_bytes(data)
        os.replace(tmp, out / f"{name}.jsonl")
        written[name] = {"file": f"{name}.jsonl", "rows": len(by_split[name]),
                         "sha256": hashlib.sha256(data).hexdigest()}
    return written


def fingerprint(splits: dict[str, dict]) -> str:
    """One hash over the written split files (name and sha256), in split-name order."""
    digest = hashlib.sha256()
    for name in sorted(splits):
        digest.update(f"{splits[name]['file']}\0{splits[name]['sha256']}\n".encode())
    return "sha256:" + digest.hexdigest()


def write_manifest(manifest: Manifest) -> None:
    """Write `manifest.json` into its folder, atomically: the last file of a preparation."""
    tmp = manifest.out_dir / f".{MANIFEST}.tmp"
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, manifest.out_dir / MANIFEST)


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
