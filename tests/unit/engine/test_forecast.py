"""Inputs → prompt → model → parsed forecast, with a stub model (the real one is covered in test_model.py)."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import pytest

from engine.data.inputs import Sources, gather
from engine.forecast import forecast_record, run_forecasts
from engine.market.weeks import NEW_YORK
from engine.records import NewsItem
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes

ANSWER = ("[Positive Developments]:\n1. Invented strength.\n\n[Potential Concerns]:\n1. Invented risk.\n\n"
          "[Prediction & Analysis]:\nPrediction: Down by 1-2%\nAnalysis: Invented reasoning.")


@dataclass
class Out:
    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float


class StubModel:
    version = "stub (no adapter)"

    def __init__(self) -> None:
        self.batches: list[list[str]] = []

    def render(self, conversation):
        return "".join(f"<{m['role']}>{m['content']}" for m in conversation)

    def count_tokens(self, text: str) -> int:
        return len(text.split())

    def generate(self, conversations, *, max_new_tokens, on_text=None):
        users = [c[1]["content"] for c in conversations]
        self.batches.append([u.split("ticker ")[1].split(" ")[0] for u in users])
        return [Out(ANSWER, self.count_tokens(u), 30, 0.5) for u in users]


@pytest.fixture
def inputs():
    mem = MemorySources()
    symbols = ["AXP", "KO", "MSFT"]
    for i, symbol in enumerate(symbols):
        mem.profiles[symbol] = synthetic_profile(symbol)
        mem.closes[symbol] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
        # More news for later symbols, so prompt lengths differ: MSFT longest.
        days = [(2, 26), (2, 27), (3, 4), (3, 5)]  # two items in each of the two past weeks
        mem.news[symbol] = [NewsItem(published=dt.datetime(2024, m, d, 10, tzinfo=NEW_YORK),
                                     headline=f"{symbol} invented headline {d} " + "word " * 20 * i)
                            for m, d in days]
    results = gather(symbols[::-1], sources=Sources(mem, mem, mem), cutoff=dt.datetime(2024, 3, 9, tzinfo=NEW_YORK),
                     now=dt.datetime(2026, 1, 1, tzinfo=NEW_YORK), weeks=2)
    return [results[s] for s in symbols[::-1]]  # MSFT, KO, AXP


def test_results_come_back_in_input_order_batched_by_prompt_length(inputs):
    model = StubModel()
    results = run_forecasts(inputs, model, batch_size=2, context_tokens=100_000)
    assert [r.inputs.symbol for r in results] == ["MSFT", "KO", "AXP"]
    assert model.batches == [["AXP", "KO"], ["MSFT"]]  # shortest prompts together
    assert all(r.forecast.parsed and r.forecast.move_bin.label == "down by 1-2%" for r in results)
    assert all(r.dropped == () for r in results)


def test_prompts_that_do_not_fit_drop_their_oldest_news(inputs):
    model = StubModel()
    msft = inputs[0]
    full = run_forecasts([msft], model, context_tokens=100_000, max_new_tokens=100)[0]
    tight = run_forecasts([msft], model, context_tokens=full.generation.prompt_tokens + 100 + 20,
                          max_new_tokens=100)[0]
    assert tight.dropped and tight.generation.prompt_tokens < full.generation.prompt_tokens
    assert tight.dropped[0].week_start == msft.parts.weeks[0].start  # oldest week first


def test_json_has_the_structured_forecast(inputs):
    result = run_forecasts(inputs[-1:], StubModel())[0]
    data = forecast_record(result).to_json()
    assert data["symbol"] == "AXP" and data["target_week"] == "2024-03-10 to 2024-03-17"
    assert data["prediction"] == {"direction": "down", "magnitude": "1-2%", "label": "down by 1-2%",
                                  "as_written": "Down by 1-2%"}
    assert data["positive_developments"] == ["Invented strength."]
    assert data["potential_concerns"] == ["Invented risk."]
    assert data["parsed"] is True and data["model"] == "stub (no adapter)"


def test_json_carries_the_distribution_and_what_follows_from_it(inputs):
    from tests.fakes.forecasts import CannedAnalyst, distribution

    bins = distribution(0.3, top="D2", p_top=0.4)  # the answer says "Down by 1-2%"
    data = forecast_record(run_forecasts(inputs[-1:], CannedAnalyst(ANSWER, bins))[0]).to_json()
    probabilities = data["probabilities"]
    assert probabilities["bins"] == bins.to_json()
    assert probabilities["p_up"] == pytest.approx(0.3) and probabilities["p_down"] == pytest.approx(0.7)
    assert probabilities["most_likely"] == {"code": "D2", "label": "down by 1-2%", "p": pytest.approx(0.4)}
    assert probabilities["stated"] == {"code": "D2", "p": pytest.approx(0.4)}
    # Midpoints ±0.5 … ±5.5: up bins 0.05 each (sum of midpoints 18) = 0.9; D2 0.4 · -1.5 = -0.6; the other five
    # down bins 0.06 each, their midpoints summing to -16.5: -0.99. Expected move 0.9 - 0.6 - 0.99 = -0.69%.
    assert probabilities["expected_move"] == pytest.approx(-0.69)


def test_json_has_no_probabilities_when_the_backend_gave_none(inputs):
    assert forecast_record(run_forecasts(inputs[-1:], StubModel())[0]).probabilities is None
