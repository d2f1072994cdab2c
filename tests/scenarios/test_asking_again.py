"""Asking again always works (issue 20): a request that ended without an answer is answered when it is asked again,
a progress message someone deleted does not swallow the answer, and one person cannot fill the shared queue.

As deployed: signed slash commands over HTTP to the Bolt app (waitress on 127.0.0.1), a real Redis, a real RQ
worker in burst mode with a canned analyst and an in-memory market, the fake Slack recording what users see.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time

import pytest
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

import jobs.client
from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import queue
from jobs.queues import BATCH, INTERACTIVE, TRAINING
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.fakes.sources import synthetic_profile, weekday_closes
from tests.scenarios.bot_harness import ADMIN, bot_settings, serve_bot, slash
from tests.scenarios.market_fixture import memory_market

HOOK = "hooks/T1/B1/x"


class Analyst(CannedAnalyst):
    """The canned analyst, with a switch: `broken` makes every generation fail (a bug, a CUDA error), and
    `before_writing` runs just before it writes (a person deleting a message meanwhile)."""

    def __init__(self) -> None:
        super().__init__(answer("Up by 1-2%"))
        self.broken = False
        self.before_writing = None

    def generate(self, conversations, *, max_new_tokens, on_text=None):
        if self.broken:
            raise RuntimeError("CUDA error: an illegal memory access")
        if self.before_writing is not None:
            self.before_writing()
        return super().generate(conversations, max_new_tokens=max_new_tokens, on_text=on_text)


@pytest.fixture
def market():
    return memory_market()


@pytest.fixture
def analyst():
    return Analyst()


@pytest.fixture
def context(redis, slack, market, analyst):
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)), load_model=lambda: analyst,
    )
    yield ctx
    runtime.install(None)


@pytest.fixture
def server(slack, redis, redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"], bot_digest_cooldown_s=0)) as running:
        yield running


def is_answer(body: dict, title: str = "weekly forecast") -> bool:
    blocks = body.get("blocks") or []
    return bool(blocks) and blocks[0].get("type") == "header" and title in blocks[0]["text"]["text"]


def answers(slack, channel: str = "C123") -> list[dict]:
    return [m for m in slack.messages(channel) if is_answer(m)]


def test_a_forecast_asked_again_once_its_missing_data_is_there_is_answered(server, slack, context, market):
    asked = slash(server, "/forecast", "NEWCO 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url())
    assert asked.text.startswith(":hourglass_flowing_sand: Queued *NEWCO*")
    worker.run(context, burst=True)
    [told] = [h for h in slack.hooks() if "No forecast for NEWCO" in h["text"]]  # the requester alone was told
    assert told["response_type"] == "ephemeral" and slack.messages() == []

    market.profiles["NEWCO"] = synthetic_profile("NEWCO")  # the data source has it now (a listing, a 503 over)
    market.closes["NEWCO"] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    again = slash(server, "/forecast", "NEWCO 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url("T1/B1/y"))
    assert again.text.startswith(":hourglass_flowing_sand: Queued *NEWCO*"), again.text  # not "scroll up"
    worker.run(context, burst=True)

    [message] = slack.messages("C123")
    assert is_answer(message) and message["blocks"][0]["text"]["text"] == "NEWCO weekly forecast"


def test_a_forecast_asked_again_after_it_failed_for_good_is_answered(server, slack, context, analyst, monkeypatch):
    # The production queue's retries, without its backoff (10 s, then 60 s), so the burst worker runs all three.
    monkeypatch.setattr(jobs.client, "INTERACTIVE", dataclasses.replace(INTERACTIVE, retry_intervals_s=(0, 0)))
    analyst.broken = True
    slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url())
    worker.run(context, burst=True)
    [failed] = slack.messages("C123")
    assert failed["text"].startswith(":x: Your forecast for AXP failed") and "run the command again" in str(failed)

    analyst.broken = False  # fixed (a worker restarted, the model server is back)
    again = slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url("T1/B1/y"))
    assert again.text.startswith(":hourglass_flowing_sand: Queued *AXP*"), again.text
    worker.run(context, burst=True)

    [answered] = answers(slack)
    assert "Up by 1-2%" in str(answered["blocks"])
    assert [m["ts"] for m in slack.messages("C123")] == [failed["ts"], answered["ts"]]  # the failure note stays


def test_a_deleted_progress_message_gets_the_answer_posted_afresh_exactly_once(server, slack, context, analyst):
    slack.fail_next(HOOK, 404, times=20)  # the response_url expired: progress is a message in the channel
    progress: list[str] = []

    def someone_deletes_the_progress_message():
        [note] = slack.messages("C123")
        progress.append(note["ts"])
        slack.delete(note["ts"])

    analyst.before_writing = someone_deletes_the_progress_message
    slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url())
    worker.run(context, burst=True)

    [message] = slack.messages("C123")
    assert is_answer(message) and message["ts"] != progress[0]
    sent = [c for c in slack.calls if c.method in ("chat.postMessage", "chat.update") and is_answer(c.body)]
    assert len(sent) == 1  # the answer went out once, into the message posted afresh
    again = slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1")
    assert again.text.startswith(":white_check_mark: *AXP*") and "scroll up" in again.text


def test_a_deleted_digest_progress_message_neither_loses_the_digest_nor_blocks_the_next_one(server, slack, redis,
                                                                                          context, analyst):
    def someone_deletes_the_progress_message():
        if not slack.deleted:
            [note] = slack.messages("C777")
            slack.delete(note["ts"])

    analyst.before_writing = someone_deletes_the_progress_message
    assert slash(server, "/digest", "2024-03-15", channel="C777").text.startswith(
        ":hourglass_flowing_sand: Queued the Dow30 digest")
    worker.run(context, burst=True)

    summary, *thread = slack.messages("C777")
    assert summary["text"].startswith("Dow30 digest for 2024-03-17 to 2024-03-24")
    assert summary["ts"] not in slack.deleted  # posted afresh
    assert [t["thread_ts"] for t in thread] == [summary["ts"]]  # AXP's analysis (the only member with data)
    again = slash(server, "/digest", "2024-03-15", channel="C777").text
    assert again.startswith(":white_check_mark: This channel already got the Dow30 digest"), again
    assert queue(redis, BATCH).count == 0


def test_a_digest_asked_again_after_its_job_lapsed_is_posted_again(server, slack, redis, context, monkeypatch):
    # A finished digest is forgotten RESULT_TTL_S (a day) after it ran; here a second, at a test's scale.
    monkeypatch.setattr(jobs.client, "BATCH", dataclasses.replace(BATCH, result_ttl_s=1))
    slash(server, "/digest", "2024-03-15", channel="C777")
    worker.run(context, burst=True)
    [first, _] = slack.messages("C777")
    time.sleep(1.5)

    again = slash(server, "/digest", "2024-03-15", channel="C777").text
    assert again.startswith(":hourglass_flowing_sand: Queued the Dow30 digest"), again
    worker.run(context, burst=True)
    summaries = [m for m in slack.messages("C777") if m["text"].startswith("Dow30 digest for 2024-03-17")]
    assert [m["ts"] for m in summaries][0] == first["ts"] and len(summaries) == 2  # answered again, not silent
    assert len(slack.messages("C777")) == 4  # each with AXP's analysis in its thread


def test_one_person_cannot_fill_the_queue_and_is_told_what_to_do(server, slack, redis, context):
    days = ["2024-03-15", "2024-03-08", "2024-03-01", "2024-02-23", "2024-02-16"]
    for day in days:  # five pending forecasts: the default cap
        assert slash(server, "/forecast", f"AXP {day}", user="U1").text.startswith(":hourglass_flowing_sand: Queued")
    refused = slash(server, "/forecast", "AXP 2024-02-09", user="U1").text
    same_again = slash(server, "/forecast", "AXP 2024-03-15", user="U1").text
    someone_else = slash(server, "/forecast", "AXP 2024-02-09", user="U2").text

    assert refused.startswith(":no_entry: You already have 5 forecasts waiting or being written"), refused
    assert "nothing was queued" in refused and "`/forecast-status`" in refused
    assert "is already queued in this channel" in same_again  # the same request is no new job: never refused
    assert someone_else.startswith(":hourglass_flowing_sand: Queued *AXP*")
    assert queue(redis, INTERACTIVE).count == 6

    worker.run(context, burst=True)  # all answered: nothing of theirs is pending any more
    later = slash(server, "/forecast", "AXP 2024-02-02", user="U1").text
    assert later.startswith(":hourglass_flowing_sand: Queued *AXP*"), later


def test_asking_for_a_retrain_leaves_a_crashed_one_to_the_trainer_which_tells_its_requester(server, slack, redis,
                                                                                           context):
    assert slash(server, "/retrain", "", user=ADMIN).text.startswith(":gear: Retrain queued")
    # A trainer takes it (RQ's own steps before running it) and dies there: its booking lapses after a second
    # (30 s in production: the same code at a test's scale).
    dead = worker.build_worker(redis, queue_names=[TRAINING.name])
    dead.execution_ttl_s = 1
    taken, _ = Queue.dequeue_any([queue(redis, TRAINING)], None, connection=redis, serializer=JSONSerializer)
    dead.prepare_execution(taken)
    dead.prepare_job_execution(taken, remove_from_intermediate_queue=True)
    time.sleep(1.5)

    # The bot only looks: a lapsed booking is no retrain running (a new one is queued), and the crash is a
    # worker's to handle, with the handlers that tell its requester (tests/scenarios/test_carried_over.py).
    again = slash(server, "/retrain", "", user=ADMIN).text
    assert again.startswith(":gear: Retrain queued"), again
    assert Job.fetch(taken.id, connection=redis, serializer=JSONSerializer).get_status() == "started"
    assert slack.messages("C123") == []
    runtime.install(context)
    worker.build_worker(redis, queue_names=[TRAINING.name]).work(burst=True)  # the restarted trainer's maintenance

    [told] = [m for m in slack.messages("C123") if "The retrain failed" in m["text"]]
    assert told["text"].startswith(":x: The retrain failed: the worker running it stopped unexpectedly"), told
    assert queue(redis, TRAINING).count == 0  # the new one ran too (here: not set up, and said so)
