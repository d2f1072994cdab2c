"""Benchmark: free against constrained generation, and the cost of scoring the 12 bins.

Prompts: BENCH_N (default 6) rows of the real FinGPT test split (FINGPT_TEST_SPLIT), one week, different tickers,
through the product's chat template; greedy; one batch (as the digest runs them). The same loaded weights answer
in both modes (the free Analyst shares the constrained one's model). Prints per mode: parse rate (ours and
upstream's), new tokens, tokens/s, the constrained/free tokens-per-second ratio (goal >= 0.9), and bin-scoring
time as a fraction of the generation (goal <= 10%).

- `real`: the weights at REAL_MODEL_DIR (default ../real-qwen beside the checkout; skipped, with the reason, when
  absent). On a 2-core CPU one real 2,251-token forecast takes ~4-5 minutes (prefill ~74 s, decode ~1.3 tok/s),
  so the full run (6 prompts x 700 tokens, twice) takes the better part of an hour: lower BENCH_N /
  BENCH_MAX_NEW_TOKENS to try it.
- `tiny`: a small random-weight Qwen2 built in code, for the grammar's per-token overhead (random weights: free
  answers never parse and run to the limit; constrained ones always parse).

    make bench                                              # everything under tests/bench
    BENCH_N=2 BENCH_MAX_NEW_TOKENS=120 .venv/bin/python -m pytest tests/bench/test_constrained_generation.py -s
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest
import torch

from engine.data.prompts import SYSTEM_PROMPT, fix_wording, llama_to_messages
from engine.generation.model import Analyst
from engine.parsing import parse_answer
from engine.upstream_parser import upstream_parse
from tests.fakes.tiny_model import build_tiny_model
from tests.real.weights import missing_reason, real_model_dir

N = int(os.environ.get("BENCH_N", "6"))
MAX_NEW_TOKENS = int(os.environ.get("BENCH_MAX_NEW_TOKENS", "700"))


@pytest.fixture(scope="module")
def conversations(fingpt_test_rows) -> list[list[dict]]:
    week = fingpt_test_rows[0]["period"]
    rows = [r for r in fingpt_test_rows if r["period"] == week]
    assert len({r["symbol"] for r in rows[:N]}) == min(N, len(rows))  # one ticker each
    return [[{"role": "system", "content": SYSTEM_PROMPT},
             {"role": "user", "content": fix_wording(llama_to_messages(r["prompt"])[1]["content"])}]
            for r in rows[:N]]


def _model_dir(which: str, tmp_path: Path, conversations: list[list[dict]]) -> Path:
    if which == "real":
        found = real_model_dir()
        if found is None:
            pytest.skip(missing_reason())
        return found
    return build_tiny_model(tmp_path / "bench-model", layers=4, hidden=256, vocab_size=16000,
                            extra_corpus=[c[1]["content"] for c in conversations])


def _run(analyst: Analyst, conversations: list[list[dict]]) -> dict:
    started = time.perf_counter()
    generations = analyst.generate(conversations, max_new_tokens=MAX_NEW_TOKENS)
    wall = time.perf_counter() - started
    seconds = generations[0].seconds
    scored = [g for g in generations if g.bin_distribution is not None]
    return {
        "parsed": sum(parse_answer(g.text).parsed for g in generations),
        "upstream": sum(upstream_parse(g.text) is not None for g in generations),
        "tokens": sum(g.new_tokens for g in generations),
        "prompt_tokens": sum(g.prompt_tokens for g in generations),
        "seconds": seconds,
        "tok_s": sum(g.new_tokens for g in generations) / seconds,
        "bin_s": scored[0].bin_seconds if scored else None,
        "scored": len(scored),
        "wall": wall,
    }


@pytest.mark.parametrize("which", ["tiny", "real"])
def test_free_against_constrained_generation(which, conversations, tmp_path):
    constrained = Analyst.load(str(_model_dir(which, tmp_path, conversations)), device="cpu")
    free = Analyst(constrained.model, constrained.tokenizer, base=constrained.base, placement=constrained.placement,
                   constrained=False)
    constrained.generate(conversations[:1], max_new_tokens=2)  # warm-up: first-call allocations, thread pools
    results = {"free": _run(free, conversations), "constrained": _run(constrained, conversations)}

    n = len(conversations)
    print(f"\n{which}: {constrained.base}, {sum(p.numel() for p in constrained.model.parameters()) / 1e6:.0f}M "
          f"params, torch threads {torch.get_num_threads()}, batch {n} (one batch), max_new_tokens {MAX_NEW_TOKENS}, "
          f"greedy; grammar compiled in {constrained.grammar.compile_seconds:.2f}s")
    for mode, r in results.items():
        bins = (f"bins scored in {r['bin_s']:.2f}s = {r['bin_s'] / r['seconds']:.1%} of the generation "
                f"({r['scored']}/{n} answers)") if r["bin_s"] is not None else "no Prediction: line to score"
        print(f"  {mode:11s} parsed {r['parsed']}/{n} (upstream {r['upstream']}/{n}), {r['tokens']} new tokens "
              f"after {r['prompt_tokens']} prompt tokens in {r['seconds']:.1f}s = {r['tok_s']:.2f} tok/s; {bins}")
    ratio = results["constrained"]["tok_s"] / results["free"]["tok_s"]
    print(f"  constrained/free tokens per second: {ratio:.2f} (goal >= 0.9)")
    assert results["constrained"]["parsed"] == n and results["constrained"]["upstream"] == n  # by construction
    assert results["constrained"]["scored"] == n
