"""`forecaster worker`: load the model once, then run jobs in this process, highest-priority queue first."""

from __future__ import annotations

import redis
from rq import SimpleWorker
from rq.serializers import JSONSerializer

from jobs import runtime
from jobs.client import queue
from jobs.failures import tell_the_requester
from jobs.queues import BY_PRIORITY

# How often a worker looks for jobs abandoned by a dead worker (RQ's default is 10 minutes): a crashed job is
# retried about a minute after its heartbeat lapses instead of ten.
MAINTENANCE_INTERVAL_S = 60


def build_worker(conn: redis.Redis, *, queue_names: list[str] | None = None) -> SimpleWorker:
    """SimpleWorker (no fork: CUDA and the loaded model stay in this process), JSON serializer, priority order."""
    names = queue_names or [spec.name for spec in BY_PRIORITY]
    specs = [spec for spec in BY_PRIORITY if spec.name in names]
    unknown = set(names) - {spec.name for spec in specs}
    if unknown:
        raise ValueError(f"unknown queues {sorted(unknown)}; known: {[spec.name for spec in BY_PRIORITY]}")
    worker = SimpleWorker([queue(conn, spec) for spec in specs], connection=conn, serializer=JSONSerializer,
                          maintenance_interval=MAINTENANCE_INTERVAL_S)
    worker.push_exc_handler(tell_the_requester)  # every failure ends in a message its requester sees
    return worker


def run(context: runtime.WorkerContext, *, queue_names: list[str] | None = None, burst: bool = False) -> bool:
    """Install the context, load the model now (not on the first job), and work."""
    runtime.install(context)
    context.model()
    # with_scheduler: retries with backoff are scheduled jobs, and someone must move them back onto the queue.
    return build_worker(context.conn, queue_names=queue_names).work(burst=burst, with_scheduler=True)
