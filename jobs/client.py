"""Enqueueing, for the bot and the scheduler: by dotted path (the enqueuing side never imports torch), JSON
serialized (never pickle from Redis), deduplicated by job id.

When Redis fails, the caller is told which of two things happened, because the user is told the same:
`NotQueued` when the failure came before the write that creates the job was sent (Redis refused the connection,
or the connection never got ready), so nothing was queued; `QueueingUnconfirmed` when the write was sent and no
answer came (a stall longer than the client's timeout, a connection dropped mid-command): the job may exist, and
may run. A stalled Redis that is merely busy executes the write when it catches up, so "not queued" would then be
false. Both are `redis.RedisError`s, so callers that only retry on Redis errors (the scheduler) keep working.
"""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import dataclass, fields
from functools import cache
from typing import Literal

import redis
from redis.backoff import NoBackoff
from redis.connection import parse_url
from redis.retry import Retry as RedisRetry
from rq import Queue, Retry
from rq.exceptions import DuplicateJobError, NoSuchJobError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.utils import current_timestamp

from jobs.attempts import may_run_again
from jobs.gates import admit
from jobs.keys import (
    DELIVERY_TTL_S,
    LIVE_DEDUPE_WINDOW_S,
    delivery_key,
    digest_job_id,
    forecast_job_id,
    live_window_key,
    retrain_job_id,
    summary_job_id,
    watch_job_id,
)
from jobs.queues import BATCH, BY_PRIORITY, INTERACTIVE, TRAINING, QueueSpec

FORECAST_TASK = "jobs.tasks.forecast_job"
DIGEST_TASK = "jobs.tasks.digest_job"
SUMMARY_TASK = "jobs.summary.summary_job"
RETRAIN_TASK = "jobs.retraining.retrain_job"
WATCH_TASK = "jobs.watch.watch_add_job"

log = logging.getLogger(__name__)

# A live request's dedupe window (jobs.keys.live_window_key): the id of the window open, else this ask's id, which
# opens one for ARGV[2] ms. Atomic, so two asks at once get one id.
_LIVE_WINDOW = """
local held = redis.call('GET', KEYS[1])
if held then return held end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return ARGV[1]
"""


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
    # When it was asked (aware): with `as_of`, what the forecast may know and so which week it is for
    # (engine.market.weeks.request_week), the same for the acknowledgement and the answer. None: when the job runs.
    asked_at: dt.datetime | None = None

    def to_json(self) -> dict:
        data = {f.name: getattr(self, f.name) for f in fields(self)}  # flat: asdict's deep copy is not needed
        data["as_of"] = self.as_of.isoformat() if self.as_of else None
        data["asked_at"] = self.asked_at.isoformat() if self.asked_at else None
        return data

    @classmethod
    def from_json(cls, data: dict) -> ForecastRequest:
        as_of = dt.date.fromisoformat(data["as_of"]) if data.get("as_of") else None
        asked_at = dt.datetime.fromisoformat(data["asked_at"]) if data.get("asked_at") else None
        return cls(**{**data, "as_of": as_of, "asked_at": asked_at})


class QueueFull(Exception):
    """The queue already holds as many waiting jobs as the client allows; `str(e)` says which and how many."""


class TooManyPending(Exception):
    """The requester already has `pending` requests queued or running, the most one person may (`limit`): nothing
    was queued."""

    def __init__(self, pending: int, limit: int) -> None:
        super().__init__(f"{pending} requests of this person pending (limit {limit})")
        self.pending, self.limit = pending, limit


class NotQueued(redis.RedisError):
    """Redis failed before anything that could create the job was sent: nothing was queued, asking again is safe."""

    def __init__(self, job_id: str | None, cause: redis.RedisError) -> None:
        super().__init__(f"{job_id or 'job'} not queued: {type(cause).__name__}")
        self.job_id = job_id


class QueueingUnconfirmed(redis.RedisError):
    """The write that creates the job (or changes it) was sent, and Redis did not answer: the job may exist."""

    def __init__(self, job_id: str | None, cause: redis.RedisError) -> None:
        super().__init__(f"{job_id or 'job'} may or may not be queued: {type(cause).__name__}")
        self.job_id = job_id


# Everything an enqueue raises when the request was not queued, or may not have been: each says what the requester
# is to be told (the bot's `Commands._refused`).
REFUSALS = (QueueFull, TooManyPending, NotQueued, QueueingUnconfirmed)


