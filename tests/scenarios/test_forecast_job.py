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
from rq import Retry, Worker
from rq.job import Job
from rq.serializers import JSONSerializer

import jobs.tasks
from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.generation.model import Analyst
from engine.training.registry import Registry
from forecaster.settings import Settings
from jobs import ledger, runtime, worker
from jobs.client import FORECAST_TASK, ForecastRequest, JobsClient, queue
from jobs.keys import served_model_key
from jobs.queues import INTERACTIVE
from jobs.replies import Reply, Route
from jobs.results import ForecastJobResult
from jobs.tasks import forecast_job
from tests.scenarios.market_fixture import memory_market

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def context(redis, slack, tiny_model_dir):
    mem = memory_market()
    settings = Settings(_env_file=None, model_max_new_tokens=24)
    ctx = runtime.WorkerContext(
        settings=settings, conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: Analyst.load(str(tiny_model_dir), device="cpu"),
    )
    yield ctx
    runtime.install(None)


def request(**changes) -> ForecastRequest:
    values = {"ticker": "AXP", "channel": "C123", "user": "U1", "as_of": dt.date(2024, 3, 15), "weeks": 2}
    return ForecastRequest(**(values | changes))


def test_a_queued_forecast_shows_progress_then_ends_as_one_answer_in_the_channel(context, redis, slack):
    client = JobsClient(redis)
    first = client.forecast(request())
    assert client.forecast(request()).status == "duplicate"  # the same command again: no second job

    worker.run(context, burst=True)

    [message] = slack.messages("C123")  # one message: posted as progress, edited into the answer
    steps = [c.body["text"] for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert "fetching news" in steps[0] and "writing the analysis" in steps[1] and len(steps) == 4
    [sources] = [m for m in slack.messages("C123", sources=True) if m["ts"] != message["ts"]]
    assert steps[3] == sources["text"] == "Sources: the 3 news items the model read for AXP"  # then, in its thread
    assert sources["thread_ts"] == message["ts"]
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"
    assert "Not financial advice" in message["blocks"][-1]["elements"][0]["text"]
    assert "could not be parsed" in message["blocks"][1]["text"]["text"]  # random weights: flagged, shown raw
    assert context.model_loads == 1  # loaded at start-up, not per job
    assert list(redis.scan_iter("fc:worker:hb:*")) == []  # a worker that ended takes its heartbeat with it
    done = Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer)
    assert done.get_status() == "finished"
    result = ForecastJobResult.from_json(done.return_value())  # RQ kept it as JSON: it reads back typed
    assert result.status == "done" and result.forecast.symbol == "AXP" and result.forecast.raw == ""
    assert result.forecast.model == context.model().version and not result.forecast.parsed
    served = redis.hgetall(served_model_key())
    assert served[b"model"].decode() == context.model().version and served[b"adapter"] == b"none (base model)"
    [entry] = ledger.entries(ledger.open_ledger(Settings(_env_file=None)))  # on the record: who asked, what was said
    assert (entry["ticker"], entry["user"], entry["channel"], entry["as_of"], entry["source"]) == (
        "AXP", "U1", "C123", "2024-03-15", "forecast")
    assert entry["target_week"] == "2024-03-17 to 2024-03-24" and entry["parsed"] is False
    assert entry["prompt_hash_of"] == "prompt" and len(entry["prompt_hash"]) == 64 and entry["latency_s"] > 0


def test_a_retried_job_does_not_post_twice(context, redis, slack, monkeypatch):
    runtime.install(context)

    class SameJob:
        id = "forecast_AXP_retry-test"
        enqueued_at = created_at = dt.datetime(2026, 11, 25, 15, tzinfo=dt.UTC)

    monkeypatch.setattr(jobs.tasks, "get_current_job", SameJob)
    forecast_job(request().to_json())
    calls = len(slack.calls)
    again = ForecastJobResult.from_json(forecast_job(request().to_json()))
    assert again.status == "done" and again.note.startswith("answer already posted")  # RQ retry, or a restart
    assert len(slack.calls) == calls and len(slack.messages()) == 1
    assert len(ledger.entries(ledger.open_ledger(Settings(_env_file=None)))) == 1


def test_a_data_error_ends_in_a_message_only_the_requester_sees(context, redis, slack):
    JobsClient(redis).forecast(request(ticker="ZZZZ"))
    worker.run(context, burst=True)
    [told] = slack.ephemerals(user="U1")
    assert "No forecast for ZZZZ" in told["text"] and "no prices were found for this ticker" in told["text"]
    assert told["channel"] == "C123"
    assert slack.messages() == []  # the "fetching…" note it had posted in the channel is gone, nothing replaced it


