"""Enqueueing, for the bot and the scheduler: by dotted path (the enqueuing side never imports torch), JSON
serialized (never pickle from Redis), deduplicated by job id."""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError
from rq.job import Job
from rq.serializers import JSONSerializer

from jobs.keys import digest_job_id, forecast_job_id, retrain_job_id, summary_job_id
from jobs.queues import BATCH, INTERACTIVE, TRAINING, QueueSpec

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
        data = asdict(self)
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

    def forecast(self, request: ForecastRequest, *, replace_failed: bool = False) -> Enqueued:
        """`replace_failed`: when the same request failed earlier (and is kept as failed for FAILURE_TTL_S), drop
        that failed job and queue the request again, instead of answering "duplicate"."""
        now = self._now or dt.datetime.now(dt.UTC)
        job_id = forecast_job_id(ticker=request.ticker, as_of=request.as_of, weeks=request.weeks,
                                 financials=request.financials, channel=request.channel, now=now)
        outcome = self._enqueue(INTERACTIVE, FORECAST_TASK, job_id, {"request": request.to_json()})
        if replace_failed and outcome.status == "duplicate" and outcome.job_status == "failed":
            Job.fetch(job_id, connection=self._conn, serializer=JSONSerializer).delete()
            outcome = self._enqueue(INTERACTIVE, FORECAST_TASK, job_id, {"request": request.to_json()})
        return outcome

    def digest(self, *, channel: str, as_of: dt.date, weeks: int = 3) -> Enqueued:
        """The Dow30 digest for the week after `as_of`, once per channel and date."""
        job_id = digest_job_id(channel=channel, as_of=as_of)
        return self._enqueue(BATCH, DIGEST_TASK, job_id,
                             {"channel": channel, "as_of": as_of.isoformat(), "weeks": weeks})

    def summary(self, *, channel: str, week_ending: dt.date) -> Enqueued:
        """The evaluation summary of the track record up to the week that closed before `week_ending` (a
        Saturday, normally), once per channel and ISO week."""
        job_id = summary_job_id(channel=channel, week_ending=week_ending)
        return self._enqueue(BATCH, SUMMARY_TASK, job_id, {"channel": channel, "week_ending": week_ending.isoformat()})

    def retrain(self, *, channel: str, user: str, epochs: float | None = None, force: bool = False,
                thread_ts: str | None = None) -> Enqueued:
        """A retrain, unless one is already queued or running: then that one is returned as the duplicate."""
        active = self.active_retrain()
        if active is not None:
            job = Job.fetch(active, connection=self._conn, serializer=JSONSerializer)
            return Enqueued(active, "duplicate", 0, _status(job))
        now = self._now or dt.datetime.now(dt.UTC)
        return self._enqueue(TRAINING, RETRAIN_TASK, retrain_job_id(now=now),
                             {"channel": channel, "user": user, "epochs": epochs, "force": force,
                              "thread_ts": thread_ts})

    def active_retrain(self) -> str | None:
        """The id of a retrain job that is queued or running, if any."""
        q = queue(self._conn, TRAINING)
        ids = list(q.started_job_registry.get_job_ids()) + list(q.get_job_ids())
        return ids[0] if ids else None

    def _enqueue(self, spec: QueueSpec, task: str, job_id: str, kwargs: dict) -> Enqueued:
        q = queue(self._conn, spec)
        # A soft limit (count, then enqueue): a request already queued is still answered as a duplicate.
        if self._max_depth is not None and q.count >= self._max_depth and not Job.exists(job_id, self._conn):
            raise QueueFull(f"the {spec.name} queue already holds {q.count} jobs (limit {self._max_depth})")
        retry = Retry(max=spec.retries, interval=list(spec.retry_intervals_s)) if spec.retries else None
        try:
            job = q.enqueue_call(task, kwargs=kwargs, job_id=job_id, unique=True, timeout=spec.timeout_s,
                                 result_ttl=spec.result_ttl_s, failure_ttl=spec.failure_ttl_s, retry=retry)
            status: Literal["queued", "duplicate"] = "queued"
        except DuplicateJobError:
            job = Job.fetch(job_id, connection=self._conn, serializer=JSONSerializer)
            status = "duplicate"
        position = q.get_job_position(job.id)
        return Enqueued(job.id, status, position or 0, _status(job))


def _status(job: Job) -> str:
    """RQ's status as its plain value ("queued", "finished"…): str() of the enum gives "JobStatus.QUEUED"."""
    status = job.get_status(refresh=True)
    return getattr(status, "value", str(status))
