"""`forecaster scheduler`: listing fire times, refusing a bad configuration, enqueueing a missed slot by hand, and
a real scheduler process that beats, answers its healthcheck and stops cleanly on SIGTERM."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from typer.testing import CliRunner

import forecaster.cli
from engine.market.weeks import NEW_YORK
from jobs.client import queue
from jobs.keys import scheduler_heartbeat_key
from jobs.queues import BATCH

REPO_ROOT = Path(__file__).resolve().parents[2]


def run(*args: str, env: dict[str, str] | None = None) -> tuple[int, str, str]:
    result = CliRunner().invoke(forecaster.cli.app, ["scheduler", *args], env=env)
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
    # Both slots days away, so the start-up catch-up has nothing to post whatever day the test runs.
    far = (dt.datetime.now(NEW_YORK) + dt.timedelta(days=3)).replace(hour=12, minute=0)
    env = {"REDIS_URL": redis_server["url"], "DIGEST_CHANNELS": "C01",
           "DIGEST_SCHEDULE": f"{far:%a %H:%M}".lower(), "SUMMARY_SCHEDULE": f"{far:%a %H:%M}".lower()}
    assert run("--check", env={"REDIS_URL": redis_server["url"]})[0] == 1  # nothing running yet
    checked = []
    err = _start_scheduler_and_stop(
        redis, env, while_running=lambda: checked.append(run("--check", env={"REDIS_URL": redis_server["url"]})[0]))
    assert checked == [0]
    assert f"digest every {far:%a %H:%M}".lower() + " New York → C01" in err and "SIGTERM received, stopping" in err
    assert redis.get(scheduler_heartbeat_key()) is None  # stopped cleanly: the healthcheck fails at once
    assert queue(redis, BATCH).count == 0  # starting is not a slot: nothing enqueued


def _slot_minutes_ago(minutes: int) -> dt.datetime:
    """A New York time `minutes` ago, moved to 00:59 when it falls in 01:00-02:59 (refused as a schedule)."""
    slot = (dt.datetime.now(NEW_YORK) - dt.timedelta(minutes=minutes)).replace(second=0, microsecond=0)
    return slot.replace(hour=0, minute=59) if 1 <= slot.hour < 3 else slot


def _start_scheduler_and_stop(redis, env: dict[str, str], while_running=lambda: None) -> str:
    """Start a real `forecaster scheduler`, wait for its first heartbeat (written after the start-up catch-up), call
    `while_running`, stop it with SIGTERM; returns its log."""
    child = subprocess.Popen([sys.executable, "-m", "forecaster.cli", "scheduler"], cwd=REPO_ROOT,
                             env={**os.environ, "PYTHONPATH": str(REPO_ROOT), **env},
                             stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while redis.get(scheduler_heartbeat_key()) is None:
            assert child.poll() is None, f"the scheduler exited: {child.communicate()}"
            assert time.monotonic() < deadline, "no heartbeat within 30 s"
            time.sleep(0.05)
        while_running()
        child.send_signal(signal.SIGTERM)
        _, err = child.communicate(timeout=15)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == 0, err
    return err


def _digest_job_ids(redis) -> list[str]:
    return sorted(j for j in queue(redis, BATCH).job_ids if j.startswith("digest_"))


def test_a_scheduler_restarted_after_its_slot_posts_that_slot_once_per_channel(redis, redis_server):
    slot = _slot_minutes_ago(2)
    age_s = (dt.datetime.now(NEW_YORK) - slot).total_seconds()
    summary = (slot + dt.timedelta(days=3)).replace(hour=12, minute=0)  # four days past: far outside the grace
    env = {"REDIS_URL": redis_server["url"], "DIGEST_CHANNELS": "C01,C02",
           "DIGEST_SCHEDULE": f"{slot:%a %H:%M}".lower(), "SUMMARY_SCHEDULE": f"{summary:%a %H:%M}".lower(),
           "SCHEDULER_MISFIRE_GRACE_S": str(int(max(3 * 3600, age_s + 600)))}
    started = time.monotonic()
    log = _start_scheduler_and_stop(redis, env)
    print(f"\nscheduler started {age_s:.0f} s after its digest slot: caught up in "
          f"{time.monotonic() - started:.1f} s (process start to stop)")
    assert "digest slot" in log and "catching up" in log
    assert len(_digest_job_ids(redis)) == 2  # one per channel
    assert queue(redis, BATCH).count == 2  # and no summary: its slot is days past
    # A second restart within the grace (a deploy, a crash loop) posts nothing more.
    _start_scheduler_and_stop(redis, env)
    assert len(_digest_job_ids(redis)) == 2


def test_a_scheduler_restarted_past_the_grace_skips_that_slot(redis, redis_server):
    slot = _slot_minutes_ago(2)
    env = {"REDIS_URL": redis_server["url"], "DIGEST_CHANNELS": "C01",
           "DIGEST_SCHEDULE": f"{slot:%a %H:%M}".lower(), "SCHEDULER_MISFIRE_GRACE_S": "60"}
    log = _start_scheduler_and_stop(redis, env)
    assert "catching up" not in log
    assert queue(redis, BATCH).count == 0
