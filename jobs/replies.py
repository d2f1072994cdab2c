"""How a job talks back to the person who asked: progress edited in place, then exactly one final answer.

Where the answer goes (a `Route`):
- a slash command's `response_url`, while Slack still accepts it (5 uses within 30 minutes: we stop at 25 minutes
  or the 5th use). Progress edits the user's own "queued" note in place (ephemeral, nobody else is disturbed);
- otherwise the Web API: one progress message is posted in the channel (or thread) and edited as the work goes.

The response_url's uses are a budget, counted in Redis per attempt (its tries share it, and a request asked again
comes with a new response_url): progress notes may take all but the last, which is kept for the final note
(`Done: the answer is posted in the channel.`, or a failure told privately). A progress note that would take it is
skipped: the requester's note keeps its last step until the final one replaces it. So a try that crashed after
spending three uses (fetching, writing, "retrying…") still ends with "Done" after its retry. Where the response_url
is spent or expired, the final note goes to the requester as chat.postEphemeral instead.

Exactly one final answer. Slack has no idempotency key for a post, so the answer is never *posted*: it is an edit
(chat.update) of the job's own channel message, whose ts is in Redis before any answer is sent: the progress
message, or, where progress went to the requester's note (or there was none: a summary, a verdict), a placeholder
posted first. A retry after a crash anywhere in the final step, even after Slack took the answer but before the
"delivered" marker was written, edits the same message again instead of posting a second one. All of this state
belongs to the attempt (`jobs.attempts`): RQ's retries of a job share it, a request asked again starts afresh.

A message someone deleted in Slack (`message_not_found` on the edit) is not the end of the conversation: the next
progress note is posted as a new message, and the answer is posted afresh the same way as above (a placeholder
whose ts is recorded first, then edited), once per send.

What is left (both need a process death, or Slack's reply lost, in the milliseconds around one call):
- a crash after Slack took the *placeholder* but before its ts was written leaves that placeholder behind (finding
  it again would need a history scope); the retry posts another and edits that one: a stray "posting…" note,
  still one answer;
- where only the response_url reaches the channel (the bot is not invited: the placeholder is refused), the answer
  is posted in_channel through it, and a response_url message has no ts to edit later. Its claim is written first;
  a retry that finds it cannot tell whether Slack showed the answer, so it never posts in the channel again: the
  requester's own note becomes the answer instead (shown once in the channel, or not at all, and always to them).

When Slack refuses a send for a reason no retry changes (the bot is not in the channel, the channel is archived or
gone, the token is dead: a closed `jobs.slack_port.Refusal`), the send raises `SlackRefused` instead, and the job
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

from engine.sources.ratelimit import Limit, RedisRateLimiter
from jobs import runtime
from jobs.keys import FAILURE_TTL_S, channel_pace_key, posted_marker, progress_marker, response_url_uses
from jobs.slack_port import Refusal, SlackPort

log = logging.getLogger(__name__)

RESPONSE_URL_MAX_USES = 5
# Uses kept for the final note: progress notes may take the others (see the module docstring).
RESPONSE_URL_FINAL_USES = 1
RESPONSE_URL_MAX_AGE = dt.timedelta(minutes=25)  # Slack honours 30; leave room for a slow final send
# One use of the response_url, taken only while fewer than ARGV[1] were: the count never passes the limit, so a note
# refused for want of budget spends nothing. Returns the use's number, or 0 when none was left.
_TAKE_USE = """
local used = tonumber(redis.call('GET', KEYS[1]) or '0')
if used >= tonumber(ARGV[1]) then return 0 end
used = redis.call('INCR', KEYS[1])
redis.call('EXPIRE', KEYS[1], ARGV[2])
return used
"""
# How long a "pending" marker lives if its attempt dies mid-post (a retry overwrites it anyway).
CLAIM_TTL_S = 120
FINAL = "final"
# What the job's channel message says between its post and its edit into the answer (milliseconds, unless a crash
# falls exactly between them: then this note stays; see the module docstring).
PLACEHOLDER_STATUS = ":hourglass_flowing_sand: Posting the answer…"
ANSWER_POSTED_STATUS = "Done: the answer is posted in the channel."
# The final marker while the answer is handed to a response_url in_channel: kept if the attempt dies there.
HOOK_CLAIM = "response_url-sending"
# Final markers that say the answer did not go out (or nobody knows whether it did).
_NOT_DELIVERED = {b"pending", HOOK_CLAIM.encode()}
UNCERTAIN_NOTE = ("Shown to you alone: an earlier attempt was interrupted while posting this answer, so it may "
                  "already be in the channel (or not); it is not posted there again, to avoid a duplicate.")


class SlackRefused(Exception):
    """Slack refused to take a message for a reason that sending again cannot change: `refusal` says Slack's code
    (`not_in_channel`, `invalid_auth`, `invalid_blocks`...) and whether the channel or token is closed to us,
    `channel` where it was going."""

    def __init__(self, refusal: Refusal, channel: str) -> None:
        super().__init__(f"Slack refused a message for {channel}: {refusal.error}")
        self.refusal, self.channel = refusal, channel

    @property
    def error(self) -> str:
        return self.refusal.error


def _refused(slack: SlackPort, exc: BaseException, channel: str) -> BaseException:
    """What to raise for a failed send: `SlackRefused` when no retry can help, else the error itself."""
    refusal = slack.refusal(exc)
    return SlackRefused(refusal, channel) if refusal else exc


@dataclass(frozen=True)
class Route:
    channel: str
    thread_ts: str | None = None
    response_url: str | None = None
    requested_at: dt.datetime | None = None  # when the response_url was issued (the job's enqueue time)
    user: str | None = None  # who asked: the final note reaches them by chat.postEphemeral once the response_url can't


def route_of(job: Any) -> Route | None:
    """Where a job's answers go, read from its JSON kwargs (every task names a channel)."""
    kwargs = job.kwargs or {}
    source = kwargs.get("request") or kwargs
    channel = source.get("channel")
    if not channel:
        return None
    return Route(channel=channel, thread_ts=source.get("thread_ts"), response_url=source.get("response_url"),
                 requested_at=job.enqueued_at, user=source.get("user"))


