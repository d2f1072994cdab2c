"""The jobs themselves: thin glue from a request to engine work to a Slack message in a final state."""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
from dataclasses import dataclass
from typing import Any

from rq import get_current_job

from engine.data.inputs import gather
from engine.exceptions import EngineError, ModelServerError
from engine.forecast import forecast_record, run_forecasts
from engine.forecast_record import ForecastRecord
from engine.market.dow30 import members
from engine.market.weeks import request_cutoff
from engine.sources.snapshot import recorded_clock
from jobs import runtime
from jobs.attempts import ANSWERED, TOLD, attempt_of, conclude
from jobs.client import ForecastRequest
from jobs.failures import for_user
from jobs.keys import answer_key, last_run_key
from jobs.ledger import open_ledger
from jobs.ledger.writes import batched_reports, record_forecast
from jobs.replies import Reply, Route, SlackRefused, post_once, posted_ts
from jobs.results import DigestJobResult, ForecastJobResult
from jobs.streaming import SectionProgress, written_status

__all__ = ["digest_job", "forecast_job", "post_once"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class _JobInfo:
    id: str
    attempt: str  # whose delivery state this run uses (jobs.attempts): RQ's retries of the job share it
    enqueued_at: dt.datetime | None  # this try's (a retry is enqueued again)
    requested_at: dt.datetime  # when this attempt was asked for: its job's creation, the same across retries
    rq_job: Any = None  # RQ's job, where the attempt's outcome is written (None when called directly)


def _job() -> _JobInfo:
    job = get_current_job()
    if job is None:  # called directly (tests, a REPL): still idempotent per call
        adhoc = f"adhoc-{time.time_ns()}"
        return _JobInfo(adhoc, adhoc, None, dt.datetime.now(dt.UTC))
    created = job.created_at or dt.datetime.now(dt.UTC)
    return _JobInfo(job.id, attempt_of(job), job.enqueued_at,
                    created if created.tzinfo else created.replace(tzinfo=dt.UTC), job)


def _record(ctx: runtime.WorkerContext, data: ForecastRecord, *, job: _JobInfo, user: str | None, channel: str,
            source: str) -> str | None:
    """Into the ledger, before posting: a forecast that reached the user is always on the record. A ledger
    failure is logged, never allowed to cost the user the answer. Returns the entry's id (None: not recorded, so
    the answer goes out without the 👍/👎 buttons, which would have nothing to vote on)."""
    try:
        latency = (dt.datetime.now(dt.UTC) - job.requested_at).total_seconds()
        return record_forecast(open_ledger(ctx.settings), data, job_id=job.id, user=user, channel=channel,
                               requested_at=job.requested_at, latency_s=latency, source=source)
    except Exception:  # noqa: BLE001
        log.exception("%s: could not record %s in the ledger", job.id, data.symbol)
        return None


# A generated answer waits in Redis until it is posted, for the retries after a Slack failure (RQ's backoff is at most
# minutes); a job id asked again much later (a dated forecast, once RQ forgot the job) runs the model afresh.
ANSWER_TTL_S = 3600


def _stored_answer(ctx: runtime.WorkerContext, attempt: str) -> dict | None:  # a forecast's or a digest's
    """What an earlier try of this attempt generated but did not get posted (Slack failed): posted as it is, since
    generating it again costs the model time and could even say something else."""
    raw = ctx.conn.get(answer_key(attempt))
    if raw is None:
        return None
    log.info("%s: posting the answer an earlier try generated; not running the model again", attempt)
    return json.loads(raw)


def _store_answer(ctx: runtime.WorkerContext, attempt: str, answer: dict) -> None:
    try:
        ctx.conn.set(answer_key(attempt), json.dumps(answer), ex=ANSWER_TTL_S)
    except Exception:  # noqa: BLE001 — without it a retry only costs a second generation
        log.exception("%s: could not keep the generated answer for a retry", attempt)


def _deliver_forecast(ctx: runtime.WorkerContext, reply: Reply, job: _JobInfo, req: ForecastRequest,
                      data: ForecastRecord) -> dict:
    # The track reports the entry changes are recomputed once the answer is out: the requester never waits on them.
    with batched_reports():
        entry = _record(ctx, data, job=job, user=req.user, channel=req.channel, source="forecast")
        text, blocks = ctx.slack.layouts.forecast_message(data)
        if entry is not None:
            blocks = ctx.slack.layouts.with_votes(blocks, entry)
        answer_ts = reply.final(text, blocks)
    _post_sources(ctx, job.attempt, req, data, answer_ts)
    ctx.conn.delete(answer_key(job.attempt))
    conclude(job.rq_job, ANSWERED)
    return ForecastJobResult(status="done", forecast=data.model_copy(update={"raw": ""})).to_json()


def _post_sources(ctx: runtime.WorkerContext, attempt: str, req: ForecastRequest, data: ForecastRecord,
                  answer_ts: str | None) -> None:
    """The "Sources" reply in the answer's thread, once per attempt (`post_once`): every headline the model read.
    None where the answer has no ts (it went through a response_url: no thread to reply in) or read no news."""
    if not answer_ts or data.evidence is None or not data.evidence.read:
        return
    text, blocks = ctx.slack.layouts.sources_message(data)
    try:
        post_once(ctx, attempt, "sources", channel=req.channel, text=text, blocks=blocks,
                  thread_ts=req.thread_ts or answer_ts)
    except SlackRefused as exc:  # the answer is out; a refused reply under it is not worth failing the job
        log.warning("%s: the Sources reply was refused: %s", attempt, exc)


def forecast_job(request: dict) -> dict:
    """data → prompt → model → parsed forecast → ledger → Slack, with progress shown along the way."""
    ctx = runtime.current()
    job = _job()
    job_id = job.id
    req = ForecastRequest.from_json(request)
    reply = Reply(ctx, job.attempt, Route(req.channel, req.thread_ts, req.response_url, job.enqueued_at, req.user))
    if reply.delivered():
        # A retry after a crash at the very end; this attempt's outcome may not have been written yet.
        stored = _stored_answer(ctx, job.attempt)
        if stored is not None:  # kept until the Sources reply is out: it may not be (final only returns the ts here)
            _post_sources(ctx, job.attempt, req, ForecastRecord.from_json(stored), reply.final("", []))
            ctx.conn.delete(answer_key(job.attempt))
        conclude(job.rq_job, ANSWERED)
        return ForecastJobResult(status="done", note="answer already posted by an earlier try").to_json()
    stored = _stored_answer(ctx, job.attempt)
    if stored is not None:
        return _deliver_forecast(ctx, reply, job, req, ForecastRecord.from_json(stored))
    settings = ctx.settings
    now = dt.datetime.now(dt.UTC)
    # What the request may know, and so its week: from the moment it was asked, as its acknowledgement did.
    cutoff = request_cutoff(req.as_of, req.asked_at or now)
    if settings.data_snapshot_dir is not None and req.as_of is None:  # replaying: "now" is when it was recorded
        cutoff, now = recorded_clock(settings.data_snapshot_dir)
    started = time.perf_counter()
    reply.progress(f":hourglass_flowing_sand: *{req.ticker}*: fetching news, prices and financials…")
    try:
        inputs = gather([req.ticker], sources=ctx.sources, cutoff=cutoff, now=now, weeks=req.weeks,
                        with_financials=req.financials,
                        financials_lag_days=settings.financials_lag_days,
                        progress=lambda note: reply.progress(f":hourglass_flowing_sand: *{req.ticker}*: {note}…"),
                        )[req.ticker]
        if isinstance(inputs, EngineError):
            raise inputs
        fetched = time.perf_counter()
        model = ctx.model()
        writing = (f":brain: *{req.ticker}*: writing the analysis for the week {inputs.target.period} "
                   f"with {ctx.slack.layouts.inline(model.version)}…")
        reply.progress(writing)
        # The requester reads each section as soon as it is complete (jobs.streaming), then the answer.
        sections = SectionProgress(lambda written: reply.progress(
            written_status(writing, written, escape=ctx.slack.layouts.inline)))
        result = run_forecasts([inputs], model, context_tokens=settings.model_context_tokens,
                               max_new_tokens=settings.model_max_new_tokens,
                               signal_band=settings.signal_band, on_text=sections)[0]
    except ModelServerError:
        raise  # the model server is down or busy: RQ retries, and the requester is told if it stays down
    except EngineError as exc:
        # A user-actionable failure is a final state the user sees, not a retry; theirs alone, since the
        # channel has no use for a mistyped ticker. Told in plain words; the exception's own text is the log's.
        told = for_user(exc, job_id=job_id)
        log.warning("%s: no forecast for %s: %s", job_id, req.ticker, exc)
        text, blocks = ctx.slack.layouts.failure_message(f"No forecast for {req.ticker}", told.what, hint=told.do)
        reply.final_privately(text, blocks, user=req.user)
        conclude(job.rq_job, TOLD)  # asked again, it runs again (jobs/attempts.py)
        return ForecastJobResult(status="failed", error=told.what).to_json()
    data = forecast_record(result)
    _store_answer(ctx, job.attempt, data.to_json())
    log.info("%s: %s generated in %.1fs (data %.1fs, generation %.1fs, %d new tokens)", job_id, req.ticker,
             time.perf_counter() - started, fetched - started, data.seconds, data.new_tokens)
    return _deliver_forecast(ctx, reply, job, req, data)


def digest_job(channel: str, as_of: str, weeks: int = 3, asked_at: str | None = None,
               symbols: list[str] | None = None) -> dict:
    """The channel's watchlist (`symbols`, read when the digest was asked for), else all Dow30 members of that date,
    in ONE batched generation; one summary message, each full analysis in its thread. A ticker whose data fails is
    listed, not fatal. `asked_at`: when a person asked (None: scheduled)."""
    ctx = runtime.current()
    job = _job()
    reply = Reply(ctx, job.attempt, Route(channel))
    settings = ctx.settings
    day = dt.date.fromisoformat(as_of)
    now = dt.datetime.now(dt.UTC)
    watchlist = list(symbols) if symbols else None
    symbols = watchlist or members(day)
    title = "Watchlist digest" if watchlist else "Dow30 digest"
    stored = _stored_answer(ctx, job.attempt)  # an earlier try generated it; posting failed or stopped half-way
    if stored is None:
        if not reply.delivered():
            reply.progress(f":hourglass_flowing_sand: {title}: fetching data for {len(symbols)} companies…")
        def note(text: str) -> None:  # a source's word while it waits, e.g. on Finnhub's rate limit
            if not reply.delivered():
                reply.progress(f":hourglass_flowing_sand: {title}: {text}…")

        cutoff = request_cutoff(day, dt.datetime.fromisoformat(asked_at) if asked_at else now)
        gathered = gather(symbols, sources=ctx.sources, cutoff=cutoff, now=now, weeks=weeks,
                          financials_lag_days=settings.financials_lag_days, progress=note)
        failures = {s: for_user(r).what for s, r in gathered.items() if isinstance(r, EngineError)}
        for symbol, error in gathered.items():
            if isinstance(error, EngineError):
                log.warning("%s: no forecast for %s in the digest: %s", job.id, symbol, error)
        ready = [r for r in gathered.values() if not isinstance(r, EngineError)]
        model = ctx.model()
        if not reply.delivered():
            reply.progress(f":brain: {title}: writing {len(ready)} analyses with "
                           f"{ctx.slack.layouts.inline(model.version)}…")
        def done(written: int, total: int) -> None:  # after each batch of MODEL_BATCH_SIZE
            if written < total and not reply.delivered():
                reply.progress(f":brain: {title}: {written} of {total} analyses written with "
                               f"{ctx.slack.layouts.inline(model.version)}…")

        results = run_forecasts(ready, model, context_tokens=settings.model_context_tokens,
                                max_new_tokens=settings.model_max_new_tokens, batch_size=settings.model_batch_size,
                                signal_band=settings.signal_band, on_done=done)
        stored = {"forecasts": [forecast_record(r).to_json() for r in results], "failures": failures}
        _store_answer(ctx, job.attempt, stored)
    forecasts = [ForecastRecord.from_json(f) for f in stored["forecasts"]]
    failures = stored["failures"]
    # The track reports of the digest's tickers and of all: recomputed once, after the digest is out.
    with batched_reports():
        entries = {data.symbol: _record(ctx, data, job=job, user=None, channel=channel, source="digest")
                   for data in forecasts}
        week = forecasts[0].target_week if forecasts else f"the week after {day}"
        text, blocks = ctx.slack.layouts.digest_message(week, forecasts, failures, watchlist=watchlist)
        summary_ts = reply.final(text, blocks)
        for data in sorted(forecasts, key=lambda d: d.symbol):
            item_text, item_blocks = ctx.slack.layouts.forecast_message(data)
            if entries[data.symbol] is not None:  # each digest line's analysis takes its 👍/👎 in the thread
                item_blocks = ctx.slack.layouts.with_votes(item_blocks, entries[data.symbol])
            post_once(ctx, job.attempt, f"thread-{data.symbol}", channel=channel, text=item_text,
                      blocks=item_blocks, thread_ts=summary_ts)
    ctx.conn.set(last_run_key("digest"), dt.datetime.now(dt.UTC).isoformat(timespec="seconds"))
    ctx.conn.delete(answer_key(job.attempt))
    conclude(job.rq_job, ANSWERED)
    return DigestJobResult(status="done", forecasts=len(forecasts), failed=failures, summary_ts=summary_ts,
                           thread=tuple(posted_ts(ctx, job.attempt, f"thread-{d.symbol}") for d in forecasts)).to_json()
