"""A request, its attempts, and what each attempt delivered: the one state machine behind "the same request twice is
one answer" and "asking again always works".

**Request.** What someone asked for, named by its dedupe id, the RQ job id (`jobs.keys`: ticker, date or the
moment a live request's 10-minute window opened, options and channel; a digest's date and channel). The same
request asked twice is one request.

**Attempt.** One RQ job object under that id: created when the request is accepted, replaced (same id, a new job)
when it is accepted again. RQ's own retries of a job (a crash, a Slack 5xx, a model server down) are the same
attempt. An attempt is named by its job's creation time (`attempt_of`: `{job id}@{created_at in µs}`): RQ keeps
`created_at` through its retries, and a new job gets a new one. All delivery state is keyed by the attempt, never
by the request: the progress message, the final-answer marker, the generated answer kept for a retry, the
response_url uses, the thread posts (`jobs.keys`). So an attempt's retries share it, and show the answer exactly
once (`jobs.replies`), while a new attempt starts with none of it: no marker of an earlier attempt can silence a
new one, and nothing has to be deleted or outlive anything else.

**States of an attempt**, read from RQ's status and the outcome the job writes into its meta (`conclude`):

    pending    queued, scheduled (a retry waiting out its backoff), deferred, started
    answered   finished, outcome "answered": the forecast or digest is in the channel
    told       finished, outcome "failed": the request itself failed (unknown ticker, no data for the date, a data
               source down), told to the requester privately
    failed     RQ gave up (retries spent, a timeout, Slack refused for good): told by `jobs.failures`
    gone       the job lapsed (RESULT_TTL_S after it finished, FAILURE_TTL_S after it failed), or was stopped or
               canceled

**Asking again** (`JobsClient.forecast` and `.digest` with `again=True`, what the bot's commands pass):

    pending   → "already queued" / "being written": nothing new
    answered  → "answered in this channel: scroll up" (until the job lapses; a live request is a new one 10
                minutes after its first ask)
    told, failed, stopped, canceled → a new attempt replaces the job: the request runs again
    gone      → a new attempt (RQ's unique enqueue finds no job)

The scheduler does not ask again: a scheduled digest or summary that failed is not re-run by a scheduler restart.

Per person, at most `BOT_USER_MAX_PENDING` of their requests may be pending at once (`jobs.gates.admit`), so one
person cannot fill the queue everyone shares.
"""

from __future__ import annotations

import datetime as dt
import logging
from typing import Any

log = logging.getLogger(__name__)

PENDING = frozenset({"queued", "scheduled", "deferred", "started"})
OUTCOME = "outcome"  # the job meta key `conclude` writes
ANSWERED = "answered"
TOLD = "failed"  # the request itself failed, and the requester was told why


def attempt_of(job: Any) -> str:
    """The attempt `job` is (see the module docstring): its id and its creation time in microseconds. `job`: an RQ
    Job, or anything with its `id` (without a `created_at`, the id alone names the attempt)."""
    created = getattr(job, "created_at", None)
    if created is None:
        return job.id
    if created.tzinfo is None:  # RQ stores UTC without a zone
        created = created.replace(tzinfo=dt.UTC)
    return f"{job.id}@{int(created.timestamp() * 1_000_000)}"


def conclude(job: Any, outcome: str) -> None:
    """Write how this attempt ended into its job's meta (ANSWERED or TOLD): what the bot reads when the request is
    asked again. Best effort: without it, a finished job counts as answered."""
    if job is None or not hasattr(job, "save_meta"):
        return
    try:
        job.meta[OUTCOME] = outcome
        job.save_meta()
    except Exception:  # noqa: BLE001 — the answer is out; only a later "ask again" reads this
        log.exception("%s: could not record its outcome (%s)", getattr(job, "id", "?"), outcome)


def may_run_again(status: str, meta: dict | None) -> bool:
    """Whether a request whose job is in RQ status `status` (with `meta`) is run again when asked again: its
    attempt ended without an answer (see the module docstring)."""
    if status in PENDING or status == "unknown":
        return False
    if status == "finished":
        return (meta or {}).get(OUTCOME) == TOLD
    return True  # failed, stopped, canceled
