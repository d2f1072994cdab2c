"""The 👍 / 👎 buttons (`bot.vote_blocks`): a click is a block action on the same signed endpoint as the commands
(or over Socket Mode), acknowledged at once, then recorded in the ledger and shown.

- **Acknowledged first.** The ack is empty and immediate (Slack shows an error after 3 s); the work runs after it,
  as a Bolt lazy listener, never touching torch or a model: one small write to the ledger (`jobs.ledger.votes`,
  within the bot's 2 s ledger deadline) and one Slack call.
- **One vote per user and forecast.** The button's value is the forecast's ledger id. Clicking the other button
  replaces your vote; clicking the one you already gave takes it back.
- **What the voter sees.** The message's counts change in place ("👍 3 · 👎 1", chat.update with the message as
  Slack sent it, only the buttons changed): everyone sees the tally, the voter sees their click counted or taken
  back. Two clicks at once cannot leave the older count on the message: after its edit, each reads the counts
  again and edits again while they differ (`Votes._show_latest`). When the vote could not be recorded (the ledger
  is not migrated or not answering, a forecast the ledger does not hold) or the counts could not be edited, the
  voter alone is told so, in plain words (the response_url, else an ephemeral message); the log has the details.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

from slack_bolt import App
from slack_sdk import WebClient

from bot.ledger_reads import LedgerReads, LedgerUnavailable
from bot.mrkdwn import inline
from bot.slack_ops import post_ephemeral, send_to_response_url, update_message
from bot.vote_blocks import VOTE_ACTIONS, with_counts
from jobs.ledger import LedgerNotReady
from jobs.ledger.votes import Cast, UnknownForecast, cast, counts

log = logging.getLogger(__name__)

ACTION_PATTERN = re.compile("^(" + "|".join(map(re.escape, VOTE_ACTIONS)) + ")$")
_EMOJI = {"up": ":+1:", "down": ":-1:"}
RECHECKS = 3  # reads after an edit; each concurrent click adds at most one more edit


def register_votes(app: App, ledger_reads: LedgerReads) -> None:
    """Wire the vote buttons: an immediate ack, then `Votes.record` after it."""
    votes = Votes(ledger_reads)
    app.action(ACTION_PATTERN)(ack=_ack_vote, lazy=[votes.record])


def _ack_vote(ack: Callable[..., Any]) -> None:
    ack()


def confirmation(done: Cast) -> str:
    """The voter's note when the counts could not be shown on the message (ours: mrkdwn)."""
    ticker = inline(done.ticker)
    if done.after is None:
        return f"Your {_EMOJI[done.before]} on *{ticker}* is taken back."
    return f"Your {_EMOJI[done.after]} on *{ticker}* is recorded" + (
        f" (it replaced your {_EMOJI[done.before]})." if done.before else ".")


class Votes:
    def __init__(self, ledger_reads: LedgerReads) -> None:
        self.ledger_reads = ledger_reads

    def record(self, body: dict, client: WebClient) -> None:
        """After the ack: record the click, then show the new counts (or tell the voter why not). Never raises."""
        user = str((body.get("user") or {}).get("id") or "")
        channel = str((body.get("channel") or {}).get("id") or (body.get("container") or {}).get("channel_id") or "")
        action = (body.get("actions") or [{}])[0]
        vote, forecast_id = VOTE_ACTIONS.get(action.get("action_id")), str(action.get("value") or "")
        if not user or vote is None or not forecast_id:
            log.warning("a vote without a user, a known button or a forecast id: ignored")
            return
        try:
            done = self.ledger_reads.within_deadline(
                lambda ledger: cast(ledger, forecast_id, user, vote, channel=channel or None))
        except UnknownForecast:
            log.warning("vote by %s on %s: no such forecast in the ledger", user, forecast_id)
            self._tell(body, client, ":warning: I can't record that vote: this forecast is not in my ledger "
                                     "(it could not be saved when it was posted).")
            return
        except (LedgerNotReady, LedgerUnavailable) as exc:
            log.warning("vote by %s on %s not recorded: %s", user, forecast_id, exc)
            self._tell(body, client, ":warning: Your vote was not recorded: the ledger is not available right now. "
                                     "Try again in a minute.")
            return
        except Exception:
            log.exception("vote by %s on %s failed", user, forecast_id)
            self._tell(body, client, ":warning: Your vote was not recorded (our bug; it is in the bot's log). "
                                     "Try again later.")
            return
        log.info("vote by %s on %s: %s → %s (👍 %d, 👎 %d)", user, forecast_id, done.before, done.after, done.up,
                 done.down)
        if not self._show_counts(body, client, done, channel):
            self._tell(body, client, confirmation(done))
            return
        self._show_latest(body, client, done, channel)

    def _show_latest(self, body: dict, client: WebClient, done: Cast, channel: str) -> None:
        """Two clicks on one message at once: each edit shows the counts its own write returned, and Slack may apply
        the older edit last. So, once our edit is in, the counts are read again and shown again while they differ
        from what we showed: whichever edit comes last, it is followed by one with counts at least as new."""
        shown = (done.up, done.down)
        for _ in range(RECHECKS):
            try:
                latest = self.ledger_reads.within_deadline(
                    lambda ledger: counts(ledger, [done.forecast_id])).get(done.forecast_id, (0, 0))
            except Exception as exc:  # noqa: BLE001 — the vote is recorded and shown; the next click corrects it
                log.warning("vote on %s: the counts could not be read again: %s", done.forecast_id, exc)
                return
            if latest == shown:
                return
            log.info("vote on %s: counts changed meanwhile, %s → %s", done.forecast_id, shown, latest)
            shown = latest
            if not self._show_counts(body, client, replace(done, up=latest[0], down=latest[1]), channel):
                return

    def _show_counts(self, body: dict, client: WebClient, done: Cast, channel: str) -> bool:
        """Edit the message's buttons to the new counts. False when it could not be (no message in the payload, a
        message without our buttons, Slack refused or did not answer)."""
        message = body.get("message") or {}
        ts = message.get("ts") or (body.get("container") or {}).get("message_ts")
        blocks = with_counts(message.get("blocks") or [], done.forecast_id, up=done.up, down=done.down)
        if not channel or not ts or blocks is None:
            return False
        try:
            update_message(client, channel=channel, ts=ts, text=message.get("text") or "Forecast", blocks=blocks)
        except Exception as exc:  # noqa: BLE001 — the vote is recorded; the voter is told instead
            log.warning("vote on %s recorded, counts not shown: %s", done.forecast_id, exc)
            return False
        return True

    @staticmethod
    def _tell(body: dict, client: WebClient, text: str) -> None:
        """A note to the voter alone: the action's response_url, else an ephemeral message. Best effort."""
        blocks = [{"type": "section", "text": {"type": "mrkdwn", "text": text, "verbatim": True}}]
        url = body.get("response_url")
        try:
            if url and send_to_response_url(url, text=text, blocks=blocks, in_channel=False, replace_original=False):
                return
        except Exception as exc:  # noqa: BLE001
            log.warning("the voter's note through the response_url failed: %s", exc)
        user = (body.get("user") or {}).get("id")
        channel = (body.get("channel") or {}).get("id")
        if not user or not channel:
            return
        try:
            post_ephemeral(client, channel=channel, user=user, text=text, blocks=blocks,
                           thread_ts=(body.get("container") or {}).get("thread_ts"))
        except Exception as exc:  # noqa: BLE001
            log.warning("the voter's note could not be shown: %s", exc)