def _pace(ctx: runtime.WorkerContext, channel: str) -> None:
    # Slack allows about one message per second per channel; every worker shares this pace through Redis.
    RedisRateLimiter(ctx.conn, key=channel_pace_key(channel), limits=[Limit(1, 1.0)]).acquire()


def post_once(ctx: runtime.WorkerContext, attempt: str, name: str, *, channel: str, text: str, blocks: list[dict],
              thread_ts: str | None = None) -> str | None:
    """Post unless this attempt already posted this message (its marker holds the message ts).

    An attempt runs in one worker at a time, so a "pending" marker can only be left by a try that died while
    posting; the retry posts then. A duplicate needs a crash in the milliseconds between Slack accepting the post
    and the marker being written; a lost answer needs nothing less than Slack losing it.
    """
    key = posted_marker(attempt, name)
    existing = ctx.conn.get(key)
    if existing is not None and existing != b"pending":
        log.info("%s: %s already posted (ts %s); not posting again", attempt, name, existing.decode())
        return None
    ctx.conn.set(key, "pending", ex=CLAIM_TTL_S)
    _pace(ctx, channel)
    try:
        ts = ctx.slack.post_message(channel=channel, text=text, blocks=blocks, thread_ts=thread_ts)
    except Exception as exc:
        ctx.conn.delete(key)
        raise _refused(ctx.slack, exc, channel) from exc
    ctx.conn.set(key, ts, ex=FAILURE_TTL_S)
    return ts


def posted_ts(ctx: runtime.WorkerContext, attempt: str, name: str) -> str | None:
    raw = ctx.conn.get(posted_marker(attempt, name))
    return None if raw is None or raw == b"pending" else raw.decode()


