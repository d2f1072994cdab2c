"""The exactly-once window: Slack has taken the final answer, and the worker dies (or loses Slack's reply) before
it writes its "delivered" marker. The retry must not show the answer twice.

Real Redis, real RQ workers (a subprocess that is SIGKILLed in the window, then this process's burst worker as the
retry), the fake Slack, which opens the window itself: it records the call as accepted (the channel shows it) and
then kills the caller, or answers HTTP 500, before the caller hears that it went through.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.attempts import attempt_of
from jobs.client import FORECAST_TASK, ForecastRequest, queue
from jobs.keys import posted_marker
from jobs.queues import INTERACTIVE
from jobs.replies import FINAL, PLACEHOLDER_STATUS, Reply, Route
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.fakes.slack import FakeSlack, is_sources_reply
from tests.scenarios.market_fixture import memory_market

REPO_ROOT = Path(__file__).resolve().parents[2]
HEADER = "AXP weekly forecast"
HOOK = "hooks/T1/B1/x"
# The dying attempt's job timeout: RQ's SimpleWorker keeps a started job's registry entry for timeout + 60 s, so
# that is about how long it takes RQ to see the job abandoned (unless the worker keeps a shorter heartbeat).
JOB_TIMEOUT_S = 5


@pytest.fixture
def context(redis, slack):
    mem = memory_market()
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: CannedAnalyst(answer("Up by 1-2%")),
    )
    yield ctx
    runtime.install(None)


def is_answer(body: dict) -> bool:
    blocks = body.get("blocks") or []
    return bool(blocks) and blocks[0].get("type") == "header" and blocks[0]["text"]["text"] == HEADER


def enqueue(redis, *, response_url: str | None, job_id: str, timeout: int = 60) -> str:
    """The production forecast task, with a retry that comes at once (the real queue waits 10 s first)."""
    req = ForecastRequest(ticker="AXP", channel="C123", user="U1", as_of=dt.date(2024, 3, 15), weeks=2,
                          response_url=response_url)
    return queue(redis, INTERACTIVE).enqueue_call(FORECAST_TASK, kwargs={"request": req.to_json()}, job_id=job_id,
                                                  timeout=timeout, retry=Retry(max=1, interval=0)).id


def status(redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status(refresh=True)


def answer_edits(slack: FakeSlack) -> list[str]:
    """The ts of every chat.update that carried the answer."""
    return [c.body["ts"] for c in slack.calls if c.method == "chat.update" and is_answer(c.body)]


def test_a_worker_killed_after_slack_took_the_answer_is_retried_into_the_same_message(context, redis,
                                                                                      redis_server, slack):
    job_id = enqueue(redis, response_url=slack.hook_url(), job_id="forecast-window-kill", timeout=JOB_TIMEOUT_S)
    child = subprocess.Popen([sys.executable, "-m", "tests.scenarios.stub_worker", redis_server["url"],
                              slack.api_url], cwd=REPO_ROOT, env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                             start_new_session=True)  # its own process group: RQ forks a scheduler beside it
    # Armed before the child has even imported RQ: Slack takes the answer's edit, then the worker dies.
    slack.lose_answer_after_accepting("chat.update", when=is_answer, kill_pgid=child.pid)
    try:
        assert child.wait(timeout=60) == -signal.SIGKILL, "the worker was not killed in the window"
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)
    killed_at = time.monotonic()
    [shown] = slack.messages("C123")
    attempt = attempt_of(Job.fetch(job_id, connection=redis, serializer=JSONSerializer))
    assert is_answer(shown) and redis.get(posted_marker(attempt, FINAL)) is None  # in the window, exactly

    # RQ's own recovery, in real time: the dead attempt's registry entry lapses, maintenance retries the job.
    deadline = killed_at + JOB_TIMEOUT_S + 60 + 60
    while status(redis, job_id) != "finished":
        assert time.monotonic() < deadline, f"the killed job was never retried (status {status(redis, job_id)})"
        worker.run(context, burst=True)
        time.sleep(1)
    recovered_s = time.monotonic() - killed_at
    print(f"\nkilled in the exactly-once window; retried and re-delivered {recovered_s:.1f} s after the kill")

    [message] = slack.messages("C123")  # one message: the placeholder, edited into the answer, twice
    assert is_answer(message) and "Up by 1-2%" in str(message["blocks"])
    assert len(slack.posted()) == 1  # one chat.postMessage ever: the placeholder whose ts was recorded first
    first, again = answer_edits(slack)
    assert first == again == message["ts"]
    hooks = slack.hooks()
    assert all(h["response_type"] == "ephemeral" for h in hooks)  # nothing posted in_channel through the hook
    assert "answer is posted in the channel" in hooks[-1]["text"] and hooks[-1]["replace_original"] is True


def test_an_answer_whose_acknowledgement_is_lost_is_edited_again_not_posted_again(context, redis, slack):
    slack.lose_answer_after_accepting("chat.update", when=is_answer)  # HTTP 500 after Slack applied the edit
    job_id = enqueue(redis, response_url=slack.hook_url(), job_id="forecast-window-500")
    worker.run(context, burst=True)  # the failed attempt, then RQ's retry

    assert status(redis, job_id) == "finished"
    [message] = slack.messages("C123")
    assert is_answer(message)
    assert len(slack.posted()) == 1 and answer_edits(slack) == [message["ts"]] * 2
    assert not [h for h in slack.hooks() if h["response_type"] == "in_channel"]


def test_the_news_read_is_listed_once_in_the_answers_thread_even_when_that_reply_fails_first(context, redis,
                                                                                          slack):
    slack.fail_next("chat.postMessage", 500, when=is_sources_reply)  # after the answer: the job fails, RQ retries
    job_id = enqueue(redis, response_url=None, job_id="forecast-sources")
    worker.run(context, burst=True)  # the failed attempt, then RQ's retry

    assert status(redis, job_id) == "finished"
    [message] = slack.messages("C123")
    assert is_answer(message) and answer_edits(slack) == [message["ts"]]  # the answer went out once, not again
    [failed] = slack.failed
    [sources] = [m for m in slack.messages("C123", sources=True) if is_sources_reply(m)]
    assert failed.body["text"] == sources["text"] == "Sources: the 3 news items the model read for AXP"
    assert sources["thread_ts"] == message["ts"]
    assert all(f"AXP invented headline {day}" in str(sources["blocks"]) for day in (4, 5, 11))
    # Under each item of the answer (one positive, one concern: "Baseline: no factors."), the mark that it was not
    # in the news it read: the invented headlines share no word with it.
    marks = [b for b in message["blocks"] if b["type"] == "context" and "not found in the news it read" in str(b)]
    assert len(marks) == 2


def test_where_only_the_response_url_reaches_the_channel_a_retry_shows_the_answer_to_the_requester_alone(
        context, redis, slack):
    slack.refuse_channel("C123")  # the bot was never invited: chat.postMessage says not_in_channel
    slack.lose_answer_after_accepting(HOOK, when=lambda body: body.get("response_type") == "in_channel")
    job_id = enqueue(redis, response_url=slack.hook_url(), job_id="forecast-window-hook")
    worker.run(context, burst=True)

    assert status(redis, job_id) == "finished"
    hooks = slack.hooks()
    [in_channel] = [h for h in hooks if h["response_type"] == "in_channel"]  # posted once, never again
    assert is_answer(in_channel)
    private = hooks[-1]  # the retry cannot know whether Slack showed it: the requester's own note becomes it
    assert private["response_type"] == "ephemeral" and private["replace_original"] is True and is_answer(private)
    assert "may already be in the channel" in str(private["blocks"][-1])
    assert slack.messages() == []


def test_where_only_the_response_url_reaches_the_channel_the_answer_is_posted_once_through_it(context, redis,
                                                                                               slack):
    slack.refuse_channel("C123")
    enqueue(redis, response_url=slack.hook_url(), job_id="forecast-hook-only")
    worker.run(context, burst=True)
    hooks = slack.hooks()
    assert [h["response_type"] for h in hooks] == ["ephemeral", "ephemeral", "ephemeral", "in_channel", "ephemeral"]
    assert "Positive Developments" in hooks[2]["text"]  # the answer's first section, as soon as it was written
    assert is_answer(hooks[3]) and "answer is posted in the channel" in hooks[4]["text"]


def test_a_crash_after_the_placeholder_was_taken_leaves_it_behind_but_still_one_answer(context, redis, slack):
    # The one window left on the Web API: Slack took the placeholder, its ts never reached Redis. The retry cannot
    # find that message (looking it up needs a history scope we do not ask for), so it posts another.
    slack.lose_answer_after_accepting("chat.postMessage")
    enqueue(redis, response_url=slack.hook_url(), job_id="forecast-window-placeholder")
    worker.run(context, burst=True)
    stray, message = slack.messages("C123")
    assert PLACEHOLDER_STATUS in stray["text"] and not is_answer(stray)
    assert is_answer(message) and answer_edits(slack) == [message["ts"]]


def test_a_final_answer_without_any_progress_message_is_an_edit_too(context, redis, slack):
    # The summary, a retrain's verdict, a failure note: no progress message was ever posted for them.
    slack.lose_answer_after_accepting("chat.update")
    reply = Reply(context, "summary-window", Route("C555"))
    with pytest.raises(Exception, match="internal_error"):
        reply.final("the track record", [])
    ts = Reply(context, "summary-window", Route("C555")).final("the track record", [])  # the retry
    [message] = slack.messages("C555")
    assert message["text"] == "the track record" and message["ts"] == ts
    assert [c.method for c in slack.calls] == ["chat.postMessage", "chat.update", "chat.update"]
    assert Reply(context, "summary-window", Route("C555")).final("the track record", []) == ts  # delivered
    assert len(slack.calls) == 3
