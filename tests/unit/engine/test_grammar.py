"""The answer grammar (engine.generation.grammar): whatever it accepts, both parsers read, with the bin it names; the
real 7B answers fit it; xgrammar compiles it quickly and agrees with Python's `re` on what it accepts."""

from __future__ import annotations

import re
import time

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from engine.generation.grammar import ANSWER_REGEX, BIN_TEXT, bin_continuations, prediction_prefix_end
from engine.parsing import MAGNITUDES, parse_answer
from engine.upstream_parser import upstream_parse

ANSWER = re.compile(ANSWER_REGEX)
_BIN_LINE = re.compile(r"^Prediction: ((Up|Down) by (\d-\d%|more than 5%))$", re.MULTILINE)

WELL_FORMED = (
    "[Positive Developments]:\n1. Orders grew.\n2. Margins widened (roeTTM: 0.31).\n\n[Potential Concerns]:\n"
    "1. Costs rose.\n\n[Prediction & Analysis]:\nPrediction: Down by more than 5%\n"
    "Analysis: Weak guidance should weigh on the shares. \n\nA second paragraph closes it."
)


def _expected(text: str) -> tuple[str, str]:
    m = _BIN_LINE.search(text)
    assert m is not None
    return m[2].lower(), m[3]


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
@given(st.from_regex(ANSWER, fullmatch=True))
def test_everything_the_grammar_accepts_parses_with_both_parsers_and_the_right_bin(text):
    direction, magnitude = _expected(text)
    ours = parse_answer(text)
    assert ours.parsed, ours.problems
    assert (ours.direction, ours.magnitude) == (direction, magnitude)
    assert 2 <= len(ours.positives) <= 4 and 1 <= len(ours.concerns) <= 4

    upstream = upstream_parse(text)
    assert upstream is not None
    _, _, sign, margin, _ = upstream
    assert sign == (1 if direction == "up" else -1)
    assert margin == sign * (MAGNITUDES.index(magnitude) + 0.5)


@pytest.mark.parametrize(
    ("text", "why"),
    [
        (WELL_FORMED.replace("2. Margins widened (roeTTM: 0.31).\n", ""), "one positive item"),
        (WELL_FORMED.replace("Costs rose.", "Costs rose.\n2. b\n3. c\n4. d\n5. e"), "five concerns"),
        (WELL_FORMED.replace("Down by more than 5%", "Down by 2-4%"), "not a bin"),
        (WELL_FORMED.replace("Down by", "down by"), "lower case direction"),
        (WELL_FORMED.replace("Orders grew.", "Orders [grew]."), "a bracket in an item"),
        (WELL_FORMED.replace("A second", "Note: a second"), "a colon in the analysis"),
        (WELL_FORMED.replace("Orders grew.", "Orders grew.\u2028Truly."), "a Unicode line separator"),
        (WELL_FORMED.replace("1. Orders", "1. **"), "an item of markup only"),
        (WELL_FORMED.replace("1. Orders grew.", "1. ..."), "the prompt's placeholder item"),
        (WELL_FORMED.removesuffix("."), "an analysis cut mid-sentence"),
        (WELL_FORMED.replace("Orders grew.", "Orders </think> grew."), "a think tag"),
    ],
)
def test_what_the_grammar_refuses(text, why):
    assert not ANSWER.fullmatch(text), why


def test_the_well_formed_example_and_every_bin_are_accepted():
    assert ANSWER.fullmatch(WELL_FORMED)
    for code, bin_text in BIN_TEXT.items():
        answer = WELL_FORMED.replace("Down by more than 5%", bin_text)
        assert ANSWER.fullmatch(answer), code
        assert parse_answer(answer).move_bin.code == code


def test_bin_continuations_follow_the_prediction_label_and_stop_before_the_percent():
    continuations = bin_continuations()
    assert len(continuations) == 12 and continuations["U1"] == " Up by 0-1" and continuations["D5+"] == (
        " Down by more than 5")
    end = prediction_prefix_end(WELL_FORMED)
    assert WELL_FORMED[:end].endswith("\nPrediction:")
    assert WELL_FORMED[end:].startswith(continuations["D5+"] + "%\n")
    assert prediction_prefix_end("Prediction is hard.\nNo label here") is None


def test_the_real_7b_lora_answers_fit_the_grammar_except_one_with_five_positive_items(model_outputs):
    answers = [row["prediction"] for row in model_outputs["lora"]]
    misfits = [a for a in answers if not ANSWER.fullmatch(a)]
    print(f"\n{len(answers) - len(misfits)}/{len(answers)} of the 7B LoRA answers fullmatch the grammar")
    assert len(misfits) == 1
    assert len(parse_answer(misfits[0]).positives) == 5  # the format says 2-4; constrained, it stops at 4


def test_xgrammar_compiles_it_quickly_and_accepts_what_python_accepts(tiny_model_dir, model_outputs):
    import xgrammar as xgr
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(tiny_model_dir)
    compiler = xgr.GrammarCompiler(xgr.TokenizerInfo.from_huggingface(tokenizer), cache_enabled=False)
    started = time.perf_counter()
    compiled = compiler.compile_regex(ANSWER_REGEX)
    seconds = time.perf_counter() - started
    print(f"\nxgrammar compiled the answer regex in {seconds:.3f}s (tiny tokenizer)")
    assert seconds < 5  # ~0.3 s here; bounded {1,N} repeats would take seconds

    samples = [WELL_FORMED, WELL_FORMED.replace("A second", "Note: a second"),
               WELL_FORMED.replace("Orders grew.", "Orders grew.\u2028Truly."), WELL_FORMED + "\n",
               WELL_FORMED.replace("Orders grew.", "Ordres augmentées — «très» 5%."),
               *(row["prediction"] for row in model_outputs["lora"][:20])]
    for text in samples:
        matcher = xgr.GrammarMatcher(compiled)
        accepted = matcher.accept_string(text) and matcher.is_completed()
        assert accepted == bool(ANSWER.fullmatch(text)), text[:80]