@dataclass(frozen=True)
class Enqueued:
    job_id: str
    status: Literal["queued", "duplicate"]
    ahead: int | None  # jobs before it in its queue (0 when it is next or already running/done); None: not known
    job_status: str  # RQ's status of the job now: queued, started, finished, failed...; "unknown": not read
    # A duplicate whose attempt ended without an answer (jobs/attempts.py): asked again, it runs again.
    may_run_again: bool = False


def queue(conn: redis.Redis, spec: QueueSpec) -> Queue:
    return Queue(spec.name, connection=conn, serializer=JSONSerializer)


def fast_connection(url: str, *, timeout_s: float = 1.0) -> redis.Redis:
    """A Redis client that gives up quickly: a user waiting on an ack hears what happened within about a second
    instead of after redis-py's default retries with backoff. Its errors raised while connecting are marked (see
    `sent_nothing`), so the job client can tell "nothing was sent" from "sent, no answer"."""
    base = parse_url(url).get("connection_class", redis.Connection)  # TCP, TLS or Unix socket, as the URL says
    return redis.Redis.from_url(url, socket_connect_timeout=timeout_s, socket_timeout=timeout_s,
                                retry=RedisRetry(NoBackoff(), 0), connection_class=_marking_connects(base))


@cache
def _marking_connects(base: type[redis.Connection]) -> type[redis.Connection]:
    class MarksConnectErrors(base):  # type: ignore[misc, valid-type]
        """Every command goes through `connect_check_health` when its connection is not yet open (the socket
        connect and the handshake): an error raised there came before any of the caller's command was written."""

        def connect_check_health(self, *args, **kwargs):  # redis-py 8's connect path, shared by pool and send
            try:
                return super().connect_check_health(*args, **kwargs)
            except redis.RedisError as exc:
                exc.sent_nothing = True  # type: ignore[attr-defined]
                raise

    MarksConnectErrors.__name__ = MarksConnectErrors.__qualname__ = f"MarksConnectErrors{base.__name__}"
    return MarksConnectErrors


def sent_nothing(exc: BaseException) -> bool:
    """Whether a Redis error came while connecting, before the command was written (only a `fast_connection`
    marks them: on any other client every failure counts as "maybe sent")."""
    return bool(getattr(exc, "sent_nothing", False))


def _failed_write(job_id: str | None, exc: redis.RedisError) -> redis.RedisError:
    return NotQueued(job_id, exc) if sent_nothing(exc) else QueueingUnconfirmed(job_id, exc)


