"""What end users read when something fails is written for them (issue 20, item 10): what happened and what to do,
in plain words, never the operator's text (a provider's raw error, a URL, a snapshot's path, a CLI command), which
goes to the worker's log; and the weekly summary reads Slack's errors for what they are: a refusal for good is
logged for the operator and not retried, a rate limit or a 5xx is retried.

As deployed: signed slash commands over HTTP to the Bolt app, a real Redis, a real RQ worker in burst mode, the real
yfinance against a Yahoo that is down, a snapshot folder, the fake Slack recording what users see.
"""

from __future__ import annotations

import dataclasses
import logging

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

import jobs.client
from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.exceptions import SourceUnavailable
from engine.sources.factory import build_sources
from engine.sources.snapshot import SnapshotSource
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import JobsClient
from jobs.queues import BATCH
from tests.fakes.yahoo import FakeYahoo
from tests.scenarios.bot_harness import bot_settings, serve_bot, slash
from tests.scenarios.market_fixture import record_snapshot
from tests.scenarios.test_summary_job import SATURDAY, record, shown

OPERATOR_WORDS = ("http://", "https://", "127.0.0.1", "Failed to get ticker", "reason:", "cause:", "forecaster data",
                  "snapshot ", "DATA_SNAPSHOT_DIR", "FINNHUB_API_KEY", "Traceback", "Error:")


def operator_words_in(text: str) -> list[str]:
    return [word for word in OPERATOR_WORDS if word in text]


def context_for(redis, slack, sources: Sources, **settings) -> runtime.WorkerContext:
    return runtime.WorkerContext(
        settings=Settings(_env_file=None, **settings), conn=redis, sources=sources,
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)), load_model=lambda: object(),
    )


