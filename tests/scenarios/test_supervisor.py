"""`forecaster up`'s supervisor and embedded Redis, with real processes: prefixed logs, restarts, Ctrl-C stops
everything (grandchildren included), and the embedded Redis keeps its data across a restart (append-only file)."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import redis as redis_lib
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import ForecastRequest, JobsClient, queue
from jobs.embedded_redis import EmbeddedRedis
from jobs.queues import INTERACTIVE

REPO_ROOT = Path(__file__).resolve().parents[2]


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    # A zombie still answers kill(0); it is gone for our purposes once its state is Z.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    except FileNotFoundError:
        return False


def wait_for(predicate, timeout_s: float = 20.0) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)


def test_ctrl_c_stops_every_child_and_grandchild_and_crashed_children_are_restarted(tmp_path):
    out = tmp_path / "out.log"
    with open(out, "wb") as sink:
        sup = subprocess.Popen([sys.executable, "-m", "tests.scenarios.supervised_probe", str(tmp_path)],
                               cwd=REPO_ROOT, stdout=sink, stderr=subprocess.STDOUT,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        try:
            wait_for(lambda: (tmp_path / "steady.pid").exists() and (tmp_path / "stubborn.pid").exists())
            wait_for(lambda: out.read_text().count("crashy says goodbye") >= 2)  # restarted after its crash
            steady, grandchild = map(int, (tmp_path / "steady.pid").read_text().split())
            stubborn = int((tmp_path / "stubborn.pid").read_text())
            sup.send_signal(signal.SIGINT)
            assert sup.wait(timeout=30) == 0
        finally:
            if sup.poll() is None:
                sup.kill()
    log = out.read_text()
    assert "steady   | steady up" in log and "crashy   | crashy says goodbye" in log
    assert "crashy exited with code 3; restarting in 1 s" in log
    assert "stubborn did not stop within 1 s; killing it" in log
    for pid in (steady, grandchild, stubborn):
        wait_for(lambda pid=pid: not alive(pid), timeout_s=5)


def test_queued_jobs_survive_a_restart_of_the_embedded_redis(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    server = EmbeddedRedis(Path(".forecaster/redis"))  # DATA_DIR's default is relative to where `up` runs
    url = server.start()
    try:
        conn = redis_lib.Redis.from_url(url)
        assert conn.config_get("appendonly")["appendonly"] == "yes"
        assert conn.config_get("maxmemory-policy")["maxmemory-policy"] == "noeviction"
        queued = JobsClient(conn).forecast(ForecastRequest("AXP", "C1", "U1", as_of=dt.date(2024, 3, 15)))
        time.sleep(1.2)  # appendfsync everysec: at most a second of writes is at risk
    finally:
        server.stop()  # SIGTERM: Redis flushes its append-only file and exits
    again = EmbeddedRedis(Path(".forecaster/redis"))
    url = again.start()
    try:
        conn = redis_lib.Redis.from_url(url)
        assert queue(conn, INTERACTIVE).get_job_ids() == [queued.job_id]
        job = Job.fetch(queued.job_id, connection=conn, serializer=JSONSerializer)
        assert job.get_status() == "queued" and job.kwargs["request"]["ticker"] == "AXP"
        # and the same request is still a duplicate of it, not a second job
        assert JobsClient(conn).forecast(ForecastRequest("AXP", "C1", "U1", as_of=dt.date(2024, 3, 15))).status \
            == "duplicate"
    finally:
        again.stop()
