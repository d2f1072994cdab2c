"""The jobs themselves: thin glue from a request to engine work to a Slack message in a final state."""

from __future__ import annotations

import datetime as dt
import logging
import time

from rq import get_current_job

from bot.blocks import digest_message, forecast_message
from bot.slack_ops import post_message
from engine.exceptions import EngineError
from engine.forecast import run_forecasts, to_json
from engine.inputs import gather
from engine.market.dow30 import members
from engine.market.weeks import cutoff_for_date
from engine.sources.ratelimit import Limit, RedisRateLimiter
from jobs import runtime
from jobs.client import ForecastRequest
from jobs.keys import FAILURE_TTL_S, channel_pace_key, posted_marker

log = logging.getLogger(__name__)
# How long a "pending" marker lives if its attempt dies mid-post (a retry overwrites it anyway).
CLAIM_TTL_S = 120


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
    # Slack allows about one message per second per channel; every worker shares this pace through Redis.
    RedisRateLimiter(ctx.conn, key=channel_pace_key(channel), limits=[Limit(1, 1.0)]).acquire()
    try:
        ts = post_message(ctx.slack, channel=channel, text=text, blocks=blocks, thread_ts=thread_ts)
    except Exception:
        ctx.conn.delete(key)
        raise
    ctx.conn.set(key, ts, ex=FAILURE_TTL_S)
    return ts


def forecast_job(request: dict) -> dict:
    ctx = runtime.current()
    job = get_current_job()
    job_id = job.id if job else f"adhoc-{time.time_ns()}"
    req = ForecastRequest.from_json(request)
    settings = ctx.settings
    now = dt.datetime.now(dt.UTC)
    cutoff = cutoff_for_date(req.as_of) if req.as_of else now
    started = time.perf_counter()
    try:
        inputs = gather([req.ticker], sources=ctx.sources, cutoff=cutoff, now=now, weeks=req.weeks,
                        with_financials=req.financials,
                        financials_lag_days=settings.financials_lag_days)[req.ticker]
        if isinstance(inputs, EngineError):
            raise inputs
        result = run_forecasts([inputs], ctx.model(), context_tokens=settings.model_context_tokens,
                               max_new_tokens=settings.model_max_new_tokens)[0]
    except EngineError as exc:
        # A user-actionable failure is a final state the user sees, not a retry.
        text = f":warning: No forecast for {req.ticker}: {exc}"
        post_once(ctx, job_id, "final", channel=req.channel, text=text, thread_ts=req.thread_ts,
                  blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": text[:2900]}}])
        return {"status": "failed", "error": str(exc)}
    data = to_json(result)
    text, blocks = forecast_message(data)
    post_once(ctx, job_id, "final", channel=req.channel, text=text, blocks=blocks, thread_ts=req.thread_ts)
    log.info("%s: %s forecast in %.1fs (%d new tokens)", job_id, req.ticker, time.perf_counter() - started,
             data["new_tokens"])
    return {"status": "done", "forecast": {k: v for k, v in data.items() if k != "raw"}}


def digest_job(channel: str, as_of: str, weeks: int = 3) -> dict:
    """All Dow30 members of that date in ONE batched generation; one summary message, each full analysis in its
    thread. A ticker whose data fails is listed, not fatal."""
    ctx = runtime.current()
    job = get_current_job()
    job_id = job.id if job else f"adhoc-{time.time_ns()}"
    settings = ctx.settings
    day = dt.date.fromisoformat(as_of)
    now = dt.datetime.now(dt.UTC)
    symbols = members(day)
    gathered = gather(symbols, sources=ctx.sources, cutoff=cutoff_for_date(day), now=now, weeks=weeks,
                      financials_lag_days=settings.financials_lag_days)
    failures = {s: str(r) for s, r in gathered.items() if isinstance(r, EngineError)}
    ready = [r for r in gathered.values() if not isinstance(r, EngineError)]
    results = run_forecasts(ready, ctx.model(), context_tokens=settings.model_context_tokens,
                            max_new_tokens=settings.model_max_new_tokens, batch_size=settings.model_batch_size)
    forecasts = [to_json(r) for r in results]
    week = forecasts[0]["target_week"] if forecasts else f"the week after {day}"
    text, blocks = digest_message(week, forecasts, failures)
    summary_ts = post_once(ctx, job_id, "summary", channel=channel, text=text, blocks=blocks)
    if summary_ts is None:  # a retry after the summary went out: find its ts to keep threading under it
        summary_ts = ctx.conn.get(posted_marker(job_id, "summary")).decode()
    for data in sorted(forecasts, key=lambda d: d["symbol"]):
        item_text, item_blocks = forecast_message(data)
        post_once(ctx, job_id, f"thread-{data['symbol']}", channel=channel, text=item_text, blocks=item_blocks,
                  thread_ts=summary_ts)
    return {"status": "done", "forecasts": len(forecasts), "failed": failures}
