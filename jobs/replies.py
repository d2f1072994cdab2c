"""How a job talks back to the person who asked: progress edited in place, then exactly one final answer.

Where the answer goes (a `Route`):
- a slash command's `response_url`, while Slack still accepts it (5 uses within 30 minutes: we stop at 25 minutes
  or the 5th use). Progress edits the user's own "queued" note in place (ephemeral, nobody else is disturbed) and
  the answer is posted to the channel through it, which also works where the bot was never invited;
- otherwise the Web API: one progress message is posted in the channel (or thread) and edited as the work goes,
  and the final answer replaces it, so the channel holds one message that ends in its final state.

Every send is keyed by job id in Redis (`jobs.keys`), so a job that is retried after a crash edits the same
progress message and never posts its answer twice.

When Slack refuses a send for a reason no retry changes (the bot is not in the channel, the channel is archived or
gone, the token is dead: `bot.slack_ops.permanent_refusal`), the send raises `SlackRefused` instead, and the job
ends there (`jobs.failures`): before the model runs when the first progress note is refused.

A failure of the request itself (an unknown ticker, no data for that date) is told to the requester alone
(`final_privately`): through the response_url as an ephemeral note, or chat.postEphemeral; the channel keeps
nothing of it.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass
from typing import Any

from bot.blocks import progress_message
from bot.slack_ops import (
    CHANNEL_REFUSALS,
    TOKEN_REFUSALS,
    delete_message,
    permanent_refusal,
    post_ephemeral,
    post_message,
    send_to_response_url,
    update_message,
)
from engine.sources.ratelimit import Limit, RedisRateLimiter
from jobs import runtime
from jobs.keys import FAILURE_TTL_S, channel_pace_key, posted_marker, progress_marker, response_url_uses

log = logging.getLogger(__name__)

RESPONSE_URL_MAX_USES = 5
RESPONSE_URL_MAX_AGE = dt.timedelta(minutes=25)  # Slack honours 30; leave room for a slow final send
# How long a "pending" marker lives if its attempt dies mid-post (a retry overwrites it anyway).
CLAIM_TTL_S = 120
FINAL = "final"


class SlackRefused(Exception):
    """Slack refused to take a message for a reason that sending again cannot change. `error` is Slack's code
    (`not_in_channel`, `invalid_auth`, `invalid_blocks`...), `channel` where it was going."""

    def __init__(self, error: str, channel: str) -> None:
        super().__init__(f"Slack refused a message for {channel}: {error}")
        self.error, self.channel = error, channel


def _refused(exc: BaseException, channel: str) -> BaseException:
    """What to raise for a failed send: `SlackRefused` when no retry can help, else the error itself."""
    error = permanent_refusal(exc)
    return SlackRefused(error, channel) if error else exc


@dataclass(frozen=True)
class Route:
    channel: str
    thread_ts: str | None = None
    response_url: str | None = None
    requested_at: dt.datetime | None = None  # when the response_url was issued (the job's enqueue time)


def route_of(job: Any) -> Route | None:
    """Where a job's answers go, read from its JSON kwargs (every task names a channel)."""
    kwargs = job.kwargs or {}
    source = kwargs.get("request") or kwargs
    channel = source.get("channel")
    if not channel:
        return None
    return Route(channel=channel, thread_ts=source.get("thread_ts"), response_url=source.get("response_url"),
                 requested_at=job.enqueued_at)


def _pace(ctx: runtime.WorkerContext, channel: str) -> None:
    # Slack allows about one message per second per channel; every worker shares this pace through Redis.
    RedisRateLimiter(ctx.conn, key=channel_pace_key(channel), limits=[Limit(1, 1.0)]).acquire()


