"""An idle worker keeps listening: `forecaster worker` (the real command, tiny model, snapshot data, real Redis)
sits idle for longer than RQ's connection back-off reaches (60 s), then picks a new forecast up at once.

Real time, on purpose: the fault was a socket timeout shorter than RQ's blocking wait for work (BLMOVE waits up to
~405 s); the wait timed out after 5 s, RQ logged "could not connect to Redis" and slept 1, 2, 4 ... 60 s between
tries, deaf meanwhile, so a job queued ~70 s into an idle spell waited about half a minute to be picked up.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import ForecastRequest, JobsClient
from tests.scenarios.market_fixture import record_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
IDLE_S = 70  # past RQ's 60 s back-off cap, and inside one of its long sleeps when the socket timeout is wrong
PICKUP_GOAL_S = 1.0


def wait_for(predicate, what: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; the worker said:\n{log.read_text()}")
        time.sleep(0.02)


def test_a_worker_idle_for_over_a_minute_picks_a_forecast_up_within_a_second(redis, redis_server, slack,
                                                                            tiny_model_dir, tmp_path):
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "REDIS_", "BOT_", "MODEL_", "DATA_", "FINNHUB_"))}
    env |= {"REDIS_URL": redis_server["url"], "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": slack.api_url,
            "DATA_DIR": str(tmp_path / "data"), "DATA_SNAPSHOT_DIR": str(record_snapshot(tmp_path / "snapshot")),
            "MODEL_BASE": str(tiny_model_dir), "MODEL_DEVICE": "cpu", "MODEL_MAX_NEW_TOKENS": "16",
            "MODEL_DIR": str(tmp_path / "models"), "PYTHONPATH": str(REPO_ROOT)}
    log = tmp_path / "worker.log"
    with open(log, "wb") as sink:
        worker = subprocess.Popen([sys.executable, "-m", "forecaster.cli", "worker", "--queues", "interactive"],
                                  cwd=tmp_path, env=env, stdout=sink, stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "Listening on interactive" in log.read_text(), "the worker to listen", log, 120)
        time.sleep(IDLE_S)
        assert worker.poll() is None, log.read_text()

        job_id = JobsClient(redis).forecast(ForecastRequest(ticker="AXP", channel="C123", user="U1")).job_id
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        wait_for(lambda: job.get_status(refresh=True) != "queued", "the worker to pick the job up", log, 120)
        job.refresh()
        pickup_s = (job.started_at - job.enqueued_at).total_seconds()
        print(f"\npick-up latency after {IDLE_S} s idle: {pickup_s * 1000:.0f} ms (goal < {PICKUP_GOAL_S:.0f} s)")
        wait_for(lambda: job.get_status(refresh=True) in ("finished", "failed"), "the forecast to end", log, 120)
    finally:
        worker.send_signal(signal.SIGTERM)
        try:
            worker.wait(timeout=30)
        except subprocess.TimeoutExpired:
            worker.kill()
            worker.wait(timeout=10)
    said = log.read_text()
    assert pickup_s < PICKUP_GOAL_S, said
    assert "could not connect to Redis" not in said, said
    assert job.get_status(refresh=True) == "finished", said
    assert [c for c in slack.calls if c.method == "chat.postMessage" and c.body.get("channel") == "C123"], said
