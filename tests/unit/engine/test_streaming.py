"""An answer shown while it is written: the pure section reader, and the model's `on_text` on the tiny model."""

from __future__ import annotations

import pytest

from engine.generation.model import Analyst
from engine.generation.streaming import WrittenSoFar, written_so_far
from engine.parsing import parse_answer

ANSWER = """[Positive Developments]:
1. Strong iPhone sales in the quarter.
2. Services revenue grew.

[Potential Concerns]:
1. Demand in China is weak.

[Prediction & Analysis]:
Prediction: Up by 1-2%
Analysis: The positives outweigh the concerns. The stock should drift up."""


def test_a_section_shows_once_the_next_has_begun_and_never_changes_after():
    seen: list[WrittenSoFar] = [written_so_far(ANSWER[:cut]) for cut in range(len(ANSWER) + 1)]
    assert seen[0] == WrittenSoFar()
    assert [w.sections for w in seen] == sorted(w.sections for w in seen)  # only ever grows
    first = {w.sections: w for w in reversed(seen)}  # the first moment each count was reached
    assert first[1].positives == ("Strong iPhone sales in the quarter.", "Services revenue grew.")
    assert first[1].concerns == () and first[1].call is None
    assert first[2].concerns == ("Demand in China is weak.",) and first[2].call is None
    assert first[3].call == "Up by 1-2%"
    for w in seen:  # what was shown stays as it was
        if w.sections >= 1:
            assert w.positives == first[1].positives
        if w.sections >= 2:
            assert w.concerns == first[2].concerns
    assert seen[-1].analysis == parse_answer(ANSWER).analysis


def test_text_that_strays_from_the_format_shows_nothing_rather_than_a_guess():
    assert written_so_far("I think the stock will go up next week.").sections == 0
    assert written_so_far("[Positive Developments]:\n1. Good.\n[Potential Concerns]:\n1. Bad.\n"
                          "[Prediction & Analysis]:\nPrediction: sideways\nAnalysis: unsure.").call is None


CONVERSATIONS = [
    [{"role": "system", "content": "You are a seasoned stock market analyst."},
     {"role": "user", "content": f"Company {name} reports invented result {n}. Predict next week."}]
    for n, name in enumerate(["AXP", "KO Synthetic Inc", "MSFT orders, margins, guidance and demand"])
]


@pytest.mark.parametrize("constrained", [True, False])
def test_the_model_tells_each_rows_answer_as_it_grows_and_ends_on_the_answer(tiny_model_dir, constrained,
                                                                             monkeypatch):
    import engine.generation.model

    # every step, so the tiny model's run shows growth
    monkeypatch.setattr(engine.generation.model, "STREAM_EVERY_S", 0.0)
    analyst = Analyst.load(str(tiny_model_dir), device="cpu", dtype="float32", constrained=constrained)
    told: dict[int, list[str]] = {row: [] for row in range(len(CONVERSATIONS))}
    generations = analyst.generate(CONVERSATIONS, max_new_tokens=200,
                                   on_text=lambda row, text: told[row].append(text))
    for row, generation in enumerate(generations):
        texts = told[row]
        assert len(texts) > 10, "told about every step"
        assert texts[-1].strip() == generation.text
        grown = [written_so_far(t).sections for t in texts]
        assert grown == sorted(grown)
        if constrained:  # the grammar writes every section, so each is shown before the answer is done
            assert set(grown) >= {0, 1, 2, 3}
            whole = written_so_far(generation.text)
            first_call = next(t for t in texts if written_so_far(t).sections == 3)
            assert written_so_far(first_call).call == whole.call


def test_a_failing_listener_never_breaks_the_answer(tiny_model_dir):
    analyst = Analyst.load(str(tiny_model_dir), device="cpu", dtype="float32")
    plain = analyst.generate(CONVERSATIONS[:1], max_new_tokens=120)

    def broken(row: int, text: str) -> None:
        raise RuntimeError("Slack is down")

    assert analyst.generate(CONVERSATIONS[:1], max_new_tokens=120, on_text=broken)[0].text == plain[0].text
