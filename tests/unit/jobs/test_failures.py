"""What a requester is told when a job fails in a way the job did not handle itself."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException
from slack_sdk import WebClient

from bot.outbox import SlackOutbox
from jobs.failures import describe as describe_with
from jobs.replies import Route, route_of
from jobs.slack_port import Refusal

JOB = SimpleNamespace(id="forecast_AXP_x", timeout=900, func_name="jobs.tasks.forecast_job", kwargs={})
SLACK = SlackOutbox(WebClient(token="xoxb-unused"))  # read-only here: its layouts and how it reads errors


def describe(job, exc_type, exc_value):
    return describe_with(job, exc_type, exc_value, slack=SLACK)


def test_timeouts_dead_workers_and_bugs_are_told_apart_without_leaking_the_message():
    assert describe(JOB, JobTimeoutException, JobTimeoutException()) == ("it ran longer than its 15 min limit and "
                                                                          "was stopped")
    assert "worker running it stopped unexpectedly" in describe(JOB, AbandonedJobError, AbandonedJobError())
    said = describe(JOB, ValueError, ValueError("https://user:hunter2@host/ failed"))
    assert said.startswith("an internal error (ValueError)") and "hunter2" not in said and "forecast_AXP_x" in said


def test_every_job_kind_names_where_its_answer_goes():
    at = dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC)
    forecast = SimpleNamespace(kwargs={"request": {"channel": "C1", "thread_ts": "1.2", "response_url": "u"}},
                               enqueued_at=at)
    assert route_of(forecast) == Route("C1", "1.2", "u", at)
    assert route_of(SimpleNamespace(kwargs={"channel": "C2", "as_of": "2026-11-23"}, enqueued_at=None)) == Route("C2")
    assert route_of(SimpleNamespace(kwargs={}, enqueued_at=None)) is None


def test_server_paths_are_cut_from_reasons_but_urls_commands_and_ratios_are_left():
    from jobs.failures import without_server_paths

    assert without_server_paths("no data in /home/alice/snapshots/AXP/prices.json") == "no data in prices.json"
    assert without_server_paths("at /work/main/.venv/lib/python3.11/site-packages/yfinance/base.py, line 3") == (
        "at base.py, line 3")
    assert without_server_paths("DATA_SNAPSHOT_DIR=/srv/snap holds nothing; see ~/notes/x") == (
        "DATA_SNAPSHOT_DIR=snap holds nothing; see x")
    for kept in ("https://finnhub.io/api/v1/quote failed", "run `/forecast AXP` or /forecast-status", "P/E < 15",
                 "week 2024/03/15"):
        assert without_server_paths(kept) == kept


def test_an_engine_error_is_described_in_plain_words_never_in_its_operators_text():
    from engine.exceptions import ModelServerError, SnapshotMissing

    said = describe(JOB, SnapshotMissing, SnapshotMissing("snapshot /var/lib/forecaster/snap has no prices for AXP; "
                                                          "record it with `forecaster data snapshot AXP …`"))
    assert said == "this bot answers from recorded market data, and the recording has nothing for this ticker and date"
    down = ModelServerError("The vLLM server at http://gpu-host:8000/v1 did not answer (ConnectTimeout)")
    assert describe(JOB, ModelServerError, down) == "the model server did not answer, or refused the request"


def test_slack_refusals_are_described_as_slacks_not_as_internal_errors():
    from jobs.replies import SlackRefused

    closed = SlackRefused(Refusal("not_in_channel", closed=True), "C1")
    assert describe(JOB, SlackRefused, closed) == "Slack refused to post it (not_in_channel)"
    said = describe(JOB, SlackRefused, SlackRefused(Refusal("invalid_blocks", closed=False), "C1"))
    assert said.startswith("Slack refused the message we built (invalid_blocks); that is our bug")
    assert "forecast_AXP_x" in said


def test_a_job_whose_worker_died_is_said_to_be_retried_and_other_failures_to_be_tried_again():
    from jobs.failures import retrying_note

    job = SimpleNamespace(**{**vars(JOB), "kwargs": {"request": {"ticker": "AXP"}}})
    died = retrying_note(job, AbandonedJobError, describe(job, AbandonedJobError, AbandonedJobError()),
                         layouts=SLACK.layouts)
    assert died == (":repeat: The worker running your forecast for AXP stopped unexpectedly (restarted or out of "
                    "memory); it is being retried on the next free worker…")
    digest = SimpleNamespace(id="digest_x", func_name="jobs.tasks.digest_job", kwargs={})
    assert retrying_note(digest, AbandonedJobError, "", layouts=SLACK.layouts).startswith(
        ":repeat: The worker running the Dow30 digest ")
    failed = retrying_note(job, RuntimeError, describe(job, RuntimeError, RuntimeError("boom")), layouts=SLACK.layouts)
    assert failed.startswith(":repeat: Your forecast for AXP hit a problem (an internal error (RuntimeError)")
    assert failed.endswith("trying again shortly…")
