"""When a job fails for a reason the job itself did not handle (a bug, a timeout, a dead worker), its requester
still gets a final state: an RQ exception handler turns the failure into a message, or into a "retrying" note
while RQ still has retries left.

Handled failures (bad ticker, no data) never get here: the job tells those to its requester itself and finishes.

A permanent refusal from Slack (`SlackRefused`: the bot is not in the channel, the channel is archived or gone, the
token is dead) ends the job at once, with no retry: a retry would run the model again for an answer Slack refuses
again. The requester is told why, privately (the channel refuses us), where Slack still lets us reach them.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from bot.blocks import failure_message
from bot.mrkdwn import inline
from bot.slack_ops import CHANNEL_REFUSALS, TOKEN_REFUSALS, permanent_refusal
from engine.exceptions import EngineError
from jobs import runtime
from jobs.replies import Reply, SlackRefused, route_of

log = logging.getLogger(__name__)

BOT_HANDLE = "@forecaster"  # features.bot_user.display_name in bot/manifest.json

# An absolute path on the worker host (/home/x/…, /work/…, ~/…, C:\…), not a URL's path (after a host name) nor a
# slash command (one segment): messages written for an operator may carry one, and a Slack user needs none.
_SERVER_PATH = re.compile(r"(?<![\w.:/\\-])(?:~|[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}[/\\]?")

WHAT = {
    "jobs.tasks.forecast_job": "Your forecast",
    "jobs.tasks.digest_job": "The Dow30 digest",
    "jobs.summary.summary_job": "The weekly evaluation summary",
    "jobs.retraining.retrain_job": "The retrain",
}


def without_server_paths(text: str) -> str:
    """`text` with every server path cut to its last part (`/srv/data/snap/AXP.json` → `AXP.json`), for reasons
    shown in Slack."""
    return _SERVER_PATH.sub(lambda m: re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], text)


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
        return "The app lacks a permission Slack needs for this: an admin must reinstall it with the scopes in " \
               "`bot/manifest.json`."
    if error in TOKEN_REFUSALS:
        return "Slack no longer accepts my token: an admin must reinstall the app or update `SLACK_BOT_TOKEN` on " \
               "the worker."
    return "That is our bug, not yours; the team can find it in the worker log."


def _refusal(exc_value: BaseException | None) -> tuple[str, str | None] | None:
    """(Slack's error, channel) when the job ended on a permanent refusal; None otherwise."""
    if isinstance(exc_value, SlackRefused):
        return exc_value.error, exc_value.channel
    error = permanent_refusal(exc_value) if exc_value is not None else None
    return (error, None) if error else None


def describe(job: Any, exc_type: type[BaseException] | None, exc_value: BaseException | None) -> str:
    """Why it failed, in words for a Slack user: no traceback, no secrets (exception messages can hold URLs), no
    server paths."""
    refusal = _refusal(exc_value)
    if refusal is not None and refusal[0] in CHANNEL_REFUSALS | TOKEN_REFUSALS:
        return f"Slack refused to post it ({refusal[0]})"
    if refusal is not None:
        return (f"Slack refused the message we built ({refusal[0]}); that is our bug, not yours: the team can find "
                f"it in the worker log under job `{job.id}`")
    if exc_type is not None and issubclass(exc_type, JobTimeoutException):
        limit = f"{job.timeout // 60} min" if job.timeout >= 120 else f"{job.timeout} s"
        return f"it ran longer than its {limit} limit and was stopped"
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return "the worker running it stopped unexpectedly (restarted or out of memory)"
    if exc_type is not None and issubclass(exc_type, EngineError):
        # Written for users, secrets already redacted (e.g. the model server is down); paths are for operators.
        return without_server_paths(str(exc_value))
    name = exc_type.__name__ if exc_type else "an unknown error"
    return f"an internal error ({name}); the team can find it in the worker log under job `{job.id}`"


def retrying_note(job: Any, exc_type: type[BaseException] | None, reason: str) -> str:
    """The progress note while RQ still has a try left. An abandoned job (its worker died) is retried at once by
    another worker (jobs.worker.retry_abandoned_at_once); any other failure after the queue's backoff."""
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return (f":repeat: The worker running {_subject(job, lower=True)} stopped unexpectedly (restarted or out of "
                "memory); it is being retried on the next free worker…")
    return f":repeat: {_subject(job)} hit a problem ({inline(reason)}); trying again shortly…"


def _subject(job: Any, *, lower: bool = False) -> str:
    what = WHAT.get(job.func_name, "Your request")
    what = what[0].lower() + what[1:] if lower else what
    ticker = ((job.kwargs or {}).get("request") or {}).get("ticker")
    return f"{what} for {ticker}" if ticker else what


def _requester(job: Any) -> str | None:
    kwargs = job.kwargs or {}
    return (kwargs.get("request") or kwargs).get("user")


def tell_the_requester(job: Any, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                       traceback: Any) -> bool:
    """RQ exception handler. Never raises (a failing handler would hide the original failure); returns True so
    RQ's own handling (failed-job registry, retries) goes on."""
    try:
        refusal = _refusal(exc_value)
        if refusal is not None:
            # RQ decides on a retry right after the exception handlers run, from this attribute: 0 fails the job
            # now. A retry would meet the same refusal, after running the model again.
            job.retries_left = 0
            log.error("%s: ended without retrying: Slack refused to post (%s)", job.id, refusal[0])
            if refusal[0] in CHANNEL_REFUSALS | TOKEN_REFUSALS:  # the channel is closed to us: tell them privately
                _tell_privately(job, exc_value)
                return True
            # A payload refusal is ours: the failure note below is another payload, and Slack takes it.
        route = route_of(job)
        if route is None:
            return True
        reply = Reply(runtime.current(), job.id, route)
        if reply.delivered():
            return True
        reason = describe(job, exc_type, exc_value)
        if job.retries_left:  # RQ decrements after the handlers run: >0 means another attempt is coming
            reply.progress(retrying_note(job, exc_type, reason))
        else:
            text, blocks = failure_message(f"{_subject(job)} failed", reason,
                                           hint="Nothing more will be attempted for this request; run the command "
                                                "again, or ask an admin to look at the worker.")
            reply.final(text, blocks)
    except Exception:  # noqa: BLE001
        log.exception("could not tell the requester of job %s about its failure", getattr(job, "id", "?"))
    return True


def _tell_privately(job: Any, exc_value: BaseException | None) -> None:
    route = route_of(job)
    if route is None:
        return
    error, channel = _refusal(exc_value)
    fix = refusal_fix(error, channel or route.channel)
    text, blocks = failure_message(f"{_subject(job)} could not be posted", f"Slack said {error}", hint=fix)
    told = Reply(runtime.current(), job.id, route).tell_privately(text, blocks, user=_requester(job))
    log.info("%s: requester %s: %s", job.id, f"told through the {told}" if told else "not told (Slack let us "
             "reach nobody)", fix)
