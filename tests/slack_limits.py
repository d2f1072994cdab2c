"""What Slack would refuse in a message payload, checked the way Slack checks it.

`slack_problems(payload)` is the one validator: the tests of every layout assert it returns `[]`, and the fake
Slack server answers with the error code of its first problem. Each problem is written `"<slack error>: <where>:
<what>"`, the error being the one Slack's API returns for it (`invalid_blocks`, `msg_too_long`,
`msg_blocks_too_long`, `no_text`), so a caller can split on the first ": " to get the code.

Each block goes through slack_sdk's Block Kit model classes (`Block.parse(...)`, then `.validate_json()`), and
then through the published limits those classes leave out: text objects of 1 to 3,000 characters, a header's
plain_text of at most 150, at most 10 elements in a context, at most 50 blocks, at most 40,000 characters of
`text`, and no keys Slack does not know. The limits are written out here, not imported from `bot`, so a layout
that drifts from Slack's rules fails its test instead of moving the goalposts with it.
"""

from __future__ import annotations

import json
from typing import Any

from slack_sdk.errors import SlackObjectFormationError
from slack_sdk.models.blocks import Block

MAX_BLOCKS = 50
TEXT_MAX = 40_000  # the top-level `text`; Slack truncates or refuses beyond it (msg_too_long)
TEXT_OBJECT_MAX = 3_000  # a section's text, a context element's text
HEADER_MAX = 150
CONTEXT_ELEMENTS_MAX = 10
# The cumulative size of the blocks past which chat.postMessage answers msg_blocks_too_long. Undocumented; found
# near 13,200 characters (slackapi/bolt-js#2509, "12,000 text characters with a buffer for block containers").
# Counted here as the characters of the blocks' JSON (with text as characters, not as \u escapes: Slack counts
# what it decoded), which is stricter than counting their text alone.
BLOCKS_JSON_MAX = 13_000

TEXT_OBJECT_KEYS = {"plain_text": {"type", "text", "emoji"}, "mrkdwn": {"type", "text", "verbatim"}}
# The payload keys of chat.postMessage / chat.update / a response_url / a slash command's ack that we may send.
PAYLOAD_KEYS = {"text", "blocks", "channel", "ts", "thread_ts", "response_type", "replace_original",
                "delete_original", "mrkdwn", "unfurl_links", "unfurl_media", "reply_broadcast", "as_user",
                "attachments", "metadata", "parse", "link_names", "icon_emoji", "icon_url", "username", "token",
                "team_id"}  # Bolt's per-request client names the workspace (org-wide apps need it; Slack takes it)


def _text_object_problems(where: str, obj: Any, *, only: str | None = None, limit: int = TEXT_OBJECT_MAX) -> list[str]:
    """A text object: a known type (or the one required), known keys, a string of 1 to `limit` characters."""
    if not isinstance(obj, dict):
        return [f"invalid_blocks: {where}: a text object must be an object, not {type(obj).__name__}"]
    kind = obj.get("type")
    if kind not in TEXT_OBJECT_KEYS:
        return [f"invalid_blocks: {where}.type: must be plain_text or mrkdwn, not {kind!r}"]
    problems = []
    if only and kind != only:
        problems.append(f"invalid_blocks: {where}.type: must be {only}, not {kind}")
    unknown = set(obj) - TEXT_OBJECT_KEYS[kind]
    if unknown:
        problems.append(f"invalid_blocks: {where}: unknown keys {sorted(unknown)}")
    text = obj.get("text")
    if not isinstance(text, str):
        problems.append(f"invalid_blocks: {where}.text: must be a string, not {type(text).__name__}")
    elif not 1 <= len(text) <= limit:
        problems.append(f"invalid_blocks: {where}.text: must be 1 to {limit} characters, has {len(text)}")
    return problems


