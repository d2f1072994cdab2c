"""Slack's limits on an ephemeral reply, asserted the same way by every test of the bot's answers."""

from __future__ import annotations

import json


def within_slack_limits(answer: dict) -> None:
    assert answer["response_type"] == "ephemeral"
    assert 0 < len(answer["text"]) <= 3000
    blocks = answer.get("blocks", [])
    assert len(blocks) <= 50
    for block in blocks:
        if block["type"] == "header":
            assert len(block["text"]["text"]) <= 150
        elif block["type"] == "section":
            assert len(block["text"]["text"]) <= 3000
        elif block["type"] == "context":
            assert len(block["elements"]) <= 10 and all(len(e["text"]) <= 3000 for e in block["elements"])
    # The ~13k characters of total block text past which Slack answers msg_blocks_too_long.
    assert len(json.dumps(blocks)) < 13_000
