"""GPU: bf16 forecasts on the Qwen2.5-1.5B shape through the product's own code, batch 1 and batch 8.

Needs a CUDA GPU; skipped (with the reason shown) everywhere else. `make gpu-test` runs it with the training peaks
and prints one table (tests/gpu/conftest.py). What it does, without downloading anything:
- the Qwen2.5-1.5B shape with random bf16 weights and a rank-8 LoRA adapter on all seven projections (built once
  per session on the GPU, in a child process), served beside the tiny test tokenizer trained on the FinGPT
  prompts so a prompt's token count is realistic;
- 8 prompts of ~1.8k tokens (the FinGPT test split's when it is on the machine, else synthetic ones);
- in one child process, tests/gpu/serving.measure_serving: `Analyst.load(dir, device="cuda", dtype="bfloat16")`
  constrained (the default), free (`constrained=False`), with the adapter unmerged and merged; each warmed up, then
  `generate(..., max_new_tokens=256, on_text=...)` at batch 1 and 8: wall time, tokens/s, time to the first
  complete section, bin scoring seconds, the CUDA peak.

GPU_TEST_NEW_TOKENS and GPU_TEST_REPEATS (best of N) override the defaults. The same function runs on the CPU
with a tiny model in the normal suite (tests/unit/test_gpu_run.py).
"""

from __future__ import annotations

import pytest
import torch

from tests.gpu import report
from tests.gpu.children import ChildFailed, run_child
from tests.gpu.report import BATCH, NO_CUDA, REPORT, SERVING_ROWS, timed
from tests.gpu.serving import MAX_NEW_TOKENS, REPEATS

pytestmark = pytest.mark.skipif(not torch.cuda.is_available(), reason=NO_CUDA)

SERVING_TIMEOUT_S = 480


def test_bf16_forecasts_batch_1_and_8(serving_setup, gpu_workdir):
    spec = {"model": str(serving_setup["model"]), "adapter": str(serving_setup["adapter"]),
            "conversations": serving_setup["conversations"], "device": report.DEVICE, "dtype": report.DTYPE,
            "max_new_tokens": MAX_NEW_TOKENS, "repeats": REPEATS, "batch": BATCH}
    try:
        result = run_child("tests.gpu.serving", spec, gpu_workdir / "serving", timeout=SERVING_TIMEOUT_S)
    except ChildFailed as exc:
        REPORT.skip(list(SERVING_ROWS), f"{exc.args[0]} (its stderr is in the failure above)", status="failed")
        pytest.fail(str(exc))
    timed("forecasts: 4 loads, warm-ups, timed calls", result["child_s"])
    context = result["context"]
    REPORT.context["forecasts"] = (
        f"{context['placement']}; max_new_tokens {context['max_new_tokens']}, best of {context['repeats']} after a "
        f"warm-up; loads {', '.join(f'{k} {v:.1f} s' for k, v in context['loads_s'].items())}; on_text every "
        f"{context['stream_every_s']} s")
    rows = result["rows"]
    for key, figures in rows.items():
        REPORT.record(key, **figures)
    print()
    for key, r in rows.items():
        first = "never" if r["first_section_s"] is None else f"{r['first_section_s']:.2f} s"
        bins = "none" if r["bin_s"] is None else f"{r['bin_s']:.3f} s"
        peak = "-" if r["peak_gb"] is None else f"{r['peak_gb']:.2f} GB"
        print(f"{key}: batch {r['batch']}, prompt {r['prompt_tokens']} tokens, {r['new_tokens']} new tokens in "
              f"{r['wall_s']:.2f} s ({r['tok_s'] or 0:.1f} tok/s), first section {first}, bins {bins}, peak {peak}; "
              f"{r['note']}")

    assert set(rows) == set(SERVING_ROWS)
    for key, r in rows.items():
        assert r["new_tokens"] > 0 and r["tok_s"] > 0, key
        if not key.endswith(".free"):  # constrained: the format is forced, so every row shows sections and bins
            assert r["rows_with_a_section"] == r["batch"], f"{key}: {r['note']}"
            assert r["rows_with_bins"] == r["batch"], f"{key}: {r['note']}"
