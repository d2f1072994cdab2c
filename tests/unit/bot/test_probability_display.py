"""The model's probabilities where people read forecasts: the forecast message, the digest table, the weekly
summary and `/track`; and nothing extra where a backend (or an older ledger entry) had none."""

from __future__ import annotations

import datetime as dt
import io

from bot.blocks import digest_message, forecast_message
from bot.track_blocks import summary_message, track_message
from engine.data.inputs import Sources
from engine.evaluation.track import TrackEntry, score_track
from engine.market.weeks import NEW_YORK, Week
from tests.fakes.forecasts import canned_forecast, distribution, stepped_market
from tests.unit.bot.layout_cases import track_view

AT = dt.datetime(2024, 3, 8, 18, tzinfo=NEW_YORK)
LATEST = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))


def shown(blocks: list[dict]) -> str:
    texts = [b["text"]["text"] for b in blocks if "text" in b]
    return "\n".join(texts + [e["text"] for b in blocks for e in b.get("elements", [])])


def _forecast(symbol: str = "AXP", prediction: str | None = "Up by 1-2%", bins=None) -> dict:
    market = stepped_market(("AXP", "KO"))
    return canned_forecast(Sources(market, market, market), symbol, at=AT, prediction=prediction, distribution=bins)


def test_the_forecast_shows_the_stated_bins_probability_and_p_up_next_to_the_prediction():
    text, blocks = forecast_message(_forecast(bins=distribution(0.61, top="U2", p_top=0.34)))
    assert "*Up by 1-2%* · 34% · P(up) 61% for the week" in shown(blocks)
    assert "up by 1-2% · 34% · P(up) 61% for the week" in text
    assert "the model's probability of that bin" in shown(blocks)  # the footer says what the numbers are


def test_without_probabilities_the_forecast_shows_nothing_extra():
    text, blocks = forecast_message(_forecast())
    assert "P(up)" not in shown(blocks) and "P(up)" not in text and "%* for the week" in shown(blocks)
    # An unparsed answer names no bin: no probability line either, even when the backend computed them.
    _, blocks = forecast_message(_forecast(prediction=None, bins=distribution(0.61, top="U2", p_top=0.34)))
    assert "P(up)" not in shown(blocks)


def test_the_digest_table_carries_the_probabilities_per_ticker():
    with_p = _forecast("AXP", "Down by 0-1%", distribution(0.2, top="D1", p_top=0.55))
    without = _forecast("KO", "Up by 0-1%")
    _, blocks = digest_message("2024-03-10 to 2024-03-17", [with_p, without], {})
    axp, ko = [line for line in shown(blocks).splitlines() if line.startswith("`")][:2]
    assert "down by 0-1%" in axp and "55% · P(up) 20%" in axp
    assert "up by 0-1%" in ko and "P(up)" not in ko


def _entries(n: int, *, p_up: float | None) -> list[TrackEntry]:
    return [TrackEntry(f"e{k}", f"T{k:02d}", LATEST, dt.datetime(2024, 3, 8, 12, tzinfo=NEW_YORK), True, "up", "1-2%",
                       "Up by 1-2%", realized_return=0.012 if k % 2 else -0.004, previous_return=0.01, p_up=p_up)
            for k in range(n)]


def test_the_summary_posts_calibration_once_enough_forecasts_carry_a_probability():
    # 20 forecasts at P(up) 0.6, half of them up: Brier 0.5·0.16 + 0.5·0.36 = 0.26; ECE |0.5 - 0.6| = 0.1;
    # log loss -(ln 0.6 + ln 0.4) / 2 = 0.714.
    _, blocks = summary_message(score_track(_entries(20, p_up=0.6), latest=LATEST, bootstrap=50))
    assert ("*Calibration of P(up)*, 20 forecasts: Brier 0.260 (0.25 = always saying 50%) · ECE 0.100 · log loss "
            "0.714.") in shown(blocks)
    _, blocks = summary_message(score_track(_entries(19, p_up=0.6), latest=LATEST, bootstrap=50))
    assert "19 scored forecast(s) with a probability so far; shown from 20" in shown(blocks)
    _, blocks = summary_message(score_track(_entries(20, p_up=None), latest=LATEST, bootstrap=50))
    assert "Calibration" not in shown(blocks)


def test_track_shows_brier_when_scored_forecasts_carry_a_probability():
    record = track_view(recorded=4, report=score_track(_entries(4, p_up=0.6), latest=LATEST, bootstrap=50))
    _, blocks = track_message(record)
    assert "*Brier (P(up)):* 0.260 over 4 forecast(s) with a probability (0.25 = always saying 50%)" in shown(blocks)
    record = track_view(recorded=4, report=score_track(_entries(4, p_up=None), latest=LATEST, bootstrap=50))
    assert "Brier" not in shown(track_message(record)[1])


def test_the_terminal_panel_shows_them_too_and_nothing_without():
    from rich.console import Console

    from engine.data.inputs import gather
    from engine.forecast import run_forecasts
    from forecaster.terminal import forecast_panel
    from tests.fakes.forecasts import CannedAnalyst, answer

    market = stepped_market(("AXP",))
    inputs = gather(["AXP"], sources=Sources(market, market, market), cutoff=AT, now=AT, weeks=2)["AXP"]

    def render(bins) -> str:
        result = run_forecasts([inputs], CannedAnalyst(answer("Up by 1-2%"), bins))[0]
        console = Console(width=200, record=True, file=io.StringIO())
        console.print(forecast_panel(result))
        return console.export_text()

    text = render(distribution(0.61, top="U2", p_top=0.34))
    assert "▲ Up by 1-2% · 34% · P(up) 61%  for" in text
    assert "most likely Up by 1-2% (34%), expected move" in text
    assert "P(up)" not in render(None)


def test_the_terminal_panel_shows_a_repeated_item_once_as_slack_does():
    from rich.console import Console

    from engine.data.inputs import gather
    from engine.forecast import run_forecasts
    from forecaster.terminal import forecast_panel
    from tests.fakes.forecasts import CannedAnalyst
    from tests.unit.bot.layout_cases import fingpt_answer

    market = stepped_market(("AXP",))
    inputs = gather(["AXP"], sources=Sources(market, market, market), cutoff=AT, now=AT, weeks=2)["AXP"]
    repeated = fingpt_answer(["Orders grew."], ["Costs may rise.", "Costs may rise.", "A lawsuit."], "Steady.")
    console = Console(width=200, record=True, file=io.StringIO())
    console.print(forecast_panel(run_forecasts([inputs], CannedAnalyst(repeated))[0]))
    text = console.export_text()
    assert "1. Costs may rise. (written 2 times)" in text and "2. A lawsuit." in text
    assert text.count("Costs may rise.") == 1
