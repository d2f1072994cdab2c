"""Ending a dead worker's job, whoever is alive to notice it.

RQ finds a job abandoned (its worker died, so its execution booking lapsed: jobs.worker.KeptAliveWorker) only in
its maintenance, which a worker runs between jobs, for the queues it listens to. So a dead worker's job went
unnoticed while every other worker was busy, and a dead trainer's retrain was ended only by another trainer (the
training queue's only consumers): with none, it stayed "running" for good.

Here every worker ends the abandoned jobs of every queue: between jobs, after RQ's own maintenance of its queues
(`others`), and while it runs a job, from a thread (`while_running`). Each queue is cleaned under RQ's own
maintenance lock, so one worker handles a given abandoned job, with that worker's exception handlers: its requester
is told (jobs.failures: "the worker running it stopped unexpectedly"), and a job with retries left goes back to
the front of its queue (jobs.worker.retry_abandoned_at_once), as it was taken once already.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable

import redis
from rq.queue import Queue
from rq.registry import StartedJobRegistry
from rq.worker import BaseWorker

from jobs.client import queue
from jobs.queues import BY_PRIORITY

log = logging.getLogger(__name__)

# RQ's maintenance lock, taken here for this long at most (RQ takes it for 899 s): this runs every few seconds in
# every busy worker, and a worker killed while holding it must not keep dead workers' jobs unnoticed for 15 minutes.
LOCK_S = 60


def end_abandoned(worker: BaseWorker, queues: Iterable[Queue]) -> None:
    """RQ's abandoned-job handling for `queues`, with `worker`'s exception handlers, each under its queue's
    maintenance lock (a queue another worker is cleaning now is left to it). Never raises: a Redis hiccup waits
    for the next round."""
    for q in queues:
        try:
            if not q.connection.set(q.registry_cleaning_key, 1, nx=True, ex=LOCK_S):
                continue
            try:
                StartedJobRegistry(q.name, connection=q.connection, job_class=q.job_class,
                                   serializer=q.serializer).cleanup(exception_handlers=worker._exc_handlers)
            finally:
                q.release_maintenance_lock()
        except redis.RedisError as exc:
            log.warning("abandoned jobs of %s not looked for (the next round tries again): %s", q.name, exc)


def every_queue(worker: BaseWorker) -> list[Queue]:
    return [queue(worker.connection, spec) for spec in BY_PRIORITY]


def others(worker: BaseWorker) -> list[Queue]:
    """The queues `worker` does not listen to (a serving worker: training; a trainer: the serving queues)."""
    mine = set(worker.queue_names())
    return [q for q in every_queue(worker) if q.name not in mine]


def while_running(worker: BaseWorker, stop: threading.Event, every_s: float) -> None:
    """Every `every_s` until `stop`: end the abandoned jobs of every queue (a thread beside a running job)."""
    while not stop.wait(every_s):
        try:
            end_abandoned(worker, every_queue(worker))
        except Exception:  # noqa: BLE001 — this thread must outlive one bad round
            log.exception("looking for abandoned jobs failed; the next round tries again")
