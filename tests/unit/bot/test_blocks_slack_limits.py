"""tests.slack_limits: the validator every layout test relies on refuses what Slack refuses, with Slack's error."""

from __future__ import annotations

import json

import pytest

from tests.slack_limits import slack_problems, within_slack_limits


def section(text: str) -> dict:
    return {"type": "section", "text": {"type": "mrkdwn", "text": text}}


def context(*texts: str) -> dict:
    return {"type": "context", "elements": [{"type": "mrkdwn", "text": t} for t in texts]}


def header(text: str, kind: str = "plain_text") -> dict:
    return {"type": "header", "text": {"type": kind, "text": text}}


GOOD = {"text": "fallback", "blocks": [header("h" * 150), section("s" * 3000), context(*["c"] * 10),
                                       {"type": "divider"}]}


def test_a_message_at_every_limit_is_taken():
    assert slack_problems(GOOD) == []
    assert slack_problems({"text": "t" * 40_000}) == []
    assert slack_problems({"text": "x", "blocks": [section("s")] * 50}) == []
    assert slack_problems({"text": "x", "blocks": json.dumps(GOOD["blocks"])}) == []  # form-encoded blocks


@pytest.mark.parametrize("payload, error", [
    ({"text": "x", "blocks": [section("s")] * 51}, "invalid_blocks"),
    ({"text": "x", "blocks": [section("s" * 3001)]}, "invalid_blocks"),
    ({"text": "x", "blocks": [section("")]}, "invalid_blocks"),
    ({"text": "x", "blocks": [header("h" * 151)]}, "invalid_blocks"),
    ({"text": "x", "blocks": [header("h", kind="mrkdwn")]}, "invalid_blocks"),
    ({"text": "x", "blocks": [context(*["c"] * 11)]}, "invalid_blocks"),
    ({"text": "x", "blocks": [context("c" * 3001)]}, "invalid_blocks"),
    ({"text": "x", "blocks": [{"type": "context", "elements": []}]}, "invalid_blocks"),
    ({"text": "x", "blocks": [{"type": "section"}]}, "invalid_blocks"),
    ({"text": "x", "blocks": [{"type": "sektion", "text": {"type": "mrkdwn", "text": "s"}}]}, "invalid_blocks"),
    ({"text": "x", "blocks": [section("s") | {"colour": "red"}]}, "invalid_blocks"),
    ({"text": "x", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "s", "emoji": True}}]},
     "invalid_blocks"),
    ({"text": "x", "blocks": [{"type": "section", "text": {"type": "markdown", "text": "s"}}]}, "invalid_blocks"),
    ({"text": "x", "blocks": [section("s") | {"block_id": "a"}, section("t") | {"block_id": "a"}]},
     "invalid_blocks"),
    ({"text": "x", "blocks": [{"type": "divider", "block_id": "b" * 256}]}, "invalid_blocks"),
    ({"text": "x", "blocks": ["not a block"]}, "invalid_blocks"),
    ({"text": "x", "blocks": "[not json"}, "invalid_blocks_format"),
    ({"text": "x", "blocks": {"type": "divider"}}, "invalid_blocks_format"),
    ({"text": "t" * 40_001}, "msg_too_long"),
    ({"text": "x", "blocks": [section("s" * 2900)] * 5}, "msg_blocks_too_long"),
    ({"text": ""}, "no_text"),
    ({"blocks": []}, "no_text"),
    ({"text": "x", "channel_id": "C1"}, "invalid_arguments"),
])
def test_what_slack_refuses_is_named_with_slacks_error(payload, error):
    problems = slack_problems(payload)
    assert problems and problems[0].split(": ", 1)[0] == error, problems


def test_the_ack_check_is_the_validator_plus_what_an_ephemeral_reply_needs():
    within_slack_limits({"response_type": "ephemeral", "text": "ok", "blocks": [section("s")]})
    for bad in ({"response_type": "in_channel", "text": "ok"}, {"response_type": "ephemeral", "text": "t" * 3001},
                {"response_type": "ephemeral", "text": "ok", "blocks": [section("")]}):
        with pytest.raises(AssertionError):
            within_slack_limits(bad)
