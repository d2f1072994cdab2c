"""`forecaster scheduler`: listing fire times, refusing a bad configuration, enqueueing a missed slot by hand, and
a real scheduler process that beats, answers its healthcheck and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

import jobs.cli
from jobs.client import queue
from jobs.keys import scheduler_heartbeat_key
from jobs.queues import BATCH

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(jobs.cli.app, ["scheduler", *args], env=env)
    return result.exit_code, result.stdout, result.stderr


def test_next_lists_each_schedule_in_new_york_time_and_utc_across_the_dst_switch():
    code, out, err = run("--next", "3", "--after", "2026-03-01", env={"DIGEST_CHANNELS": "C0123ABCD"})
    assert code == 0, err
    assert out.splitlines() == [
        "digest: mon 08:00 New York → C0123ABCD",
        "  Mon 2026-03-02 08:00 EST   2026-03-02 13:00 UTC",
        "  Mon 2026-03-09 08:00 EDT   2026-03-09 12:00 UTC",
        "  Mon 2026-03-16 08:00 EDT   2026-03-16 12:00 UTC",
        "summary: sat 10:00 New York → C0123ABCD",
        "  Sat 2026-03-07 10:00 EST   2026-03-07 15:00 UTC",
        "  Sat 2026-03-14 10:00 EDT   2026-03-14 14:00 UTC",
        "  Sat 2026-03-21 10:00 EDT   2026-03-21 14:00 UTC",
    ]


def test_next_from_now_needs_neither_redis_nor_channels():
    code, out, err = run("--next", "1", env={"SUMMARY_SCHEDULE": "sun 18:30"})
    assert code == 0, err
    assert "summary: sun 18:30 New York → (no DIGEST_CHANNELS)" in out
    assert out.count(" UTC") == 2


def test_running_without_redis_or_channels_says_what_to_set():
    code, _, err = run()
    assert code == 2
    assert "REDIS_URL is unset" in err and "DIGEST_CHANNELS is empty" in err


def test_a_numbered_weekday_in_the_settings_is_refused_with_the_reason():
    code, _, err = run("--next", "1", env={"DIGEST_SCHEDULE": "1 08:00"})
    assert code == 2
    assert "DIGEST_SCHEDULE" in err and "write the day as a name" in err


def test_fire_enqueues_the_latest_slot_once(redis, redis_server):
    env = {"REDIS_URL": redis_server["url"], "DIGEST_CHANNELS": "C01,C02"}
    code, out, err = run("--fire", "summary", env=env)
    assert code == 0, err
    assert out.count(": queued (job summary_") == 2
    code, out, _ = run("--fire", "summary", env=env)
    assert code == 0 and out.count(": duplicate (job summary_") == 2
    assert queue(redis, BATCH).count == 2
    assert run("--fire", "weekly", env=env)[0] == 2


def test_a_scheduler_process_beats_passes_its_healthcheck_and_stops_cleanly_on_sigterm(redis, redis_server):
    env = {**os.environ, "PYTHONPATH": str(REPO_ROOT), "REDIS_URL": redis_server["url"], "DIGEST_CHANNELS": "C01"}
    assert run("--check", env={"REDIS_URL": redis_server["url"]})[0] == 1  # nothing running yet
    child = subprocess.Popen([sys.executable, "-c", "from jobs.cli import main; main()", "scheduler"], cwd=REPO_ROOT,
                             env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while redis.get(scheduler_heartbeat_key()) is None:
            assert child.poll() is None, f"the scheduler exited: {child.communicate()}"
            assert time.monotonic() < deadline, "no heartbeat within 30 s"
            time.sleep(0.05)
        assert run("--check", env={"REDIS_URL": redis_server["url"]})[0] == 0
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    assert "digest every mon 08:00 New York → C01" in err and "SIGTERM received, stopping" in err
    assert redis.get(scheduler_heartbeat_key()) is None  # stopped cleanly: the healthcheck fails at once
    assert queue(redis, BATCH).count == 0  # starting is not a slot: nothing enqueued
