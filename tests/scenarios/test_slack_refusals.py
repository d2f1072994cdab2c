"""What a job does when Slack says no: real Redis, a real RQ SimpleWorker in burst mode, the tiny Qwen2 (its
generations counted), and the fake Slack answering as Slack does (`ok: false`, HTTP 200).

- A permanent refusal (the bot is not in the channel, the channel is gone or archived, the token is dead) ends
  the job at once, failed, with no retry and no second generation, and the requester is told why privately.
- A passing failure (a Slack 5xx) is retried, and the retry posts the answer already generated.
- A failure of the request itself (an unknown ticker) is told to the requester alone, with no server path in it.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest
from rq import Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.generation.model import Analyst
from engine.sources.snapshot import SnapshotSource
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.attempts import attempt_of
from jobs.client import FORECAST_TASK, ForecastRequest, JobsClient, queue
from jobs.keys import answer_key
from jobs.queues import INTERACTIVE
from tests.scenarios.market_fixture import memory_market, record_snapshot

TOKEN = "xoxb-test"
HOOK = "hooks/T1/B1/x"


class CountingModel:
    """The tiny model, counting its generations; `during` runs inside each one (what happens while it writes)."""

    def __init__(self, inner: Analyst) -> None:
        self.inner, self.version, self.generations, self.during = inner, inner.version, 0, None

    def __getattr__(self, name):
        return getattr(self.inner, name)

    def generate(self, conversations, **kwargs):
        self.generations += 1
        if self.during is not None:
            self.during()
        return self.inner.generate(conversations, **kwargs)


@pytest.fixture
def model(tiny_model_dir):
    return CountingModel(Analyst.load(str(tiny_model_dir), device="cpu"))


@pytest.fixture
def context(redis, slack, model):
    mem = memory_market()
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None, model_max_new_tokens=16), conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client(TOKEN, base_url=slack.api_url)), load_model=lambda: model,
    )
    yield ctx
    runtime.install(None)


def request(**changes) -> ForecastRequest:
    values = {"ticker": "AXP", "channel": "C123", "user": "U1", "as_of": dt.date(2024, 3, 15), "weeks": 2}
    return ForecastRequest(**(values | changes))


def status_of(redis, job_id: str) -> str:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer).get_status()


def attempt(redis, job_id: str) -> str:
    """Whose delivery state the job's tries share (jobs/attempts.py)."""
    return attempt_of(Job.fetch(job_id, connection=redis, serializer=JSONSerializer))


PERMANENT = [("not_in_channel", "channel", "/invite @forecaster"),
             ("channel_not_found", "channel", "/invite @forecaster"),
             ("is_archived", "channel", "is archived"),
             ("invalid_auth", "token", "SLACK_BOT_TOKEN"),
             ("token_revoked", "token", "SLACK_BOT_TOKEN"),
             ("account_inactive", "token", "SLACK_BOT_TOKEN"),
             ("missing_scope", "token", "reinstall")]


@pytest.mark.parametrize(("error", "refused", "fix"), PERMANENT)
def test_a_permanent_refusal_after_the_answer_ends_the_job_at_once_with_one_generation(context, redis, slack, model,
                                                                                       caplog, error, refused, fix):
    # The response_url hiccups once, so the first progress note goes to the channel through the Web API; while the
    # model writes, the bot loses the channel (removed, archived, deleted) or its token (revoked, reinstalled).
    slack.fail_next(HOOK, 500)
    model.during = ((lambda: slack.refuse_channel("C123", error)) if refused == "channel"
                    else (lambda: slack.refuse_token(TOKEN, error)))
    outcome = JobsClient(redis).forecast(request(response_url=slack.hook_url()))  # the real queue: 2 retries
    caplog.set_level(logging.INFO, logger="jobs")

    worker.run(context, burst=True)

    assert model.generations == 1
    assert status_of(redis, outcome.job_id) == "failed"  # not "scheduled": RQ was not left a retry to run
    assert [c.error for c in slack.refused] == [error]  # the answer, refused once, never sent again
    told = slack.hooks()[-1]  # the response_url still works: Slack's hooks need no token and no membership
    assert told["response_type"] == "ephemeral" and told["replace_original"] is True
    shown = told["text"] + str(told["blocks"])
    assert "Your forecast for AXP could not be posted" in shown and error in shown and fix in shown
    assert f"ended without retrying: Slack refused to post ({error})" in caplog.text
    assert redis.get(answer_key(attempt(redis, outcome.job_id))) is not None  # kept (an hour), should RQ retry it


