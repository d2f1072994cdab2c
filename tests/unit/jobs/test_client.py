"""Enqueueing on a real Redis: dedupe by job id, JSON on the wire, priorities, positions."""

from __future__ import annotations

import datetime as dt
import json
import threading
import zlib

from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import FORECAST_TASK, ForecastRequest, JobsClient, queue
from jobs.keys import LIVE_DEDUPE_WINDOW_S, forecast_job_id
from jobs.queues import INTERACTIVE

NOW = dt.datetime(2026, 11, 25, 15, 0, tzinfo=dt.UTC)


def request(**changes) -> ForecastRequest:
    return ForecastRequest(**({"ticker": "AXP", "channel": "C123", "user": "U1"} | changes))


def test_the_same_request_enqueued_20_times_at_once_makes_one_job(redis):
    results = []
    lock = threading.Lock()

    def ask() -> None:
        outcome = JobsClient(redis, now=NOW).forecast(request())
        with lock:
            results.append(outcome)

    threads = [threading.Thread(target=ask) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len({r.job_id for r in results}) == 1
    assert sorted(r.status for r in results).count("queued") == 1
    assert queue(redis, INTERACTIVE).count == 1


def test_jobs_are_json_on_the_wire_and_name_the_task_by_path(redis):
    outcome = JobsClient(redis, now=NOW).forecast(request(as_of=dt.date(2024, 3, 8)))
    raw = redis.hget(f"rq:job:{outcome.job_id}", "data")
    func, _instance, args, kwargs = json.loads(zlib.decompress(raw))  # RQ zlib-compresses; inside, JSON, no pickle
    assert func == FORECAST_TASK and kwargs["request"]["as_of"] == "2024-03-08"
    job = Job.fetch(outcome.job_id, connection=redis, serializer=JSONSerializer)
    assert job.timeout == INTERACTIVE.timeout_s and job.retries_left == INTERACTIVE.retries


def test_live_requests_dedupe_within_the_window_and_not_after(redis):
    first = JobsClient(redis, now=NOW).forecast(request())
    later = NOW + dt.timedelta(seconds=LIVE_DEDUPE_WINDOW_S)
    assert JobsClient(redis, now=NOW + dt.timedelta(seconds=30)).forecast(request()).status == "duplicate"
    again = JobsClient(redis, now=later).forecast(request())
    assert again.status == "queued" and again.job_id != first.job_id
    assert again.ahead == 1  # behind the first one


def test_different_options_or_channels_are_different_jobs():
    ids = {forecast_job_id(ticker="AXP", as_of=None, weeks=w, financials=f, channel=c, now=NOW)
           for w in (1, 3) for f in (True, False) for c in ("C1", "C2")}
    assert len(ids) == 8
    assert all(":" not in i and " " not in i for i in ids)


def test_the_job_status_is_rqs_plain_value(redis):
    first = JobsClient(redis, now=NOW).forecast(request())
    again = JobsClient(redis, now=NOW).forecast(request())
    assert (first.job_status, again.job_status) == ("queued", "queued")  # not "JobStatus.QUEUED"
