"""Asking in words: `@forecaster AXP` in a channel (the `app_mention` event), or `AXP` in a direct message to the
bot (`message.im`), does what `/forecast AXP` does: the same parsing, limits and job (`bot.listeners.Commands`).
Events arrive on the same signed endpoint as the commands (Bolt verifies the signature and answers Slack's
url_verification), or over Socket Mode.

- **Queued before the ack.** The job is queued inside the event's handler, then the event is acknowledged; what a
  slash command would have answered in its ack ("Queued AXP for the week …: 2 ahead of you", a usage error, "queue
  full") is shown to the asker alone right after, as an ephemeral message in the same channel or thread.
- **The answer goes where it was asked.** The job's progress message and then the answer are posted in the channel,
  or in the thread when the mention was in one (the request carries its thread_ts), or in the DM.
- **Once per message.** The message's own id (channel and ts) stands for the slash command's trigger_id: Slack's
  retries of the event, and the same DM seen both as a mention and as a message, find the job already queued and
  show nothing more.
- **No ticker, or `help`:** the help text.

Messages the bot should not answer are ignored: those of bots (ours included), edits and other subtypes.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from typing import Any

import redis
from slack_bolt import App, BoltContext
from slack_sdk import WebClient

from bot import messages
from bot.commands import HELP_WORDS
from bot.listeners import Answer, Commands, Invocation, answer
from bot.slack_ops import post_ephemeral
from jobs.client import JobsClient

log = logging.getLogger(__name__)

_MENTION = re.compile(r"<@([A-Z0-9]+)(?:\|[^>]*)?>")
REPLY_KEY = "forecaster_mention_reply"  # the ack's answer, handed to the lazy listener that shows it
HANDLE = "@forecaster"  # bot/manifest.json's bot user


def words_of(text: str, bot_user_id: str | None) -> str:
    """The request in a mention's text: the bot's own mention taken out (the first mention when the bot's id is
    not known), the rest as typed."""
    if bot_user_id:
        return _MENTION.sub(lambda m: " " if m[1] == bot_user_id else m[0], text).strip()
    return _MENTION.sub(" ", text, count=1).strip()


def mention_help() -> Answer:
    """The /forecast help, said as a mention: what to write after the bot's name."""
    told = messages.help_for("/forecast")
    told["text"] = (f"Mention me with a ticker, as you would write after `/forecast`: `{HANDLE} AXP`, "
                    f"`{HANDLE} MSFT 2024-03-15 weeks=2`, `{HANDLE} dow30` (in a direct message, the words alone).\n"
                    + told["text"])
    return told


def register_mentions(app: App, commands: Commands) -> None:
    """Wire `app_mention` and direct messages (`message` events of channel_type im)."""
    mentions = Mentions(commands)
    app.event("app_mention")(ack=mentions.take, lazy=[mentions.show])
    app.event("message")(ack=mentions.take, lazy=[mentions.show])


class Mentions:
    def __init__(self, commands: Commands) -> None:
        self.commands = commands

    def invocation(self, event: dict, bot_user_id: str | None) -> Invocation | None:
        """The request an event makes, or None when it is not one for us."""
        if event.get("bot_id") or event.get("subtype") or not event.get("user") or event.get("user") == bot_user_id:
            return None
        if event.get("type") == "message" and event.get("channel_type") != "im":
            return None  # only direct messages: channel messages come as app_mention when they name us
        channel, ts = str(event.get("channel") or ""), str(event.get("ts") or "")
        if not channel or not ts:
            return None
        return Invocation(command=HANDLE, text=words_of(str(event.get("text") or ""), bot_user_id),
                          user=str(event["user"]), channel=channel, trigger_id=f"message:{channel}:{ts}",
                          thread_ts=event.get("thread_ts"))

    def handle(self, inv: Invocation) -> Answer:
        tokens = inv.text.split()
        if not tokens or tokens[0].lower() in HELP_WORDS:
            return mention_help()
        return self.commands.forecast(inv)

    def take(self, ack: Callable[..., Any], event: dict, body: dict, context: BoltContext) -> None:
        """Queue the request, then acknowledge the event; the answer to show goes to `show` in the context."""
        try:
            inv = self.invocation(event, context.bot_user_id)
            if inv is None:
                return
            if self._seen(inv):
                log.info("%s by %s: message %s already taken; nothing more", inv.command, inv.user, inv.trigger_id)
                return
            context[REPLY_KEY] = {"answer": answer(self.commands, self.handle, body, inv=inv),
                                  "channel": inv.channel, "user": inv.user, "thread_ts": inv.thread_ts}
        finally:
            ack()

    def _seen(self, inv: Invocation) -> bool:
        try:
            return JobsClient(self.commands.conn).delivered(inv.trigger_id) is not None
        except redis.RedisError:
            return False  # not known: asked as new (the job's own id still makes a second ask the same job)

    @staticmethod
    def show(context: BoltContext, client: WebClient) -> None:
        """After the ack: the answer, to the asker alone, where they asked."""
        reply = context.get(REPLY_KEY)
        if not reply:
            return
        told = reply["answer"]
        try:
            post_ephemeral(client, channel=reply["channel"], user=reply["user"], text=told["text"],
                           blocks=told.get("blocks") or [{"type": "section", "text": {
                               "type": "mrkdwn", "text": told["text"], "verbatim": True}}],
                           thread_ts=reply["thread_ts"])
        except Exception as exc:  # noqa: BLE001 — the job, when one was queued, still answers in the channel
            log.warning("the answer to %s's mention could not be shown: %s", reply["user"], exc)
