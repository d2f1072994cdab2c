"""Benchmark on real weights: the CPU paths the worker can take, side by side in one run.

For each path (fp32; bf16 where the CPU has native bf16; int8 weights with fp32 or bf16 compute — MODEL_QUANTIZE),
loaded through the product's `Analyst.load`, it measures:
- prefill tokens/s on a real ~2k-token FinGPT prompt, and decode tokens/s at that context;
- decode tokens/s with one torch thread against all of them (is leaving a core to the bot worth it?);
- whether the answers survive the numerics: on six real rows (STATED_CALL_WEEK's tickers), the 12-bin distribution
  after the fixed scaffold (engine.generation.scaffold, one prefill per row) against fp32's: the stated call
  (engine.probabilities.choose_call) equal in how many of 6, and the largest |ΔP(up)|;
- one whole forecast (two-phase constrained generation, MODEL_MAX_NEW_TOKENS at most) and its wall time, with the
  answer printed to be read.
Then one table with each path's ratio to fp32 and to the llama.cpp Q4_K_M figures issue 21 measured on a Xeon
(69 / 12.1 tok/s: another CPU, so a rough yardstick only).

    REAL_MODEL_DIR=../real-qwen .venv/bin/python -m pytest tests/bench/test_cpu_paths.py -s
    CPU_PATHS=bf16,int8-fp32 ...   # others (fp32 is always measured: it is the baseline)

On this project's 2-core EPYC (avx512_bf16, no AMX) the whole run takes ~30 minutes; nothing else should be running.
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass

import pytest
import torch

from engine.data.prompts import SYSTEM_PROMPT, fix_wording, llama_to_messages
from engine.generation.model import Analyst
from engine.generation.placement import CPU_BF16_FLAGS, read_cpu_flags
from engine.generation.scaffold import SCAFFOLD
from engine.generation.streaming import written_so_far
from engine.probabilities import choose_call
from tests.real.weights import missing_reason, real_model_dir

WEEK = os.environ.get("STATED_CALL_WEEK", "2024-04-21 to 2024-04-28")
TICKERS = ("AAPL", "AMGN", "MMM", "MSFT", "CVX", "JNJ")
MAX_NEW_TOKENS = int(os.environ.get("BENCH_MAX_NEW_TOKENS", "700"))
DECODE_STEPS = 32
LLAMA_CPP = (69.0, 12.1)  # Q4_K_M prefill / decode tok/s, issue 21's Xeon (AMX), 2 threads
PATHS = {  # name -> (dtype, quantize)
    "fp32": ("float32", "none"),
    "bf16": ("bfloat16", "none"),
    "int8-fp32": ("float32", "int8"),
    "int8-bf16": ("bfloat16", "int8"),
}


@dataclass
class Measured:
    path: str
    load_s: float
    prefill_tps: float
    decode_tps: float
    decode_tps_one_thread: float
    forecast_s: float
    forecast_tokens: int
    calls: list[str]
    p_up: list[float]
    answer: str
    first_section_s: float | None  # from the call to the first complete section (the positives) on screen
    prefill_s: float  # the forecast prompt's prefill, as measured above


def _conversations(rows: list[dict]) -> list[list[dict]]:
    return [[{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": fix_wording(llama_to_messages(r["prompt"])[1]["content"])}] for r in rows]


def _ids(analyst: Analyst, conversation: list[dict]) -> torch.Tensor:
    return analyst.tokenizer(analyst.render(conversation), return_tensors="pt", add_special_tokens=False)["input_ids"]


def _decode_rates(analyst: Analyst, ids: torch.Tensor) -> tuple[float, float]:
    """Greedy decode tokens/s after this prompt's prefill: DECODE_STEPS steps on all torch threads, then as many on
    one thread. Each step is timed alone (not as a difference of two whole runs, which a busy machine's noise in
    the prefill swamps)."""
    from transformers import DynamicCache

    cache = DynamicCache(config=analyst.model.config)
    with torch.inference_mode():
        logits = analyst.model(input_ids=ids, cache=cache, use_cache=True, logits_to_keep=1).logits
        token = logits[:, -1:].argmax(-1)

        def steps() -> float:
            nonlocal token
            started = time.perf_counter()
            for _ in range(DECODE_STEPS):
                token = analyst.model(input_ids=token, cache=cache, use_cache=True).logits[:, -1:].argmax(-1)
            return DECODE_STEPS / (time.perf_counter() - started)

        every_thread = steps()
        threads = torch.get_num_threads()
        torch.set_num_threads(1)
        try:
            one_thread = steps()
        finally:
            torch.set_num_threads(threads)
    return every_thread, one_thread


def _measure(path: str, folder, conversations: list[list[dict]]) -> Measured:
    dtype, quantize = PATHS[path]
    started = time.perf_counter()
    analyst = Analyst.load(str(folder), device="cpu", dtype=dtype, quantize=quantize)
    load_s = time.perf_counter() - started
    ids = _ids(analyst, conversations[0])
    with torch.inference_mode():
        analyst.model(ids[:, :64])  # warm-up: oneDNN builds its kernels on the first call of a shape family
        started = time.perf_counter()
        analyst.model(ids, logits_to_keep=1)
        prefill_tps = ids.shape[1] / (time.perf_counter() - started)
    decode_tps, decode_one = _decode_rates(analyst, ids)
    scored = analyst.score_after(conversations, SCAFFOLD)
    first_section: list[float] = []

    def on_text(_row: int, text: str) -> None:
        if not first_section and written_so_far(text).sections >= 1:
            first_section.append(time.perf_counter() - started)

    started = time.perf_counter()
    [generation] = analyst.generate(conversations[:1], max_new_tokens=MAX_NEW_TOKENS, on_text=on_text)
    forecast_s = time.perf_counter() - started
    measured = Measured(path, load_s, prefill_tps, decode_tps, decode_one, forecast_s, generation.new_tokens,
                        [choose_call(d).code for d in scored], [d.p_up for d in scored], generation.text,
                        first_section[0] if first_section else None, ids.shape[1] / prefill_tps)
    print(f"\n{path}: load {load_s:.0f}s, prefill {prefill_tps:.1f} tok/s ({ids.shape[1]} tokens), decode "
          f"{decode_tps:.2f} tok/s ({decode_one:.2f} on 1 thread), forecast {forecast_s:.0f}s "
          f"({generation.new_tokens} new tokens, first section after "
          f"{measured.first_section_s if measured.first_section_s is not None else float('nan'):.0f}s, prefill "
          f"{measured.prefill_s:.0f}s); calls {' '.join(measured.calls)}; load average "
          f"{os.getloadavg()[0]:.1f} (other work on the machine slows every figure)", flush=True)
    del analyst
    return measured


def test_cpu_paths_speed_and_agreement(fingpt_test_rows):
    folder = real_model_dir()
    if folder is None:
        pytest.skip(missing_reason())
    native = set(CPU_BF16_FLAGS) & read_cpu_flags()
    # By default the paths the worker would take on this CPU: bf16 and int8 computing in bf16 where bf16 is native,
    # int8 computing in fp32 elsewhere.
    default = "bf16,int8-bf16" if native else "int8-fp32"
    wanted = ["fp32", *[p for p in os.environ.get("CPU_PATHS", default).split(",") if p and p != "fp32"]]
    skipped = [p for p in wanted if "bf16" in p and not native]
    if skipped:
        print(f"\nskipping {', '.join(skipped)}: this CPU has no native bf16 (emulated bf16 is 35-50x slower)")
    rows = [r for r in fingpt_test_rows if r["period"] == WEEK and r["symbol"] in TICKERS]
    assert len(rows) == len(TICKERS), f"week {WEEK} lacks some of {TICKERS}"
    conversations = _conversations(rows)
    print(f"\n{folder}, {torch.get_num_threads()} torch threads, CPU bf16 flags: {sorted(native) or 'none'}; "
          f"rows {' '.join(r['symbol'] for r in rows)} ({WEEK})")
    results = [_measure(path, folder, conversations) for path in wanted if path not in skipped]

    fp32 = results[0]
    print(f"\n{'path':10}{'prefill':>9}{'decode':>8}{'1 thr':>7}{'forecast':>10}{'× fp32':>8}{'1st sec':>9}"
          f"{'vs llama.cpp':>14}{'same call':>10}{'max|ΔP(up)|':>12}")
    for m in results:
        same = sum(a == b for a, b in zip(m.calls, fp32.calls, strict=True))
        drift = max(abs(a - b) for a, b in zip(m.p_up, fp32.p_up, strict=True))
        print(f"{m.path:10}{m.prefill_tps:>9.1f}{m.decode_tps:>8.2f}{m.decode_tps_one_thread:>7.2f}"
              f"{m.forecast_s:>9.0f}s{fp32.forecast_s / m.forecast_s:>7.2f}x"
              f"{(m.first_section_s or float('nan')):>8.0f}s"
              f"{m.prefill_tps / LLAMA_CPP[0]:>7.2f}/{m.decode_tps / LLAMA_CPP[1]:.2f}"
              f"{same:>8}/{len(m.calls)}{drift:>12.3f}")
    for m in results:
        print(f"\n--- {m.path}: {rows[0]['symbol']} ({m.forecast_tokens} tokens, {m.forecast_s:.0f}s)\n{m.answer}")
    assert all(m.forecast_tokens > 0 for m in results)
