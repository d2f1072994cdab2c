"""Benchmark: what serving the adapter unmerged (the default, issue 12) costs against merged, on CPU.

A random-weight Qwen2 with Qwen2.5-1.5B's real widths (hidden 1536, MLP 8960, 12 heads / 2 KV heads) but only
BENCH_LAYERS layers and the tiny tokenizer's small vocabulary, fp32, a rank-8 LoRA on all seven projections (ours),
a ~512-token prompt, 64 new tokens, batch 1 and batch 8 (best of 3, interleaved), unconstrained (the grammar
costs the same either way).
The LM head is tiny here, so the ratio is the transformer layers' own: an upper bound for the full model, whose
151936-token head LoRA does not touch. Prints each mode's seconds and tokens/s, and the ratio unmerged/merged.

    .venv/bin/python -m pytest tests/bench/test_unmerged_lora_speed.py -s -p no:cacheprovider
"""

from __future__ import annotations

import os
import time

import pytest
import torch

from engine.generation.model import Analyst
from tests.fakes.tiny_model import build_lora_adapter, build_tokenizer, synthetic_corpus

LAYERS = int(os.environ.get("BENCH_LAYERS", "2"))
PROMPT_TOKENS = 512
NEW_TOKENS = 64
BATCHES = (1, 8)
REPEATS = int(os.environ.get("BENCH_REPEATS", "3"))


@pytest.fixture(scope="module")
def real_width_model(tmp_path_factory) -> tuple:
    from transformers import Qwen2Config, Qwen2ForCausalLM

    root = tmp_path_factory.mktemp("real-width")
    tokenizer = build_tokenizer(root / "base", vocab_size=4000)
    torch.manual_seed(0)
    config = Qwen2Config(  # Qwen/Qwen2.5-1.5B-Instruct's config.json, fewer layers, the tiny vocabulary
        vocab_size=len(tokenizer), hidden_size=1536, intermediate_size=8960, num_hidden_layers=LAYERS,
        num_attention_heads=12, num_key_value_heads=2, max_position_embeddings=32768, rope_theta=1000000.0,
        rms_norm_eps=1e-6, tie_word_embeddings=True, bos_token_id=None,
        eos_token_id=tokenizer.convert_tokens_to_ids("<|im_end|>"), pad_token_id=tokenizer.pad_token_id,
    )
    Qwen2ForCausalLM(config).save_pretrained(root / "base")
    adapter = build_lora_adapter(root / "base", root / "adapter", rank=8)
    return root / "base", adapter, tokenizer


def _conversations(tokenizer, rows: int) -> list[list[dict]]:
    """`rows` prompts of about PROMPT_TOKENS tokens each, FinGPT-shaped, slightly different."""
    text = "\n".join(synthetic_corpus()[1:])
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    while len(ids) < PROMPT_TOKENS:
        ids = ids + ids
    body = tokenizer.decode(ids[:PROMPT_TOKENS - 110])  # the chat template and system prompt: ~110 more
    return [[{"role": "system", "content": "You are a seasoned stock market analyst."},
             {"role": "user", "content": f"Variant {row}.\n{body}"}] for row in range(rows)]


def _timed(analyst: Analyst, conversations) -> tuple[float, int]:
    started = time.perf_counter()
    answers = analyst.generate(conversations, max_new_tokens=NEW_TOKENS)
    return time.perf_counter() - started, sum(g.new_tokens for g in answers)


def test_unmerged_lora_against_merged(real_width_model):
    base, adapter, tokenizer = real_width_model
    analysts = {mode: Analyst.load(str(base), device="cpu", adapter=adapter, merge_adapter=merge, constrained=False)
                for mode, merge in (("merged", True), ("unmerged", False))}
    assert analysts["merged"].merged and not analysts["unmerged"].merged
    for analyst in analysts.values():
        analyst.generate(_conversations(tokenizer, 2), max_new_tokens=4)  # warm-up: allocations, thread pools
    prompt_tokens = analysts["merged"].count_tokens(analysts["merged"].render(_conversations(tokenizer, 1)[0]))
    # Interleaved repeats, best of each: the CPU is shared, and a neighbour's burst should not pick the winner.
    results: dict[tuple[str, int], tuple[float, int]] = {}
    for _ in range(REPEATS):
        for batch in BATCHES:
            for mode, analyst in analysts.items():
                seconds, tokens = _timed(analyst, _conversations(tokenizer, batch))
                if (mode, batch) not in results or seconds < results[mode, batch][0]:
                    results[mode, batch] = (seconds, tokens)

    print()
    print(f"unmerged vs merged LoRA on CPU ({torch.get_num_threads()} threads): Qwen2.5-1.5B widths, {LAYERS} layers, "
          f"fp32, rank-8 LoRA on q/k/v/o/gate/up/down, {prompt_tokens}-token prompts, {NEW_TOKENS} new tokens")
    for batch in BATCHES:
        (merged_s, merged_tokens), (unmerged_s, unmerged_tokens) = results["merged", batch], results["unmerged", batch]
        print(f"  batch {batch}: merged {merged_s:6.2f} s ({merged_tokens / merged_s:6.1f} tok/s)  "
              f"unmerged {unmerged_s:6.2f} s ({unmerged_tokens / unmerged_s:6.1f} tok/s)  "
              f"unmerged/merged time per token {unmerged_s / merged_s * merged_tokens / unmerged_tokens:.3f}x "
              f"({merged_tokens} / {unmerged_tokens} tokens)")
        assert merged_tokens > 0 and unmerged_tokens > 0
