"""Enqueueing, for the bot and the scheduler: by dotted path (the enqueuing side never imports torch), JSON
serialized (never pickle from Redis), deduplicated by job id."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, fields
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.keys import DELIVERY_TTL_S, delivery_key, digest_job_id, forecast_job_id, retrain_job_id, summary_job_id
from jobs.queues import BATCH, BY_PRIORITY, INTERACTIVE, TRAINING, QueueSpec

FORECAST_TASK = "jobs.tasks.forecast_job"
DIGEST_TASK = "jobs.tasks.digest_job"
SUMMARY_TASK = "jobs.summary.summary_job"
RETRAIN_TASK = "jobs.retraining.retrain_job"


@dataclass(frozen=True)
class ForecastRequest:
    """What `/forecast` asks for, as plain JSON-able data."""

    ticker: str
    channel: str
    user: str
    as_of: dt.date | None = None
    weeks: int = 3
    financials: bool = True
    response_url: str | None = None
    thread_ts: str | None = None

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # flat: asdict's deep copy is not needed
        data["as_of"] = self.as_of.isoformat() if self.as_of else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> ForecastRequest:
        as_of = dt.date.fromisoformat(data["as_of"]) if data.get("as_of") else None
        return cls(**{**data, "as_of": as_of})


class QueueFull(Exception):
    """The queue already holds as many waiting jobs as the client allows; `str(e)` says which and how many."""


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    status: Literal["queued", "duplicate"]
    ahead: int  # jobs before it in its queue (0 when it is next or already running/done)
    job_status: str  # RQ's status of the job now: queued, started, finished, failed...


def queue(conn: redis.Redis, spec: QueueSpec) -> Queue:
    return Queue(spec.name, connection=conn, serializer=JSONSerializer)


def fast_connection(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """A Redis client that gives up quickly: a user waiting on an ack hears "could not queue" within about a
    second instead of after redis-py's default retries with backoff."""
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                retry=RedisRetry(NoBackoff(), 0))


