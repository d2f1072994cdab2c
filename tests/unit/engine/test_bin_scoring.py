"""What the bin scoring scores (engine.generation.bin_scoring), with the tiny model's real BPE tokenizer; no model."""

from __future__ import annotations

import math

import pytest
from transformers import AutoTokenizer

from engine.generation.bin_scoring import ScoringPlan, distribution, pack, plan_from_text, plan_from_tokens, visible
from engine.generation.grammar import bin_continuations
from engine.probabilities import ALL_BINS

ANSWER = ("[Positive Developments]:\n1. Orders grew — «fortement», €5bn.\n2. Margins widened.\n\n"
          "[Potential Concerns]:\n1. Costs rose 日本.\n\n[Prediction & Analysis]:\nPrediction: Down by 2-3%\n"
          "Analysis: Weak guidance.")


@pytest.fixture(scope="module")
def tokenizer(tiny_model_dir):
    return AutoTokenizer.from_pretrained(tiny_model_dir)


def test_the_prefix_ends_at_the_prediction_label_and_each_bin_is_its_own_tokens(tokenizer):
    tokens = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    plan = plan_from_tokens(tokenizer, tokens)
    prefix = tokenizer.decode(tokens[: plan.prefix_tokens])
    end = ANSWER.index("\nPrediction:") + len("\nPrediction:")
    assert ANSWER[:end].startswith(prefix) and len(prefix) > end - 12  # at or just before the label's end
    tail = ANSWER[len(prefix) : end]
    for code, text in bin_continuations().items():
        assert tokenizer.decode(plan.continuations[code]) == tail + text
    assert set(plan.continuations) == {b.code for b in ALL_BINS}


def test_non_ascii_text_before_the_label_does_not_shift_the_cut(tokenizer):
    # Byte-level BPE splits "日本" and "€" across tokens; a prefix cut inside one decodes to a replacement char.
    tokens = tokenizer(ANSWER, add_special_tokens=False)["input_ids"]
    plan = plan_from_tokens(tokenizer, tokens)
    assert "\ufffd" not in tokenizer.decode(tokens[: plan.prefix_tokens])


def test_answers_without_a_prediction_line_have_no_plan(tokenizer):
    for text in ("[Positive Developments]:\n1. Orders grew.", "My prediction: up a bit", ""):
        assert plan_from_tokens(tokenizer, tokenizer(text, add_special_tokens=False)["input_ids"]) is None
        assert plan_from_text(tokenizer, text) is None


def test_the_text_plan_is_the_answer_up_to_the_label(tokenizer):
    prefix, plan = plan_from_text(tokenizer, ANSWER)
    assert prefix.endswith("\nPrediction:") and ANSWER.startswith(prefix)
    assert plan.prefix_tokens == len(tokenizer(prefix, add_special_tokens=False)["input_ids"])
    assert tokenizer.decode(plan.continuations["U5+"]) == " Up by more than 5"


def test_packed_queries_share_the_prefix_token_and_follow_each_continuation():
    plan = ScoringPlan(prefix_tokens=3, continuations={"U1": (10, 11, 12), "D1": (20,), "U2": (10, 13)})
    packed = pack(99, plan)
    assert packed.tokens == (99, 10, 11, 10)  # the last token of each continuation is a target only
    assert packed.depth == (0, 1, 2, 1)
    assert packed.targets["U1"] == ((0, 10), (1, 11), (2, 12))
    assert packed.targets["D1"] == ((0, 20),)
    assert packed.targets["U2"] == ((0, 10), (3, 13))
    assert visible(packed) == [[0], [0, 1], [0, 1, 2], [0, 3]]


def test_the_distribution_is_the_softmax_of_the_summed_logprobs():
    logprobs = {b.code: -float(i) for i, b in enumerate(ALL_BINS)}
    dist = distribution({code: v - 1000.0 for code, v in logprobs.items()})  # stable far from zero
    total = sum(math.exp(v) for v in logprobs.values())
    for code, value in logprobs.items():
        assert dist.probabilities[code] == pytest.approx(math.exp(value) / total, rel=1e-12)
    assert dist.most_likely.code == "U1"