class JobsClient:
    def __init__(self, conn: redis.Redis, *, now: dt.datetime | None = None, max_depth: int | None = None,
                 max_pending_per_user: int | None = None, live_window_s: float = LIVE_DEDUPE_WINDOW_S) -> None:
        """`max_depth`: refuse (QueueFull) a new job when that many already wait in its queue; None: no limit.
        `max_pending_per_user`: refuse (TooManyPending) a new forecast when its requester already has that many
        pending; None: no limit. `live_window_s`: how long the same live forecast asked again is the same job
        (jobs.keys)."""
        self._conn = conn
        self._now = now
        self._max_depth = max_depth
        self._max_pending_per_user = max_pending_per_user
        self._live_window_ms = int(live_window_s * 1000)

    def forecast(self, request: ForecastRequest, *, again: bool = False, delivery: str | None = None) -> Enqueued:
        """`again`: a person asked (jobs/attempts.py): when the same request ended without an answer (it failed,
        or its data did), it runs again as a new attempt instead of being answered as a duplicate. `delivery`:
        the Slack command's trigger_id, remembered with the job id (see `delivered`)."""
        now = self._now or dt.datetime.now(dt.UTC)
        job_id = forecast_job_id(ticker=request.ticker, as_of=request.as_of, weeks=request.weeks,
                                 financials=request.financials, channel=request.channel, now=now)
        if request.as_of is None:
            job_id = self._live_window(request, job_id)
        return self._ask(INTERACTIVE, FORECAST_TASK, job_id, {"request": request.to_json()}, again=again,
                         delivery=delivery, owner=request.user if self._max_pending_per_user else None)

    def digest(self, *, channel: str, as_of: dt.date, weeks: int = 3, again: bool = False,
               delivery: str | None = None, asked_at: dt.datetime | None = None,
               symbols: list[str] | None = None) -> Enqueued:
        """The digest for the week after `as_of`, once per channel and date: of the channel's watchlist
        `symbols`, or the Dow30 when None. `again`: as for `forecast` (the scheduler does not ask again: a restart
        never re-runs a scheduled digest that failed). `asked_at`: when a person asked (the week it is for depends
        on it when `as_of` is today: engine.market.weeks.request_week)."""
        job_id = digest_job_id(channel=channel, as_of=as_of, symbols=symbols)
        kwargs: dict = {"channel": channel, "as_of": as_of.isoformat(), "weeks": weeks}
        if asked_at is not None:
            kwargs["asked_at"] = asked_at.isoformat()
        if symbols:
            kwargs["symbols"] = list(symbols)
        return self._ask(BATCH, DIGEST_TASK, job_id, kwargs, again=again, delivery=delivery)

    def watch_add(self, *, channel: str, user: str, tickers: list[str], response_url: str | None,
                  delivery: str | None = None) -> Enqueued:
        """Check `tickers` with the market data sources and add the known ones to `channel`'s watchlist; the
        requester is told privately which were added and why any were not (jobs.watch)."""
        now = self._now or dt.datetime.now(dt.UTC)
        kwargs = {"channel": channel, "user": user, "tickers": list(tickers), "response_url": response_url}
        return self._enqueue(INTERACTIVE, WATCH_TASK, watch_job_id(channel=channel, user=user, now=now), kwargs,
                             delivery=delivery)

    def _ask(self, spec: QueueSpec, task: str, job_id: str, kwargs: dict, *, again: bool, delivery: str | None,
             owner: str | None = None) -> Enqueued:
        """The request's job, queued once; asked again after it ended without an answer, a new attempt replaces it
        (jobs/attempts.py). Two people re-asking the same ended request at the same moment may each replace it: one
        job remains."""
        outcome = self._enqueue(spec, task, job_id, kwargs, delivery=delivery, owner=owner)
        if again and outcome.status == "duplicate" and outcome.may_run_again:
            try:
                Job.fetch(job_id, connection=self._conn, serializer=JSONSerializer).delete()
            except NoSuchJobError:
                pass  # it lapsed meanwhile: nothing to replace
            except redis.RedisError as exc:
                raise _failed_write(job_id, exc) from exc
            log.info("%s asked again after it ended without an answer: a new attempt", job_id)
            outcome = self._enqueue(spec, task, job_id, kwargs, delivery=delivery, owner=owner)
        return outcome

    def _live_window(self, request: ForecastRequest, job_id: str) -> str:
        """The job id of the live request's open dedupe window, or `job_id`, opening one (jobs.keys). One round
        trip, before anything that could create a job: a failure here queued nothing."""
        key = live_window_key(ticker=request.ticker, weeks=request.weeks, financials=request.financials,
                              channel=request.channel)
        try:
            held = self._conn.eval(_LIVE_WINDOW, 1, key, job_id, self._live_window_ms)
        except redis.RedisError as exc:
            raise NotQueued(job_id, exc) from exc
        return held.decode() if isinstance(held, bytes) else held

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
        try:  # reads only: a failure here queued nothing
            active = self.active_retrain()
            job = Job.fetch(active, connection=self._conn, serializer=JSONSerializer) if active else None
        except NoSuchJobError:
            active = job = None  # it ended and lapsed between the two reads
        except redis.RedisError as exc:
            raise NotQueued(None, exc) from exc
        if active is not None and job is not None:
            return Enqueued(active, "duplicate", 0, _status(job))
        now = self._now or dt.datetime.now(dt.UTC)
        return self._enqueue(TRAINING, RETRAIN_TASK, retrain_job_id(now=now),
                             {"channel": channel, "user": user, "epochs": epochs, "force": force,
                              "thread_ts": thread_ts}, delivery=delivery)

    def active_retrain(self) -> str | None:
        """The id of a retrain job that is queued or running, if any. A retrain whose trainer died is not: its
        booking has lapsed, and any worker's maintenance ends it and tells its requester (jobs.abandoned)."""
        q = queue(self._conn, TRAINING)
        ids = running_job_ids(self._conn, TRAINING) + list(q.get_job_ids())
        return ids[0] if ids else None

    def _enqueue(self, spec: QueueSpec, task: str, job_id: str, kwargs: dict, *,
                 delivery: str | None = None, owner: str | None = None) -> Enqueued:
        """Two round trips on the way in: the unique enqueue (RQ's Lua script), then one pipeline with RQ's
        queue registration, the job's place in line, the delivery and, for a new job with an `owner` (the person
        who asked), their admission (`jobs.gates.admit`). Every round trip counts when a burst of commands waits
        on one bot process (tests/bench/test_ack_latency.py).

        Raises `NotQueued` / `QueueingUnconfirmed` (see the module's docstring) when the enqueue itself fails. Once
        the script has answered, the job's fate is known: a later failure (its place in line, the duplicate's
        status) only leaves those unknown (None, "unknown")."""
        q = queue(self._conn, spec)
        retry = Retry(max=spec.retries, interval=list(spec.retry_intervals_s)) if spec.retries else None
        try:
            # RQ reads the server version before its write, once per client; asked here, its failure is a
            # "nothing was sent" for sure.
            q.get_redis_server_version()
        except redis.RedisError as exc:
            raise NotQueued(job_id, exc) from exc
        pipe = self._conn.pipeline(transaction=False)  # RQ adds its queue registration; the script runs at once
        job: Job | None = None
        try:
            job = q.enqueue_call(task, kwargs=kwargs, job_id=job_id, unique=True, timeout=spec.timeout_s,
                                 result_ttl=spec.result_ttl_s, failure_ttl=spec.failure_ttl_s, retry=retry,
                                 pipeline=pipe)
            status: Literal["queued", "duplicate"] = "queued"
        except DuplicateJobError:
            status = "duplicate"
        except redis.RedisError as exc:
            raise _failed_write(job_id, exc) from exc
        admitting = status == "queued" and owner is not None and self._max_pending_per_user is not None
        try:
            if job is None:
                job = Job.fetch(job_id, connection=self._conn, serializer=JSONSerializer)
            pipe.lpos(q.key, job.id)
            if delivery:
                pipe.set(delivery_key(delivery), job.id, ex=DELIVERY_TTL_S)
            if admitting:
                admit(pipe, owner, job.id, limit=self._max_pending_per_user)
            answers = pipe.execute()
            position = answers[-2 - admitting if delivery else -1 - admitting]
            refused_by = answers[-1] if admitting and answers[-1] >= 0 else None
        except NoSuchJobError:  # the duplicate lapsed since the script saw it: a rare race, answered as queued-or-not
            raise QueueingUnconfirmed(job_id, redis.RedisError("the duplicate job vanished")) from None
        except redis.RedisError as exc:
            log.warning("%s %s, but its place in line is not known: Redis did not answer (%s)", job_id, status,
                        type(exc).__name__)
            return Enqueued(job_id, status, None, "queued" if status == "queued" else "unknown")
        # The limits, checked after the fact (no extra round trip when there is room): a new job that found
        # `max_depth` jobs ahead of it, or whose requester already had their share pending, is taken back, unless a
        # worker already took it (then it runs).
        full = status == "queued" and self._max_depth is not None and (position or 0) >= self._max_depth
        if (full or refused_by is not None) and self._take_back(q, job):
            if refused_by is not None:
                raise TooManyPending(refused_by, self._max_pending_per_user)
            raise QueueFull(f"the {spec.name} queue already holds {position} jobs (limit {self._max_depth})")
        # A job just enqueued is "queued"; a duplicate's status was read by the fetch above, a moment ago.
        job_status = _status(job, refresh=False)
        return Enqueued(job.id, status, position or 0, job_status,
                        may_run_again=status == "duplicate" and may_run_again(job_status, job.meta))

    def _take_back(self, q: Queue, job: Job) -> bool:
        """Remove a job just queued, unless a worker already took it: True when it was taken back."""
        try:
            taken_back = self._conn.lrem(q.key, 1, job.id)
            if taken_back:
                job.delete(remove_from_queue=False)
        except redis.RedisError as exc:
            raise QueueingUnconfirmed(job.id, exc) from exc
        return bool(taken_back)


def running_job_ids(conn: redis.Redis, spec: QueueSpec) -> list[str]:
    """The ids of `spec`'s jobs that a live worker runs: booked in RQ's started registry, the booking not lapsed
    (a worker beats it while the job runs; jobs.worker.KeptAliveWorker). Read only: RQ's cleanup would end a dead
    worker's job here, without our handlers (nobody would be told); a worker's maintenance does (jobs.abandoned)."""
    registry = queue(conn, spec).started_job_registry
    # Lapsed as RQ's cleanup counts it (an expiry at or before this whole second: rq's get_expired_job_ids).
    entries = conn.zrangebyscore(registry.key, f"({current_timestamp()}", "+inf")
    return list(dict.fromkeys(registry.parse_job_id(entry) for entry in entries))


def _status(job: Job, *, refresh: bool = True) -> str:
    """RQ's status as its plain value ("queued", "finished"…): str() of the enum gives "JobStatus.QUEUED"."""
    status = job.get_status(refresh=refresh)
    return getattr(status, "value", str(status))
