"""`forecaster up` end to end, as a newcomer runs it: one process starts the embedded Redis, the bot (HTTP mode,
Web API calls going to the fake Slack), a worker (tiny model, snapshot data) and the scheduler. A signed
`/forecast AXP` gets its answer posted; the embedded Redis is killed and restarted by `up`, and the next request is
answered; then Ctrl-C (SIGINT) stops everything, and no process is left behind."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from tests.fakes.slack_commands import SECRET
from tests.scenarios.bot_harness import slash
from tests.scenarios.market_fixture import record_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def processes_with(marker: str) -> list[int]:
    """Every live process whose environment carries `marker` (children inherit it; nothing else has it)."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and (entry / "stat").read_text().split()[2] != "Z":
                found.append(int(entry.name))
        except OSError:
            continue
    return found


def wait_for(predicate, what: str, log: Path, timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}; `forecaster up` said:\n{log.read_text()}")
        time.sleep(0.2)


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc to find leftover processes")
def test_up_answers_a_slash_command_and_ctrl_c_leaves_no_process_behind(tmp_path, slack, tiny_model_dir):
    marker = f"FC_UP_TEST={uuid.uuid4().hex}"
    port = free_port()
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "REDIS_", "BOT_", "MODEL_", "DATA_", "DIGEST_", "FINNHUB_"))}
    env |= {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET, "SLACK_API_URL": slack.api_url,
            "BOT_HOST": "127.0.0.1", "BOT_PORT": str(port), "DATA_DIR": str(tmp_path / "data"),
            "DATA_SNAPSHOT_DIR": str(record_snapshot(tmp_path / "snapshot")), "MODEL_BASE": str(tiny_model_dir),
            "MODEL_DEVICE": "cpu", "MODEL_MAX_NEW_TOKENS": "16", "MODEL_DIR": str(tmp_path / "models"),
            "DIGEST_CHANNELS": "C999", "PYTHONPATH": str(REPO_ROOT), marker.split("=")[0]: marker.split("=")[1]}
    log = tmp_path / "up.log"
    with open(log, "wb") as sink:
        up = subprocess.Popen([sys.executable, "-m", "forecaster.cli", "up"], cwd=tmp_path, env=env, stdout=sink,
                              stderr=subprocess.STDOUT)
    try:
        wait_for(lambda: "HTTP mode on" in log.read_text(), "the bot", log, 60)
        bot = type("Bot", (), {"host": "127.0.0.1", "port": port})()
        # `up` migrated the ledger before starting the bot (which never does): /track answers before the worker has
        # loaded its model.
        assert slash(bot, "/track", "AXP").text == "Track record for AXP: nothing scored yet"
        wait_for(lambda: "Listening on interactive" in log.read_text(), "the worker", log, 120)
        wait_for(lambda: re.search(r"scheduler: digest every .* next", log.read_text()), "the scheduler", log, 60)
        ack = slash(bot, "/forecast", "AXP", response_url=slack.hook_url(), channel="C123")
        assert ack.status == 200, ack.body

        def answers(channel: str) -> list[dict]:  # the channel's messages that ended as a forecast
            return [m for m in slack.messages(channel) if (m.get("blocks") or [{}])[0].get("type") == "header"]

        wait_for(lambda: answers("C123"), "the answer in Slack", log, 120)
        [answer] = answers("C123")
        assert answer["blocks"][0]["text"]["text"] == "AXP weekly forecast"
        assert "2024-03-17 to 2024-03-24" in json.dumps(answer)  # the snapshot's week, replayed as live
        assert len(processes_with(marker)) >= 5  # up, redis, bot, worker (+ RQ's scheduler), scheduler

        # The embedded Redis dies: `up` restarts it from its append-only file, and the next request is answered.
        # (from the supervisor's log: redis-server rewrites its own environ for its process title)
        redis_pid = int(re.search(r"started redis \(pid (\d+)\)", log.read_text()).group(1))
        killed_at = time.monotonic()
        os.kill(redis_pid, signal.SIGKILL)
        wait_for(lambda: "redis exited with code" in log.read_text(), "the supervisor to see Redis die", log, 30)
        wait_for(lambda: log.read_text().count("started redis") >= 2, "Redis restarted", log, 30)
        ack = slash(bot, "/forecast", "AXP", response_url=slack.hook_url(), channel="C124")
        assert ack.status == 200, ack.body
        wait_for(lambda: answers("C124"), "the answer after Redis restarted", log, 180)
        print(f"\nembedded Redis SIGKILLed → restarted → the next /forecast answered: "
              f"{time.monotonic() - killed_at:.1f} s")
    finally:
        up.send_signal(signal.SIGINT)
        try:
            code = up.wait(timeout=90)
        finally:
            for pid in processes_with(marker):  # never leave strays to the next test, even when failing
                os.kill(pid, signal.SIGKILL)
    said = log.read_text()
    assert code == 0, said
    assert re.search(r"bot stopped \(code", said) and re.search(r"worker stopped \(code", said)
    assert "embedded Redis stopped" in said
    deadline = time.monotonic() + 10
    while processes_with(marker) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert processes_with(marker) == [], said
    last_redis = int(re.findall(r"started redis \(pid (\d+)\)", said)[-1])  # invisible to processes_with
    assert not Path(f"/proc/{last_redis}").exists() or Path(f"/proc/{last_redis}/stat").read_text().split()[2] == "Z"


def test_the_readmes_run_command_is_forecaster_up():
    """`make run` (the README's run command) runs exactly what the test above exercises."""
    done = subprocess.run(["make", "--no-print-directory", "-n", "run"], cwd=REPO_ROOT, capture_output=True,
                          text=True, check=True, env={**os.environ, "MAKEFLAGS": ""})
    commands = [line for line in done.stdout.splitlines() if line.strip()]
    assert commands[-1].endswith("/forecaster up"), done.stdout
