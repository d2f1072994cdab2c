"""`/forecast-status` after a worker crash: a real worker process, busy with a forecast, is SIGKILLed. RQ keeps
its registration ("busy") for minutes; the status counts it alive only while its own heartbeat is current, so
within the heartbeat's TTL it shows the worker lost and nobody busy, through the bot's real HTTP endpoint too."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import ForecastRequest, JobsClient
from jobs.status import read_status, workers_alive
from tests.scenarios.bot_harness import bot_settings, serve_bot, slash

REPO_ROOT = Path(__file__).resolve().parents[2]
BEAT_EVERY_S, BEAT_TTL_S = 0.5, 2.0  # the product beats every 30 s with a 120 s TTL; same code, a test's scale


def wait_for(predicate, what: str, timeout_s: float, child: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        assert child is None or child.poll() is None, f"the worker exited while waiting for {what}"
        time.sleep(0.05)


def test_a_killed_busy_worker_is_shown_lost_within_its_heartbeat_ttl(redis, redis_server, slack):
    # Dated inside the memory market, so the job reaches the model and hangs there (a live request would fail on
    # prices at once).
    job_id = JobsClient(redis).forecast(ForecastRequest(ticker="AXP", channel="C123", user="U1",
                                                        as_of=dt.date(2024, 3, 15))).job_id
    child = subprocess.Popen([sys.executable, "-m", "tests.scenarios.beating_worker", redis_server["url"],
                              slack.api_url, str(BEAT_EVERY_S), str(BEAT_TTL_S)], cwd=REPO_ROOT,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT)},
                             start_new_session=True)  # its own process group: RQ forks a scheduler beside it
    try:
        job = Job.fetch(job_id, connection=redis, serializer=JSONSerializer)
        wait_for(lambda: job.get_status(refresh=True) == "started", "the worker to start the job", 60, child)
        wait_for(lambda: [w.state for w in read_status(redis, user="U1").workers] == ["busy"],
                 "the status to show the worker busy", 10, child)
        with serve_bot(bot_settings(slack, redis_server["url"])) as bot:
            before = slash(bot, "/forecast-status", user="U1")
            os.killpg(child.pid, signal.SIGKILL)  # mid-generation, as an OOM kill or a power cut would
            killed_at = time.monotonic()
            child.wait(timeout=10)
            wait_for(lambda: not read_status(redis, user="U1").workers, "the status to drop the dead worker",
                     BEAT_TTL_S + 5)
            seen_dead_s = time.monotonic() - killed_at
            after = slash(bot, "/forecast-status", user="U1")
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGKILL)

    print(f"\nkilled busy worker shown lost {seen_dead_s:.2f} s after SIGKILL (heartbeat TTL {BEAT_TTL_S:.0f} s)")
    assert seen_dead_s <= BEAT_TTL_S + 1.0
    [registered] = Worker.all(connection=redis, serializer=JSONSerializer)
    assert registered.get_state() == "busy"  # RQ still believes it: the heartbeat is what tells
    status = read_status(redis, user="U1")
    assert [(w.name, w.state) for w in status.lost] == [(registered.name, "busy")] and workers_alive(redis) == 0
    assert before.status == after.status == 200
    assert "1 workers (1 busy)" in before.text, before.body
    assert "0 workers (0 busy)" in after.text, after.body
