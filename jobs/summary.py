"""The weekly evaluation summary job: score the forecasts whose week has closed, post the track record, upload
its chart into the message's thread, and, once enough scored forecasts carry a probability
(`engine.evaluation.track_report.MIN_CALIBRATED`), the reliability diagram of the model's P(up) too.

Runs in the worker (`runtime.current()`), enqueued by `JobsClient.summary` once per channel and ISO week, so a
second scheduler or a second enqueue is a duplicate; a retried job posts and uploads nothing twice (the summary
is the job's final answer through `jobs.replies`, keyed by job id like `post_once`; the chart has its own marker).
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time

from rq import get_current_job

from engine.evaluation.track import last_closed_week
from engine.market.weeks import NEW_YORK
from jobs import runtime, track_record
from jobs.attempts import attempt_of
from jobs.keys import FAILURE_TTL_S, home_chart_key, last_run_key, posted_marker
from jobs.ledger import open_ledger, votes
from jobs.replies import CLAIM_TTL_S, Reply, Route, post_once
from jobs.results import SummaryJobResult

log = logging.getLogger(__name__)

HOME_CHART_TTL_S = 35 * 24 * 3600  # a summary is weekly: a chart older than a month is not shown
CHART_FILENAME = "track-record.png"
RELIABILITY_FILENAME = "reliability.png"


def _upload_once(ctx: runtime.WorkerContext, attempt: str, *, channel: str, png: bytes, title: str,
                 thread_ts: str | None, what: str = "chart", filename: str = CHART_FILENAME) -> str | None:
    """Upload a chart unless this job already did (the marker, one per `what`, holds the file id). Same
    claim-then-post rule as `post_once`: a "pending" marker is only left by an attempt that died while uploading,
    so the retry uploads."""
    key = posted_marker(attempt, what)
    existing = ctx.conn.get(key)
    if existing is not None and existing != b"pending":
        log.info("%s: %s already uploaded (%s); not uploading again", attempt, what, existing.decode())
        return None
    ctx.conn.set(key, "pending", ex=CLAIM_TTL_S)
    try:
        file_id = ctx.slack.upload_file(channel=channel, content=png, filename=filename, title=title,
                                        thread_ts=thread_ts, alt_text=title)
    except Exception:
        ctx.conn.delete(key)
        raise
    ctx.conn.set(key, file_id, ex=FAILURE_TTL_S)
    return file_id


def _chart_refused(ctx: runtime.WorkerContext, attempt: str, exc: Exception, *, channel: str, thread_ts: str | None,
                   job_id: str) -> bool:
    """Whether a chart upload that failed after the summary was posted is handled here (True) or is to be raised
    (False). Slack's refusal for good (`missing_scope`, `not_in_channel`, `channel_not_found`, a dead token, a
    payload it rejects): the operator's log says what to fix and the summary's thread says, in plain words, that the
    chart is missing; no retry, which would only be refused again. Anything else (a rate limit that outlasted the
    client's own retries, a 5xx, the network) is raised: RQ runs the job again after the queue's backoff, and the
    retry posts nothing twice (`post_once`, `_upload_once`)."""
    refusal = ctx.slack.refusal(exc)
    if refusal is None:
        log.warning("%s: chart upload failed (%s), the job will be retried: %s", job_id,
                    ctx.slack.api_error(exc) or type(exc).__name__, exc)
        return False
    # Slack's answer names the scope needed and the scopes granted (never the token).
    log.error("%s: Slack refused the chart upload for good (%s), not retrying. %s Slack said: %s", job_id,
              refusal.error, _OPERATOR_FIX.get(refusal.error, _OPERATOR_FIX_DEFAULT), exc)
    note = f":warning: The chart could not be attached. {ctx.slack.layouts.refusal_fix(refusal.error, channel)}"
    try:
        post_once(ctx, attempt, "chart-refused", channel=channel, text=note, thread_ts=thread_ts,
                  blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": note}}])
    except Exception as note_exc:
        if ctx.slack.refusal(note_exc) is None:
            raise
        log.error("%s: the note about the chart was refused too (%s)", job_id, ctx.slack.refusal(note_exc).error)
    return True


_OPERATOR_FIX = {
    "missing_scope": "Add the files:write bot scope (api.slack.com/apps, OAuth & Permissions) and reinstall the app.",
    "no_permission": "Add the files:write bot scope (api.slack.com/apps, OAuth & Permissions) and reinstall the app.",
    "not_in_channel": "Invite the app to the channel (/invite @forecaster), or take it out of DIGEST_CHANNELS.",
    "channel_not_found": "The channel is gone or private without the app: fix DIGEST_CHANNELS or invite the app.",
    "is_archived": "The channel is archived: take it out of DIGEST_CHANNELS.",
}
_OPERATOR_FIX_DEFAULT = "See Slack's error code; a token error needs SLACK_BOT_TOKEN updated on the worker."


def summary_job(channel: str, week_ending: str) -> dict:
    """Score, post the summary of the track record up to the week that closed by `week_ending` (ISO date, the
    Saturday after the week's close normally), and upload the chart into its thread."""
    ctx = runtime.current()
    job = get_current_job()
    job_id = job.id if job else f"adhoc-summary-{time.time_ns()}"
    attempt = attempt_of(job) if job else job_id  # whose delivery state (jobs/attempts.py)
    day = dt.date.fromisoformat(week_ending)
    now = dt.datetime.now(dt.UTC)
    latest = last_closed_week(day)
    # Weeks closed by the end of `week_ending`, and never beyond now: a later week's prices do not exist yet.
    closed_by = min(now, dt.datetime.combine(day + dt.timedelta(days=1), dt.time(0), tzinfo=NEW_YORK))

    store = open_ledger(ctx.settings)
    scored_now, failures = track_record.refresh_outcomes(store, ctx.sources.prices, closed_by=closed_by,
                                                         scored_at=now)
    track_record.rebuild_reports(store)  # weekly, heals a /track report a crash left behind its writes
    report = track_record.report(store, latest=latest)
    text, blocks = ctx.slack.layouts.summary_message(report, feedback=votes.tally(store),  # the 👍/👎 so far
                                                     failures=failures)
    # The job's final answer, sent once (a retry gets the ts back); a "retrying" note left by the failure handler
    # is edited into it, so the channel ends with one message in its final state.
    summary_ts = Reply(ctx, attempt, Route(channel)).final(text, blocks)

    chart = reliability = None
    shown: tuple[str, str] | None = None  # (file id, title) of the newest chart, for App Home
    if report.series:
        from jobs.charts import hit_rate_chart, reliability_chart  # matplotlib only when there is something to draw

        title = f"Cumulative hit rate, through the week {latest.period}"
        png = hit_rate_chart(report.series, title=title)
        calibrated = report.calibration
        try:
            chart = _upload_once(ctx, attempt, channel=channel, png=png, title=title, thread_ts=summary_ts)
            shown = (chart, title) if chart else None
            if calibrated and calibrated.enough:
                title = f"Reliability of the model's P(up), through the week {latest.period}"
                summary = f"Brier {calibrated.brier:.3f} · ECE {calibrated.ece:.3f} · n {calibrated.n}"
                png = reliability_chart(calibrated.reliability, title=title, summary=summary)
                reliability = _upload_once(ctx, attempt, channel=channel, png=png, title=title, thread_ts=summary_ts,
                                           what="reliability", filename=RELIABILITY_FILENAME)
                shown = (reliability, title) if reliability else shown
        except Exception as exc:
            if not _chart_refused(ctx, attempt, exc, channel=channel, thread_ts=summary_ts, job_id=job_id):
                raise
    if shown is not None:  # App Home shows it (the reliability chart when there is one): a file the bot can show
        ctx.conn.set(home_chart_key(), json.dumps({"file_id": shown[0], "title": shown[1]}), ex=HOME_CHART_TTL_S)
    ctx.conn.set(last_run_key("summary"), now.isoformat(timespec="seconds"))
    log.info("%s: summary to %s: %d newly scored, %d counted, chart %s, reliability chart %s", job_id,
             latest.period, scored_now, report.counts.scored, chart or "none", reliability or "none")
    return SummaryJobResult(status="done", week=latest.period, newly_scored=scored_now, counts=report.counts,
                            failures=failures, chart=chart, reliability_chart=reliability).to_json()
