"""A call whose P(up) lies within 0.5 ± SIGNAL_BAND is shown as "no clear signal", with its bin and P(up) but
without an arrow: in the forecast message, the digest and `/track`. Clear calls, forecasts without probabilities
and forecasts stored before the flag look exactly as they always did. Every layout stays one Slack takes."""

from __future__ import annotations

import pytest

from bot.blocks import digest_message, forecast_message
from bot.track_blocks import track_message
from engine.forecast_record import ForecastRecord
from jobs.ledger.views import RecentForecast
from tests.fakes.forecasts import distribution
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import (
    LATEST,
    UNREADABLE_ANSWER,
    as_payload,
    fingpt_answer,
    forecast,
    markup_not_ours,
    recent_forecast,
    stored_as,
    texts,
    track_report,
    track_view,
)

WEEK = LATEST.period
BAND = 0.05
ARROWS = (":arrow_up:", ":arrow_down:", "▲", "▼")


def shown(text: str, blocks: list[dict]) -> str:
    return "\n".join(texts(as_payload(text, blocks)))


def assert_slack_takes(text: str, blocks: list[dict]) -> None:
    problems = slack_problems(as_payload(text, blocks))
    assert problems == [], problems


def call(prediction: str = "Up by 1-2%", *, p_up: float, top: str = "U2", p_top: float = 0.23, symbol: str = "AXP",
         band: float = BAND, analysis: str = "Mixed news. Little to go on.") -> ForecastRecord:
    return forecast(fingpt_answer(["Buyback"], ["Costs"], analysis, prediction=prediction), symbol=symbol,
                    distribution=distribution(p_up, top=top, p_top=p_top), signal_band=band)


def no_signal(**kwargs) -> ForecastRecord:
    data = call(p_up=0.52, **kwargs)
    assert data.parsed and data.probabilities.clear_signal is False
    return data


# ---- the forecast message ---------------------------------------------------------------------------------------


def test_a_call_within_the_band_says_no_clear_signal_with_its_bin_and_p_up_and_no_arrow():
    text, blocks = forecast_message(no_signal())
    assert blocks[1]["text"]["text"] == (f":left_right_arrow: *No clear signal* · leans Up by 1-2% · 23% · P(up) 52% "
                                         f"for the week {WEEK}")
    assert text == f"AXP: no clear signal (leans up by 1-2%) · 23% · P(up) 52% for the week {WEEK}"
    footer = blocks[-1]["elements"][0]["text"]
    assert "no clear signal: P(up) within 50% ± 5 points" in footer
    assert not any(arrow in shown(text, blocks) for arrow in ARROWS)
    assert_slack_takes(text, blocks)


def test_the_footer_gives_the_band_that_was_used():
    _, blocks = forecast_message(no_signal(band=0.025))
    assert "P(up) within 50% ± 2.5 points" in blocks[-1]["elements"][0]["text"]
    data = no_signal()
    data = stored_as(data, probabilities=data.to_json()["probabilities"] | {"signal_band": None})
    _, blocks = forecast_message(data)  # a flag without its band: still a few words, no number
    assert "no clear signal: P(up) too close to 50%" in blocks[-1]["elements"][0]["text"]


def test_a_clear_call_looks_exactly_as_it_did_before_the_band():
    clear = call(p_up=0.61, p_top=0.34)
    assert clear.probabilities.clear_signal is True
    before = call(p_up=0.61, p_top=0.34, band=0.0)
    assert forecast_message(clear) == forecast_message(before)
    text, blocks = forecast_message(clear)
    assert blocks[1]["text"]["text"] == f":arrow_up: *Up by 1-2%* · 34% · P(up) 61% for the week {WEEK}"
    assert "clear signal" not in shown(text, blocks)


def test_a_down_call_within_the_band_leans_down():
    text, blocks = forecast_message(call("Down by 0-1%", p_up=0.47, top="D1", p_top=0.2))
    assert blocks[1]["text"]["text"].startswith(":left_right_arrow: *No clear signal* · leans Down by 0-1% · 20% · "
                                                "P(up) 47%")
    assert ":arrow_down:" not in shown(text, blocks)


def test_forecasts_stored_before_the_flag_and_without_probabilities_show_their_arrow():
    old = no_signal()
    probabilities = old.to_json()["probabilities"]
    for key in ("clear_signal", "signal_band"):
        del probabilities[key]
    old = stored_as(old, probabilities=probabilities)
    text, blocks = forecast_message(old)
    assert blocks[1]["text"]["text"].startswith(":arrow_up: *Up by 1-2%* · 23% · P(up) 52%")
    assert "clear signal" not in shown(text, blocks)
    without = forecast(fingpt_answer(["a"], ["b"], "Fine."), signal_band=BAND)
    assert without.probabilities is None
    text, blocks = forecast_message(without)
    assert blocks[1]["text"]["text"].startswith(":arrow_up: *Up by 1-2%* for the week")


def test_an_unparsed_answer_within_the_band_is_shown_as_unparsed_only():
    data = forecast(UNREADABLE_ANSWER, distribution=distribution(0.5, top="U1", p_top=0.1), signal_band=BAND)
    assert not data.parsed and data.probabilities.clear_signal is False
    text, blocks = forecast_message(data)
    assert "could not be parsed" in shown(text, blocks) and "clear signal" not in shown(text, blocks)


