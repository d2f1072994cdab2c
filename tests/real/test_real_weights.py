"""Real pretrained weights through the product's own code: loading, the chat template, pad/eos, a batched
constrained generation that parses, and bin scoring that equals naive scoring on the real Qwen tokenizer (where
'%\\n' is one token). Minutes on a CPU: REAL_MAX_NEW_TOKENS (default 160) bounds each answer."""

from __future__ import annotations

import os
import re
import time

import pytest
import torch

from engine.data.prompts import SYSTEM_PROMPT
from engine.generation.grammar import ANSWER_REGEX
from engine.generation.model import Analyst
from engine.parsing import parse_answer
from engine.probabilities import choose_call
from engine.upstream_parser import upstream_parse
from tests.naive_bins import naive_bin_probabilities

MAX_NEW_TOKENS = int(os.environ.get("REAL_MAX_NEW_TOKENS", "160"))
# Short prompts keep the CPU prefill to seconds; the bench (tests/bench) uses the real 2-3k-token test prompts.
CONVERSATIONS = [
    [{"role": "system", "content": SYSTEM_PROMPT},
     {"role": "user", "content": f"From 2024-03-03 to 2024-03-10, {symbol}'s stock price {move}. News: {news} "
                                 f"Come up with 2-4 most important factors respectively and keep them concise. Then "
                                 f"make your prediction of the {symbol} stock price movement for next week "
                                 "(2024-03-10 to 2024-03-17). Provide a summary analysis to support your prediction."}]
    for symbol, move, news in [
        ("AXP", "increased from 211.20 to 218.37", "American Express raised its dividend by 17%."),
        ("INTC", "decreased from 45.10 to 42.35", "Intel delayed a factory in Ohio; guidance was cut."),
    ]
]


@pytest.fixture(scope="module")
def analyst(real_dir) -> Analyst:
    started = time.perf_counter()
    # fp32 whatever this CPU's auto picks: these tests hold packed bin scoring to 1e-4 of twelve naive passes, an
    # identity of the arithmetic that bf16's rounding would blur (bf16 is checked on the tiny model and the bench).
    loaded = Analyst.load(str(real_dir), device="cpu", dtype="float32")
    print(f"\nloaded {real_dir} in {time.perf_counter() - started:.1f}s; grammar compiled in "
          f"{loaded.grammar.compile_seconds:.2f}s for {loaded.model.config.vocab_size} tokens")
    return loaded


@pytest.fixture(scope="module")
def generated(analyst):
    captured = []
    original = analyst._score_bins

    def spy(batch, sequences, cache, answers):
        captured.append((batch, answers))
        return original(batch, sequences, cache, answers)

    analyst._score_bins = spy
    try:
        generations = analyst.generate(CONVERSATIONS, max_new_tokens=MAX_NEW_TOKENS)
    finally:
        del analyst._score_bins
    g = generations[0]
    print(f"\nbatch of {len(generations)}, constrained, max_new_tokens={MAX_NEW_TOKENS}: {g.seconds:.1f}s, "
          f"{sum(x.new_tokens for x in generations) / g.seconds:.2f} tok/s; bins scored in {g.bin_seconds:.2f}s "
          f"({g.bin_seconds / g.seconds:.1%} of the generation)")
    for x in generations:
        print(f"--- {x.new_tokens} tokens; P(up) {x.bin_distribution.p_up:.2f}, most likely "
              f"{x.bin_distribution.most_likely.code}\n{x.text}")
    return generations, captured[0]


def test_loads_through_the_products_code_with_its_chat_template_and_stop_tokens(analyst):
    tokenizer = analyst.tokenizer
    assert analyst.model.dtype == torch.float32 and tokenizer.padding_side == "left"
    assert tokenizer.pad_token is not None and tokenizer.chat_template is not None
    assert tokenizer.convert_tokens_to_ids("<|im_end|>") in analyst._stop_ids
    text = analyst.render(CONVERSATIONS[0])
    assert text.startswith("<|im_start|>system\n" + SYSTEM_PROMPT) and text.endswith("<|im_start|>assistant\n")
    assert analyst.grammar is not None and len(analyst.grammar.token_bytes) == analyst.model.config.vocab_size


def test_a_batched_constrained_generation_on_real_weights_parses(generated):
    generations, _ = generated
    for g in generations:
        assert re.fullmatch(ANSWER_REGEX, g.text), g.text[-300:]
        forecast = parse_answer(g.text)
        assert forecast.parsed, forecast.problems
        assert upstream_parse(g.text) is not None
        assert g.new_tokens <= MAX_NEW_TOKENS
        assert abs(sum(g.bin_distribution.probabilities.values()) - 1) < 1e-9


def test_bin_scoring_matches_twelve_naive_passes_on_the_real_tokenizer(analyst, generated):
    generations, (batch, answers) = generated
    row = 0
    prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
    dist = generations[row].bin_distribution
    for code, p in naive_bin_probabilities(analyst, prompt, answers[row]).items():
        assert abs(dist.probabilities[code] - p) < 1e-4, code


def test_every_stated_call_is_the_rule_on_its_own_distribution(generated):
    """The call is chosen from the scored bins and written, then the analysis follows it: never a call that
    contradicts the P(up) printed beside it (the grammar alone stated "Up by 1-2%" whatever the scores said)."""
    generations, _ = generated
    for g in generations:
        assert parse_answer(g.text).move_bin == choose_call(g.bin_distribution), (g.text, g.bin_distribution)


def test_scoring_after_the_scaffold_is_one_prefill_matching_twelve_naive_passes(analyst):
    """Scaffold-mode evaluation and contextual calibration on the real tokenizer."""
    from engine.generation.scaffold import SCAFFOLD, content_free_conversation

    [scored] = analyst.score_after([content_free_conversation()], SCAFFOLD)
    tokenizer = analyst.tokenizer
    prompt = tokenizer(analyst.render(content_free_conversation()), add_special_tokens=False)["input_ids"]
    scaffold = tokenizer(SCAFFOLD, add_special_tokens=False)["input_ids"]
    for code, p in naive_bin_probabilities(analyst, prompt, scaffold).items():
        assert abs(scored.probabilities[code] - p) < 1e-4, code
    print(f"\ncontent-free prompt: P(up) {scored.p_up:.3f}, bins "
          + " ".join(f"{c}:{p:.3f}" for c, p in scored.probabilities.items()))
