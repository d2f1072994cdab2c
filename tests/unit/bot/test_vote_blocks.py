"""The 👍/👎 buttons (bot.vote_blocks) and the feedback lines of /track and the weekly summary: messages Slack takes
at their extremes (the longest answer, a digest's analysis, 60 voted lines), counts edited without touching the rest."""

from __future__ import annotations

import json

import pytest

from bot.blocks import forecast_message
from bot.track_blocks import feedback_line, summary_message, track_message
from bot.vote_blocks import VOTES_BLOCK_ID, vote_actions, with_counts, with_votes
from jobs.ledger.views import Feedback
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import as_payload, fingpt_answer, forecast, recent_forecast, track_report, track_view

TICKERS = [f"T{k:02d}" for k in range(30)]
FORECAST_ID = "forecast_BRK.B_live1733400000000_3wf_C0123ABCD:BRK.B"
FEEDBACK = Feedback(up=5, down=2, voters=3, forecasts=4, up_scored=4, up_hits=3, down_scored=1, down_hits=0)


def feedback(**changes) -> Feedback:
    return Feedback(**FEEDBACK.to_json() | changes)


def buttons(blocks: list[dict]) -> list[dict]:
    return [b for b in blocks if b.get("block_id") == VOTES_BLOCK_ID]


@pytest.mark.parametrize("answer", [
    fingpt_answer(["Strong card spending."], ["Credit losses."], "Steady demand."),
    fingpt_answer([f"Good news {k}: " + "x" * 400 for k in range(40)], ["Bad news: " + "y" * 2000] * 20,
                  "z " * 6000),
    "I would rather not say. " * 8000,  # unparsed, 200,000 characters
])
def test_the_buttons_go_under_every_answer_and_the_message_stays_one_slack_takes(answer):
    text, blocks = forecast_message(forecast(answer))
    voted = with_votes(blocks, FORECAST_ID)
    assert slack_problems(as_payload(text, voted)) == []
    assert voted[-2] == vote_actions(FORECAST_ID) and len(buttons(voted)) == 1  # under the body
    assert voted[0] == blocks[0] and voted[-1] == blocks[-1]  # the header and the footer stay
    assert [e["value"] for e in voted[-2]["elements"]] == [FORECAST_ID, FORECAST_ID]
    assert [e["text"]["text"] for e in voted[-2]["elements"]] == [":+1: 0", ":-1: 0"]


def test_new_counts_change_the_buttons_and_nothing_else():
    text, blocks = forecast_message(forecast(fingpt_answer(["Good."], ["Bad."], "Fine.")))
    voted = json.loads(json.dumps(with_votes(blocks, FORECAST_ID)))  # as Slack sends it back with a click
    counted = with_counts(voted, FORECAST_ID, up=3, down=1)
    assert [e["text"]["text"] for e in buttons(counted)[0]["elements"]] == [":+1: 3", ":-1: 1"]
    assert [b for b in counted if b.get("block_id") != VOTES_BLOCK_ID] == [*voted[:-2], voted[-1]]
    assert slack_problems(as_payload(text, counted)) == []
    assert with_counts(voted, "another:AXP", up=1, down=0) is None  # not this message's forecast
    assert with_counts(blocks, FORECAST_ID, up=1, down=0) is None  # a message without the buttons


def test_a_forecast_id_slack_cannot_carry_is_refused():
    with pytest.raises(ValueError):
        vote_actions("x" * 2001)
    with pytest.raises(ValueError):
        vote_actions("")


def test_the_feedback_line_counts_votes_people_and_how_the_voted_calls_did():
    assert feedback_line(FEEDBACK) == ("*Feedback:* :+1: 5 · :-1: 2 from 3 people on 4 forecast(s); on scored "
                                       "calls, :+1: 3/4 hit, :-1: 0/1 hit")
    assert feedback_line(feedback(voters=1, up_scored=0, down_scored=0)) == (
        "*Feedback:* :+1: 5 · :-1: 2 from 1 person on 4 forecast(s)")
    assert feedback_line(feedback(up=0, down=0)) == "" and feedback_line(None) == ""


def test_track_and_the_summary_show_the_feedback_within_slacks_limits():
    recent = [recent_forecast(id=f"e{k}", ticker="AXP", target_week="2024-03-10 to 2024-03-17", parsed=True,
                              direction="up", label="up by 1-2%", actual_label=None, realized_return=None, hit=None,
                              counted=True, why_not_counted=None, votes_up=k, votes_down=1) for k in range(60)]
    text, blocks = track_message(track_view(recent, recorded=900, report=track_report(TICKERS), feedback=FEEDBACK))
    shown = json.dumps(blocks, ensure_ascii=False)
    assert slack_problems(as_payload(text, blocks)) == []
    assert "*Feedback:* :+1: 5 · :-1: 2" in shown and "· :+1: 7 :-1: 1" in shown
    text, blocks = summary_message(track_report(["AXP", "KO"]), feedback=FEEDBACK)
    assert slack_problems(as_payload(text, blocks)) == [] and "*Feedback:* :+1: 5" in json.dumps(blocks)
    _, quiet = summary_message(track_report(["AXP", "KO"]), feedback=feedback(up=0, down=0))
    assert "Feedback" not in json.dumps(quiet)