def test_a_no_signal_forecast_keeps_data_escaped_and_within_slacks_limits():
    data = no_signal(symbol="<!channel>&", analysis="P/E < 15 & <@U0BAD>. " * 400)
    data = data.model_copy(update={"model": "<https://evil.example|bank.com>"})
    text, blocks = forecast_message(data)
    assert markup_not_ours(as_payload(text, blocks)) == []
    assert text.startswith("&lt;!channel&gt;&amp;: no clear signal (leans up by 1-2%)")
    assert_slack_takes(text, blocks)


# ---- the digest ---------------------------------------------------------------------------------------------------


def mixed_digest() -> list[dict]:
    return [call(p_up=0.61, symbol="AXP"), call(p_up=0.7, symbol="KO"),
            call("Down by 2-3%", p_up=0.2, top="D3", p_top=0.3, symbol="IBM"),
            no_signal(symbol="MSFT"), call("Down by 0-1%", p_up=0.46, top="D1", p_top=0.2, symbol="CVX"),
            forecast(UNREADABLE_ANSWER, symbol="JNJ")]


def test_the_digest_counts_calls_without_a_clear_signal_on_their_own_so_the_counts_add_up():
    text, blocks = digest_message(WEEK, mixed_digest(), {"MMM": "no prices"})
    assert text == (f"Dow30 digest for {WEEK}: 2 up, 1 down, 2 no clear signal, 1 could not be read as a forecast, "
                    "1 failed (no data)")
    assert text in blocks[-1]["elements"][0]["text"]
    lines = {line[1:5].strip(): line for line in blocks[1]["text"]["text"].splitlines()}
    assert lines["MSFT"].startswith("`MSFT ` ◆ no clear signal (up by 1-2%) 23% · P(up) 52%")
    assert lines["CVX"].startswith("`CVX  ` ◆ no clear signal (down by 0-1%) 20% · P(up) 46%")
    assert not any(arrow in lines[s] for s in ("MSFT", "CVX") for arrow in ARROWS)
    assert lines["AXP"].startswith("`AXP  ` ▲ up by 1-2%") and lines["IBM"].startswith("`IBM  ` ▼ down by 2-3%")
    assert lines["JNJ"].startswith("`JNJ  ` · unreadable")
    assert_slack_takes(text, blocks)


def test_a_digest_without_such_calls_reads_as_before():
    text, _ = digest_message(WEEK, [call(p_up=0.61), forecast(UNREADABLE_ANSWER, symbol="KO")], {})
    assert text == f"Dow30 digest for {WEEK}: 1 up, 0 down, 1 could not be read as a forecast, 0 failed (no data)"


def test_a_digest_of_thirty_calls_without_a_clear_signal_and_its_thread_are_ones_slack_takes():
    symbols = [f"T{k:02d}&" for k in range(30)]
    forecasts = [no_signal(symbol=s, analysis="Chips & <!here> rally " * 30 + ". More.") for s in symbols]
    text, blocks = digest_message(WEEK, forecasts, {})
    assert text.endswith("0 up, 0 down, 30 no clear signal, 0 could not be read as a forecast, 0 failed (no data)")
    assert markup_not_ours(as_payload(text, blocks)) == []
    assert_slack_takes(text, blocks)
    for data in forecasts:
        assert_slack_takes(*forecast_message(data))


# ---- /track -------------------------------------------------------------------------------------------------------


def recent(clear_signal: bool | None, *, k: int = 0, ticker: str = "AXP", **changes) -> RecentForecast:
    return recent_forecast(**{"id": f"e{k}", "ticker": ticker, "target_week": WEEK, "parsed": True,
                              "direction": "up", "label": "up by 1-2%", "clear_signal": clear_signal,
                              "actual_label": "down by 0-1%", "realized_return": -0.004, "hit": False,
                              "counted": True, "why_not_counted": None} | changes)


def track_lines(rows: list[RecentForecast]) -> list[str]:
    text, blocks = track_message(track_view(rows, ticker="AXP", recorded=len(rows), report=track_report(["AXP"])))
    assert_slack_takes(text, blocks)
    return [line for t in texts(as_payload(text, blocks)) for line in t.splitlines() if line.startswith("`")]


def test_track_shows_a_call_without_a_clear_signal_with_its_bin_and_no_arrow():
    unclear, clear, before = track_lines([recent(False), recent(True, k=1), recent(None, k=2)])
    assert unclear == f"`{WEEK}` *AXP* ◆ no clear signal (Up by 1-2%) → down by 0-1% (-0.40%) :x:"
    assert not any(arrow in unclear for arrow in ARROWS)
    assert clear == before == f"`{WEEK}` *AXP* ▲ Up by 1-2% → down by 0-1% (-0.40%) :x:"


def test_track_rows_recorded_before_the_flag_and_unparsed_rows_read_as_before():
    row = recent(None)  # a forecast recorded before the flag: the ledger's column is empty
    unparsed = recent(False, k=1, parsed=False, direction="none", label=None, actual_label=None)
    old, unreadable = track_lines([row, unparsed])
    assert "▲ Up by 1-2%" in old
    assert "· unparsed answer → _pending_" in unreadable and "clear signal" not in unreadable


@pytest.mark.parametrize("n", [1, 60])
def test_track_with_many_calls_without_a_clear_signal_is_one_slack_takes(n):
    rows = [recent(False, k=k, ticker="<!channel>&AXP", counted=k % 2 == 0,
                   why_not_counted=None if k % 2 == 0 else "superseded " * 100) for k in range(n)]
    text, blocks = track_message(track_view(rows, recorded=900, report=track_report(["AXP", "KO"])))
    assert_slack_takes(text, blocks)
    assert markup_not_ours(as_payload(text, blocks)) == []
    assert "◆ no clear signal (Up by 1-2%)" in shown(text, blocks)
