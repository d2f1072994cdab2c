"""bot.blocks: the forecast, digest and failure layouts say what happened, with the data shown as written."""

from __future__ import annotations

import json

from bot.blocks import BLOCKS_BUDGET, SHORTENED, digest_message, failure_message, forecast_message
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import UNREADABLE_ANSWER, as_payload, fingpt_answer, forecast, texts


def body(blocks: list[dict]) -> str:
    return "\n".join(texts({"blocks": blocks}))


def test_a_parsed_forecast_shows_its_sections_with_the_models_words_escaped():
    data = forecast(fingpt_answer(["Buyback of $2B & a raised dividend"], ["P/E < 15 looks stretched"],
                                  "Margins > peers. <!channel> should buy."))
    assert data.parsed
    text, blocks = forecast_message(data)
    assert text == f"AXP: up by 1-2% for the week {data.target_week}"
    shown = body(blocks)
    assert "*Positive Developments*\n1. Buyback of $2B &amp; a raised dividend" in shown
    assert "*Potential Concerns*\n1. P/E &lt; 15 looks stretched" in shown
    assert "*Analysis*\nMargins &gt; peers. &lt;!channel&gt; should buy." in shown
    assert blocks[0] == {"type": "header", "text": {"type": "plain_text", "text": "AXP weekly forecast"}}


def test_an_unparsed_answer_is_shown_as_written_and_escaped():
    data = forecast("Up, surely. See <https://evil.example|bank.com> & ```rm -rf``` for P/E < 15")
    assert not data.parsed
    text, blocks = forecast_message(data)
    assert text.endswith("(unparsed answer)")
    shown = body(blocks)
    assert "could not be parsed" in shown
    assert "Up, surely. See &lt;https://evil.example|bank.com&gt; &amp; '''rm -rf''' for P/E &lt; 15" in shown


def test_a_very_long_raw_answer_is_shortened_to_one_message_and_says_so():
    data = forecast("blah <b> " * 20_000)
    text, blocks = forecast_message(data)
    assert slack_problems(as_payload(text, blocks)) == []
    assert len(json.dumps(blocks, ensure_ascii=False)) <= BLOCKS_BUDGET
    assert blocks[-2]["text"]["text"] == SHORTENED and blocks[-1]["type"] == "context"  # the footer survives
    shown = body(blocks)
    assert shown.count("blah &lt;b&gt;") > 650  # as much as fits (about 10,000 of the 12,000), not a stub
    assert "&l…" not in shown and "&lt…" not in shown


def test_the_digest_counts_unreadable_answers_on_their_own():
    parsed = forecast(fingpt_answer(["a"], ["b"], "Fine. Really."), symbol="AXP")
    down = forecast(fingpt_answer(["a"], ["b"], "Meh.", prediction="Down by 2-3%"), symbol="KO")
    unreadable = forecast(UNREADABLE_ANSWER, symbol="MSFT")
    text, blocks = digest_message("2024-03-10 to 2024-03-17", [parsed, down, unreadable], {"IBM": "no prices"})
    assert text == ("Dow30 digest for 2024-03-10 to 2024-03-17: 1 up, 1 down, 1 could not be read as a forecast, "
                    "1 failed (no data)")
    table = blocks[1]["text"]["text"]
    assert "`MSFT ` · unreadable" in table and "_answer not parsed (see thread)_" in table
    assert "`AXP  ` ▲ up by 1-2%" in table and "Fine" in table


def test_a_digest_of_nothing_but_unreadable_answers_says_so_instead_of_zero_up_zero_down():
    symbols = [f"T{k:02d}" for k in range(30)]
    forecasts = [forecast(UNREADABLE_ANSWER, symbol=s) for s in symbols]
    text, blocks = digest_message("2024-03-10 to 2024-03-17", forecasts, {})
    assert text == ("Dow30 digest for 2024-03-10 to 2024-03-17: 30 answers could not be read as a forecast, "
                    "0 failed (no data)")
    assert "0 up, 0 down" not in body(blocks) and text in blocks[-1]["elements"][0]["text"]


def test_the_digest_escapes_tickers_reasons_and_failures():
    data = forecast(fingpt_answer(["a"], ["b"], "Chips & <!here> rally. Next."), symbol="A`B")
    text, blocks = digest_message("w", [data], {"<@U1>": "Finnhub said <!channel> & more"})
    shown = body(blocks)
    assert "`A'B  `" in shown and "Chips &amp; &lt;!here&gt; rally" in shown
    assert "• &lt;@U1&gt;: Finnhub said &lt;!channel&gt; &amp; more" in shown


def test_a_failure_quotes_its_reason_as_data_and_keeps_our_hint():
    text, blocks = failure_message("No forecast for AXP", "Finnhub: <!channel> bad\nsymbol `X",
                                   hint="Check the ticker, then run `/forecast` again.")
    assert text == ":x: No forecast for AXP: Finnhub: &lt;!channel&gt; bad symbol 'X"
    assert blocks[-1]["elements"][0]["text"] == "Check the ticker, then run `/forecast` again."
