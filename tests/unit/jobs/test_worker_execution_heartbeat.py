"""A running job's booking in RQ's started-job registry: short, re-booked by a thread while the job lives, and when
its worker is gone, RQ's own maintenance in any other worker retries the job at once. Real Redis, real RQ workers,
real time (a TTL of a second instead of 30 s: same code, a test's scale).

The whole path with a killed worker process and the tiny model: tests/scenarios/test_forecast_job.py."""

from __future__ import annotations

import threading
import time

from rq import Retry
from rq.job import Job
from rq.queue import Queue
from rq.registry import FailedJobRegistry, StartedJobRegistry
from rq.serializers import JSONSerializer

from jobs import worker
from jobs.client import queue
from jobs.keys import EXECUTION_HEARTBEAT_TTL_S
from jobs.queues import INTERACTIVE

THIS = "tests.unit.jobs.test_worker_execution_heartbeat"


def booked_until(redis, job_id: str) -> float:
    """When the job's booking in the interactive started registry lapses (epoch seconds)."""
    registry = StartedJobRegistry(INTERACTIVE.name, connection=redis, serializer=JSONSerializer)
    [(_, score)] = [(key, score) for key, score in redis.zrange(registry.key, 0, -1, withscores=True)
                    if key.decode().startswith(f"{job_id}:")]
    return score


def bookings_while_running(pause_s: float) -> list[float]:
    """A job: how far ahead its own booking reaches, at its start and `pause_s` later."""
    from rq import get_current_job

    job = get_current_job()
    ahead = [booked_until(job.connection, job.id) - time.time()]
    time.sleep(pause_s)
    ahead.append(booked_until(job.connection, job.id) - time.time())
    return ahead


def plain_job() -> str:
    return "done"


def test_a_running_job_is_booked_only_a_short_ttl_ahead_and_rebooked_while_it_runs(redis):
    job = queue(redis, INTERACTIVE).enqueue_call(f"{THIS}.bookings_while_running", kwargs={"pause_s": 3})
    built = worker.build_worker(redis)
    built.execution_beat_every_s = 0.5
    built.work(burst=True)

    done = Job.fetch(job.id, connection=redis, serializer=JSONSerializer)
    at_start, later = done.return_value()
    assert EXECUTION_HEARTBEAT_TTL_S - 2 < at_start <= EXECUTION_HEARTBEAT_TTL_S  # not the 15-min job timeout
    # Re-booked meanwhile (RQ books whole seconds, and the last beat was up to 0.5 s ago): without the beats the
    # booking would be 3 s closer to lapsing.
    assert later > EXECUTION_HEARTBEAT_TTL_S - 2
    assert redis.zcard(StartedJobRegistry(INTERACTIVE.name, connection=redis).key) == 0  # gone when it ends


def test_a_job_whose_worker_stopped_beating_is_retried_at_once_by_the_next_worker(redis):
    q = queue(redis, INTERACTIVE)
    job = q.enqueue_call(f"{THIS}.plain_job", retry=Retry(max=2, interval=[10, 60]))
    # The first worker takes the job and starts it (RQ's own steps before running it), then beats no more, as if
    # killed there.
    dead = worker.build_worker(redis)
    dead.execution_ttl_s = 1
    taken, _ = Queue.dequeue_any([q], None, connection=redis, serializer=JSONSerializer)
    dead.prepare_execution(taken)
    dead.prepare_job_execution(taken, remove_from_intermediate_queue=True)
    assert Job.fetch(job.id, connection=redis, serializer=JSONSerializer).get_status() == "started"

    time.sleep(1.5)  # the booking lapses
    started = time.monotonic()
    worker.build_worker(redis).work(burst=True)  # its maintenance finds the job abandoned, then runs the retry

    done = Job.fetch(job.id, connection=redis, serializer=JSONSerializer)
    assert done.get_status() == "finished" and done.return_value() == "done"
    assert time.monotonic() - started < 5  # not after the queue's 10 s backoff (a burst worker would not wait)
    assert done.retries_left == 1 and done.retry_intervals == [0, 60]  # this try at once; a later one backs off


def test_a_live_job_past_the_ttl_is_not_taken_for_abandoned(redis):
    job = queue(redis, INTERACTIVE).enqueue_call(f"{THIS}.bookings_while_running", kwargs={"pause_s": 4})
    beating = worker.build_worker(redis)
    # 2 s, not 1: RQ books whole seconds from the current one (rq.utils.current_timestamp), so 1 s can be 0.1 s.
    beating.execution_ttl_s, beating.execution_beat_every_s = 2, 0.25
    stop = threading.Event()

    def another_workers_maintenance():  # what any other worker runs while waiting for work
        registry = StartedJobRegistry(INTERACTIVE.name, connection=redis, serializer=JSONSerializer)
        while not stop.wait(0.3):
            registry.cleanup()

    cleaner = threading.Thread(target=another_workers_maintenance)
    cleaner.start()
    try:
        beating.work(burst=True)  # 4 s of work, past the 2 s TTL: alive only through the beats
    finally:
        stop.set()
        cleaner.join()
    assert Job.fetch(job.id, connection=redis, serializer=JSONSerializer).get_status() == "finished"
    assert FailedJobRegistry(INTERACTIVE.name, connection=redis).get_job_ids() == []  # never taken for abandoned