def post_once(ctx: runtime.WorkerContext, job_id: str, name: str, *, channel: str, text: str, blocks: list[dict],
              thread_ts: str | None = None) -> str | None:
    """Post unless this job already posted this message (its marker holds the message ts).

    A job id runs in one worker at a time, so a "pending" marker can only be left by an attempt that died while
    posting; the retry posts then. A duplicate needs a crash in the milliseconds between Slack accepting the post
    and the marker being written; a lost answer needs nothing less than Slack losing it.
    """
    key = posted_marker(job_id, name)
    existing = ctx.conn.get(key)
    if existing is not None and existing != b"pending":
        log.info("%s: %s already posted (ts %s); not posting again", job_id, name, existing.decode())
        return None
    ctx.conn.set(key, "pending", ex=CLAIM_TTL_S)
    _pace(ctx, channel)
    try:
        ts = post_message(ctx.slack, channel=channel, text=text, blocks=blocks, thread_ts=thread_ts)
    except Exception as exc:
        ctx.conn.delete(key)
        raise _refused(exc, channel) from exc
    ctx.conn.set(key, ts, ex=FAILURE_TTL_S)
    return ts


def posted_ts(ctx: runtime.WorkerContext, job_id: str, name: str) -> str | None:
    raw = ctx.conn.get(posted_marker(job_id, name))
    return None if raw is None or raw == b"pending" else raw.decode()


