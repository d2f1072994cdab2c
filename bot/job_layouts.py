"""The messages jobs send, gathered in one place: this module is the `layouts` of `bot.outbox.SlackOutbox`, and
implements `jobs.slack_port.JobLayouts` (a module satisfies a Protocol by its functions). The layouts themselves
live beside their kind (bot.blocks, bot.retrain_blocks, bot.track_blocks); what is here is written for jobs only:
the words for Slack's refusals, and a note under an answer."""

from __future__ import annotations

from bot import vote_blocks
from bot.blocks import (
    context,
    digest_message,
    failure_message,
    fit,
    forecast_message,
    progress_message,
    sources_message,
)
from bot.mrkdwn import code, inline
from bot.retrain_blocks import evaluation_status, retrain_result_message, training_status
from bot.slack_ops import CHANNEL_REFUSALS, TOKEN_REFUSALS
from bot.track_blocks import summary_message
from bot.watch_blocks import watch_added_message

__all__ = ["BOT_HANDLE", "code", "digest_message", "evaluation_status", "failure_message", "forecast_message",
           "inline", "progress_message", "refusal_fix", "retrain_result_message", "sources_message",
           "summary_message",
           "training_status", "watch_added_message", "with_note", "with_votes"]

BOT_HANDLE = "@forecaster"  # features.bot_user.display_name in bot/manifest.json


def with_note(blocks: list[dict], note: str) -> list[dict]:
    """`blocks` with `note` (our mrkdwn) in small print under them, fitted to one message again."""
    return fit([*blocks, context(note)])


def with_votes(blocks: list[dict], forecast_id: str) -> list[dict]:
    """`blocks` with the 👍/👎 buttons under them for the ledger's forecast `forecast_id` (bot.vote_blocks)."""
    return vote_blocks.with_votes(blocks, forecast_id)


def refusal_fix(error: str, channel: str) -> str:
    """What the requester can do about Slack's permanent refusal `error` (ours: mrkdwn, a channel mention)."""
    if error == "not_in_channel":
        return f"I can't post in <#{channel}>: I'm not a member. Invite me with `/invite {BOT_HANDLE}` there, then " \
               "run the command again."
    if error == "channel_not_found":
        return (f"I can't find <#{channel}>: it was deleted, or it is private and I was never added. Add me with "
                f"`/invite {BOT_HANDLE}`, or ask in another channel.")
    if error == "is_archived":
        return f"<#{channel}> is archived, so nothing can be posted there. Ask in an active channel."
    if error in CHANNEL_REFUSALS:
        return f"Slack does not let me post in <#{channel}>. A workspace admin can allow it."
    if error == "missing_scope":
        return "The app lacks a permission Slack needs for this: an admin must add it and reinstall the app (the " \
               "worker log names it)."
    if error in TOKEN_REFUSALS:
        return "Slack no longer accepts my token: an admin must reinstall the app or update `SLACK_BOT_TOKEN` on " \
               "the worker."
    return "That is our bug, not yours; the team can find it in the worker log."