def test_slack_rate_limits_are_waited_out(context, redis, slack):
    slack.fail_next("chat.postMessage", 429, headers={"Retry-After": "1"})
    JobsClient(redis).forecast(request())
    worker.run(context, burst=True)
    [message] = slack.messages()
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"


def test_with_a_response_url_progress_edits_the_users_note_and_the_answer_goes_to_the_channel(context, redis,
                                                                                                  slack):
    JobsClient(redis).forecast(request(response_url=slack.hook_url()))
    worker.run(context, burst=True)

    hooks = [c.body for c in slack.calls if c.method.startswith("hooks/")]
    assert [h["response_type"] for h in hooks] == ["ephemeral", "ephemeral", "ephemeral"]
    assert [h.get("replace_original") for h in hooks] == [True, True, True]
    assert "fetching news" in hooks[0]["text"] and "answer is posted in the channel" in hooks[2]["text"]
    # The answer is an edit of a placeholder whose ts was recorded first, so a retry can never post it twice
    # (where the bot is not invited it goes through the response_url: tests/scenarios/test_exactly_once.py).
    [message] = slack.messages("C123")
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast" and len(slack.posted()) == 1


def test_an_expired_response_url_falls_back_to_the_web_api(context, redis, slack):
    slack.fail_next("hooks/T1/B1/x", 404, times=10)  # Slack: expired_url
    JobsClient(redis).forecast(request(response_url=slack.hook_url()))
    worker.run(context, burst=True)
    [message] = slack.messages("C123")
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"


def test_a_response_url_older_than_25_minutes_is_not_used(context, redis, slack):
    route = Route("C123", response_url=slack.hook_url(),
                  requested_at=dt.datetime.now(dt.UTC) - dt.timedelta(minutes=26))
    reply = Reply(context, "job-old-hook", route)
    reply.progress("working…")
    reply.final("done", [])
    assert not [c for c in slack.calls if c.method.startswith("hooks/")]
    assert [m["text"] for m in slack.messages("C123")] == ["done"]


class FailingModel:
    version = "failing (no adapter)"

    def __init__(self, error: type[BaseException] = RuntimeError, sleep_s: float = 0.0) -> None:
        self.error, self.sleep_s = error, sleep_s

    def render(self, conversation):
        return "".join(m["content"] for m in conversation)

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, conversations, *, max_new_tokens, on_text=None):
        time.sleep(self.sleep_s)
        raise self.error("CUDA error: an illegal memory access (token=xoxb-secret)")


def enqueue_raw(redis, *, retry: Retry | None = None, timeout: int = 60) -> str:
    """A forecast job with the test's own retry and timeout settings (the real queue waits 10 s between tries)."""
    return queue(redis, INTERACTIVE).enqueue_call(FORECAST_TASK, kwargs={"request": request().to_json()},
                                                   job_id="forecast-raw", timeout=timeout, retry=retry).id


def test_an_unexpected_error_says_retrying_then_fails_with_a_reason_and_no_secrets(context, redis, slack):
    context.load_model = FailingModel
    job_id = enqueue_raw(redis, retry=Retry(max=1, interval=0))
    worker.run(context, burst=True)

    texts = [c.body["text"] for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    assert any("trying again shortly" in t for t in texts)
    [message] = slack.messages("C123")
    assert message["text"].startswith(":x: Your forecast for AXP failed: an internal error (RuntimeError)")
    assert job_id in message["text"] and "xoxb" not in json.dumps(slack.messages())
    assert Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status() == "failed"


def test_a_job_past_its_timeout_is_stopped_and_the_user_told(context, redis, slack):
    context.load_model = lambda: FailingModel(sleep_s=5)
    enqueue_raw(redis, timeout=1)
    worker.run(context, burst=True)
    [message] = slack.messages("C123")
    assert "ran longer than its 1 s limit" in message["text"]


def test_a_promoted_adapter_is_served_from_the_next_job_without_reloading(context, redis, slack, tmp_path,
                                                                         tiny_adapter_dirs):
    registry = Registry(tmp_path / "models")
    context.adapter_for = registry.current_path
    JobsClient(redis).forecast(request(as_of=dt.date(2024, 3, 8)))
    worker.run(context, burst=True)
    assert context.model().adapter is None

    version = registry.add(tiny_adapter_dirs[0])
    registry.promote(version, reason="test")
    JobsClient(redis).forecast(request(as_of=dt.date(2024, 3, 15)))
    worker.run(context, burst=True)

    assert context.model().adapter == registry.path(version) and context.model_loads == 1
    assert redis.hget(served_model_key(), "adapter") == version.encode()
    answers = [m for m in slack.messages("C123") if m["blocks"][0]["type"] == "header"]
    assert version in answers[-1]["blocks"][-1]["elements"][0]["text"]  # the answer names the adapter used


# The crash test's figures: generation long enough to be killed in (about 10 s of real tokens, paced by
# crash_worker.STEP_DELAY_S), and the goal for kill → final answer (the execution heartbeat's TTL, a maintenance
# round, the retried forecast).
CRASH_MAX_NEW_TOKENS = 700
CRASH_RECOVERY_GOAL_S = 90


def start_worker(redis_server, slack, model_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scenarios.crash_worker", redis_server["url"], slack.api_url, str(model_dir),
         str(CRASH_MAX_NEW_TOKENS)], cwd=REPO_ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"},
        start_new_session=True)  # its own process group: RQ forks a scheduler beside it


