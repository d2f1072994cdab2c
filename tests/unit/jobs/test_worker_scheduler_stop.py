"""A burst worker that ends right after forking RQ's scheduler still stops it: the SIGTERM that lands before the child
has installed its own handler is lost (RQ's own stop then waits on the child forever, which once hung the suite), so
the worker asks again until the child is gone."""

from __future__ import annotations

import signal
import threading
import time

import redis
from rq.scheduler import RQScheduler
from rq.serializers import JSONSerializer

from jobs import worker as worker_module
from jobs.queues import INTERACTIVE
from jobs.worker import build_worker


def test_a_scheduler_that_missed_the_first_stop_request_is_asked_again(redis_server, monkeypatch):
    conn = redis.Redis.from_url(redis_server["url"])
    worker = build_worker(conn, queue_names=[INTERACTIVE.name])
    original = RQScheduler._install_signal_handlers

    def late_handlers(self):  # the child takes its time before its handlers exist, as a busy fork can
        time.sleep(1.5)
        original(self)

    monkeypatch.setattr(RQScheduler, "_install_signal_handlers", late_handlers)
    monkeypatch.setattr(worker_module, "SCHEDULER_STOP_WAIT_S", 1.0)
    previous = signal.signal(signal.SIGTERM, lambda *_: None)  # what the child inherits: a worker's own handler
    try:
        worker.scheduler = RQScheduler(worker.queues, connection=conn, interval=1, serializer=JSONSerializer)
        worker.scheduler.acquire_locks(auto_start=True)
        child = worker.scheduler._process
        assert child is not None and child.is_alive()
        stopper = threading.Thread(target=worker.stop_scheduler, daemon=True)
        started = time.monotonic()
        stopper.start()
        stopper.join(timeout=30)
        assert not stopper.is_alive(), "stop_scheduler is waiting forever on a child that lost its SIGTERM"
        assert not child.is_alive()
        assert child.exitcode == 0, "stopped by its own handler, not killed"
        print(f"scheduler stopped {time.monotonic() - started:.1f} s after the first request")
    finally:
        signal.signal(signal.SIGTERM, previous)
        if worker.scheduler._process is not None and worker.scheduler._process.is_alive():
            worker.scheduler._process.kill()
