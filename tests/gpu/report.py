"""The one table `make gpu-test` prints at the end, and the JSON file with every figure.

Every row of `ROWS` is always in the table: measured, or with the reason it was not (skipped, failed, or not run).
The measurements record into `REPORT` (this session's); tests/gpu/conftest.py prints it after the run and writes
the JSON to GPU_TEST_OUT (a file ending in .json, or a folder that gets gpu-test.json; /tmp/gpu-test.json by
default). Pure Python, so the CPU smoke test renders the same table.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

GB = 1e9  # as in docs/MEMORY.md
NO_CUDA = "needs a CUDA GPU (torch.cuda.is_available() is False); run `make gpu-test` on a GPU machine"
BATCH = 8  # MODEL_BATCH_SIZE's default: the digest's batch
DEVICE, DTYPE = "cuda", "bfloat16"  # where the GPU run builds and serves (one place, so a dry run can redirect it)

# Serving rows: "b1" is batch 1, "bN" the batch (BATCH on the GPU; the CPU smoke test runs a smaller one). A label's
# {batch} is filled from the row's figures.
SERVING_ROWS: dict[str, str] = {
    "serve.b1.constrained": "forecast, batch 1, constrained (default), no adapter",
    "serve.bN.constrained": "forecast, batch {batch}, constrained (default), no adapter",
    "serve.b1.free": "forecast, batch 1, free (constrained=False)",
    "serve.bN.free": "forecast, batch {batch}, free (constrained=False)",
    "lora.b1.unmerged": "forecast + LoRA r=8 unmerged, batch 1",
    "lora.b1.merged": "forecast + LoRA r=8 merged, batch 1",
    "lora.bN.unmerged": "forecast + LoRA r=8 unmerged, batch {batch}",
    "lora.bN.merged": "forecast + LoRA r=8 merged, batch {batch}",
}
TRAINING_ROWS: dict[str, str] = {
    "train.1.5b.lora": "training 1.5B LoRA (ours), 4096 tokens",
    "train.1.5b.qlora": "training 1.5B QLoRA (ours), 4096 tokens",
    "train.1.5b.naive": "training 1.5B LoRA naive (full logits), 4096 tokens",
    "train.7b.qlora": "training 7B QLoRA (ours), 4096 tokens",
}
ROWS: dict[str, str] = {**SERVING_ROWS, **TRAINING_ROWS}

COLUMNS = ("measurement", "prompt tok", "new tok", "wall s", "tok/s", "1st section s", "bins s", "peak GB", "note")
LEGEND = (
    "forecasts: Analyst.load(dir, device, dtype) and generate(..., max_new_tokens, on_text), random weights; wall s: "
    "the whole generate call; tok/s: new tokens (all rows) / Generation.seconds (generation only, bins excluded); "
    "1st section s: when on_text first showed a complete section (engine.generation.streaming.written_so_far), "
    "the batch's slowest row, at the product's streaming cadence (engine.generation.model.STREAM_EVERY_S); "
    "bins s: Generation.bin_seconds; peak GB: torch.cuda.max_memory_allocated during the call (weights included).",
    "training: two optimizer steps of engine.training.train.build_trainer (naive: PEFT + plain Trainer) in a fresh "
    "process; prompt tok: the row's tokens; wall s: the second step; tok/s: tokens / second step; peak GB: "
    "max_memory_reserved over the steps (allocated, the memory before the first step and the docs/MEMORY.md "
    "estimate in the note). GB = 1e9 bytes.",
)


def _cell(value, digits: int = 2) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        if math.isnan(value):
            return "NaN"
        return f"{value:,.{digits}f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


class Report:
    def __init__(self) -> None:
        self.rows: dict[str, dict] = {}
        self.context: dict[str, object] = {}  # device, versions, prompts, timings: printed above the table

    def record(self, key: str, **figures) -> None:
        if key not in ROWS:
            raise KeyError(f"{key} is not a row of the GPU table")
        self.rows[key] = {**figures, "status": "measured"}

    def skip(self, keys, reason: str, status: str = "skipped") -> None:
        for key in [keys] if isinstance(keys, str) else keys:
            if key not in ROWS:
                raise KeyError(f"{key} is not a row of the GPU table")
            if self.rows.get(key, {}).get("status") != "measured":
                self.rows[key] = {"status": status, "reason": reason}

    def row(self, key: str, missing: str) -> dict:
        """`missing`: why a row no test recorded was not measured ("skipped: ..." sets the status)."""
        if key in self.rows:
            return self.rows[key]
        status, _, reason = missing.partition(": ") if missing.startswith("skipped: ") else ("", "", missing)
        return {"status": status or "not measured", "reason": reason}

    def label(self, key: str) -> str:
        return ROWS[key].format(batch=self.rows.get(key, {}).get("batch", BATCH))

    def as_json(self, missing: str = "not run") -> dict:
        return {"context": self.context,
                "rows": [{"key": key, "measurement": self.label(key), **self.row(key, missing)} for key in ROWS]}

    def write_json(self, path: Path, missing: str = "not run") -> Path:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(self.as_json(missing), indent=2, default=str) + "\n")
        return path

    def render(self, missing: str = "not run") -> str:
        lines = []
        for name, value in self.context.items():
            lines.append(f"{name}: {value}")
        cells = [list(COLUMNS)]
        for key in ROWS:
            label, r = self.label(key), self.row(key, missing)
            if r["status"] != "measured":
                cells.append([label] + ["—"] * (len(COLUMNS) - 2) + [f"{r['status']}: {r['reason']}"])
                continue
            training = key.startswith("train.")
            cells.append([
                label,
                _cell(r.get("tokens") if training else r.get("prompt_tokens")),
                _cell(None if training else r.get("new_tokens")),
                _cell(r.get("step_s") if training else r.get("wall_s")),
                _cell(r.get("tok_s"), 1),
                _cell(r.get("first_section_s")),
                _cell(r.get("bin_s"), 3),
                _cell(r.get("peak_reserved_gb") if training else r.get("peak_gb")),
                r.get("note", ""),
            ])
        widths = [max(len(row[i]) for row in cells) for i in range(len(COLUMNS) - 1)]

        def line(row: list[str]) -> str:
            return "| " + " | ".join([c.ljust(w) for c, w in zip(row, widths, strict=False)] + [row[-1]]) + " |"

        lines.append(line(cells[0]))
        lines.append("|" + "|".join("-" * (w + 2) for w in widths) + "|---|")
        lines.extend(line(row) for row in cells[1:])
        lines.extend(LEGEND)
        return "\n".join(lines)


def out_path() -> Path:
    """GPU_TEST_OUT: a .json file, or a folder for gpu-test.json; /tmp/gpu-test.json by default."""
    given = os.environ.get("GPU_TEST_OUT")
    if not given:
        return Path("/tmp/gpu-test.json")
    path = Path(given)
    return path if path.suffix == ".json" else path / "gpu-test.json"


REPORT = Report()  # this pytest session's


def timed(name: str, seconds: float) -> None:
    """What a stage of the GPU run took (for its 10-minute budget), printed above the table."""
    timings = REPORT.context.setdefault("stages (s)", {})
    timings[name] = round(seconds, 1)