class Reply:
    """The conversation of one job with its requester."""

    def __init__(self, ctx: runtime.WorkerContext, job_id: str, route: Route, *, now: dt.datetime | None = None):
        self.ctx, self.job_id, self.route = ctx, job_id, route
        self._now = now

    # -- state -------------------------------------------------------------------------------------------------

    def delivered(self) -> bool:
        """The final answer already went out (a retry after a crash at the very end): nothing more to do."""
        return posted_ts(self.ctx, self.job_id, FINAL) is not None

    def _hook_usable(self) -> bool:
        url, issued = self.route.response_url, self.route.requested_at
        if not url or self.route.thread_ts:  # a response_url cannot answer inside a thread
            return False
        now = self._now or dt.datetime.now(dt.UTC)
        if issued is not None and now - issued.replace(tzinfo=issued.tzinfo or dt.UTC) > RESPONSE_URL_MAX_AGE:
            return False
        key = response_url_uses(self.job_id)
        return int(self.ctx.conn.get(key) or 0) < RESPONSE_URL_MAX_USES

    def _use_hook(self, *, text: str, blocks: list[dict], in_channel: bool, replace_original: bool) -> bool:
        key = response_url_uses(self.job_id)
        uses = self.ctx.conn.incr(key)
        self.ctx.conn.expire(key, 1800)
        if uses > RESPONSE_URL_MAX_USES:
            return False
        try:
            return send_to_response_url(self.route.response_url, text=text, blocks=blocks, in_channel=in_channel,
                                        replace_original=replace_original)
        except Exception as exc:  # noqa: BLE001 — an unusable hook only means "use the Web API"
            log.warning("%s: response_url send failed (%s); using chat.postMessage", self.job_id,
                        type(exc).__name__)
            return False

    # -- sends -------------------------------------------------------------------------------------------------

    def progress(self, status: str) -> None:
        """Show where the job is. Best effort: a progress edit that fails is logged, never fatal, except a
        refusal that will refuse the answer too (`SlackRefused`: the bot cannot post in this channel, or its token
        is dead), which ends the job before the model runs for an answer nobody can be shown."""
        text, blocks = progress_message(status)
        try:
            if self._hook_usable():
                if self._use_hook(text=text, blocks=blocks, in_channel=False, replace_original=True):
                    return
            marker = self.ctx.conn.get(progress_marker(self.job_id))
            if marker is None:
                _pace(self.ctx, self.route.channel)
                ts = post_message(self.ctx.slack, channel=self.route.channel, text=text, blocks=blocks,
                                  thread_ts=self.route.thread_ts)
                self.ctx.conn.set(progress_marker(self.job_id), ts, ex=FAILURE_TTL_S)
            else:
                update_message(self.ctx.slack, channel=self.route.channel, ts=marker.decode(), text=text,
                               blocks=blocks)
        except Exception as exc:  # noqa: BLE001
            error = permanent_refusal(exc)
            if error in CHANNEL_REFUSALS | TOKEN_REFUSALS and not self._hook_usable():
                raise SlackRefused(error, self.route.channel) from exc
            # Anything else may pass (a timeout, a 5xx) or spares the answer: a payload refusal is this note's
            # own, and the response_url still reaches a channel the bot is not in, with no token at all.
            log.warning("%s: progress update failed: %s", self.job_id, exc)

    def final(self, text: str, blocks: list[dict]) -> str | None:
        """The answer, exactly once. Returns its ts when known (None through a response_url)."""
        if self.delivered():
            log.info("%s: final answer already delivered; not sending again", self.job_id)
            return posted_ts(self.ctx, self.job_id, FINAL)
        key = posted_marker(self.job_id, FINAL)
        self.ctx.conn.set(key, "pending", ex=CLAIM_TTL_S)
        try:
            ts = self._send_final(text, blocks)
        except Exception as exc:
            self.ctx.conn.delete(key)
            raise _refused(exc, self.route.channel) from exc
        self.ctx.conn.set(key, ts or "response_url", ex=FAILURE_TTL_S)
        return ts

    def final_privately(self, text: str, blocks: list[dict], *, user: str | None) -> None:
        """The answer, exactly once, to the requester alone (a failure of their own request: the channel needs
        none of it). A progress note the job had posted in the channel is removed. Without a way to reach the
        requester privately (no response_url left, no user), the answer goes where `final` sends it."""
        if self.delivered():
            log.info("%s: final answer already delivered; not sending again", self.job_id)
            return
        key = posted_marker(self.job_id, FINAL)
        self.ctx.conn.set(key, "pending", ex=CLAIM_TTL_S)
        try:
            where = self._send_privately(text, blocks, user=user)
        except Exception as exc:
            self.ctx.conn.delete(key)
            raise _refused(exc, self.route.channel) from exc
        if where is None:
            self.ctx.conn.delete(key)
            self.final(text, blocks)
            return
        self.ctx.conn.set(key, where, ex=FAILURE_TTL_S)
        self._drop_progress_message()

    def tell_privately(self, text: str, blocks: list[dict], *, user: str | None) -> str | None:
        """Best effort, no marker: a note to the requester alone (why their job ended). Returns how it went
        ("response_url", "ephemeral") or None when nothing reached them."""
        try:
            return self._send_privately(text, blocks, user=user)
        except Exception as exc:  # noqa: BLE001 — the caller logs the reason anyway
            log.warning("%s: could not tell the requester privately: %s", self.job_id,
                        permanent_refusal(exc) or type(exc).__name__)
            return None

    def _send_privately(self, text: str, blocks: list[dict], *, user: str | None) -> str | None:
        # replace_original: the user's own "queued" note (or its progress) turns into the answer.
        if self._hook_usable() and self._use_hook(text=text, blocks=blocks, in_channel=False, replace_original=True):
            return "response_url"
        if user:
            post_ephemeral(self.ctx.slack, channel=self.route.channel, user=user, text=text, blocks=blocks,
                           thread_ts=self.route.thread_ts)
            return "ephemeral"
        return None

    def _drop_progress_message(self) -> None:
        progress_ts = self.ctx.conn.get(progress_marker(self.job_id))
        if progress_ts is None:
            return
        try:
            delete_message(self.ctx.slack, channel=self.route.channel, ts=progress_ts.decode())
            self.ctx.conn.delete(progress_marker(self.job_id))
        except Exception as exc:  # noqa: BLE001 — a stale "fetching…" note is untidy, not wrong
            log.warning("%s: could not remove the progress message: %s", self.job_id, exc)

    def _send_final(self, text: str, blocks: list[dict]) -> str | None:
        progress_ts = self.ctx.conn.get(progress_marker(self.job_id))
        if progress_ts is not None:  # turn our own progress message into the answer: one message, final state
            update_message(self.ctx.slack, channel=self.route.channel, ts=progress_ts.decode(), text=text,
                           blocks=blocks)
            return progress_ts.decode()
        if self._hook_usable() and self._use_hook(text=text, blocks=blocks, in_channel=True, replace_original=False):
            done_text, done_blocks = progress_message("Done: the answer is posted in the channel.")
            if self._hook_usable():  # tidy the user's ephemeral note; harmless if it fails
                self._use_hook(text=done_text, blocks=done_blocks, in_channel=False, replace_original=True)
            return None
        _pace(self.ctx, self.route.channel)
        return post_message(self.ctx.slack, channel=self.route.channel, text=text, blocks=blocks,
                            thread_ts=self.route.thread_ts)
