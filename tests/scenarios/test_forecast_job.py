"""A /forecast request through the queue: real Redis, a real RQ SimpleWorker in burst mode, the tiny Qwen2,
in-memory market data, and a fake Slack Web API on 127.0.0.1 recording what gets posted."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.job import Job
from rq.registry import StartedJobRegistry
from rq.serializers import JSONSerializer

import jobs.tasks
from bot.slack_ops import build_client
from engine.inputs import Sources
from engine.model import Analyst
from engine.settings import Settings
from jobs import runtime, worker
from jobs.client import ForecastRequest, JobsClient
from jobs.queues import INTERACTIVE
from jobs.tasks import forecast_job
from tests.fakes.slack import FakeSlack
from tests.scenarios.market_fixture import memory_market

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def context(redis, slack, tiny_model_dir):
    mem = memory_market()
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


def test_a_worker_killed_mid_job_is_replaced_and_the_user_gets_exactly_one_answer(context, redis, slack,
                                                                                  redis_server):
    outcome = JobsClient(redis).forecast(request())
    child = subprocess.Popen([sys.executable, "-m", "tests.scenarios.crash_worker", redis_server["url"],
                              slack.api_url], cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                             start_new_session=True)  # its own process group: RQ forks a scheduler beside it
    try:
        deadline = time.monotonic() + 60
        job = Job.fetch(outcome.job_id, connection=redis, serializer=JSONSerializer)
        while job.get_status(refresh=True) != "started":
            assert time.monotonic() < deadline, "the child worker never started the job"
            assert child.poll() is None, "the child worker exited"
            time.sleep(0.1)
        os.killpg(child.pid, signal.SIGKILL)  # mid-generation: nothing posted yet; the scheduler child goes too
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)

    # What RQ's maintenance does once the dead worker's heartbeat lapses: the abandoned job is retried after the
    # queue's first backoff interval. Jump the clock past the heartbeat instead of waiting for it.
    queue = worker.build_worker(redis).queues[0]
    StartedJobRegistry(queue=queue, serializer=JSONSerializer).cleanup(timestamp=time.time() + 3600)
    # The dead worker's scheduler held the scheduler locks; they too would lapse with time.
    for lock in redis.scan_iter("rq:scheduler-lock:*"):
        redis.delete(lock)
    time.sleep(INTERACTIVE.retry_intervals_s[0] + 1)
    worker.run(context, burst=True)

    assert len(slack.posted()) == 1
    assert Job.fetch(outcome.job_id, connection=redis, serializer=JSONSerializer).get_status() == "finished"


def test_posts_to_one_channel_are_paced_to_one_a_second(context, redis, slack):
    runtime.install(context)
    for n in range(3):
        jobs.tasks.post_once(context, f"job-{n}", "final", channel="C123", text="hi", blocks=[])
    jobs.tasks.post_once(context, "job-other", "final", channel="C999", text="hi", blocks=[])
    times = [c.at for c in slack.calls if c.body.get("channel") == "C123"]
    assert len(times) == 3 and all(b - a >= 0.95 for a, b in zip(times, times[1:], strict=False))
    other = next(c.at for c in slack.calls if c.body.get("channel") == "C999")
    assert other - times[-1] < 0.5  # another channel does not wait


def test_the_digest_is_one_batched_run_one_summary_and_a_thread_of_analyses(context, redis, slack):
    from engine.market.dow30 import members
    from tests.fakes.sources import synthetic_profile, weekday_closes

    day = dt.date(2024, 3, 15)
    symbols = members(day)
    mem = context.sources.news
    for symbol in symbols[:-1]:  # the last member has no prices: listed as failed, not fatal
        mem.profiles[symbol] = synthetic_profile(symbol)
        mem.closes[symbol] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    calls_before = []

    class CountingModel:
        def __init__(self, inner):
            self.inner = inner
            self.version = inner.version

        def __getattr__(self, name):
            return getattr(self.inner, name)

        def generate(self, conversations, **kwargs):
            calls_before.append(len(conversations))
            return self.inner.generate(conversations, **kwargs)

    context._model = CountingModel(context.model())
    JobsClient(redis).digest(channel="C777", as_of=day, weeks=1)
    worker.run(context, burst=True)

    summary, *thread = [c.body for c in slack.calls if c.method == "chat.postMessage"]
    assert summary["channel"] == "C777" and summary["text"].startswith("Dow30 digest for 2024-03-17 to 2024-03-24")
    assert f"{symbols[-1]}: no prices" in json.dumps(summary["blocks"])
    assert len(thread) == 29 and all(t["thread_ts"] == "1700000001.000100" for t in thread)
    assert sum(calls_before) == 29 and max(calls_before) == context.settings.model_batch_size  # batched
