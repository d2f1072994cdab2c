"""`/watch add`: check the names with the market data sources, add the known ones to the channel's watchlist, and
tell the requester privately what was added and why any name was not.

The check runs here, on a worker, not in the bot: it asks the same sources a forecast reads (Finnhub or Yahoo,
through the shared cache and rate limiter, or the recorded snapshot), so "known" means a digest can forecast it,
class shares included (BRK.B is BRK-B at Yahoo: engine.sources.symbols). The bot answers within Slack's 3 s with
"checking…"; this job's answer replaces that note (the response_url), else comes as an ephemeral message.
"""

from __future__ import annotations

import datetime as dt
import logging
import time

from rq import get_current_job

from engine.data.inputs import Sources
from engine.exceptions import DataError
from engine.sources.snapshot import recorded_clock
from jobs import runtime
from jobs.attempts import ANSWERED, attempt_of, conclude
from jobs.failures import for_user
from jobs.ledger import open_ledger, watchlists
from jobs.replies import Reply, Route
from jobs.results import WatchJobResult

log = logging.getLogger(__name__)

PRICE_WINDOW = dt.timedelta(days=14)  # a listed name has closes in the last two weeks (holidays included)


def check_ticker(sources: Sources, symbol: str, *, today: dt.date) -> DataError | None:
    """None when the sources know `symbol`: a company profile, and closes in the last two weeks; else why not."""
    try:
        sources.fundamentals.profile(symbol)
        sources.prices.daily_closes([symbol], today - PRICE_WINDOW, today)
    except DataError as exc:
        return exc
    return None


def watch_add_job(channel: str, user: str, tickers: list[str], response_url: str | None = None) -> dict:
    ctx = runtime.current()
    job = get_current_job()
    attempt = attempt_of(job) if job is not None else f"adhoc-{time.time_ns()}"
    reply = Reply(ctx, attempt, Route(channel=channel, response_url=response_url,
                                      requested_at=job.enqueued_at if job is not None else None))
    if reply.delivered():
        conclude(job, ANSWERED)
        return WatchJobResult(status="done", note="answer already sent by an earlier try").to_json()
    now = dt.datetime.now(dt.UTC)
    if ctx.settings.data_snapshot_dir is not None:  # replaying a recording: its "now" is when it was recorded
        now = recorded_clock(ctx.settings.data_snapshot_dir)[1]
    refused: dict[str, tuple[str, str]] = {}
    known: list[str] = []
    for symbol in tickers:
        problem = check_ticker(ctx.sources, symbol, today=now.date())
        if problem is None:
            known.append(symbol)
        else:
            told = for_user(problem)
            refused[symbol] = (told.what, told.do)
            log.info("/watch add %s in %s: refused: %s", symbol, channel, problem)
    added = watchlists.add(open_ledger(ctx.settings), channel, known, user=user, cap=ctx.settings.watchlist_max)
    text, blocks = ctx.slack.layouts.watch_added_message(
        channel=channel, added=added.added, already=added.already, refused=refused, over_cap=added.over_cap,
        size=added.size, cap=added.cap)
    reply.final_privately(text, blocks, user=user)
    conclude(job, ANSWERED)
    log.info("/watch add in %s by %s: added %s, already %s, refused %s, over the cap %s", channel, user,
             added.added, added.already, sorted(refused), added.over_cap)
    return WatchJobResult(status="done", added=added.added, already=added.already, refused=sorted(refused),
                          over_cap=added.over_cap, size=added.size).to_json()