def _block_problems(where: str, block: Any) -> list[str]:
    if not isinstance(block, dict) or "type" not in block:
        return [f"invalid_blocks: {where}: a block must be an object with a type"]
    try:
        parsed = Block.parse(dict(block))
    except (TypeError, KeyError, ValueError, AttributeError) as exc:  # a required field missing or malformed
        return [f"invalid_blocks: {where}: {type(exc).__name__}: {exc}"]
    if parsed is None:
        return [f"invalid_blocks: {where}.type: unknown block type {block['type']!r}"]
    problems = []
    try:
        parsed.validate_json()
    except SlackObjectFormationError as exc:
        problems.append(f"invalid_blocks: {where}: {exc}")
    unknown = set(block) - set(parsed.attributes)
    if unknown:
        problems.append(f"invalid_blocks: {where}: unknown keys {sorted(unknown)}")
    kind = block["type"]
    if kind == "header":
        problems += _text_object_problems(f"{where}.text", block.get("text"), only="plain_text", limit=HEADER_MAX)
    elif kind == "section":
        if "text" in block:
            problems += _text_object_problems(f"{where}.text", block["text"])
        for n, field in enumerate(block.get("fields") or []):
            problems += _text_object_problems(f"{where}.fields[{n}]", field, limit=2_000)
    elif kind == "context":
        elements = block.get("elements")
        if not isinstance(elements, list) or not elements:
            problems.append(f"invalid_blocks: {where}.elements: must be a non-empty list")
        else:
            if len(elements) > CONTEXT_ELEMENTS_MAX:
                problems.append(f"invalid_blocks: {where}.elements: at most {CONTEXT_ELEMENTS_MAX}, has "
                                f"{len(elements)}")
            for n, element in enumerate(elements):
                if not (isinstance(element, dict) and element.get("type") == "image"):
                    problems += _text_object_problems(f"{where}.elements[{n}]", element)
    return problems


def slack_problems(payload: dict) -> list[str]:
    """Every reason Slack would refuse this message (a chat.postMessage, chat.update or response_url body, or a
    slash command's ack); `[]` when it would take it. `blocks` may be a list or, as in a form-encoded call, its
    JSON string."""
    if not isinstance(payload, dict):
        return [f"invalid_arguments: payload: must be an object, not {type(payload).__name__}"]
    problems = [f"invalid_arguments: payload: unknown key {key!r}" for key in sorted(set(payload) - PAYLOAD_KEYS)]
    text, blocks = payload.get("text"), payload.get("blocks")
    if isinstance(blocks, str):
        try:
            blocks = json.loads(blocks)
        except ValueError as exc:
            return problems + [f"invalid_blocks_format: blocks: not JSON ({exc})"]
    if text is not None and not isinstance(text, str):
        problems.append(f"invalid_arguments: text: must be a string, not {type(text).__name__}")
    elif text is not None and len(text) > TEXT_MAX:
        problems.append(f"msg_too_long: text: at most {TEXT_MAX} characters, has {len(text)}")
    if blocks is None:
        if not text:
            problems.append("no_text: text: a message without blocks needs text")
        return problems
    if not isinstance(blocks, list):
        return problems + [f"invalid_blocks_format: blocks: must be a list, not {type(blocks).__name__}"]
    if not blocks and not text:
        problems.append("no_text: blocks: empty, and no text either")
    if len(blocks) > MAX_BLOCKS:
        problems.append(f"invalid_blocks: blocks: at most {MAX_BLOCKS}, has {len(blocks)}")
    for n, block in enumerate(blocks):
        problems += _block_problems(f"blocks[{n}]", block)
    ids = [b["block_id"] for b in blocks if isinstance(b, dict) and "block_id" in b]
    problems += [f"invalid_blocks: blocks: block_id {i!r} is used twice" for i in sorted({i for i in ids
                                                                                          if ids.count(i) > 1})]
    size = len(json.dumps(blocks, ensure_ascii=False))
    if size >= BLOCKS_JSON_MAX:
        problems.append(f"msg_blocks_too_long: blocks: under {BLOCKS_JSON_MAX} characters of JSON, has {size}")
    return problems


def within_slack_limits(answer: dict) -> None:
    """An ephemeral ack of a slash command: Slack would take it, and its text fits the 3,000 an ack shows."""
    assert answer["response_type"] == "ephemeral"
    assert 0 < len(answer["text"]) <= 3000
    problems = slack_problems(answer)
    assert problems == [], problems
