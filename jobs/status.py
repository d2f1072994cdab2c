"""What `/forecast-status` shows, read from Redis: queue depths, serving workers and trainers, a running
retrain's progress, the served model, the last scheduled posts, and the asking user's own pending jobs.

Reads only (RQ's registries are read without their cleanup pass; `Worker.all` does drop the registration of a
worker whose key has expired, RQ's own bookkeeping) and torch-free: the bot calls this inside its 3-second ack.
The result is plain JSON-able data, so the bot's layout code needs nothing from `jobs`.

A worker is alive while its own heartbeat key exists (jobs.worker.heartbeat, a thread beating through long jobs).
RQ's registration is no proof: a killed worker stays registered, in its last state ("busy"), for minutes. A trainer
(`forecaster trainer`) is an RQ worker of the training queue with the same heartbeat; RQ's registration says which
queues each process listens to, which tells the two apart.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import redis
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.client import DIGEST_TASK, FORECAST_TASK, RETRAIN_TASK, SUMMARY_TASK, queue, running_job_ids
from jobs.keys import last_run_key, served_model_key, worker_heartbeat_key
from jobs.queues import BY_PRIORITY, INTERACTIVE, TRAINING
from jobs.retrain_progress import read_progress

# A user's pending jobs are looked for among the first this-many queued jobs of each queue (the ack stays fast
# however long a queue grows; the status says when it looked at only part of one).
SCAN_LIMIT = 200


@dataclass(frozen=True)
class QueueState:
    name: str
    queued: int
    running: int
    failed: int  # kept in RQ's failed registry (FAILURE_TTL_S)


@dataclass(frozen=True)
class WorkerState:
    name: str
    state: str  # busy, idle, suspended, started...
    current_job: str | None
    last_heartbeat: str | None  # ISO, UTC
    queues: tuple[str, ...] = ()  # what it listens to: a trainer's is ("training",)


@dataclass(frozen=True)
class PendingJob:
    job_id: str
    what: str  # "forecast AXP (as of 2024-03-15)", "retrain"
    status: str  # queued or started
    position: int | None  # 0-based place in its queue while queued


@dataclass(frozen=True)
class Status:
    queues: list[QueueState]
    workers: list[WorkerState]  # serving workers alive: their heartbeat is current
    lost: list[WorkerState]  # still registered with RQ, but no heartbeat: crashed or hung (their last state)
    trainers: list[WorkerState]  # alive consumers of the training queue (`forecaster trainer`)
    retrain: dict[str, str] | None  # the running retrain's progress (jobs.retrain_progress.FIELDS); None: none runs
    served: dict[str, str] | None  # model, adapter, since (worker) as the workers published it; None: never
    last_digest: str | None  # ISO timestamps of the last scheduled posts
    last_summary: str | None
    mine: list[PendingJob]
    scanned_everything: bool  # False: some queue was longer than SCAN_LIMIT, `mine` may miss jobs further back

    def to_json(self) -> dict:
        return asdict(self)


def describe_job(job: Job) -> str:
    kwargs = job.kwargs or {}
    if job.func_name == FORECAST_TASK:
        request = kwargs.get("request") or {}
        when = f" as of {request['as_of']}" if request.get("as_of") else ""
        return f"forecast {request.get('ticker', '?')}{when}"
    if job.func_name == DIGEST_TASK:
        return f"Dow30 digest as of {kwargs.get('as_of', '?')}"
    if job.func_name == SUMMARY_TASK:
        return "weekly evaluation summary"
    if job.func_name == RETRAIN_TASK:
        return "retrain"
    return job.func_name or "job"


def requested_by(job: Job) -> str | None:
    kwargs = job.kwargs or {}
    return (kwargs.get("request") or {}).get("user") or kwargs.get("user")


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None


def _beats(conn: redis.Redis, hosts_and_pids: list[tuple[str | None, int | None]]) -> list[str | None]:
    """Each (hostname, pid) worker's last heartbeat (ISO, UTC), None when its key has lapsed; one round trip."""
    with conn.pipeline(transaction=False) as pipe:
        for host, pid in hosts_and_pids:
            pipe.get(worker_heartbeat_key(host or "?", pid if pid is not None else "?"))
        return [_text(beat) for beat in pipe.execute()]


def workers_alive(conn: redis.Redis, *, queue_name: str = INTERACTIVE.name, host: str | None = None) -> int:
    """How many registered workers listening to `queue_name` (by default the forecasts': serving workers; TRAINING's
    name: trainers), on `host` if given, have a current heartbeat. Cheap enough for every ack: three round trips."""
    keys = Worker.all_keys(connection=conn)
    if not keys:
        return 0
    with conn.pipeline(transaction=False) as pipe:
        for key in keys:
            pipe.hmget(key, "hostname", "pid", "queues")
        registered = [(_text(h), int(pid) if pid else None) for h, pid, names in pipe.execute()
                      if queue_name in (_text(names) or "").split(",") and (host is None or _text(h) == host)]
    if not registered:
        return 0
    return sum(beat is not None for beat in _beats(conn, registered))


def read_status(conn: redis.Redis, *, user: str) -> Status:
    queues, mine, complete = [], [], True
    for spec in BY_PRIORITY:
        q = queue(conn, spec)
        queued_ids = q.get_job_ids(0, SCAN_LIMIT)
        started_ids = list(dict.fromkeys(q.started_job_registry.get_job_ids(cleanup=False)))
        depth = q.count
        complete = complete and depth <= SCAN_LIMIT
        queues.append(QueueState(spec.name, depth, len(started_ids),
                                 int(conn.zcard(q.failed_job_registry.key))))
        candidates = [(job_id, "started", None) for job_id in started_ids]
        candidates += [(job_id, "queued", n) for n, job_id in enumerate(queued_ids)]
        jobs = Job.fetch_many([c[0] for c in candidates], connection=conn, serializer=JSONSerializer)
        for (job_id, status, position), job in zip(candidates, jobs, strict=True):
            if job is not None and requested_by(job) == user:
                mine.append(PendingJob(job_id, describe_job(job), status, position))
    registered = sorted(Worker.all(connection=conn, serializer=JSONSerializer), key=lambda w: w.name)
    beats = _beats(conn, [(w.hostname, w.pid) for w in registered])
    workers, lost, trainers = [], [], []
    for w, beat in zip(registered, beats, strict=True):
        # A lost worker's last sign of life is RQ's own heartbeat (SimpleWorker sends none during a job).
        last = beat or (w.last_heartbeat.isoformat(timespec="seconds") if w.last_heartbeat else None)
        names = tuple(w.queue_names())
        state = WorkerState(w.name, w.get_state(), w.get_current_job_id(), last, names)
        if beat is None:
            lost.append(state)
        elif INTERACTIVE.name not in names and TRAINING.name in names:
            trainers.append(state)
        else:
            workers.append(state)
    served = {k.decode(): v.decode() for k, v in conn.hgetall(served_model_key()).items()} or None
    return Status(queues=queues, workers=workers, lost=lost, trainers=trainers, retrain=_running_retrain(conn),
                  served=served,
                  last_digest=_text(conn.get(last_run_key("digest"))),
                  last_summary=_text(conn.get(last_run_key("summary"))), mine=mine, scanned_everything=complete)


def _running_retrain(conn: redis.Redis) -> dict[str, str] | None:
    """The published progress, if its job is still running: a killed trainer's last record is not a retrain in
    progress (its booking lapses half a minute after the trainer dies; jobs.client.running_job_ids)."""
    progress = read_progress(conn)
    if progress is None:
        return None
    return progress if progress.get("job_id") in running_job_ids(conn, TRAINING) else None
