"""The bot as it runs in production, for scenario tests and benchmarks: the Bolt app built by `build_app`, served
by waitress (`BotServer`) on 127.0.0.1 with a free port, its Web API calls going to a FakeSlack, its Redis client
the short-timeout one the CLI builds."""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bot.app import build_app
from bot.server import BotServer, BotWsgi
from forecaster.settings import Settings
from jobs.client import fast_connection
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_commands import SECRET, command_body, signed_headers

ADMIN = "UADMIN1"
REPO_ROOT = Path(__file__).resolve().parents[2]


def bot_settings(slack: FakeSlack, redis_url: str, **changes) -> Settings:
    values = {"slack_bot_token": "xoxb-test", "slack_signing_secret": SECRET, "slack_api_url": slack.api_url,
              "redis_url": redis_url, "slack_admin_users": ADMIN}
    return Settings(_env_file=None, **(values | changes))


@contextlib.contextmanager
def serve_bot(settings: Settings, *, threads: int = 8, **build) -> Iterator[BotServer]:
    conn = fast_connection(settings.redis_url)
    app = build_app(settings, conn=conn, **build)
    try:
        with BotServer(BotWsgi(app, conn=conn), threads=threads) as server:
            yield server
    finally:
        conn.close()


@dataclass(frozen=True)
class Reply:
    status: int
    body: str

    def json(self) -> dict:
        return json.loads(self.body)

    @property
    def text(self) -> str:
        return self.json()["text"]


def request(server: BotServer | BotProcess, method: str, path: str, body: str = "", headers: dict | None = None,
            timeout: float = 10) -> Reply:
    connection = http.client.HTTPConnection(server.host, server.port, timeout=timeout)
    try:
        connection.request(method, path, body=body.encode(), headers=headers or {})
        response = connection.getresponse()
        return Reply(response.status, response.read().decode())
    finally:
        connection.close()


def slash(server: BotServer | BotProcess, command: str, text: str = "", *, headers: dict | None = None,
          **fields) -> Reply:
    """A signed slash command, as Slack posts it to the request URL."""
    body = command_body(command, text, **fields)
    return request(server, "POST", "/slack/events", body, {**signed_headers(body), **(headers or {})})


@dataclass
class BotProcess:
    """`forecaster bot` running as its own process (the real entry point), HTTP mode on a free port."""

    process: subprocess.Popen
    host: str
    port: int
    started_s: float  # from launch to "listening"
    log_path: Path  # what it printed (stdout and stderr)

    def stop(self) -> int:
        self.process.send_signal(signal.SIGINT)  # Ctrl-C: the server closes and the command returns
        try:
            return self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait(timeout=10)


def bot_env(slack: FakeSlack, redis_url: str, **changes: str) -> dict[str, str]:
    """The environment `forecaster bot` reads, with the product's variables set for a test and nothing else."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "REDIS_", "BOT_"))}
    return env | {"REDIS_URL": redis_url, "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET": SECRET,
                  "SLACK_API_URL": slack.api_url, "BOT_HOST": "127.0.0.1", "BOT_PORT": "0",
                  "PYTHONPATH": str(REPO_ROOT)} | changes


@contextlib.contextmanager
def bot_process(env: dict[str, str], *, cwd: Path, timeout_s: float = 30) -> Iterator[BotProcess]:
    """Its output goes to `cwd/bot.log` (a file, not a pipe: a pipe nobody reads would fill up and block the
    server mid-request)."""
    log_path = cwd / "bot.log"
    started = time.perf_counter()
    with open(log_path, "w", encoding="utf-8") as log:
        process = subprocess.Popen([sys.executable, "-c", "from forecaster.cli import main; main()", "bot"], env=env,
                                   cwd=cwd, stdout=log, stderr=subprocess.STDOUT, text=True)
    running = None
    try:
        while running is None:
            if found := re.search(r"HTTP mode on http://([\d.]+):(\d+)", log_path.read_text(encoding="utf-8")):
                running = BotProcess(process, found[1], int(found[2]), time.perf_counter() - started, log_path)
            elif process.poll() is not None or time.perf_counter() - started > timeout_s:
                raise AssertionError(f"forecaster bot did not start (exit {process.poll()}):\n"
                                     + log_path.read_text(encoding="utf-8"))
            else:
                time.sleep(0.02)
        yield running
    finally:
        if process.poll() is None:
            BotProcess(process, "", 0, 0, log_path).stop()
