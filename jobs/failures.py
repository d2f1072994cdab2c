"""When a job fails for a reason the job itself did not handle (a bug, a timeout, a dead worker), its requester
still gets a final state: an RQ exception handler turns the failure into a message, or into a "retrying" note
while RQ still has retries left.

Handled failures (bad ticker, no data) never get here: the job posts those itself and finishes.
"""

from __future__ import annotations

import logging
from typing import Any

from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from bot.blocks import failure_message
from engine.exceptions import EngineError
from jobs import runtime
from jobs.replies import Reply, route_of

log = logging.getLogger(__name__)

WHAT = {
    "jobs.tasks.forecast_job": "Your forecast",
    "jobs.tasks.digest_job": "The Dow30 digest",
    "jobs.summary.summary_job": "The weekly evaluation summary",
    "jobs.retraining.retrain_job": "The retrain",
}


def describe(job: Any, exc_type: type[BaseException] | None, exc_value: BaseException | None) -> str:
    """Why it failed, in words for a Slack user: no traceback, no secrets (exception messages can hold URLs)."""
    if exc_type is not None and issubclass(exc_type, JobTimeoutException):
        limit = f"{job.timeout // 60} min" if job.timeout >= 120 else f"{job.timeout} s"
        return f"it ran longer than its {limit} limit and was stopped"
    if exc_type is not None and issubclass(exc_type, AbandonedJobError):
        return "the worker running it stopped unexpectedly (restarted or out of memory)"
    if exc_type is not None and issubclass(exc_type, EngineError):
        return str(exc_value)  # written for users, secrets already redacted (e.g. the model server is down)
    name = exc_type.__name__ if exc_type else "an unknown error"
    return f"an internal error ({name}); the team can find it in the worker log under job `{job.id}`"


def _subject(job: Any) -> str:
    what = WHAT.get(job.func_name, "Your request")
    ticker = ((job.kwargs or {}).get("request") or {}).get("ticker")
    return f"{what} for {ticker}" if ticker else what


def tell_the_requester(job: Any, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                       traceback: Any) -> bool:
    """RQ exception handler. Never raises (a failing handler would hide the original failure); returns True so
    RQ's own handling (failed-job registry, retries) goes on."""
    try:
        route = route_of(job)
        if route is None:
            return True
        reply = Reply(runtime.current(), job.id, route)
        if reply.delivered():
            return True
        reason = describe(job, exc_type, exc_value)
        if job.retries_left:  # RQ decrements after the handlers run: >0 means another attempt is coming
            reply.progress(f":repeat: {_subject(job)} hit a problem ({reason}); trying again shortly…")
        else:
            text, blocks = failure_message(f"{_subject(job)} failed", reason,
                                           hint="Nothing more will be attempted for this request; run the command "
                                                "again, or ask an admin to look at the worker.")
            reply.final(text, blocks)
    except Exception:  # noqa: BLE001
        log.exception("could not tell the requester of job %s about its failure", getattr(job, "id", "?"))
    return True
