"""The slash commands: parse, check, enqueue, then ack with the real outcome. `register_listeners` is the one
wiring table, shared by HTTP mode and Socket Mode.

Nothing slow happens before the ack: parsing is pure, and Redis (a client with a ~1 s timeout) is reached only
through `jobs` (enqueue, admission checks, status reads), never a model or a data source. `/track` reads the
ledger's SQL within a 2 s deadline and never migrates it (`bot.ledger_reads`). An exception never
escapes a handler: the user gets a message saying what happened, and the log gets the traceback.

What the user is told when Redis fails is what is known: "nothing was queued, try again" only when nothing that
could queue the job was sent (`NotQueued`, or a failed read); "I could not confirm it was queued" when the write was
sent and Redis did not answer in time (`QueueingUnconfirmed`: a busy Redis runs it when it catches up). Every ack is
ephemeral, and no error text from an exception reaches the user (it may name server paths): the log has it.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

import redis
from slack_bolt import App, BoltRequest, BoltResponse

from bot import messages
from bot.commands import (
    INDEX_LOOKALIKES,
    DigestArgs,
    Help,
    UsageError,
    parse_digest,
    parse_forecast,
    parse_retrain,
    parse_status,
    parse_track,
    parse_watch,
)
from bot.ledger_reads import LedgerReads, LedgerUnavailable
from bot.track_blocks import track_message
from bot.watch import watch_command
from engine.market.weeks import NEW_YORK, request_week
from jobs.client import (
    REFUSALS,
    ForecastRequest,
    JobsClient,
    NotQueued,
    QueueFull,
    QueueingUnconfirmed,
    TooManyPending,
)
from jobs.gates import claim_digest_slot, release_digest_slot
from jobs.keys import digest_job_id
from jobs.ledger import LedgerNotReady
from jobs.queues import TRAINING
from jobs.slots import digest_as_of
from jobs.status import read_status, workers_alive

if TYPE_CHECKING:
    from bot.settings import BotSettings

log = logging.getLogger(__name__)

Answer = dict  # an ack payload: `ack(**answer)`
WORKERS_TTL_S = 5.0


@dataclass(frozen=True)
class Invocation:
    """The parts of a slash-command payload the handlers use."""

    command: str
    text: str
    user: str
    channel: str
    response_url: str | None = None
    trigger_id: str | None = None  # a slash command's; for a mention, the message's own id (bot.mentions)
    thread_ts: str | None = None  # a mention in a thread: the answer goes into that thread

    @classmethod
    def from_body(cls, body: dict) -> Invocation:
        return cls(command=str(body.get("command") or ""), text=str(body.get("text") or ""),
                   user=str(body.get("user_id") or ""), channel=str(body.get("channel_id") or ""),
                   response_url=body.get("response_url") or None, trigger_id=body.get("trigger_id") or None)


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


class Commands:
    """Every command's handler, with what it needs. Each takes an Invocation and returns the ack payload."""

    def __init__(self, *, conn: redis.Redis, settings: BotSettings, now: Callable[[], dt.datetime] = _utcnow) -> None:
        self.conn = conn
        self.settings = settings
        self.now = now
        self._workers: tuple[float, int] | None = None  # (monotonic time read, count)
        self.ledger_reads = LedgerReads(settings)

    def table(self) -> dict[str, Callable[[Invocation], Answer]]:
        """Command name → handler: what `register_listeners` wires and bot/manifest.json declares."""
        return {"/forecast": self.forecast, "/digest": self.digest, "/retrain": self.retrain,
                "/forecast-status": self.status, "/track": self.track, "/watch": self.watch}

    def _jobs(self) -> JobsClient:
        return JobsClient(self.conn, now=self.now(), max_depth=self.settings.bot_queue_max_depth,
                          max_pending_per_user=self.settings.bot_user_max_pending)

    def _workers_alive(self) -> int | None:
        """Registered workers, re-read at most every WORKERS_TTL_S: workers come and go over minutes, and a burst
        of commands should not each pay a Redis round trip for it. None when Redis did not answer: it is read after
        the job was queued, and must not turn a queued job into an error."""
        now = time.monotonic()
        if self._workers is None or now - self._workers[0] > WORKERS_TTL_S:
            try:
                self._workers = (now, workers_alive(self.conn))
            except redis.RedisError as exc:
                log.warning("workers not counted: Redis did not answer (%s)", type(exc).__name__)
                return None
        return self._workers[1]

    def _release_digest_slot(self, channel: str) -> None:
        """Best effort: a slot whose digest was never queued is taken over by the next claim anyway."""
        try:
            release_digest_slot(self.conn, channel)
        except redis.RedisError as exc:
            log.warning("digest slot of %s not released: Redis did not answer (%s)", channel, type(exc).__name__)

    def _today(self) -> dt.date:
        return self.now().astimezone(NEW_YORK).date()

    # -- /forecast ---------------------------------------------------------------------------------------------

    def forecast(self, inv: Invocation) -> Answer:
        try:
            args = parse_forecast(inv.text, today=self._today())
        except UsageError as exc:
            return messages.usage_error("/forecast", str(exc))
        if isinstance(args, Help):
            return messages.help_for("/forecast")
        if isinstance(args, DigestArgs):  # `/forecast dow30` is the Dow30 whatever the channel watches
            return self._digest(inv, args, dow30=inv.text.split()[0].lower() == "dow30")
        asked_at = self.now()  # the ack and the answer name the week from it (engine.market.weeks.request_week)
        request = ForecastRequest(ticker=args.ticker, channel=inv.channel, user=inv.user, as_of=args.as_of,
                                  weeks=args.weeks, financials=args.financials, response_url=inv.response_url,
                                  thread_ts=inv.thread_ts, asked_at=asked_at)
        week = request_week(args.as_of, asked_at).period
        try:
            # Asked again after it ended without an answer (it failed, or its data did): it runs again.
            outcome = self._jobs().forecast(request, again=True, delivery=inv.trigger_id)
        except REFUSALS as exc:
            return self._refused(inv, exc, queue="forecast",
                                 what=messages.forecast_what(args.ticker, week=week, as_of=args.as_of))
        return messages.forecast_ack(args.ticker, week=week, as_of=args.as_of, status=outcome.status,
                                     job_status=outcome.job_status, ahead=outcome.ahead,
                                     workers=self._workers_alive(), dow30=args.dow30,
                                     index_lookalike=args.ticker in INDEX_LOOKALIKES)

    def _refused(self, inv: Invocation, exc: Exception, *, queue: str, what: str) -> Answer:
        """What the requester is told when `jobs.client` refused or could not confirm a request (its REFUSALS):
        the queue is full, they have too many pending, Redis failed before anything was sent (asking again is safe),
        or Redis did not confirm the write (the job may exist: `what` names it)."""
        if isinstance(exc, QueueFull):
            return messages.queue_full(queue=queue, limit=self.settings.bot_queue_max_depth)
        if isinstance(exc, TooManyPending):
            log.info("%s by %s refused: %s", inv.command, inv.user, exc)
            return messages.too_many_pending(pending=exc.pending, limit=exc.limit)
        self._log_redis_failure(inv, exc)
        if isinstance(exc, NotQueued):
            return messages.queue_unreachable()
        return messages.queueing_unconfirmed(what)

    @staticmethod
    def _log_redis_failure(inv: Invocation, exc: Exception) -> None:
        """For the operator: what failed, and redis-py's own words (host or socket path; never a password)."""
        cause = exc.__cause__ or exc
        log.warning("%s by %s: %s (%s: %s)", inv.command, inv.user, exc, type(cause).__name__, cause)

    # -- /digest and /forecast dow30 ---------------------------------------------------------------------------

    def digest(self, inv: Invocation) -> Answer:
        try:
            args = parse_digest(inv.text, today=self._today())
        except UsageError as exc:
            return messages.usage_error("/digest", str(exc))
        if isinstance(args, Help):
            return messages.help_for("/digest")
        return self._digest(inv, args)

    def _digest(self, inv: Invocation, args: DigestArgs, *, dow30: bool = False) -> Answer:
        cooldown = self.settings.bot_digest_cooldown_s
        # Live: the same data date as the scheduled Monday digest (so they share a job id), never past the open.
        asked_at = self.now()
        as_of = args.as_of or digest_as_of(asked_at)
        week = request_week(as_of, asked_at).period
        symbols = None if dow30 else self._watchlist_of(inv)  # the channel's watchlist; None: the Dow30
        if symbols is False:
            return messages.watchlist_unavailable()
        try:
            wait_s = claim_digest_slot(self.conn, inv.channel, cooldown_s=cooldown,
                                       for_job=digest_job_id(channel=inv.channel, as_of=as_of, symbols=symbols))
        except redis.RedisError as exc:  # no job was sent; a slot claimed without a job is taken over later
            self._log_redis_failure(inv, exc)
            return messages.queue_unreachable()
        if wait_s:
            return messages.digest_cooling_down(wait_s=wait_s, cooldown_s=cooldown, now=self.now())
        try:
            outcome = self._jobs().digest(channel=inv.channel, as_of=as_of, again=True, delivery=inv.trigger_id,
                                          asked_at=asked_at, symbols=symbols)
        except REFUSALS as exc:
            if not isinstance(exc, QueueingUnconfirmed):  # nothing was queued; unconfirmed, the digest may be running
                self._release_digest_slot(inv.channel)
            return self._refused(inv, exc, queue="batch",
                                 what=messages.digest_what(week=week, as_of=as_of, watchlist=symbols))
        if outcome.status == "duplicate":  # nothing new was queued: the slot is not used up
            self._release_digest_slot(inv.channel)
        return messages.digest_ack(week=week, as_of=as_of, status=outcome.status, job_status=outcome.job_status,
                                   ahead=outcome.ahead, workers=self._workers_alive(), watchlist=symbols)

    def _watchlist_of(self, inv: Invocation) -> list[str] | None | bool:
        """The channel's watchlist for its digest: None when it has none (the Dow30), False when it could not be
        read (the digest is not run on a list that may be the wrong one)."""
        try:
            return self.ledger_reads.watchlist_names(inv.channel) or None
        except LedgerNotReady:
            return None  # no watchlists table yet: nobody can have made one
        except LedgerUnavailable as exc:
            log.warning("%s by %s: the watchlist could not be read: %s", inv.command, inv.user, exc)
            return False

    # -- /watch ------------------------------------------------------------------------------------------------

    def watch(self, inv: Invocation) -> Answer:
        try:
            args = parse_watch(inv.text, max_names=getattr(self.settings, "watchlist_max", 50))
        except UsageError as exc:
            return messages.usage_error("/watch", str(exc))
        if isinstance(args, Help):
            return messages.help_for("/watch")
        return watch_command(self, inv, args)

    # -- /retrain (behind the admin gate) ----------------------------------------------------------------------

    def retrain(self, inv: Invocation) -> Answer:
        try:
            args = parse_retrain(inv.text)
        except UsageError as exc:
            return messages.usage_error("/retrain", str(exc))
        if isinstance(args, Help):
            return messages.help_for("/retrain")
        try:
            outcome = self._jobs().retrain(channel=inv.channel, user=inv.user, epochs=args.epochs, force=args.force,
                                           delivery=inv.trigger_id)
        except REFUSALS as exc:
            return self._refused(inv, exc, queue="training", what="a retrain")
        log.info("retrain %s by %s: %s (%s)", outcome.job_id, inv.user, outcome.status, outcome.job_status)
        return messages.retrain_ack(job_id=outcome.job_id, status=outcome.status, job_status=outcome.job_status,
                                    epochs=args.epochs, force=args.force, trainers=self._trainers_alive())

    def _trainers_alive(self) -> int | None:
        """`forecaster trainer` processes alive (None: Redis did not answer after the job was queued)."""
        try:
            return workers_alive(self.conn, queue_name=TRAINING.name)
        except redis.RedisError as exc:
            log.warning("trainers not counted: Redis did not answer (%s)", type(exc).__name__)
            return None

    # -- /forecast-status --------------------------------------------------------------------------------------

    def status(self, inv: Invocation) -> Answer:
        try:
            if isinstance(parse_status(inv.text), Help):
                return messages.help_for("/forecast-status")
        except UsageError as exc:
            return messages.usage_error("/forecast-status", str(exc))
        return messages.status_report(read_status(self.conn, user=inv.user).to_json(), now=self.now())

    # -- /track ------------------------------------------------------------------------------------------------

    def track(self, inv: Invocation) -> Answer:
        try:
            args = parse_track(inv.text)
        except UsageError as exc:
            return messages.usage_error("/track", str(exc))
        if isinstance(args, Help):
            return messages.help_for("/track")
        # Stored outcomes only (the Saturday summary fetches prices), read within a deadline, never migrating.
        try:
            record = self.ledger_reads.track_record(args.ticker, recent=5)
        except LedgerNotReady as exc:
            log.warning("/track by %s: the ledger is not ready: %s", inv.user, exc)
            return messages.track_not_ready()
        except LedgerUnavailable as exc:
            log.warning("/track by %s: the ledger's database is unavailable: %s", inv.user, exc)
            return messages.track_unavailable()
        text, blocks = track_message(record)
        return messages.payload(text, blocks)


