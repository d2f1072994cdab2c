"""`forecaster worker` serves and never trains; `forecaster trainer` is the training queue's consumer, with its own
healthcheck that a serving worker on the same host does not satisfy."""

from __future__ import annotations

import os
import socket
import threading

from rq import SimpleWorker
from rq.serializers import JSONSerializer
from typer.testing import CliRunner

import forecaster.cli
from forecaster.cli.service import SERVING_QUEUES
from jobs.client import queue
from jobs.queues import BATCH, INTERACTIVE, TRAINING
from jobs.worker import heartbeat


def test_a_serving_worker_listens_to_forecasts_and_batch_only_and_refuses_the_training_queue(redis_server,
                                                                                            monkeypatch):
    assert SERVING_QUEUES == "interactive,batch"
    monkeypatch.setenv("REDIS_URL", redis_server["url"])
    refused = CliRunner().invoke(forecaster.cli.app, ["worker", "--queues", "interactive,batch,training"])
    assert refused.exit_code != 0 and "run `forecaster trainer` for the training queue" in refused.stderr


def test_trainer_check_needs_a_beating_trainer_not_just_a_worker(redis, redis_server, monkeypatch):
    monkeypatch.setenv("REDIS_URL", redis_server["url"])
    stop = threading.Event()
    stop.set()
    heartbeat(redis, stop)  # this process beats...
    serving = SimpleWorker([queue(redis, INTERACTIVE), queue(redis, BATCH)], connection=redis,
                           serializer=JSONSerializer)
    serving.pid = os.getpid()
    serving.register_birth()  # ...as a serving worker
    check = CliRunner().invoke(forecaster.cli.app, ["trainer", "--check"])
    assert check.exit_code == 1 and f"no trainer on {socket.gethostname()}" in check.stderr
    serving.register_death()

    trainer = SimpleWorker([queue(redis, TRAINING)], connection=redis, serializer=JSONSerializer)
    trainer.pid = os.getpid()
    trainer.register_birth()
    check = CliRunner().invoke(forecaster.cli.app, ["trainer", "--check"])
    assert check.exit_code == 0 and "1 trainer process(es) alive" in check.stderr
