"""The 👍 / 👎 buttons under a forecast (each answer, and each analysis in a digest's thread): one actions block,
both buttons carrying the forecast's ledger id (`jobs.ledger.models.Forecast.id`, "<job id>:<TICKER>") as their
value, their labels the counts so far. A click comes back to the bot as a block action (`bot.votes`), which records
it and edits the counts in place.

Pure: no Slack, no database.
"""

from __future__ import annotations

import json

from bot.blocks import BLOCKS_BUDGET, MAX_BLOCKS, fit

VOTES_BLOCK_ID = "forecast_votes"
VOTE_ACTIONS = {"vote_up": "up", "vote_down": "down"}  # action_id → the vote it casts (jobs.ledger.votes)
_LABELS = {"up": ":+1:", "down": ":-1:"}
_VALUE_LIMIT = 2000  # Slack's limit on a button's value


def vote_actions(forecast_id: str, *, up: int = 0, down: int = 0) -> dict:
    """The actions block: 👍 and 👎 with their counts ("👍 3"), each valued with `forecast_id`."""
    if not forecast_id or len(forecast_id) > _VALUE_LIMIT:
        raise ValueError(f"a forecast id of 1 to {_VALUE_LIMIT} characters, not {len(forecast_id)}")
    counts = {"up": up, "down": down}
    return {"type": "actions", "block_id": VOTES_BLOCK_ID, "elements": [
        {"type": "button", "action_id": action,
         "text": {"type": "plain_text", "emoji": True, "text": f"{_LABELS[vote]} {counts[vote]}"},
         "value": forecast_id}
        for action, vote in VOTE_ACTIONS.items()]}


def with_votes(blocks: list[dict], forecast_id: str, *, up: int = 0, down: int = 0) -> list[dict]:
    """`blocks` (one fitted message: a header, the body, the small-print footer) with the buttons under the body,
    above the footer, which stays the last block; fitted again with room kept for the buttons."""
    actions = vote_actions(forecast_id, up=up, down=down)
    room = BLOCKS_BUDGET - len(json.dumps(actions, ensure_ascii=False)) - 2
    fitted = fit(blocks, budget=room, max_blocks=MAX_BLOCKS - 1)
    return [*fitted[:-1], actions, *fitted[-1:]]


def votes_block_of(blocks: list[dict]) -> dict | None:
    return next((b for b in blocks if b.get("type") == "actions" and b.get("block_id") == VOTES_BLOCK_ID), None)


def with_counts(blocks: list[dict], forecast_id: str, *, up: int, down: int) -> list[dict] | None:
    """The message's `blocks` (as Slack sent them with a click) with new counts on its buttons; None when they
    hold no buttons for `forecast_id` (nothing to edit)."""
    found = votes_block_of(blocks)
    if found is None or not any(e.get("value") == forecast_id for e in found.get("elements", [])):
        return None
    fresh = vote_actions(forecast_id, up=up, down=down)
    return [fresh if block is found else block for block in blocks]
