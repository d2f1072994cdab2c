"""The worker's own heartbeat (what the compose healthcheck reads): beaten by a thread, gone when the worker ends."""

from __future__ import annotations

import os
import socket
import threading

from typer.testing import CliRunner

import forecaster.cli
from jobs.keys import WORKER_HEARTBEAT_TTL_S, worker_heartbeat_key
from jobs.worker import alive_on, heartbeat


def test_a_beating_worker_is_seen_on_its_host_until_its_key_lapses(redis):
    stop = threading.Event()
    stop.set()  # one beat, then return
    heartbeat(redis, stop)
    key = worker_heartbeat_key(socket.gethostname(), os.getpid())
    assert 0 < redis.ttl(key) <= WORKER_HEARTBEAT_TTL_S
    assert alive_on(redis, socket.gethostname()) == 1 and alive_on(redis, "another-host") == 0


def test_worker_check_is_the_healthcheck(redis, redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_server["url"])
    check = CliRunner().invoke(forecaster.cli.app, ["worker", "--check"])
    assert check.exit_code == 1 and "no worker on" in check.stderr
    stop = threading.Event()
    stop.set()
    heartbeat(redis, stop)
    check = CliRunner().invoke(forecaster.cli.app, ["worker", "--check"])
    assert check.exit_code == 0 and "1 worker process(es) alive" in check.stderr
