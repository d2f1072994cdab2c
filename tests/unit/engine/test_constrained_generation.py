"""Constrained generation and bin scoring in process, on the tiny random-weight Qwen2: every answer of a batch is
in FinGPT's format even from random weights, the 12-bin distribution from the one cached pass equals twelve naive
full passes, and MODEL_CONSTRAINED=false is the free generation it was."""

from __future__ import annotations

import time

import pytest
import torch

from engine.generation import constrained
from engine.generation.bin_calibration import IDENTITY, BinCalibration
from engine.generation.grammar import ANALYSIS_LABEL, ANSWER_REGEX, call_text
from engine.generation.model import Analyst
from engine.parsing import parse_answer
from engine.probabilities import ALL_BINS, choose_call
from engine.upstream_parser import upstream_parse
from tests.naive_bins import naive_bin_probabilities

CONVERSATIONS = [
    [{"role": "system", "content": "You are a seasoned stock market analyst."},
     {"role": "user", "content": f"Company {name} reports invented result {n}. Predict next week."}]
    for n, name in enumerate(["AXP", "KO Synthetic Inc", "MSFT orders, margins, guidance and demand", "ZZZ",
                              "CAT", "DIS news " * 5, "IBM", "JPM margins"])
]


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """A tiny model is ~10x faster on one thread than on two when other processes share the cores."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


# Both CPU paths the worker may choose (engine.generation.placement): fp32, and bf16 where the CPU has native bf16. The
# packed bin scoring equals twelve naive passes to fp32 rounding in fp32, and to bf16's (8-bit mantissa) in bf16.
TOLERANCE = {"float32": 1e-4, "bfloat16": 5e-3}


@pytest.fixture(scope="module", params=sorted(TOLERANCE))
def analyst(tiny_model_dir, request) -> Analyst:
    return Analyst.load(str(tiny_model_dir), device="cpu", dtype=request.param)


@pytest.fixture(scope="module")
def free_analyst(tiny_model_dir) -> Analyst:
    return Analyst.load(str(tiny_model_dir), device="cpu", constrained=False)


class _Spy:
    """Records what `_score_bins` was given (the generated token ids), so a test can score them naively."""

    def __init__(self, analyst: Analyst) -> None:
        self.original = analyst._score_bins
        self.calls: list[tuple] = []

    def __call__(self, batch, sequences, cache, answers):
        self.calls.append((batch, answers))
        return self.original(batch, sequences, cache, answers)


@pytest.fixture(scope="module")
def constrained_batch(analyst):
    """A constrained batch of 8 with lines capped short, so the line budget works in 240 tokens."""
    spy = _Spy(analyst)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(analyst, "_score_bins", spy)
        patch.setattr(constrained, "LINE_TOKENS", 24)
        generations = analyst.generate(CONVERSATIONS, max_new_tokens=240)
    print(f"\ntiny model, batch 8, constrained: {generations[0].seconds:.2f}s for "
          f"{sum(g.new_tokens for g in generations)} tokens, bins scored in {generations[0].bin_seconds:.3f}s")
    return generations, spy.calls[0]


def _assert_in_form(generations, max_new_tokens):
    import re

    for g in generations:
        forecast = parse_answer(g.text)
        assert forecast.parsed, (forecast.problems, g.text[:300])
        assert upstream_parse(g.text) is not None
        assert re.fullmatch(ANSWER_REGEX, g.text), g.text[-200:]
        assert g.new_tokens <= max_new_tokens


def test_a_constrained_batch_of_8_from_random_weights_always_parses(constrained_batch):
    generations, _ = constrained_batch
    _assert_in_form(generations, 240)
    assert len({g.text for g in generations}) > 1


def test_a_budget_that_leaves_the_lists_no_room_is_logged_once_with_what_to_set(analyst, caplog, monkeypatch):
    from engine.generation import base

    monkeypatch.setattr(base, "_warned_room", set())
    with caplog.at_level("WARNING", logger="engine.generation.base"):
        analyst.generate(CONVERSATIONS[:1], max_new_tokens=700)
        assert not caplog.records  # the default leaves room for real lists: nothing to say
        analyst.generate(CONVERSATIONS[:1], max_new_tokens=120)
        analyst.generate(CONVERSATIONS[:1], max_new_tokens=120)
    [told] = caplog.records  # once per budget and process
    assert "max_new_tokens=120 leaves constrained lists 0 tokens" in told.getMessage()
    needed = 120 - base.lists_budget(analyst.tokenizer, 120) + base.STRUCTURE_RESERVE + base.LISTS_ROOM_NEEDED
    assert f"set MODEL_MAX_NEW_TOKENS to {needed} or more" in told.getMessage() and needed >= 449
    assert base.lists_room(base.lists_budget(analyst.tokenizer, needed)) == base.LISTS_ROOM_NEEDED  # it is enough
    assert base.lists_room(base.STRUCTURE_RESERVE + 50) == 50 and base.lists_room(10) == 0


@pytest.mark.parametrize("sample", [False, True])
def test_the_reserve_is_enough_to_finish_the_structure_from_the_first_token(analyst, sample):
    max_new_tokens = constrained.STRUCTURE_RESERVE  # the line budget ends lines from the very first token
    generations = analyst.generate(CONVERSATIONS[:4], max_new_tokens=max_new_tokens, sample=sample, seed=3,
                                   temperature=1.5)
    _assert_in_form(generations, max_new_tokens)


def test_the_bin_probabilities_sum_to_one_and_match_twelve_naive_full_passes(analyst, constrained_batch):
    generations, (batch, answers) = constrained_batch
    for row in (0, 3, 5):
        dist = generations[row].bin_distribution
        assert dist is not None and abs(sum(dist.probabilities.values()) - 1) < 1e-9
        prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        # Random weights write a token boundary at "Prediction:" with this tokenizer.
        for code, p in naive_bin_probabilities(analyst, prompt, answers[row]).items():
            assert abs(dist.probabilities[code] - p) < TOLERANCE[analyst.placement.dtype], code


def test_bin_scoring_costs_a_small_fraction_of_the_generation(constrained_batch):
    generations, _ = constrained_batch
    assert generations[0].bin_seconds < generations[0].seconds


def test_unconstrained_generation_is_the_free_generation_it_was(free_analyst):
    generations = free_analyst.generate(CONVERSATIONS[:3], max_new_tokens=20)
    tokenizer = free_analyst.tokenizer
    batch = tokenizer([free_analyst.render(c) for c in CONVERSATIONS[:3]], return_tensors="pt", padding=True,
                      add_special_tokens=False)
    with torch.inference_mode():
        plain = free_analyst.model.generate(**batch, max_new_tokens=20, do_sample=False,
                                            pad_token_id=tokenizer.pad_token_id,
                                            eos_token_id=free_analyst._stop_ids)
    width = batch["input_ids"].shape[1]
    expected = [tokenizer.decode(row[width:], skip_special_tokens=True).strip() for row in plain]
    assert [g.text for g in generations] == expected
    assert free_analyst.grammar is None
    # Random free text has no "Prediction:" line to score at.
    assert all(g.bin_distribution is None and g.bin_seconds is None for g in generations)


def test_the_grammar_is_compiled_once_per_analyst_not_per_call(analyst, monkeypatch):
    import xgrammar

    compiled = analyst.grammar.lists, analyst.grammar.analysis

    def refuse(*args, **kwargs):
        raise AssertionError("compiled again")

    monkeypatch.setattr(xgrammar.GrammarCompiler, "compile_regex", refuse)
    started = time.perf_counter()
    analyst.generate(CONVERSATIONS[:2], max_new_tokens=8)
    assert (analyst.grammar.lists, analyst.grammar.analysis) == compiled
    print(f"\ncompiled once in {analyst.grammar.compile_seconds:.3f}s; an 8-token batch of 2 took "
          f"{time.perf_counter() - started:.2f}s")


def test_every_stated_call_is_the_rule_applied_to_its_own_distribution(constrained_batch):
    generations, _ = constrained_batch
    for g in generations:
        stated = parse_answer(g.text).move_bin
        assert stated == choose_call(g.bin_distribution), (g.text[-120:], g.bin_distribution.probabilities)
        assert g.raw_bin_distribution == g.bin_distribution  # no calibration set


def test_the_call_follows_the_calibrated_distribution_when_one_is_served(analyst, constrained_batch):
    """A contextual bias that makes every up bin look e^80 times likelier on a content-free prompt (random
    weights put the down bins ~e^-27 below the up ones): after subtracting it,
    the served P(up) falls and the written call follows the served distribution, not the raw one."""
    generations, _ = constrained_batch
    bias = {b.code: (80.0 if b.direction == "up" else 0.0) for b in ALL_BINS}
    analyst.calibration = BinCalibration(bias=bias, temperature=0.5)
    try:
        calibrated = analyst.generate(CONVERSATIONS[:4], max_new_tokens=240)
    finally:
        analyst.calibration = IDENTITY
    flipped = 0
    for g in calibrated:
        assert g.bin_distribution == analyst_calibrated(g.raw_bin_distribution, bias)
        assert parse_answer(g.text).move_bin == choose_call(g.bin_distribution)
        flipped += choose_call(g.raw_bin_distribution) != choose_call(g.bin_distribution)
    assert flipped, "the bias was meant to move at least one call"


def analyst_calibrated(raw, bias):
    return BinCalibration(bias=bias, temperature=0.5).apply(raw)


def test_the_analysis_is_generated_after_the_written_call_from_the_same_cache(analyst, constrained_batch):
    """Phase 2 continues phase 1's KV cache across rows that stopped at different lengths. Its analysis must be
    what the model writes from scratch, one row alone, after the prompt, the lists and the written call."""
    generations, (batch, answers) = constrained_batch
    tokenizer = analyst.tokenizer
    checked = 0
    for row in (0, 2, 5):
        g = generations[row]
        head, analysis = g.text.split(ANALYSIS_LABEL, 1)
        call = parse_answer(g.text).move_bin
        lists = answers[row]  # phase 1's tokens, up to "Prediction:"
        assert tokenizer.decode(lists).endswith("Prediction:")
        prompt = batch["input_ids"][row][batch["attention_mask"][row].bool()].tolist()
        ids = prompt + lists + tokenizer(call_text(call.code), add_special_tokens=False)["input_ids"]
        with torch.inference_mode():
            alone = analyst.model.generate(
                input_ids=torch.tensor([ids]), max_new_tokens=240, do_sample=False,
                pad_token_id=tokenizer.pad_token_id, eos_token_id=analyst._stop_ids,
                logits_processor=analyst.grammar.analysis_processors(1, prompt_width=len(ids),
                                                                     max_new_tokens=240 - len(ids) + len(prompt)))
        expected = tokenizer.decode(alone[0, len(ids):], skip_special_tokens=True).strip()
        # The batch's phase 2 has a shorter budget (the longest row's lists set it), so its last tokens close the
        # sentence earlier: compare all but the end.
        shared = analysis.strip()[:-12]
        assert len(shared) > 20 and expected.startswith(shared), (analysis, expected)
        checked += 1
    assert checked == 3


def test_scoring_after_the_fixed_scaffold_matches_twelve_naive_passes(analyst):
    """The evaluator's scaffold mode and contextual calibration: one batched prefill of prompt + scaffold, the 12
    bins scored on its cache, equal to scoring each bin from scratch (rows of different lengths: left padding)."""
    from engine.generation.scaffold import SCAFFOLD, content_free_conversation

    conversations = [CONVERSATIONS[0], CONVERSATIONS[5], content_free_conversation()]
    scored = analyst.score_after(conversations, SCAFFOLD)
    tokenizer = analyst.tokenizer
    scaffold = tokenizer(SCAFFOLD, add_special_tokens=False)["input_ids"]
    for conversation, dist in zip(conversations, scored, strict=True):
        prompt = tokenizer(analyst.render(conversation), add_special_tokens=False)["input_ids"]
        for code, p in naive_bin_probabilities(analyst, prompt, scaffold).items():
            assert abs(dist.probabilities[code] - p) < TOLERANCE[analyst.placement.dtype], code


def test_the_retrain_gate_scores_record_the_calibration_fit_and_that_every_call_followed_the_rule(analyst):
    """engine.training.retrain.score_adapter, as /retrain runs it for the bare base and each new adapter: the stored
    scores carry the out-of-sample calibration comparison (with the content-free prompt) that is written as the new
    version's calibration.json, and the consistency of every stated call."""
    from engine.data.fingpt_rows import EvalRow
    from engine.training.retrain import score_adapter

    weeks = ["2024-03-03 to 2024-03-10", "2024-03-10 to 2024-03-17", "2024-03-17 to 2024-03-24"]
    rows = [EvalRow(f"S{i}", weeks[i % 3], CONVERSATIONS[i][1]["content"], "", ["up by 1-2%", "down by 0-1%"][i % 2])
            for i in range(6)]
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(constrained, "LINE_TOKENS", 24)
        scores = score_adapter(analyst, None, rows, max_new_tokens=240, batch_size=6)
    assert scores["consistency"] == {"checked": 6, "agree": 6, "disagree": []}
    fit = scores["calibration_fit"]
    assert fit["rows"] == 6 and set(fit["variants"]) == {"raw", "contextual", "temperature",
                                                         "contextual+temperature"}
    assert BinCalibration.from_json(fit["calibration"]).fitted_rows == 6