class JobsClient:
    def __init__(self, conn: redis.Redis, *, now: dt.datetime | None = None, max_depth: int | None = None) -> None:
        """`max_depth`: refuse (QueueFull) a new job when that many already wait in its queue; None: no limit."""
        self._conn = conn
        self._now = now
        self._max_depth = max_depth

    def forecast(self, request: ForecastRequest, *, replace_failed: bool = False,
                 delivery: str | None = None) -> Enqueued:
        """`replace_failed`: when the same request failed earlier (and is kept as failed for FAILURE_TTL_S), drop
        that failed job and queue the request again, instead of answering "duplicate". `delivery`: the Slack
        command's trigger_id, remembered with the job id (see `delivered`)."""
        now = self._now or dt.datetime.now(dt.UTC)
        job_id = forecast_job_id(ticker=request.ticker, as_of=request.as_of, weeks=request.weeks,
                                 financials=request.financials, channel=request.channel, now=now)
        kwargs = {"request": request.to_json()}
        outcome = self._enqueue(INTERACTIVE, FORECAST_TASK, job_id, kwargs, delivery=delivery)
        if replace_failed and outcome.status == "duplicate" and outcome.job_status == "failed":
            Job.fetch(job_id, connection=self._conn, serializer=JSONSerializer).delete()
            outcome = self._enqueue(INTERACTIVE, FORECAST_TASK, job_id, kwargs, delivery=delivery)
        return outcome

    def digest(self, *, channel: str, as_of: dt.date, weeks: int = 3, delivery: str | None = None) -> Enqueued:
        """The Dow30 digest for the week after `as_of`, once per channel and date."""
        job_id = digest_job_id(channel=channel, as_of=as_of)
        return self._enqueue(BATCH, DIGEST_TASK, job_id,
                             {"channel": channel, "as_of": as_of.isoformat(), "weeks": weeks}, delivery=delivery)

    def delivered(self, delivery: str) -> Enqueued | None:
        """What an earlier delivery of the same Slack command (same trigger_id) queued, if it queued anything and
        that job still exists: a redelivery is answered from it instead of enqueueing again."""
        raw = self._conn.get(delivery_key(delivery))
        if raw is None:
            return None
        try:
            job = Job.fetch(raw.decode(), connection=self._conn, serializer=JSONSerializer)
        except NoSuchJobError:
            return None
        spec = next((spec for spec in BY_PRIORITY if spec.name == job.origin), None)
        position = self._conn.lpos(queue(self._conn, spec).key, job.id) if spec else None
        return Enqueued(job.id, "duplicate", position or 0, _status(job))

    def summary(self, *, channel: str, week_ending: dt.date) -> Enqueued:
        """The evaluation summary of the track record up to the week that closed before `week_ending` (a
        Saturday, normally), once per channel and ISO week."""
        job_id = summary_job_id(channel=channel, week_ending=week_ending)
        return self._enqueue(BATCH, SUMMARY_TASK, job_id, {"channel": channel, "week_ending": week_ending.isoformat()})

    def retrain(self, *, channel: str, user: str, epochs: float | None = None, force: bool = False,
                thread_ts: str | None = None, delivery: str | None = None) -> Enqueued:
        """A retrain, unless one is already queued or running: then that one is returned as the duplicate."""
        active = self.active_retrain()
        if active is not None:
            job = Job.fetch(active, connection=self._conn, serializer=JSONSerializer)
            return Enqueued(active, "duplicate", 0, _status(job))
        now = self._now or dt.datetime.now(dt.UTC)
        return self._enqueue(TRAINING, RETRAIN_TASK, retrain_job_id(now=now),
                             {"channel": channel, "user": user, "epochs": epochs, "force": force,
                              "thread_ts": thread_ts}, delivery=delivery)

    def active_retrain(self) -> str | None:
        """The id of a retrain job that is queued or running, if any."""
        q = queue(self._conn, TRAINING)
        ids = list(q.started_job_registry.get_job_ids()) + list(q.get_job_ids())
        return ids[0] if ids else None

    def _enqueue(self, spec: QueueSpec, task: str, job_id: str, kwargs: dict, *,
                 delivery: str | None = None) -> Enqueued:
        """Two round trips on the way in: the unique enqueue (RQ's Lua script), then one pipeline with RQ's
        queue registration, the job's place in line and the delivery. Every round trip counts when a burst
        of commands waits on one bot process (tests/bench/test_ack_latency.py)."""
        q = queue(self._conn, spec)
        retry = Retry(max=spec.retries, interval=list(spec.retry_intervals_s)) if spec.retries else None
        pipe = self._conn.pipeline(transaction=False)  # RQ adds its queue registration; the script runs at once
        try:
            job = q.enqueue_call(task, kwargs=kwargs, job_id=job_id, unique=True, timeout=spec.timeout_s,
                                 result_ttl=spec.result_ttl_s, failure_ttl=spec.failure_ttl_s, retry=retry,
                                 pipeline=pipe)
            status: Literal["queued", "duplicate"] = "queued"
        except DuplicateJobError:
            job = Job.fetch(job_id, connection=self._conn, serializer=JSONSerializer)
            status = "duplicate"
        pipe.lpos(q.key, job.id)
        if delivery:
            pipe.set(delivery_key(delivery), job.id, ex=DELIVERY_TTL_S)
        position = pipe.execute()[-2 if delivery else -1]
        # The depth limit, checked after the fact (no extra round trip when there is room): a new job that found
        # `max_depth` jobs ahead of it is taken back, unless a worker already took it (then the queue moves).
        if status == "queued" and self._max_depth is not None and (position or 0) >= self._max_depth:
            if self._conn.lrem(q.key, 1, job.id):
                job.delete(remove_from_queue=False)
                raise QueueFull(f"the {spec.name} queue already holds {position} jobs (limit {self._max_depth})")
        # A job just enqueued is "queued" (no need to ask Redis again); a duplicate may be anywhere by now.
        return Enqueued(job.id, status, position or 0, _status(job, refresh=status == "duplicate"))


def _status(job: Job, *, refresh: bool = True) -> str:
    """RQ's status as its plain value ("queued", "finished"…): str() of the enum gives "JobStatus.QUEUED"."""
    status = job.get_status(refresh=refresh)
    return getattr(status, "value", str(status))
