"""`forecaster worker`: load the model once, then run jobs in this process, highest-priority queue first."""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import socket
import threading

import redis
from rq import SimpleWorker
from rq.exceptions import AbandonedJobError
from rq.executions import Execution
from rq.job import Job
from rq.queue import Queue
from rq.serializers import JSONSerializer
from rq.worker import WorkerStatus

from jobs import abandoned, runtime
from jobs.client import queue
from jobs.failures import tell_the_requester
from jobs.keys import (
    EXECUTION_HEARTBEAT_EVERY_S,
    EXECUTION_HEARTBEAT_TTL_S,
    WORKER_HEARTBEAT_EVERY_S,
    WORKER_HEARTBEAT_TTL_S,
    worker_heartbeat_key,
)
from jobs.ledger import Ledger, open_ledger
from jobs.queues import BY_PRIORITY
from jobs.track_record import rebuild_reports

log = logging.getLogger(__name__)

# How often a worker waiting for work runs RQ's maintenance: its started-registry cleanup is what finds a job whose
# execution heartbeat lapsed (its worker died) and retries it. RQ's default is 10 minutes.
MAINTENANCE_INTERVAL_S = 10

# RQ waits for work with a blocking BLMOVE of `worker_ttl - 15` s and runs its maintenance only between those waits,
# so the wait is kept short (10 s) for the maintenance above to run on time; RQ's default (405 s) would leave a
# dead worker's job unnoticed for minutes. RQ wants its socket to outlast the wait by 10 s (rq's
# BaseWorker.dequeue_timeout and connection_timeout): the worker's RQ client gets this timeout from the start, as
# RQ's own CLI arranges; the jobs keep a client that gives up after a few seconds.
WORKER_TTL_S = 25
QUEUE_SOCKET_TIMEOUT_S = WORKER_TTL_S - 15 + 10
# RQ's scheduler child checks for a stop once a second (its interval): a request not honoured within this long was
# lost (see KeptAliveWorker.stop_scheduler) and is sent again.
SCHEDULER_STOP_WAIT_S = 2.0
SCHEDULER_STOP_TRIES = 5
# How long RQ's command subscription waits per read (KeptAliveWorker.subscribe): what a worker's exit waits at most.
PUBSUB_POLL_S = 1.0


class KeptAliveWorker(SimpleWorker):
    """RQ's SimpleWorker (no fork: CUDA and the loaded model stay in this process) whose running job's execution
    is booked only EXECUTION_HEARTBEAT_TTL_S ahead and re-booked by a thread while the job runs.

    SimpleWorker books an execution for the job's whole timeout + 60 s and never refreshes it, so after a crash RQ's
    registry cleanup saw the job abandoned only that long after (17 min for a forecast, 2 h for a digest). Here the
    booking lapses within EXECUTION_HEARTBEAT_TTL_S of the process dying, and the next maintenance of any worker
    (every MAINTENANCE_INTERVAL_S, busy or waiting, whatever queues it listens to: jobs.abandoned) marks the job
    abandoned and retries it. The thread beats with RQ's own `maintain_heartbeats`, as RQ's forking Worker does for
    its work horse."""

    execution_beat_every_s: float = EXECUTION_HEARTBEAT_EVERY_S
    execution_ttl_s: int = EXECUTION_HEARTBEAT_TTL_S
    # While a job runs, other workers' abandoned jobs are looked for this often (jobs.abandoned).
    abandoned_every_s: float = MAINTENANCE_INTERVAL_S

    def get_heartbeat_ttl(self, job: Job, working_time: float = 0.0) -> int:
        return self.execution_ttl_s

    def subscribe(self) -> None:
        """RQ's own subscription (commands such as stop-job), polled every PUBSUB_POLL_S instead of RQ's 60 s:
        redis-py 8's `PubSubWorkerThread.stop()` waits for the poll under way to end, so with RQ's poll every
        worker's exit (a restart, `forecaster up` stopping, a burst run) took up to a minute."""
        self.log.info("Worker %s: subscribing to channel %s", self.name, self.pubsub_channel_name)
        self.pubsub = self.connection.pubsub()
        self.pubsub.subscribe(**{self.pubsub_channel_name: self.handle_payload})
        self.pubsub_thread = self.pubsub.run_in_thread(sleep_time=PUBSUB_POLL_S, daemon=True,
                                                       exception_handler=self._pubsub_exception_handler)

    def clean_registries(self) -> None:
        super().clean_registries()
        abandoned.end_abandoned(self, abandoned.others(self))  # e.g. a dead trainer's retrain (jobs.abandoned)

    def execute_job(self, job: Job, queue: Queue) -> None:
        execution = self.prepare_execution(job)
        stop = threading.Event()
        beat = threading.Thread(target=self._beat_while_running, args=(job, execution, stop),
                                name="execution-heartbeat", daemon=True)
        reaper = threading.Thread(target=abandoned.while_running, args=(self, stop, self.abandoned_every_s),
                                  name="abandoned-jobs", daemon=True)
        beat.start()
        reaper.start()
        try:
            self.perform_job(job, queue, execution)
        finally:
            stop.set()
            beat.join()
            reaper.join()
        self.set_state(WorkerStatus.IDLE)

    def stop_scheduler(self) -> None:
        """Stop RQ's scheduler child, asking again until it is gone.

        The child (a fork of this worker) installs its own SIGTERM handler only once it runs; a SIGTERM that lands
        before (a burst worker ending right after its maintenance forked the scheduler) meets the handler inherited
        from this worker and is lost, and RQ's own stop then joins the child forever. Repeated until it exits; a
        child that still has not after SCHEDULER_STOP_TRIES is killed."""
        process = self.scheduler._process if self.scheduler else None
        if process is None or not process.pid:
            return
        for _ in range(SCHEDULER_STOP_TRIES):
            try:
                os.kill(process.pid, signal.SIGTERM)
            except OSError:  # already gone
                pass
            process.join(timeout=SCHEDULER_STOP_WAIT_S)
            if not process.is_alive():
                return
        log.warning("RQ's scheduler (pid %s) ignored %d requests to stop; killing it", process.pid,
                    SCHEDULER_STOP_TRIES)
        process.kill()
        process.join()

    def _beat_while_running(self, job: Job, execution: Execution, stop: threading.Event) -> None:
        while not stop.wait(self.execution_beat_every_s):
            try:
                self.maintain_heartbeats(job, execution)
            except Exception as exc:  # noqa: BLE001 - a thread that died would let a live job be taken for dead
                log.warning("execution heartbeat of job %s not written (the next beat tries again): %s", job.id, exc)


