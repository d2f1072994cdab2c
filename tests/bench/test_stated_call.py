"""Benchmark on real weights: the call a user reads is the model's own.

Six rows of one test-split week that the other benchmarks do not use (STATED_CALL_WEEK, default
2024-04-21 to 2024-04-28; tickers AAPL AMGN MMM MSFT CVX JNJ), through the product's path: `Analyst.load`, the
chat template, the two-phase constrained generation. For every answer it prints the stated call, the served
P(up) and bin distribution it was chosen from, the contextual-calibration view of the same scores, and the realized
label, then the answers themselves (read them: a parse rate says nothing about whether a call is sound). It
fails if any stated call is not `choose_call` of its served distribution.

    REAL_MODEL_DIR=../real-qwen .venv/bin/python -m pytest tests/bench/test_stated_call.py -s
    STATED_CALL_DTYPE=float32 ...   # the precision (default: bfloat16 where the CPU has native bf16, else float32)

On a 2-core CPU the batch of six (~2k-token prompts, 700 new tokens at most) takes ~6-10 minutes in bf16.
"""

from __future__ import annotations

import os
import time

import pytest

from engine.data.fingpt_rows import label_bin
from engine.data.prompts import SYSTEM_PROMPT, fix_wording, llama_to_messages
from engine.generation.bin_calibration import BinCalibration, content_free_bias
from engine.generation.model import Analyst
from engine.generation.scaffold import SCAFFOLD, content_free_conversation
from engine.parsing import parse_answer
from engine.probabilities import choose_call
from tests.real.weights import missing_reason, real_model_dir

WEEK = os.environ.get("STATED_CALL_WEEK", "2024-04-21 to 2024-04-28")
TICKERS = ("AAPL", "AMGN", "MMM", "MSFT", "CVX", "JNJ")
MAX_NEW_TOKENS = int(os.environ.get("BENCH_MAX_NEW_TOKENS", "700"))


def _dtype() -> str:
    if (chosen := os.environ.get("STATED_CALL_DTYPE")):
        return chosen
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    return "bfloat16" if ("avx512_bf16" in flags or "amx_bf16" in flags) else "float32"


def test_every_stated_call_is_chosen_from_the_models_probabilities(fingpt_test_rows):
    folder = real_model_dir()
    if folder is None:
        pytest.skip(missing_reason())
    rows = [r for r in fingpt_test_rows if r["period"] == WEEK and r["symbol"] in TICKERS]
    assert len(rows) == len(TICKERS), f"week {WEEK} lacks some of {TICKERS}"
    conversations = [[{"role": "system", "content": SYSTEM_PROMPT},
                      {"role": "user", "content": fix_wording(llama_to_messages(r["prompt"])[1]["content"])}]
                     for r in rows]
    dtype = _dtype()
    analyst = Analyst.load(str(folder), device="cpu", dtype=dtype)
    started = time.perf_counter()
    [content_free] = analyst.score_after([content_free_conversation()], SCAFFOLD)
    contextual = BinCalibration(bias=content_free_bias(content_free))
    cf_seconds = time.perf_counter() - started
    started = time.perf_counter()
    generations = analyst.generate(conversations, max_new_tokens=MAX_NEW_TOKENS)
    wall = time.perf_counter() - started

    print(f"\n{folder} ({dtype}), week {WEEK}, batch of {len(rows)}: {wall:.0f}s "
          f"({sum(g.new_tokens for g in generations)} new tokens, {sum(g.prompt_tokens for g in generations)} "
          f"prompt tokens); content-free scoring {cf_seconds:.1f}s, its P(up) {content_free.p_up:.2f}")
    print(f"{'ticker':7}{'stated':>10}{'P(up)':>7}{'likeliest':>11}{'P(up) ctx':>10}{'ctx call':>9}{'label':>9}  rule")
    mismatches = []
    for row, g in zip(rows, generations, strict=True):
        stated = parse_answer(g.text).move_bin
        served = g.bin_distribution
        holds = stated is not None and served is not None and stated == choose_call(served)
        if not holds:
            mismatches.append(row["symbol"])
        ctx = contextual.apply(g.raw_bin_distribution)
        print(f"{row['symbol']:7}{stated.code if stated else '-':>10}{served.p_up:>7.2f}"
              f"{served.most_likely.code:>11}{ctx.p_up:>10.2f}{choose_call(ctx).code:>9}"
              f"{label_bin(row['label']).code:>9}  {'ok' if holds else 'BROKEN'}")
    # Evidence (engine.evaluation.evidence): the share of the answers' items that the news in their own prompts
    # supports.
    from engine.data.fingpt_rows import EvalRow
    from engine.evaluation.evaluate import grounding_report

    eval_rows = [EvalRow(r["symbol"], r["period"], c[1]["content"], r["answer"], r["label"])
                 for r, c in zip(rows, conversations, strict=True)]
    grounded = grounding_report(eval_rows, [g.text for g in generations])
    print(f"\ngrounding: {grounded}")
    for row, g in zip(rows, generations, strict=True):
        bins = " ".join(f"{code}:{p:.3f}" for code, p in g.bin_distribution.probabilities.items())
        print(f"\n--- {row['symbol']} ({g.new_tokens} tokens) bins {bins}\n{g.text}")
    assert not mismatches, f"stated call differs from the rule for {mismatches}"
