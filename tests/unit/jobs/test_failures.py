"""What a requester is told when a job fails in a way the job did not handle itself."""

from __future__ import annotations

import datetime as dt
from types import SimpleNamespace

from rq.exceptions import AbandonedJobError
from rq.timeouts import JobTimeoutException

from jobs.failures import describe
from jobs.replies import Route, route_of

JOB = SimpleNamespace(id="forecast_AXP_x", timeout=900, func_name="jobs.tasks.forecast_job", kwargs={})


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