@pytest.mark.parametrize("error", ["not_in_channel", "is_archived", "invalid_auth"])
def test_a_refusal_of_the_first_progress_note_ends_the_job_before_the_model_runs(context, redis, slack, model,
                                                                                caplog, error):
    if error == "invalid_auth":
        slack.refuse_token(TOKEN, error)
    else:
        slack.refuse_channel("C123", error)
    outcome = JobsClient(redis).forecast(request())  # no response_url: only the Web API reaches the channel
    caplog.set_level(logging.INFO, logger="jobs")

    worker.run(context, burst=True)

    assert model.generations == 0
    assert status_of(redis, outcome.job_id) == "failed"
    # The progress note, then the private word to the requester: Slack refuses that too, and the log says so.
    assert [c.method for c in slack.refused] == ["chat.postMessage", "chat.postEphemeral"]
    assert slack.calls == [] and "requester not told (Slack let us reach nobody)" in caplog.text


def test_a_refusal_with_a_working_response_url_still_delivers_the_answer(context, redis, slack, model):
    # The bot is not in the channel, and a response_url hiccup sent a progress note to the Web API: the answer
    # can still go through the response_url, which needs no membership, so the job goes on.
    slack.refuse_channel("C123", "not_in_channel")
    slack.fail_next(HOOK, 500)
    outcome = JobsClient(redis).forecast(request(response_url=slack.hook_url()))
    worker.run(context, burst=True)

    assert model.generations == 1 and status_of(redis, outcome.job_id) == "finished"
    [answer] = [h for h in slack.hooks() if h["response_type"] == "in_channel"]
    assert answer["blocks"][0]["text"]["text"] == "AXP weekly forecast"


def test_a_passing_slack_failure_is_retried_and_posts_the_answer_already_generated(context, redis, slack, model):
    # Slack answers the final edit with a 500 once: RQ retries, and the retry posts what the model wrote.
    model.during = lambda: slack.fail_next("chat.update", 500)
    job_id = queue(redis, INTERACTIVE).enqueue_call(FORECAST_TASK, kwargs={"request": request().to_json()},
                                                    job_id="forecast-slack-500", retry=Retry(max=1, interval=0)).id
    worker.run(context, burst=True)

    assert model.generations == 1
    assert status_of(redis, job_id) == "finished"
    [message] = slack.messages("C123")  # the progress message, edited into the answer
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"
    assert redis.get(answer_key(attempt(redis, job_id))) is None  # posted: the stored answer is gone


def test_a_payload_slack_refuses_fails_the_job_without_a_retry_and_says_so_in_the_channel(context, redis, slack,
                                                                                          model, monkeypatch):
    from types import SimpleNamespace

    from bot import job_layouts

    def too_long(data):  # a layout bug: one section over Slack's 3,000 characters
        return "AXP", [{"type": "section", "text": {"type": "mrkdwn", "text": "x" * 3001}}]

    broken = SimpleNamespace(**{name: getattr(job_layouts, name) for name in job_layouts.__all__})
    broken.forecast_message = too_long
    monkeypatch.setattr(context.slack, "layouts", broken)
    outcome = JobsClient(redis).forecast(request())
    worker.run(context, burst=True)

    assert model.generations == 1 and status_of(redis, outcome.job_id) == "failed"
    assert [c.error for c in slack.refused] == ["invalid_blocks"]
    [message] = slack.messages("C123")
    assert message["text"].startswith(":x: Your forecast for AXP failed: Slack refused the message we built "
                                      "(invalid_blocks)") and outcome.job_id in message["text"]


def test_a_bad_request_is_told_to_the_requester_alone_without_server_paths(context, redis, slack, tmp_path):
    snapshot = SnapshotSource(record_snapshot(tmp_path / "srv" / "snapshots" / "2024-03-15"))
    context.sources = Sources(snapshot, snapshot, snapshot)
    JobsClient(redis).forecast(request(ticker="ZZZZ", response_url=slack.hook_url()))
    worker.run(context, burst=True)

    *progress, told = slack.hooks()
    assert told["response_type"] == "ephemeral" and told["replace_original"] is True  # the user's note, replaced
    assert "No forecast for ZZZZ" in told["text"] and "the recording has nothing for this ticker" in told["text"]
    assert str(tmp_path) not in str(told) and "/srv/" not in str(told)
    assert all(h["response_type"] == "ephemeral" for h in progress)
    assert slack.posted() == [] and slack.messages() == []  # nothing in the channel
