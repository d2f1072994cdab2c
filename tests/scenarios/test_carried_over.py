"""Carried over into issue 20 (item 11), through the product's real parts: signed slash commands over HTTP to the
Bolt app, a real Redis, real RQ workers (jobs.worker's), the fake Slack recording what users see.

- The same live forecast asked twice, two seconds apart across a 10-minute mark of the clock, is one job.
- A trainer that dies mid-retrain: a new `/retrain` is accepted once its booking has lapsed, and a serving worker
  (no trainer alive) ends the dead one and tells its requester.
- A worker that dies mid-job while every other worker is busy: a busy worker notices it, its requester is told at
  once, and it is the next job run, ahead of those queued after it.

A dead worker here is one that took its job (RQ's own steps before running it) and never beat again: its booking
lapses after a few seconds (30 s in production: the same code at a test's scale). Nothing is deleted by hand and no
clock is moved; the bot's clock is set only to place two asks around a 10-minute mark.
"""

from __future__ import annotations

import datetime as dt
import threading
import time

from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer

from jobs import runtime, worker
from jobs.client import queue
from jobs.queues import BATCH, INTERACTIVE, TRAINING
from tests.scenarios.bot_harness import ADMIN, bot_settings, serve_bot, slash
from tests.scenarios.test_asking_again import analyst, context, is_answer, market, server  # noqa: F401 — fixtures

SERVING = [INTERACTIVE.name, BATCH.name]


def take_and_die(redis, spec, *, booked_s: int) -> Job:
    """A worker of `spec`'s queue takes its next job and dies there: its booking lapses after `booked_s`."""
    dead = worker.build_worker(redis, queue_names=[spec.name])
    dead.execution_ttl_s = booked_s
    taken, _ = Queue.dequeue_any([queue(redis, spec)], None, connection=redis, serializer=JSONSerializer)
    dead.prepare_execution(taken)
    dead.prepare_job_execution(taken, remove_from_intermediate_queue=True)
    return taken


def test_the_same_live_forecast_asked_two_seconds_apart_across_a_ten_minute_mark_is_one_job(slack, redis,
                                                                                           redis_server):
    clock = [dt.datetime(2026, 11, 25, 15, 9, 59, tzinfo=dt.UTC)]
    with serve_bot(bot_settings(slack, redis_server["url"]), now=lambda: clock[0]) as bot:
        first = slash(bot, "/forecast", "AXP", user="U1")
        clock[0] += dt.timedelta(seconds=2)  # 15:10:01
        again = slash(bot, "/forecast", "AXP", user="U2")
    assert first.text.startswith(":hourglass_flowing_sand: Queued *AXP*"), first.text
    assert "is already queued in this channel" in again.text, again.text
    assert queue(redis, INTERACTIVE).count == 1


def test_a_dead_trainers_retrain_is_ended_by_a_serving_worker_and_a_new_retrain_is_accepted(  # noqa: F811
        server, slack, redis, context):  # noqa: F811
    assert slash(server, "/retrain", "", user=ADMIN).text.startswith(":gear: Retrain queued")
    dead = take_and_die(redis, TRAINING, booked_s=1)
    running = slash(server, "/retrain", "", user=ADMIN).text
    assert running.startswith(f":gear: A retrain is already running (job `{dead.id}`)"), running  # booked: alive
    time.sleep(1.5)

    again = slash(server, "/retrain", "", user=ADMIN)
    assert again.text.startswith(":gear: Retrain queued"), again.text  # not "already running" for good
    new_id = again.text.split("`")[1]
    runtime.install(context)
    worker.build_worker(redis, queue_names=SERVING).work(burst=True)  # a serving worker; no trainer is alive

    [told] = slack.messages("C123")
    assert told["text"].startswith(":x: The retrain failed: the worker running it stopped unexpectedly"), told
    assert Job.fetch(dead.id, connection=redis, serializer=JSONSerializer).get_status() == "failed"
    assert queue(redis, TRAINING).get_job_ids() == [new_id]  # the new one waits for a trainer


def test_a_dead_workers_job_is_noticed_by_a_busy_worker_and_runs_next(  # noqa: F811
        server, slack, redis, context, analyst):  # noqa: F811
    def ask(channel: str) -> None:
        ack = slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user=f"U{channel}", channel=channel)
        assert ack.text.startswith(":hourglass_flowing_sand: Queued *AXP*"), ack.text

    ask("CDEAD")
    take_and_die(redis, INTERACTIVE, booked_s=3)
    ask("CBUSY")  # what the only live worker is busy with when the other dies
    ask("CLATER")  # queued after the dead worker's job

    released, noticed = threading.Event(), []
    analyst.before_writing = lambda: released.wait(30)  # the busy worker's generation: held until released

    def watch() -> None:
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and not noticed:
            noticed.extend(m for m in slack.messages("CDEAD") if "stopped unexpectedly" in m["text"])
            time.sleep(0.05)
        released.set()

    watcher = threading.Thread(target=watch)
    watcher.start()
    runtime.install(context)
    busy = worker.build_worker(redis, queue_names=SERVING)
    busy.abandoned_every_s = 0.5  # MAINTENANCE_INTERVAL_S (10 s) in production
    busy.work(burst=True)
    watcher.join()

    assert noticed, "nobody told the dead worker's requester while the live worker was busy"
    assert "being retried on the next free worker" in noticed[0]["text"]
    order = [c.body["channel"] for c in slack.calls
             if c.method in ("chat.postMessage", "chat.update") and is_answer(c.body)]
    assert order == ["CBUSY", "CDEAD", "CLATER"]  # answered once each; the dead one's ahead of what came after