class Reply:
    """The conversation of one job with its requester."""

    def __init__(self, ctx: runtime.WorkerContext, attempt: str, route: Route, *, now: dt.datetime | None = None):
        """`attempt`: whose delivery state this is (`jobs.attempts.attempt_of`: the job's retries share it)."""
        self.ctx, self.attempt, self.route = ctx, attempt, route
        self._now = now

    # -- state -------------------------------------------------------------------------------------------------

    def _final_marker(self) -> bytes | None:
        return self.ctx.conn.get(posted_marker(self.attempt, FINAL))

    def delivered(self) -> bool:
        """The final answer already went out (a retry after a crash at the very end): nothing more to do."""
        marker = self._final_marker()
        return marker is not None and marker not in _NOT_DELIVERED

    def _delivered_ts(self) -> str | None:
        """The ts of the delivered answer's message; None when it went out as a response_url or ephemeral note."""
        marker = self._final_marker()
        if marker is None or marker in _NOT_DELIVERED or not marker[:1].isdigit():
            return None
        return marker.decode()

    def _hook_uses_left(self) -> int:
        """How many more times the response_url may be used: 0 without one, in a thread (a response_url cannot
        answer there), once it is too old, or once its uses are spent."""
        url, issued = self.route.response_url, self.route.requested_at
        if not url or self.route.thread_ts:
            return 0
        now = self._now or dt.datetime.now(dt.UTC)
        if issued is not None and now - issued.replace(tzinfo=issued.tzinfo or dt.UTC) > RESPONSE_URL_MAX_AGE:
            return 0
        return max(RESPONSE_URL_MAX_USES - int(self.ctx.conn.get(response_url_uses(self.attempt)) or 0), 0)

    def _hook_usable(self, *, final: bool) -> bool:
        """Whether a note may use the response_url now: a final one while any use is left, progress only while
        more than the final note's are."""
        return self._hook_uses_left() > (0 if final else RESPONSE_URL_FINAL_USES)

    def _use_hook(self, *, text: str, blocks: list[dict], in_channel: bool, replace_original: bool,
                  final: bool) -> bool:
        try:
            return self._send_to_hook(text=text, blocks=blocks, in_channel=in_channel,
                                      replace_original=replace_original, final=final)
        except Exception as exc:  # noqa: BLE001 — an unusable hook only means "use the Web API"
            log.warning("%s: response_url send failed (%s); using the Web API", self.attempt, type(exc).__name__)
            return False

    def _send_to_hook(self, *, text: str, blocks: list[dict], in_channel: bool, replace_original: bool,
                      final: bool) -> bool:
        """One counted use of the response_url: True shown, False refused (certainly not shown, or no use left for
        a note of this kind); raises when nobody knows (a timeout, a 5xx)."""
        limit = RESPONSE_URL_MAX_USES - (0 if final else RESPONSE_URL_FINAL_USES)
        if not self.ctx.conn.eval(_TAKE_USE, 1, response_url_uses(self.attempt), limit, 1800):
            return False
        return self.ctx.slack.send_to_response_url(self.route.response_url, text=text, blocks=blocks,
                                                   in_channel=in_channel, replace_original=replace_original)

    # -- sends -------------------------------------------------------------------------------------------------

    def progress(self, status: str) -> None:
        """Show where the job is. Best effort: a progress edit that fails is logged, never fatal, except a
        refusal that will refuse the answer too (`SlackRefused`: the bot cannot post in this channel, or its token
        is dead), which ends the job before the model runs for an answer nobody can be shown."""
        text, blocks = self.ctx.slack.layouts.progress_message(status)
        try:
            left = self._hook_uses_left()
            if left > RESPONSE_URL_FINAL_USES:
                if self._use_hook(text=text, blocks=blocks, in_channel=False, replace_original=True, final=False):
                    return
            elif left:
                # The requester's note has only the final note's use left: this step is not shown (their note
                # keeps the last one), and no message is posted in the channel for it either.
                log.info("%s: progress note skipped, the response_url's last use is kept for the final note",
                         self.attempt)
                return
            marker = self.ctx.conn.get(progress_marker(self.attempt))
            if marker is not None:
                try:
                    self.ctx.slack.update_message(channel=self.route.channel, ts=marker.decode(), text=text,
                                                  blocks=blocks)
                    return
                except Exception as exc:
                    if not self.ctx.slack.message_gone(exc):
                        raise
                    # Someone deleted it: the next note (and the answer) goes into a new message.
                    log.info("%s: the progress message %s is gone; posting a new one", self.attempt,
                             marker.decode())
                    self.ctx.conn.delete(progress_marker(self.attempt))
            _pace(self.ctx, self.route.channel)
            ts = self.ctx.slack.post_message(channel=self.route.channel, text=text, blocks=blocks,
                                             thread_ts=self.route.thread_ts)
            self.ctx.conn.set(progress_marker(self.attempt), ts, ex=FAILURE_TTL_S)
        except Exception as exc:  # noqa: BLE001
            refusal = self.ctx.slack.refusal(exc)
            if refusal is not None and refusal.closed and not self._hook_usable(final=True):
                raise SlackRefused(refusal, self.route.channel) from exc
            # Anything else may pass (a timeout, a 5xx) or spares the answer: a payload refusal is this note's
            # own, and the response_url still reaches a channel the bot is not in, with no token at all.
            log.warning("%s: progress update failed: %s", self.attempt, exc)

    def final(self, text: str, blocks: list[dict]) -> str | None:
        """The answer, exactly once: an edit of the job's own channel message (see the module docstring), so a
        retry edits again instead of posting again. Returns its ts (None where it went through a response_url)."""
        if self.delivered():
            log.info("%s: final answer already delivered; not sending again", self.attempt)
            return self._delivered_ts()
        try:
            marker = self._send_final(text, blocks)
        except Exception as exc:
            raise _refused(self.ctx.slack, exc, self.route.channel) from exc
        self.ctx.conn.set(posted_marker(self.attempt, FINAL), marker, ex=FAILURE_TTL_S)
        return self._delivered_ts()

    def final_privately(self, text: str, blocks: list[dict], *, user: str | None) -> None:
        """The answer, exactly once, to the requester alone (a failure of their own request: the channel needs
        none of it). A progress note the job had posted in the channel is removed. Without a way to reach the
        requester privately (no response_url left, no user), the answer goes where `final` sends it."""
        if self.delivered():
            log.info("%s: final answer already delivered; not sending again", self.attempt)
            return
        key = posted_marker(self.attempt, FINAL)
        self.ctx.conn.set(key, "pending", ex=CLAIM_TTL_S)
        try:
            where = self._send_privately(text, blocks, user=user)
        except Exception as exc:
            self.ctx.conn.delete(key)
            raise _refused(self.ctx.slack, exc, self.route.channel) from exc
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
            refusal = self.ctx.slack.refusal(exc)
            log.warning("%s: could not tell the requester privately: %s", self.attempt,
                        refusal.error if refusal else type(exc).__name__)
            return None

    def _send_privately(self, text: str, blocks: list[dict], *, user: str | None) -> str | None:
        # replace_original: the user's own "queued" note (or its progress) turns into the answer.
        if self._hook_usable(final=True) and self._use_hook(text=text, blocks=blocks, in_channel=False,
                                                            replace_original=True, final=True):
            return "response_url"
        if user:
            self.ctx.slack.post_ephemeral(channel=self.route.channel, user=user, text=text, blocks=blocks,
                                          thread_ts=self.route.thread_ts)
            return "ephemeral"
        return None

    def _drop_progress_message(self) -> None:
        progress_ts = self.ctx.conn.get(progress_marker(self.attempt))
        if progress_ts is None:
            return
        try:
            self.ctx.slack.delete_message(channel=self.route.channel, ts=progress_ts.decode())
        except Exception as exc:  # noqa: BLE001 — a stale "fetching…" note is untidy, not wrong
            if not self.ctx.slack.message_gone(exc):
                log.warning("%s: could not remove the progress message: %s", self.attempt, exc)
                return
        self.ctx.conn.delete(progress_marker(self.attempt))

    def _send_final(self, text: str, blocks: list[dict]) -> str:
        """Send the answer; returns the final marker: the message's ts, or how it went out otherwise. Every step
        can be repeated by a retry without showing the answer twice."""
        if self._final_marker() == HOOK_CLAIM.encode():
            return self._final_after_unanswered_hook(text, blocks)
        try:
            ts = self._channel_message_ts()
        except SlackRefused as refused:
            if not refused.refusal.closed or not self._hook_usable(final=True):
                raise
            # The bot may not post here, but the response_url still reaches the channel.
            log.info("%s: Slack refused the placeholder (%s); answering through the response_url", self.attempt,
                     refused.error)
            return self._final_through_hook(text, blocks, refused)
        try:
            self.ctx.slack.update_message(channel=self.route.channel, ts=ts, text=text, blocks=blocks)
        except Exception as exc:
            if not self.ctx.slack.message_gone(exc):
                raise
            # Someone deleted the message the answer was to be written into. The answer is posted afresh, the same
            # way: into a new placeholder whose ts is recorded first. Once: if that one is gone too, this raises
            # and RQ's retry starts over from the new message.
            log.warning("%s: the message %s the answer was to replace is gone (deleted in Slack); posting the "
                        "answer afresh", self.attempt, ts)
            self.ctx.conn.delete(progress_marker(self.attempt))
            ts = self._channel_message_ts()
            self.ctx.slack.update_message(channel=self.route.channel, ts=ts, text=text, blocks=blocks)
        self._point_note_at_answer()
        return ts

    def _channel_message_ts(self) -> str:
        """The ts of the message the answer will be written into, recorded before any answer is sent: the
        progress message, else a placeholder posted now (`SlackRefused` when Slack will never take it)."""
        existing = self.ctx.conn.get(progress_marker(self.attempt))
        if existing is not None:
            return existing.decode()
        text, blocks = self.ctx.slack.layouts.progress_message(PLACEHOLDER_STATUS)
        _pace(self.ctx, self.route.channel)
        try:
            ts = self.ctx.slack.post_message(channel=self.route.channel, text=text, blocks=blocks,
                                             thread_ts=self.route.thread_ts)
        except Exception as exc:
            raise _refused(self.ctx.slack, exc, self.route.channel) from exc
        self.ctx.conn.set(progress_marker(self.attempt), ts, ex=FAILURE_TTL_S)
        return ts

    def _point_note_at_answer(self) -> None:
        """The requester's own note (the slash command's, which showed the progress) says the answer is out: replaced
        through the response_url (its use kept for this, see the module docstring), else, spent or expired, told
        by chat.postEphemeral. Best effort: the answer itself is out. A retry may do it again (a replace repeats
        harmlessly; an ephemeral note would show twice, after a crash in the milliseconds around it)."""
        if not self.route.response_url:
            return  # no note of theirs to update (a scheduled post, a thread)
        done_text, done_blocks = self.ctx.slack.layouts.progress_message(ANSWER_POSTED_STATUS)
        if self._hook_usable(final=True) and self._use_hook(text=done_text, blocks=done_blocks, in_channel=False,
                                                            replace_original=True, final=True):
            return
        if not self.route.user:
            return
        try:
            self.ctx.slack.post_ephemeral(channel=self.route.channel, user=self.route.user, text=done_text,
                                          blocks=done_blocks, thread_ts=self.route.thread_ts)
        except Exception as exc:  # noqa: BLE001 — the answer is out; this note only says so
            refusal = self.ctx.slack.refusal(exc)
            log.warning("%s: could not tell the requester the answer is out: %s", self.attempt,
                        refusal.error if refusal else type(exc).__name__)

    def _final_through_hook(self, text: str, blocks: list[dict], refused: SlackRefused) -> str:
        """The answer in_channel through the response_url: the one send that no retry can repeat safely, so its
        claim is written first and kept unless Slack certainly refused it."""
        key = posted_marker(self.attempt, FINAL)
        self.ctx.conn.set(key, HOOK_CLAIM, ex=FAILURE_TTL_S)
        if not self._send_to_hook(text=text, blocks=blocks, in_channel=True, replace_original=False, final=True):
            self.ctx.conn.delete(key)  # refused: not shown, and nothing else reaches this channel
            raise refused
        self._point_note_at_answer()
        return "response_url"

    def _final_after_unanswered_hook(self, text: str, blocks: list[dict]) -> str:
        """An earlier attempt handed the answer to the response_url and never heard back (it died, or Slack's
        reply was lost). Slack may be showing it in the channel; posting it there again could double it. The
        requester's own note becomes the answer instead (a replace, so repeating it is harmless)."""
        log.warning("%s: an earlier attempt may have posted the answer through the response_url; showing it to "
                    "the requester instead of posting it in the channel again", self.attempt)
        private = self.ctx.slack.layouts.with_note(blocks, UNCERTAIN_NOTE)
        if self._hook_usable(final=True) and self._use_hook(text=text, blocks=private, in_channel=False,
                                                            replace_original=True, final=True):
            return "response_url-private"
        log.warning("%s: the response_url is no longer usable; the answer may not have reached anyone", self.attempt)
        return "response_url-unknown"
