"""A /forecast request through the queue: real Redis, a real RQ SimpleWorker in burst mode, the tiny Qwen2,
in-memory market data, and a fake Slack Web API on 127.0.0.1 recording what gets posted."""

from __future__ import annotations

import datetime as dt

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

import jobs.tasks
from bot.slack_ops import build_client
from engine.inputs import Sources
from engine.market.weeks import NEW_YORK
from engine.model import Analyst
from engine.records import NewsItem
from engine.settings import Settings
from jobs import runtime, worker
from jobs.client import ForecastRequest, JobsClient
from jobs.tasks import forecast_job
from tests.fakes.slack import FakeSlack
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def context(redis, slack, tiny_model_dir):
    mem = MemorySources()
    mem.profiles["AXP"] = synthetic_profile("AXP")
    mem.closes["AXP"] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    mem.news["AXP"] = [NewsItem(published=dt.datetime(2024, 3, d, 10, tzinfo=NEW_YORK),
                                headline=f"AXP invented headline {d}") for d in (4, 5, 11)]
    settings = Settings(_env_file=None, model_max_new_tokens=24)
    ctx = runtime.WorkerContext(
        settings=settings, conn=redis, sources=Sources(mem, mem, mem),
        slack=build_client("xoxb-test", base_url=slack.api_url),
        load_model=lambda: Analyst.load(str(tiny_model_dir), device="cpu"),
    )
    yield ctx
    runtime.install(None)


def request(**changes) -> ForecastRequest:
    values = {"ticker": "AXP", "channel": "C123", "user": "U1", "as_of": dt.date(2024, 3, 15), "weeks": 2}
    return ForecastRequest(**(values | changes))


def test_a_queued_forecast_is_posted_once_to_the_channel(context, redis, slack):
    client = JobsClient(redis)
    first = client.forecast(request())
    assert client.forecast(request()).status == "duplicate"  # Slack's retry of the same command

    worker.run(context, burst=True)

    [message] = slack.posted()
    assert message["channel"] == "C123"
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"
    assert "Not financial advice" in message["blocks"][-1]["elements"][0]["text"]
    assert "could not be parsed" in message["blocks"][1]["text"]["text"]  # random weights: flagged, shown raw
    assert context.model_loads == 1  # loaded at start-up, not per job
    done = Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer)
    assert done.get_status() == "finished" and done.return_value()["status"] == "done"


def test_a_retried_job_does_not_post_twice(context, redis, slack, monkeypatch):
    runtime.install(context)

    class SameJob:
        id = "forecast_AXP_retry-test"

    monkeypatch.setattr(jobs.tasks, "get_current_job", SameJob)
    forecast_job(request().to_json())
    forecast_job(request().to_json())  # the same job run again (RQ retry, or a worker that died after posting)
    assert len(slack.posted()) == 1


def test_a_data_error_ends_in_a_message_the_user_sees(context, redis, slack):
    JobsClient(redis).forecast(request(ticker="ZZZZ"))
    worker.run(context, burst=True)
    [message] = slack.posted()
    assert "No forecast for ZZZZ" in message["text"] and "no prices for ZZZZ" in message["text"]


def test_slack_rate_limits_are_waited_out(context, redis, slack):
    slack.fail_next("chat.postMessage", 429, headers={"Retry-After": "1"})
    JobsClient(redis).forecast(request())
    worker.run(context, burst=True)
    assert len(slack.posted()) == 1