# -- one answer per delivery, never an exception -------------------------------------------------------------------


def answer(commands: Commands, handle: Callable[[Invocation], Answer], body: dict, *,
           redelivery: bool = False, inv: Invocation | None = None) -> Answer:
    """Run `handle` and turn every failure into a message for the user. A redelivery (Slack retrying after a
    timeout) of a command that queued a job is answered from that job, without enqueueing again; one that queued
    nothing (help, a usage error, a status) is simply answered again. `inv`: the invocation when `body` is not a
    slash command's (a mention)."""
    inv = inv or Invocation.from_body(body)
    if not inv.user or not inv.channel:
        return messages.payload(":warning: This command must be run by a user in a channel or DM.")
    try:
        if redelivery and inv.trigger_id and (earlier := JobsClient(commands.conn).delivered(inv.trigger_id)):
            log.info("%s by %s: redelivery of %s; already queued as %s", inv.command, inv.user, inv.trigger_id,
                     earlier.job_id)
            return messages.already_received(job_status=earlier.job_status, ahead=earlier.ahead)
        return handle(inv)
    except redis.RedisError as exc:  # a read (status, track, a redelivery check): nothing was queued
        log.warning("%s by %s: Redis did not answer (%s)", inv.command, inv.user, type(exc).__name__)
        return messages.redis_unreachable()
    except Exception:
        reference = uuid.uuid4().hex[:8]
        log.exception("%s by %s failed (reference %s)", inv.command, inv.user, reference)
        return messages.internal_error(reference)


