"""When a job fails for a reason the job itself did not handle (a bug, a timeout, a dead worker), its requester
still gets a final state: an RQ exception handler turns the failure into a message, or into a "retrying" note
while RQ still has retries left.

Handled failures (bad ticker, no data) never get here: the job tells those to its requester itself and finishes,
in the words `for_user` gives.

What a user reads is never an exception's own text: that is written for the operator (a provider's error, a
server's URL, a path, a setting to change) and is in the worker log. `for_user` chooses the words by the kind of
failure.

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

from engine.exceptions import DataError, EngineError, ModelError, ModelServerError, PromptError, PromptTooLong
from engine.sources.notices import Told, told
from jobs import runtime
from jobs.attempts import attempt_of
from jobs.replies import Reply, SlackRefused, route_of
from jobs.slack_port import JobLayouts, Refusal, SlackPort

log = logging.getLogger(__name__)

# An absolute path on the worker host (/home/x/…, /work/…, ~/…, C:\…), not a URL's path (after a host name) nor a
# slash command (one segment): messages written for an operator may carry one, and a Slack user needs none.
_SERVER_PATH = re.compile(r"(?<![\w.:/\\-])(?:~|[A-Za-z]:)?(?:[/\\][\w.@+-]+){2,}[/\\]?")

WHAT = {
    "jobs.tasks.forecast_job": "Your forecast",
    "jobs.tasks.digest_job": "The Dow30 digest",
    "jobs.summary.summary_job": "The weekly evaluation summary",
    "jobs.retraining.retrain_job": "The retrain",
    "jobs.watch.watch_add_job": "Your /watch add",
}


def without_server_paths(text: str) -> str:
    """`text` with every server path cut to its last part (`/srv/data/snap/AXP.json` → `AXP.json`), for reasons
    shown in Slack."""
    return _SERVER_PATH.sub(lambda m: re.split(r"[/\\]", m.group(0).rstrip("/\\"))[-1], text)


def for_user(exc: BaseException, *, job_id: str | None = None) -> Told:
    """An engine failure (`EngineError`) in words for the person who asked: what happened and what to do. Market
    data's are `engine.sources.notices.told`; the operator's message (`str(exc)`) is for the log only."""
    where = f" (the team can find it in the worker log under job `{job_id}`)" if job_id else ""
    if isinstance(exc, DataError):
        return told(exc)
    if isinstance(exc, ModelServerError):
        return Told("the model server did not answer, or refused the request",
                    f"If it keeps failing, tell an admin{where}.")
    if isinstance(exc, PromptTooLong):
        return Told("the news and financials for it do not fit the model's input, even with news left out",
                    "Ask for fewer weeks (weeks=1) or add no-financials.")
    if isinstance(exc, PromptError):
        return Told("its data could not be put into the model's prompt", f"Please tell an admin{where}.")
    if isinstance(exc, ModelError):
        return Told("the model is not set up correctly on the worker", f"Please tell an admin{where}.")
    return Told("it could not be done on the worker", f"If it keeps failing, tell an admin{where}.")


def _refusal(slack: SlackPort, exc_value: BaseException | None) -> tuple[Refusal, str | None] | None:
    """(Slack's refusal, channel) when the job ended on a permanent refusal; None otherwise. Sends raise
    `SlackRefused`; a refusal that reached here bare (no channel known) is read by `slack`."""
    if isinstance(exc_value, SlackRefused):
        return exc_value.refusal, exc_value.channel
    refusal = slack.refusal(exc_value) if exc_value is not None else None
    return (refusal, None) if refusal else None


def describe(job: Any, exc_type: type[BaseException] | None, exc_value: BaseException | None, *,
             slack: SlackPort) -> str:
    """Why it failed, in words for a Slack user: no traceback, no secrets (exception messages can hold URLs), no
    server paths."""
    refused = _refusal(slack, exc_value)
    if refused is not None and refused[0].closed:
        return f"Slack refused to post it ({refused[0].error})"
    if refused is not None:
        return (f"Slack refused the message we built ({refused[0].error}); that is our bug, not yours: the team can "
                f"find it in the worker log under job `{job.id}`")
    if exc_type is not None and issubclass(exc_type, JobTimeoutException):
        limit = f"{job.timeout // 60} min" if job.timeout >= 120 else f"{job.timeout} s"
        return f"it ran longer than its {limit} limit and was stopped"
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return "the worker running it stopped unexpectedly (restarted or out of memory)"
    if isinstance(exc_value, EngineError):
        return for_user(exc_value, job_id=job.id).what  # its own text is the operator's, in the log
    name = exc_type.__name__ if exc_type else "an unknown error"
    return f"an internal error ({name}); the team can find it in the worker log under job `{job.id}`"


def retrying_note(job: Any, exc_type: type[BaseException] | None, reason: str, *, layouts: JobLayouts) -> str:
    """The progress note while RQ still has a try left. An abandoned job (its worker died) is retried at once by
    another worker (jobs.worker.retry_abandoned_at_once); any other failure after the queue's backoff."""
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return (f":repeat: The worker running {_subject(job, lower=True)} stopped unexpectedly (restarted or out of "
                "memory); it is being retried on the next free worker…")
    return f":repeat: {_subject(job)} hit a problem ({layouts.inline(reason)}); trying again shortly…"


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
        ctx = runtime.current()
        refused = _refusal(ctx.slack, exc_value)
        if refused is not None:
            # RQ decides on a retry right after the exception handlers run, from this attribute: 0 fails the job
            # now. A retry would meet the same refusal, after running the model again.
            job.retries_left = 0
            log.error("%s: ended without retrying: Slack refused to post (%s)", job.id, refused[0].error)
            if refused[0].closed:  # the channel (or token) is closed to us: tell them privately
                _tell_privately(ctx, job, *refused)
                return True
            # A payload refusal is ours: the failure note below is another payload, and Slack takes it.
        route = route_of(job)
        if route is None:
            return True
        reply = Reply(ctx, attempt_of(job), route)
        if reply.delivered():
            return True
        reason = describe(job, exc_type, exc_value, slack=ctx.slack)
        if job.retries_left:  # RQ decrements after the handlers run: >0 means another attempt is coming
            reply.progress(retrying_note(job, exc_type, reason, layouts=ctx.slack.layouts))
        else:
            text, blocks = ctx.slack.layouts.failure_message(
                f"{_subject(job)} failed", reason,
                hint="Nothing more will be attempted for this request; run the command again, or ask an admin to "
                     "look at the worker.")
            reply.final(text, blocks)
    except Exception:  # noqa: BLE001
        log.exception("could not tell the requester of job %s about its failure", getattr(job, "id", "?"))
    return True


def _tell_privately(ctx: runtime.WorkerContext, job: Any, refusal: Refusal, channel: str | None) -> None:
    route = route_of(job)
    if route is None:
        return
    layouts = ctx.slack.layouts
    fix = layouts.refusal_fix(refusal.error, channel or route.channel)
    text, blocks = layouts.failure_message(f"{_subject(job)} could not be posted", f"Slack said {refusal.error}",
                                           hint=fix)
    told = Reply(ctx, attempt_of(job), route).tell_privately(text, blocks, user=_requester(job))
    log.info("%s: requester %s: %s", job.id, f"told through the {told}" if told else "not told (Slack let us "
             "reach nobody)", fix)