def wait_for(predicate, what: str, timeout_s: float, logs: list[Path]):
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        if time.monotonic() > deadline:
            said = "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for log in logs)
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; the workers said:\n{said}")
        time.sleep(0.1)
    return found


def test_a_worker_killed_mid_generation_is_noticed_and_its_forecast_retried_by_another_in_real_time(
        redis, slack, redis_server, tiny_model_dir, tmp_path, capsys):
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    children = [start_worker(redis_server, slack, tiny_model_dir, log) for log in logs]
    try:
        pids = {child.pid for child in children}
        wait_for(lambda: {w.pid for w in Worker.all(connection=redis, serializer=JSONSerializer)
                          if w.get_state() == "idle"} >= pids, "both workers to wait for work", 120, logs)
        job_id = JobsClient(redis).forecast(request()).job_id
        wait_for(lambda: any("writing the analysis" in c.body.get("text", "") for c in slack.calls),
                 "the forecast to reach generation", 60, logs)
        time.sleep(1)  # into generate(): ~10 s of tokens
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        assert job.get_status() == "started" and not answers(slack), "the forecast ended before it could be killed"
        victim_name = job.worker_name
        [victim] = [w for w in Worker.all(connection=redis, serializer=JSONSerializer) if w.name == victim_name]
        [dead] = [child for child in children if child.pid == victim.pid]
        os.killpg(dead.pid, signal.SIGKILL)  # mid-generation, as an OOM kill would; its scheduler child goes too
        killed_at = time.monotonic()
        dead.wait(timeout=10)

        wait_for(lambda: answers(slack), "the retried forecast's answer", 3 * CRASH_RECOVERY_GOAL_S, logs)
        recovered_s = time.monotonic() - killed_at
        time.sleep(2)  # a second answer, were one coming, would be posted by now
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)
    [message] = slack.messages()  # the dead attempt's progress message, edited into the one answer
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"
    [told] = [c for c in slack.calls if c.method == "chat.update" and "stopped unexpectedly" in c.body["text"]]
    assert told.body["text"].startswith(":repeat: The worker running your forecast for AXP stopped unexpectedly")
    assert "being retried" in told.body["text"] and told.body["ts"] == message["ts"]
    with capsys.disabled():
        print(f"\ncrash recovery: worker killed mid-generation -> user told it is retried after "
              f"{told.at - killed_at:.1f} s, final answer after {recovered_s:.1f} s (goal {CRASH_RECOVERY_GOAL_S} s)")
    done = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
    assert done.get_status() == "finished" and done.worker_name != victim_name  # the survivor ran it
    assert recovered_s <= CRASH_RECOVERY_GOAL_S


def answers(slack) -> list[dict]:
    return [m for m in slack.messages("C123") if m.get("blocks") and m["blocks"][0]["type"] == "header"]


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

    summary, *thread = slack.messages("C777")  # the progress message became the summary
    assert summary["channel"] == "C777" and summary["text"].startswith("Dow30 digest for 2024-03-17 to 2024-03-24")
    assert f"{symbols[-1]}: no prices" in json.dumps(summary["blocks"])
    assert len(thread) == 29 and all(t["thread_ts"] == "1700000001.000100" for t in thread)
    assert sum(calls_before) == 29 and max(calls_before) == context.settings.model_batch_size  # batched
    recorded = ledger.entries(ledger.open_ledger(Settings(_env_file=None)))
    assert len(recorded) == 29 and {e["source"] for e in recorded} == {"digest"}
    assert {e["user"] for e in recorded} == {None}
