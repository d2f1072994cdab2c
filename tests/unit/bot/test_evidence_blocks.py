"""The evidence under each item of a forecast, and the "Sources" reply: links escaped, unsupported items marked,
within Slack's limits, and forecasts stored before evidence existed shown as they always were."""

from __future__ import annotations

from bot.blocks import NOT_FOUND, forecast_message, sources_message
from engine.forecast_record import ForecastRecord
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import as_payload, fingpt_answer, forecast, markup_not_ours, stored_as, texts

HOSTILE_HEADLINE = "Orders <!channel> grew & margins > 5% <https://evil.example|bank.com>"
URL = "https://news.example/a?x=1&y=2"


def _source(headline: str = HOSTILE_HEADLINE, url: str = URL) -> dict:
    return {"headline": headline, "source": "Wire <b>", "date": "2024-03-05", "url": url, "score": 0.5}


def _with_evidence(positives: list[list[dict]], concerns: list[list[dict]],
                   read: list[dict] | None = None) -> ForecastRecord:
    data = forecast(fingpt_answer(["Orders grew.", "Margins widened."], ["A lawsuit is pending."], "Steady."))
    assert data.parsed and data.evidence is not None  # every new forecast carries it
    return stored_as(data, evidence={"method": "word-cover-v1", "threshold": 0.35, "read": read or [],
                                     "positive_developments": positives, "potential_concerns": concerns})


def test_each_item_shows_its_sources_as_escaped_links_and_an_unsupported_item_is_marked():
    data = _with_evidence([[_source()], [_source("Second <item>", "javascript:alert(1)")]], [[]])
    text, blocks = forecast_message(data)
    payload = as_payload(text, blocks)
    assert slack_problems(payload) == []
    contexts = [b["elements"] for b in blocks if b["type"] == "context"][:-1]  # the last is the footer
    first, second, concern = ([e["text"] for e in elements] for elements in contexts)
    assert first == [":link: <https://news.example/a?x=1&amp;y=2|Orders &lt;!channel&gt; grew &amp; margins &gt; 5% "
                     "&lt;https://evil.example|bank.com&gt;> · Wire &lt;b&gt; · 2024-03-05"]
    assert second == [":link: Second &lt;item&gt; · Wire &lt;b&gt; · 2024-03-05"]  # not a web URL: no link
    assert concern == [NOT_FOUND] and "not found in the news it read" in NOT_FOUND
    # The only markup Slack parses is our one link.
    assert markup_not_ours(payload, ours=("<https://news.example/a?x=1&amp;y=2|",)) == []
    shown = "\n".join(texts(payload))
    assert "*Positive Developments*\n1. Orders grew." in shown and "2. Margins widened." in shown
    assert "*Potential Concerns*\n1. A lawsuit is pending." in shown


def test_a_forecast_stored_without_evidence_shows_the_plain_lists():
    data = stored_as(forecast(fingpt_answer(["Orders grew."], ["A lawsuit is pending."], "Steady.")), evidence=None)
    assert data.evidence is None
    _, blocks = forecast_message(data)
    assert [b["type"] for b in blocks] == ["header", "section", "section", "section", "section", "context"]
    assert NOT_FOUND not in str(blocks)


def test_many_long_sources_still_fit_one_message():
    long = _source("Very long headline " * 40, URL + "&pad=" + "x" * 2000)
    data = _with_evidence([[long] * 3, [long] * 3], [[long] * 3])
    text, blocks = forecast_message(data)
    assert slack_problems(as_payload(text, blocks)) == []
    assert blocks[0]["type"] == "header" and "Not financial advice" in blocks[-1]["elements"][0]["text"]


def test_the_sources_reply_lists_every_headline_read_week_by_week_escaped_and_within_limits():
    read = [{"week": "2024-03-03 to 2024-03-10", "headline": HOSTILE_HEADLINE, "source": "Wire", "date": "2024-03-05",
             "url": URL},
            {"week": "2024-03-10 to 2024-03-17", "headline": "Plain one", "source": "", "date": "", "url": ""}]
    text, blocks = sources_message(_with_evidence([[], []], [[]], read))
    payload = as_payload(text, blocks)
    assert text == "Sources: the 2 news items the model read for AXP"
    assert slack_problems(payload) == []
    shown = "\n".join(texts(payload))
    assert ("*2024-03-03 to 2024-03-10*\n• <https://news.example/a?x=1&amp;y=2|Orders &lt;!channel&gt; grew &amp; "
            "margins &gt; 5% &lt;https://evil.example|bank.com&gt;> · Wire · 2024-03-05") in shown
    assert "*2024-03-10 to 2024-03-17*\n• Plain one" in shown
    assert markup_not_ours(payload, ours=("<https://news.example/a?x=1&amp;y=2|",)) == []
    many = [read[0] | {"headline": f"Item {n} " + "word " * 30} for n in range(400)]
    text, blocks = sources_message(_with_evidence([[], []], [[]], many))
    assert slack_problems(as_payload(text, blocks)) == [] and "shortened" in str(blocks)


def test_an_item_the_model_wrote_twice_is_shown_once_and_says_so():
    """Small bases repeat an item word for word (the real Qwen2.5-1.5B-architecture base did, on 2 of 4 held-out
    rows): shown once, numbered on, with the first writing's sources."""
    answer = fingpt_answer(["Orders grew.", "Margins widened."],
                           ["Costs may rise.", "A lawsuit is pending.", "costs may rise"], "Steady.")
    data = stored_as(forecast(answer), evidence={
        "method": "word-cover-v1", "threshold": 0.35, "read": [],
        "positive_developments": [[], []], "potential_concerns": [[_source("Costs story")], [], []]})
    assert data.potential_concerns == ("Costs may rise.", "A lawsuit is pending.", "costs may rise")
    _, blocks = forecast_message(data)
    shown = [b["text"]["text"] for b in blocks if b["type"] == "section"]
    assert "*Potential Concerns*\n1. Costs may rise. _(written 2 times)_" in shown
    assert "2. A lawsuit is pending." in shown and not any("costs may rise" in s for s in shown)
    concerns = shown.index("*Potential Concerns*\n1. Costs may rise. _(written 2 times)_")
    assert "Costs story" in blocks[[b.get("text", {}).get("text") for b in blocks].index(shown[concerns]) + 1][
        "elements"][0]["text"]  # the first writing's sources under it
    _, plain = forecast_message(stored_as(data, evidence=None))  # no evidence: the plain list, the same way
    assert "*Potential Concerns*\n1. Costs may rise. _(written 2 times)_\n2. A lawsuit is pending." in [
        b["text"]["text"] for b in plain if b["type"] == "section"]