def retry_abandoned_at_once(job: Job, exc_type: type[BaseException] | None, exc_value: BaseException | None,
                            traceback: object) -> bool:
    """RQ exception handler: a job abandoned by a dead worker is retried now, at the front of its queue, not after
    its queue's backoff.

    The backoff lets a passing fault pass; a dead worker is not one (another is waiting), and a backoff retry also
    waits for RQ's scheduler, whose lock the dead worker may have held for another minute. RQ reads this attempt's
    interval from `retry_intervals` right after the handlers run; later attempts keep theirs."""
    if exc_type is not None and issubclass(exc_type, AbandonedJobError) and job.retries_left and job.retry_intervals:
        intervals = list(job.retry_intervals)
        intervals[max(len(intervals) - job.retries_left, 0)] = 0  # the index rq's Job.get_retry_interval reads
        job.retry_intervals = intervals
        job.enqueue_at_front_on_retry = True  # it was taken once: not behind everything queued since
    return True


def build_worker(conn: redis.Redis, *, queue_names: list[str] | None = None) -> KeptAliveWorker:
    """A KeptAliveWorker (a SimpleWorker whose crash is noticed in seconds), JSON serializer, priority order.
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
    worker = KeptAliveWorker([queue(conn, spec) for spec in specs], connection=conn, serializer=JSONSerializer,
                             maintenance_interval=MAINTENANCE_INTERVAL_S, worker_ttl=WORKER_TTL_S)
    worker.push_exc_handler(retry_abandoned_at_once)
    worker.push_exc_handler(tell_the_requester)  # every failure ends in a message its requester sees
    return worker


def run(context: runtime.WorkerContext, *, queue_names: list[str] | None = None, burst: bool = False,
        queue_conn: redis.Redis | None = None, heartbeat_every_s: float = WORKER_HEARTBEAT_EVERY_S,
        heartbeat_ttl_s: float = WORKER_HEARTBEAT_TTL_S) -> bool:
    """Install the context, load the model now (not on the first job), and work, beating a heartbeat meanwhile.
    `queue_conn`: RQ's own client (see `build_worker`), by default the context's."""
    runtime.install(context)
    if context.serves:  # a trainer (serves=False) loads a model only to evaluate, and frees it after each retrain
        context.model()
        catch_up_track_reports(open_ledger(context.settings))
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


def catch_up_track_reports(store: Ledger) -> list[str]:
    """Recompute the stored `/track` reports that are missing or stale, before the first job: a ledger from a
    release before they were stored, a worker that died between a write and its recompute. One query when all
    are current. Never fatal: a worker that cannot reach the ledger still serves forecasts (each is logged)."""
    try:
        rebuilt = rebuild_reports(store)
    except Exception:  # noqa: BLE001
        log.exception("could not bring the stored track reports up to date; the weekly summary tries again")
        return []
    if rebuilt:
        log.info("track reports brought up to date: %s", ", ".join(rebuilt))
    return rebuilt


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
