"""The bot and the scheduler wait for Redis at start-up (compose starts services together), then fail with a message
that names the URL without its password: `forecaster.cli.common.wait_for_redis`."""

from __future__ import annotations

import socket
import subprocess
import threading
import time

import pytest
import redis
import typer

from forecaster.cli.common import wait_for_redis
from tests.conftest import _redis_server_binary


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def test_a_redis_that_comes_up_late_is_waited_for(tmp_path):
    port = _free_port()
    url = f"redis://127.0.0.1:{port}/0"
    started: list[subprocess.Popen] = []

    def start_later() -> None:
        time.sleep(1.5)
        started.append(subprocess.Popen([_redis_server_binary(), "--port", str(port), "--save", "", "--dir",
                                         str(tmp_path)], stdout=subprocess.DEVNULL))

    threading.Thread(target=start_later, daemon=True).start()
    try:
        conn = wait_for_redis(redis.Redis.from_url(url, socket_connect_timeout=1), url, wait_s=20)
        assert conn.ping() and started, "answered only once the server was up"
    finally:
        for server in started:
            server.terminate()
            server.wait(timeout=10)


def test_a_redis_that_never_answers_fails_with_the_url_without_its_password(capsys):
    url = f"redis://user:s3cret@127.0.0.1:{_free_port()}/0"
    begun = time.monotonic()
    with pytest.raises(typer.Exit):
        wait_for_redis(redis.Redis.from_url(url, socket_connect_timeout=1), url, wait_s=2)
    assert time.monotonic() - begun < 10
    said = " ".join(capsys.readouterr().err.split())
    assert "did not answer for 2 s" in said and "fix REDIS_URL" in said
    assert "s3cret" not in said and "user:***@127.0.0.1" in said
