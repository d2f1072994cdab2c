"""Scale-out: two worker processes on one Redis (as on two GPU hosts). Every job runs exactly once, every request
gets exactly one answer, and each worker still takes forecasts before batch work."""

from __future__ import annotations

import datetime as dt
import os
import subprocess
import sys
from pathlib import Path

from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import FORECAST_TASK, ForecastRequest, JobsClient, queue
from jobs.queues import BATCH
from tests.fakes.slack import FakeSlack

REPO_ROOT = Path(__file__).resolve().parents[2]
DATES = [dt.date(2024, 3, 8) - dt.timedelta(days=n) for n in range(8)]


def test_two_workers_share_the_queues_without_running_a_job_twice_and_keep_priorities(redis, redis_server):
    with FakeSlack() as slack:
        # Batch work first in time, forecasts after: priorities, not arrival order, must decide.
        batch_ids = [queue(redis, BATCH).enqueue_call(
            FORECAST_TASK, kwargs={"request": ForecastRequest("AXP", f"CB{n}", "U1", as_of=day, weeks=1).to_json()},
            job_id=f"batch-{n}", timeout=60).id for n, day in enumerate(DATES)]
        forecast_ids = [JobsClient(redis).forecast(ForecastRequest("AXP", f"CI{n}", "U1", as_of=day, weeks=1)).job_id
                        for n, day in enumerate(DATES)]
        env = {**os.environ, "PYTHONPATH": str(REPO_ROOT)}
        workers = [subprocess.Popen([sys.executable, "-m", "tests.scenarios.stub_worker", redis_server["url"],
                                     slack.api_url], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                                    stderr=subprocess.DEVNULL) for _ in range(2)]
        assert [w.wait(timeout=120) for w in workers] == [0, 0]

        jobs = {i: Job.fetch(i, connection=redis, serializer=JSONSerializer) for i in batch_ids + forecast_ids}
        assert {j.get_status() for j in jobs.values()} == {"finished"}
        assert len({j.worker_name for j in jobs.values()}) == 2  # both took part
        channels = [m["channel"] for m in slack.messages()]
        assert sorted(channels) == sorted([f"CB{n}" for n in range(8)] + [f"CI{n}" for n in range(8)])  # one each
        assert len(slack.posted()) == 16  # one progress message per job, edited into its answer: never a second
        for name in {j.worker_name for j in jobs.values()}:  # each worker: every forecast before any batch job
            mine = sorted((j for j in jobs.values() if j.worker_name == name), key=lambda j: j.started_at)
            kinds = [j.origin for j in mine]
            assert kinds == sorted(kinds, key=lambda origin: origin != "interactive"), kinds
        last_forecast = max(jobs[i].started_at for i in forecast_ids)
        assert sum(jobs[i].started_at < last_forecast for i in batch_ids) <= 1  # at most the other worker's first
