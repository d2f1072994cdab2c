"""Forecast speed through the product's own code: `Analyst.load(dir, device=..., dtype=...)` and
`generate(conversations, max_new_tokens=..., on_text=...)`.

`measure_serving` loads four analysts one after the other (constrained, the default; free, `constrained=False`;
with a LoRA adapter unmerged; the same adapter merged), warms each up, then times batch 1 and batch `batch`
(best of `repeats`) and returns the rows of tests/gpu/report.py's table. It takes the model folder, the device and
the dtype, so the CPU smoke test (tests/unit/test_gpu_run.py) runs exactly this on the tiny model; on CUDA it runs
in a child process (tests/gpu/test_serving.py), which keeps the pytest process free of CUDA memory.

    python -m tests.gpu.serving SPEC.json    # the child: measure_serving from a spec, result to spec["result"]
"""

from __future__ import annotations

import gc
import json
import os
import sys
import time
from pathlib import Path

from tests.gpu.report import BATCH, GB

MAX_NEW_TOKENS = int(os.environ.get("GPU_TEST_NEW_TOKENS", "256"))
REPEATS = int(os.environ.get("GPU_TEST_REPEATS", "1"))
WARMUP_TOKENS = 8

# (row prefix, mode, Analyst.load keywords beyond the folder, device and dtype)
_ANALYSTS = (
    ("serve", "constrained", {}),
    ("serve", "free", {"constrained": False}),
    ("lora", "unmerged", {"adapter": True, "merge_adapter": False}),
    ("lora", "merged", {"adapter": True, "merge_adapter": True}),
)


def _slot(size: int) -> str:
    return "b1" if size == 1 else "bN"


def _synchronize(device: str) -> None:
    import torch

    if device.startswith("cuda"):
        torch.cuda.synchronize()


def _free(device: str) -> None:
    import torch

    gc.collect()
    if device.startswith("cuda"):
        torch.cuda.empty_cache()


def _timed(analyst, conversations: list, *, device: str, max_new_tokens: int) -> dict:
    """One generate call with an on_text that notes when each row first shows a complete section."""
    import torch

    from engine.generation.streaming import written_so_far

    first: dict[int, float] = {}
    clock = {"started": 0.0}

    def on_text(row: int, text: str) -> None:
        if row not in first and written_so_far(text).sections >= 1:
            first[row] = time.perf_counter() - clock["started"]

    cuda = device.startswith("cuda")
    _synchronize(device)
    if cuda:
        torch.cuda.reset_peak_memory_stats()
    clock["started"] = time.perf_counter()
    answers = analyst.generate(conversations, max_new_tokens=max_new_tokens, on_text=on_text)
    _synchronize(device)
    wall = time.perf_counter() - clock["started"]
    new_tokens = sum(g.new_tokens for g in answers)
    generate_s = answers[0].seconds
    rows = len(conversations)
    return {
        "batch": rows,
        "prompt_tokens": round(sum(g.prompt_tokens for g in answers) / rows),
        "new_tokens": new_tokens,
        "new_tokens_per_row": [g.new_tokens for g in answers],
        "wall_s": wall,
        "generate_s": generate_s,
        "tok_s": new_tokens / generate_s if generate_s > 0 else None,
        "first_section_s": max(first.values()) if len(first) == rows else None,
        "first_section_min_s": min(first.values()) if first else None,
        "rows_with_a_section": len(first),
        "bin_s": answers[0].bin_seconds,
        "rows_with_bins": sum(g.raw_bin_distribution is not None for g in answers),
        "peak_gb": torch.cuda.max_memory_allocated() / GB if cuda else None,
    }


def _note(row: dict) -> str:
    notes = []
    if row["rows_with_a_section"] < row["batch"]:
        notes.append(f"{row['batch'] - row['rows_with_a_section']} of {row['batch']} rows never showed a section")
    if row["rows_with_bins"] < row["batch"]:
        notes.append(f"{row['batch'] - row['rows_with_bins']} of {row['batch']} rows without bins")
    return "; ".join(notes)