def admins_only(admins: list[str]) -> Callable:
    """Listener middleware: admins go on to the listener; anyone else gets an ephemeral refusal, returned as the
    response itself (calling ack() without next() would make Bolt answer 404)."""
    allowed = frozenset(admins)

    def admin_gate(body: dict, next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002 (Bolt's name)
        if body.get("user_id") in allowed:
            next()
            return None
        log.info("%s refused for %s: not in SLACK_ADMIN_USERS", body.get("command"), body.get("user_id"))
        refusal = messages.admins_only(admins_configured=bool(allowed))
        return BoltResponse(status=200, body=json.dumps(refusal),
                            headers={"content-type": "application/json;charset=utf-8"})

    return admin_gate


def register_listeners(app: App, commands: Commands) -> None:
    """Wire every command in `commands.table()`; /retrain behind the admin gate."""
    for name, handle in commands.table().items():
        middleware = [admins_only(commands.settings.slack_admin_users)] if name == "/retrain" else None
        app.command(name, middleware=middleware)(_listener(commands, handle))


def _listener(commands: Commands, handle: Callable[[Invocation], Answer]) -> Callable:
    def listener(ack: Callable, body: dict, request: BoltRequest) -> None:
        # Slack marks its retries (HTTP header; Socket Mode's retry_attempt, mirrored by Bolt's adapter).
        ack(**answer(commands, handle, body, redelivery=bool(request.headers.get("x-slack-retry-num"))))

    listener.__name__ = f"on_{getattr(handle, '__name__', 'command')}"
    return listener