@pytest.fixture
def server(slack, redis, redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"])) as running:
        yield running


def told_privately(slack) -> dict:
    *_progress, told = slack.hooks()
    assert told["response_type"] == "ephemeral" and slack.messages() == []
    return told


# -- /forecast: a data failure, told to its requester ------------------------------------------------------------


@pytest.mark.usefixtures("fresh_yfinance")
def test_a_provider_that_is_down_is_told_in_plain_words_and_its_raw_error_goes_to_the_log(server, slack, redis,
                                                                                          caplog):
    with FakeYahoo() as yahoo:
        dead = yahoo.session()  # the fake Yahoo's address, with nothing listening once it stops
    sources = build_sources(Settings(_env_file=None), conn=redis, yahoo_session=dead, sleep=lambda _s: None)
    context = context_for(redis, slack, sources)
    slash(server, "/forecast", "AXP 2024-03-15 weeks=2", response_url=slack.hook_url())
    with caplog.at_level(logging.WARNING, logger="jobs.tasks"):
        worker.run(context, burst=True)
    runtime.install(None)

    told = told_privately(slack)
    assert told["text"] == (":x: No forecast for AXP: the market data provider is not answering right now (busy, "
                            "rate-limited or down)")
    assert [e["text"] for b in told["blocks"] for e in b.get("elements", [])] == ["Try again in a few minutes."]
    assert operator_words_in(str(told)) == []
    [logged] = [r.getMessage() for r in caplog.records if "no forecast for AXP" in r.getMessage()]
    assert "Yahoo Finance" in logged and "Failed to get ticker 'AXP'" in logged  # the operator has it all


def test_a_recording_without_the_ticker_is_told_without_the_snapshot_command_or_path(server, slack, redis, tmp_path,
                                                                                     caplog):
    snapshot = SnapshotSource(record_snapshot(tmp_path / "srv" / "snapshots" / "2024-03-15"))
    context = context_for(redis, slack, Sources(snapshot, snapshot, snapshot))
    slash(server, "/forecast", "ZZZZ 2024-03-15", response_url=slack.hook_url())
    with caplog.at_level(logging.WARNING, logger="jobs.tasks"):
        worker.run(context, burst=True)
    runtime.install(None)

    told = told_privately(slack)
    assert told["text"].startswith(":x: No forecast for ZZZZ: this bot answers from recorded market data, and the "
                                   "recording has nothing for this ticker and date")
    assert "ask an admin to record this one" in str(told["blocks"])
    assert operator_words_in(str(told)) == [] and "srv" not in str(told)
    assert "forecaster data snapshot ZZZZ" in caplog.text and str(tmp_path) in caplog.text


def test_a_digest_lists_the_tickers_the_recording_lacks_in_plain_words(server, slack, redis, tmp_path, caplog):
    from tests.fakes.forecasts import CannedAnalyst, answer

    snapshot = SnapshotSource(record_snapshot(tmp_path / "srv" / "snapshots" / "2024-03-15"))  # AXP only
    context = context_for(redis, slack, Sources(snapshot, snapshot, snapshot))
    context.load_model = lambda: CannedAnalyst(answer("Up by 1-2%"))
    slash(server, "/digest", "2024-03-15", channel="C777")
    with caplog.at_level(logging.WARNING, logger="jobs.tasks"):
        worker.run(context, burst=True)
    runtime.install(None)

    digest, *_thread = slack.messages("C777")
    listed = shown(digest["blocks"])
    assert "*No forecast for:*\n• AAPL: this bot answers from recorded market data, and the recording has nothing" \
        in listed
    assert operator_words_in(str(digest)) == [], operator_words_in(str(digest))
    assert "no forecast for AAPL in the digest: snapshot" in caplog.text  # the operator's words, in the log


# -- the weekly summary ------------------------------------------------------------------------------------------


class PricesDown:
    """The stepped market, with `down` tickers' prices failing as yfinance's did: a raw error cut mid-URL."""

    def __init__(self, market, down: set[str]) -> None:
        self.market, self.down = market, down

    def __getattr__(self, name):
        return getattr(self.market, name)

    def daily_closes(self, symbols, start, end):
        if self.down & set(symbols):
            raise SourceUnavailable(
                "Yahoo Finance failed the price request for KO (2024-02-25 to 2024-03-22) 4 times in a row (cause: "
                "curl: (28) Operation timed out after 10002 milliseconds with 0 bytes received; url: https://query2."
                "finance.yahoo.com/v8/finance/chart/KO?period1=1708); check the network and try again in a few "
                "minutes.")
        return self.market.daily_closes(symbols, start, end)


@pytest.fixture
def summary_context(redis, slack):
    from tests.fakes.forecasts import stepped_market

    market = stepped_market()
    ctx = context_for(redis, slack, Sources(market, market, market))
    yield ctx
    runtime.install(None)


def run_summary(context, redis, *, prices_down: set[str] = frozenset()) -> Job:
    record(redis, context.sources)  # forecasts made while the prices were there
    if prices_down:
        market = context.sources.prices
        context.sources = Sources(market, market, PricesDown(market, prices_down))
    outcome = JobsClient(redis).summary(channel="C555", week_ending=SATURDAY)
    worker.run(context, burst=True)
    return Job.fetch(outcome.job_id, connection=redis, serializer=JSONSerializer)


def test_the_summary_lists_a_ticker_without_prices_in_plain_words_never_the_raw_error(summary_context, redis,
                                                                                       slack, caplog):
    run_summary(summary_context, redis, prices_down={"KO"})

    [message] = slack.messages()
    blocks = shown(message["blocks"])
    assert "No outcome yet for:*\n• KO: the market data provider is not answering right now" in blocks
    assert "tried again at the next summary" in blocks
    assert operator_words_in(str(message)) == [] and "curl" not in str(message)
    assert "curl: (28)" in caplog.text  # the operator's log keeps the provider's words


def chart_requests(slack) -> int:
    """Uploads begun: accepted, refused or failed."""
    return sum(c.method == "files.getUploadURLExternal" for c in [*slack.calls, *slack.refused, *slack.failed])


@pytest.mark.parametrize(("method", "error", "fields", "logged"), [
    ("files.getUploadURLExternal", "missing_scope", {"needed": "files:write", "provided": "commands,chat:write"},
     "Add the files:write bot scope"),
    ("files.completeUploadExternal", "not_in_channel", {}, "Invite the app to the channel"),
    ("files.completeUploadExternal", "channel_not_found", {}, "fix DIGEST_CHANNELS"),
])
def test_a_chart_slack_refuses_for_good_is_not_retried_and_the_operator_is_told_what_to_fix(
        summary_context, redis, slack, caplog, monkeypatch, method, error, fields, logged):
    monkeypatch.setattr(jobs.client, "BATCH", dataclasses.replace(BATCH, retry_intervals_s=(0,)))  # would rerun now
    slack.fail_next(method, 200, error=error, times=5, **fields)
    job = run_summary(summary_context, redis)

    assert job.get_status() == "finished" and chart_requests(slack) == 1  # no retry: it would be refused again
    summary, note = slack.messages()
    assert summary["text"].startswith("Track record to 2024-03-17 to 2024-03-24")
    assert note["thread_ts"] == summary["ts"] and note["text"].startswith(":warning: The chart could not be attached.")
    assert error not in note["text"] and "`" not in note["text"].replace("`/invite @forecaster`", "")
    [record_] = [r for r in caplog.records if "refused the chart upload" in r.getMessage()]
    assert record_.levelno == logging.ERROR and error in record_.getMessage() and logged in record_.getMessage()
    assert slack.uploads() == []


@pytest.mark.parametrize(("status", "headers", "times"), [(503, {}, 1), (429, {"Retry-After": "0"}, 4)],
                         ids=["server-error", "rate-limited-past-the-clients-own-3-retries"])
def test_a_chart_upload_that_fails_for_now_is_retried_and_posted_once(summary_context, redis, slack, caplog,
                                                                       monkeypatch, status, headers, times):
    monkeypatch.setattr(jobs.client, "BATCH", dataclasses.replace(BATCH, retry_intervals_s=(0,)))  # no 5 min wait
    slack.fail_next("files.getUploadURLExternal", status, headers=headers, times=times)
    job = run_summary(summary_context, redis)

    assert job.get_status() == "finished" and chart_requests(slack) == times + 1  # the job's retry uploaded it
    assert len(slack.posted()) == 1  # the summary, once; no note about scopes
    [summary] = slack.messages()
    [upload] = slack.uploads()
    assert upload.thread_ts == summary["ts"]
    assert "will be retried" in caplog.text and "refused the chart upload" not in caplog.text