def measure_serving(model_dir: str | Path, conversations: list, *, adapter_dir: str | Path, device: str, dtype: str,
                    max_new_tokens: int = MAX_NEW_TOKENS, repeats: int = REPEATS, batch: int = BATCH) -> dict:
    """The serving rows of the GPU table ({key: figures}), plus "context": what ran. `conversations[0]` is batch 1's
    prompt, `conversations[:batch]` the batch's."""
    import torch

    from engine.generation.model import STREAM_EVERY_S, Analyst
    from engine.generation.scaffold import SCAFFOLD

    if batch < 2 or len(conversations) < batch:
        raise ValueError(f"batch {batch} needs {batch} conversations (and batch >= 2), got {len(conversations)}")
    rows: dict[str, dict] = {}
    context: dict[str, object] = {"stream_every_s": STREAM_EVERY_S, "max_new_tokens": max_new_tokens,
                                  "repeats": repeats, "loads_s": {}}
    for prefix, mode, extra in _ANALYSTS:
        kwargs = dict(extra)
        if kwargs.pop("adapter", False):
            kwargs["adapter"] = Path(adapter_dir)
        started = time.perf_counter()
        analyst = Analyst.load(str(model_dir), device=device, dtype=dtype, **kwargs)
        context["loads_s"][mode] = time.perf_counter() - started
        context["placement"] = f"{analyst.placement.device}, {analyst.placement.dtype} ({analyst.placement.reason})"
        if analyst.merged != (mode == "merged"):
            raise AssertionError(f"{mode}: Analyst.merged is {analyst.merged}")
        for size in (1, batch):  # warm-up: kernels, allocator, thread pools; score_after: the bin-scoring path
            analyst.generate(conversations[:size], max_new_tokens=WARMUP_TOKENS)
            analyst.score_after(conversations[:size], SCAFFOLD)
        for size in (1, batch):
            runs = [_timed(analyst, conversations[:size], device=device, max_new_tokens=max_new_tokens)
                    for _ in range(max(repeats, 1))]
            best = min(runs, key=lambda r: r["generate_s"])
            best["repeats"] = len(runs)
            best["note"] = _note(best) if mode != "free" else ""
            rows[f"{prefix}.{_slot(size)}.{mode}"] = best
        del analyst
        _free(device)
    for slot in ("b1", "bN"):
        none = rows[f"serve.{slot}.constrained"]
        unmerged, merged = rows[f"lora.{slot}.unmerged"], rows[f"lora.{slot}.merged"]
        for mode, row in (("unmerged", unmerged), ("merged", merged)):
            if row["tok_s"] and none["tok_s"]:
                row["vs_no_adapter"] = row["tok_s"] / none["tok_s"]
                extra = f"tok/s x{row['vs_no_adapter']:.2f} of no adapter"
                if mode == "unmerged" and merged["tok_s"]:
                    row["vs_merged"] = row["tok_s"] / merged["tok_s"]
                    extra += f", x{row['vs_merged']:.2f} of merged"
                row["note"] = "; ".join(filter(None, [extra, row["note"]]))
    for slot in ("b1", "bN"):
        free = rows[f"serve.{slot}.free"]
        constrained = rows[f"serve.{slot}.constrained"]
        notes = []
        if free["tok_s"] and constrained["tok_s"]:
            free["constrained_vs_free"] = constrained["tok_s"] / free["tok_s"]
            notes.append(f"constrained tok/s x{free['constrained_vs_free']:.2f} of free")
        if free["rows_with_a_section"] < free["batch"]:
            notes.append("free text from random weights does not follow the format: no section, no bins expected")
        free["note"] = "; ".join(notes)
    context["torch"] = torch.__version__
    return {"rows": rows, "context": context}


def child_main(spec_path: str | Path) -> None:
    spec = json.loads(Path(spec_path).read_text())
    result = measure_serving(spec["model"], spec["conversations"], adapter_dir=spec["adapter"], device=spec["device"],
                             dtype=spec["dtype"], max_new_tokens=spec["max_new_tokens"], repeats=spec["repeats"],
                             batch=spec["batch"])
    Path(spec["result"]).write_text(json.dumps(result))


if __name__ == "__main__":  # the child: python -m tests.gpu.serving SPEC.json
    if len(sys.argv) != 2:
        sys.exit("usage: python -m tests.gpu.serving SPEC.json")
    child_main(sys.argv[1])
