"""Benchmark: the 30-prompt weekly digest on CPU, batched against one by one, same prompts, same run.

Small Qwen2-architecture models built in code (random weights, so every answer runs to the token limit and both
modes generate exactly the same number of tokens), the 30 symbols of one week of the real FinGPT test split as
prompts through the product's chat template, greedy decoding, batches of similar length (as the digest
batches them). Prints each model's shape, the batch size, tokens/s of each mode and the ratio (goal ≥ 4× on CPU).

On a 2-core CPU the gain shrinks as the model widens: decoding turns compute-bound, and a batch of 8 costs
nearly 8 single steps. The GPU figure, where batching pays most, needs a GPU machine (not measured yet).

    make bench     # BENCH_NEW_TOKENS / BENCH_BATCH override the defaults
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from engine.data.prompts import SYSTEM_PROMPT, fix_wording, llama_to_messages
from engine.generation.model import Analyst
from tests.fakes.tiny_model import build_tiny_model

NEW_TOKENS = int(os.environ.get("BENCH_NEW_TOKENS", "128"))
BATCH = int(os.environ.get("BENCH_BATCH", "8"))  # MODEL_BATCH_SIZE's default
GOAL = 4.0


@pytest.fixture(scope="module")
def conversations(fingpt_test_rows) -> list[list[dict]]:
    week = fingpt_test_rows[0]["period"]
    return [
        [{"role": "system", "content": SYSTEM_PROMPT},
         {"role": "user", "content": fix_wording(llama_to_messages(r["prompt"])[1]["content"])}]
        for r in fingpt_test_rows if r["period"] == week
    ]


@pytest.mark.parametrize(("hidden", "layers"), [(64, 2), (256, 4)])
def test_batched_digest_generation_against_one_by_one(conversations, tmp_path, hidden, layers):
    # The tokenizer learns the prompts' own text (in memory only), so token counts come out near a real Qwen
    # tokenizer's (~4 characters a token) instead of the 2x a 2k vocabulary would give.
    model_dir = build_tiny_model(tmp_path / "bench-model", layers=layers, hidden=hidden, vocab_size=16000,
                                 extra_corpus=[c[1]["content"] for c in conversations])
    analyst = Analyst.load(str(model_dir), device="cpu")
    params = sum(p.numel() for p in analyst.model.parameters())
    prompt_tokens = [analyst.count_tokens(analyst.render(c)) for c in conversations]
    analyst.generate(conversations[:2], max_new_tokens=4)  # warm-up: first-call allocations, thread pools

    started = time.perf_counter()
    one_by_one = [analyst.generate([c], max_new_tokens=NEW_TOKENS)[0] for c in conversations]
    sequential_s = time.perf_counter() - started

    started = time.perf_counter()
    batched = []
    by_length = sorted(conversations, key=lambda c: len(c[1]["content"]))
    for i in range(0, len(by_length), BATCH):
        batched += analyst.generate(by_length[i:i + BATCH], max_new_tokens=NEW_TOKENS)
    batched_s = time.perf_counter() - started

    seq_tokens = sum(g.new_tokens for g in one_by_one)
    bat_tokens = sum(g.new_tokens for g in batched)
    seq_rate, bat_rate = seq_tokens / sequential_s, bat_tokens / batched_s
    ratio = bat_rate / seq_rate
    print()
    print(f"digest generation on CPU ({torch.get_num_threads()} threads): {len(conversations)} prompts, "
          f"tokens min {min(prompt_tokens)} / mean {sum(prompt_tokens) / len(prompt_tokens):.0f} / "
          f"max {max(prompt_tokens)}, {NEW_TOKENS} new tokens each, batch size {BATCH}")
    print(f"  model: Qwen2 hidden {hidden}, {layers} layers, 4 heads / 2 KV heads, vocab {len(analyst.tokenizer)}, "
          f"{params / 1e6:.1f} M parameters, fp32, sdpa")
    print(f"  one by one: {sequential_s:7.2f} s  {seq_tokens} tokens  {seq_rate:7.1f} tok/s")
    print(f"  batched:    {batched_s:7.2f} s  {bat_tokens} tokens  {bat_rate:7.1f} tok/s")
    print(f"  ratio batched/one-by-one: {ratio:.1f}x (goal >= {GOAL:.0f}x: {'met' if ratio >= GOAL else 'NOT met'})")

    assert seq_tokens == bat_tokens == NEW_TOKENS * len(conversations)
