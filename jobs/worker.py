"""`forecaster worker`: load the model once, then run jobs in this process, highest-priority queue first."""

from __future__ import annotations

import datetime as dt
import logging
import os
import socket
import threading

import redis
from rq import SimpleWorker
from rq.defaults import DEFAULT_WORKER_TTL
from rq.serializers import JSONSerializer

from jobs import runtime
from jobs.client import queue
from jobs.failures import tell_the_requester
from jobs.keys import WORKER_HEARTBEAT_EVERY_S, WORKER_HEARTBEAT_TTL_S, worker_heartbeat_key
from jobs.queues import BY_PRIORITY

log = logging.getLogger(__name__)

# How often a worker looks for jobs abandoned by a dead worker (RQ's default is 10 minutes): a crashed job is
# retried about a minute after its heartbeat lapses instead of ten.
MAINTENANCE_INTERVAL_S = 60

# RQ waits for work with a blocking BLMOVE of `worker_ttl - 15` s (405) and wants its socket to outlast the wait by
# 10 s (rq's BaseWorker.dequeue_timeout and connection_timeout). The worker's RQ client gets this timeout from the
# start, as RQ's own CLI arranges; the jobs keep a client that gives up after a few seconds.
WORKER_TTL_S = DEFAULT_WORKER_TTL
QUEUE_SOCKET_TIMEOUT_S = WORKER_TTL_S - 15 + 10


def build_worker(conn: redis.Redis, *, queue_names: list[str] | None = None) -> SimpleWorker:
    """SimpleWorker (no fork: CUDA and the loaded model stay in this process), JSON serializer, priority order.
    `conn`: RQ's own client, with no socket timeout or one of at least QUEUE_SOCKET_TIMEOUT_S."""
    timeout = conn.connection_pool.connection_kwargs.get("socket_timeout")
    if timeout is not None and timeout < QUEUE_SOCKET_TIMEOUT_S:
        # RQ would raise the pool's timeout, but only for connections opened later: one already open (a PING)
        # would time the wait for work out, and RQ would back off for up to a minute, deaf, after each.
        raise ValueError(f"the worker's Redis client times out after {timeout}s, shorter than RQ's wait for work; "
                         f"give it socket_timeout={QUEUE_SOCKET_TIMEOUT_S} (or none)")
    names = queue_names or [spec.name for spec in BY_PRIORITY]
    specs = [spec for spec in BY_PRIORITY if spec.name in names]
    unknown = set(names) - {spec.name for spec in specs}
    if unknown:
        raise ValueError(f"unknown queues {sorted(unknown)}; known: {[spec.name for spec in BY_PRIORITY]}")
    worker = SimpleWorker([queue(conn, spec) for spec in specs], connection=conn, serializer=JSONSerializer,
                          maintenance_interval=MAINTENANCE_INTERVAL_S, worker_ttl=WORKER_TTL_S)
    worker.push_exc_handler(tell_the_requester)  # every failure ends in a message its requester sees
    return worker


def run(context: runtime.WorkerContext, *, queue_names: list[str] | None = None, burst: bool = False,
        queue_conn: redis.Redis | None = None, heartbeat_every_s: float = WORKER_HEARTBEAT_EVERY_S,
        heartbeat_ttl_s: float = WORKER_HEARTBEAT_TTL_S) -> bool:
    """Install the context, load the model now (not on the first job), and work, beating a heartbeat meanwhile.
    `queue_conn`: RQ's own client (see `build_worker`), by default the context's."""
    runtime.install(context)
    context.model()
    stop = threading.Event()
    beat = threading.Thread(target=heartbeat, args=(context.conn, stop), name="worker-heartbeat", daemon=True,
                            kwargs={"every_s": heartbeat_every_s, "ttl_s": heartbeat_ttl_s})
    beat.start()
    try:
        # with_scheduler: retries with backoff are scheduled jobs, and someone must move them back onto the queue.
        worker = build_worker(context.conn if queue_conn is None else queue_conn, queue_names=queue_names)
        return worker.work(burst=burst, with_scheduler=True)
    finally:
        stop.set()
        context.conn.delete(worker_heartbeat_key(socket.gethostname(), os.getpid()))


def heartbeat(conn: redis.Redis, stop: threading.Event, *, every_s: float = WORKER_HEARTBEAT_EVERY_S,
              ttl_s: float = WORKER_HEARTBEAT_TTL_S) -> None:
    """Refresh this process's heartbeat key until `stop`; a thread, so it beats through a long job too. The key
    lapses `ttl_s` after the last beat: that long after a crash, `/forecast-status` and the healthcheck see the
    worker gone."""
    key = worker_heartbeat_key(socket.gethostname(), os.getpid())
    while True:
        try:
            conn.set(key, dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), px=int(ttl_s * 1000))
        except redis.RedisError as exc:  # Redis away for a moment: the next beat tries again
            log.warning("worker heartbeat not written: %s", exc)
        if stop.wait(every_s):
            return


def alive_on(conn: redis.Redis, host: str) -> int:
    """How many worker processes on `host` beat within their TTL (the container healthcheck)."""
    return sum(1 for _ in conn.scan_iter(worker_heartbeat_key(host), count=100))
