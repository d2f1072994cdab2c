"""The weekly rhythm: the digest (Monday 08:00; a channel's watchlist, else the Dow30) and the evaluation summary
(Saturday 10:00), New York time.

APScheduler only decides *when*. Each scheduled function enqueues RQ jobs whose ids come from the scheduled slot
(the digest's date, the summary's ISO week) and the channel, through `jobs.client` with RQ's unique enqueue. So a
second scheduler started by mistake, an overlap during a deploy, or a catch-up run after downtime is refused by
Redis ("duplicate") instead of posting twice. Jobs live in a MemoryJobStore and are defined here in code with
fixed ids: there is no shared job store for two schedulers to fight over.

The slot a run belongs to is computed from the trigger, not read from the clock: a run delayed by a misfire
(up to SCHEDULER_MISFIRE_GRACE_S late) still enqueues the jobs of the slot it was meant for.

A fresh MemoryJobStore computes each job's next run from the moment it starts, so APScheduler alone never sees a
slot that passed while the scheduler was down. `catch_up` runs once at start-up for that: it enqueues the latest
slot of each kind whose time passed within the grace (the slot's job ids make a slot already posted a duplicate).
"""

from __future__ import annotations

import datetime as dt
import logging
import signal
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Literal

import redis
from apscheduler.jobstores.memory import MemoryJobStore
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.interval import IntervalTrigger

from engine.market.weekly_time import WeeklyTime, parse_weekly_time
from engine.market.weeks import NEW_YORK
from jobs.client import Enqueued, JobsClient
from jobs.keys import SCHEDULER_HEARTBEAT_EVERY_S, SCHEDULER_HEARTBEAT_TTL_S, scheduler_heartbeat_key
from jobs.ledger.watchlists import WatchlistUnreadable, watchlist_reader
from jobs.slots import digest_as_of, summary_week_ending

if TYPE_CHECKING:
    from jobs.settings import JobsSettings

log = logging.getLogger(__name__)

Kind = Literal["digest", "summary"]
KINDS: tuple[Kind, ...] = ("digest", "summary")
# A Redis hiccup at 08:00 should not cost the week's digest: each channel's enqueue is retried after these pauses.
ENQUEUE_RETRY_PAUSES_S = (5, 30, 120)
Clock = Callable[[], dt.datetime]


def _utcnow() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


@dataclass(frozen=True)
class Plan:
    """What the scheduler posts, when and where: read from Settings once, at start-up."""

    digest: WeeklyTime
    summary: WeeklyTime
    channels: tuple[str, ...]
    misfire_grace_s: int
    # channel → its watchlist, read when its digest is enqueued ([]: the Dow30); None: every channel the Dow30
    watchlists: Callable[[str], list[str]] | None = field(default=None, compare=False)

    @classmethod
    def from_settings(cls, settings: JobsSettings) -> Plan:
        return cls(digest=parse_weekly_time(settings.digest_schedule),
                   summary=parse_weekly_time(settings.summary_schedule),
                   channels=tuple(settings.digest_channels), misfire_grace_s=settings.scheduler_misfire_grace_s,
                   watchlists=watchlist_reader(settings))

    def schedule(self, kind: Kind) -> WeeklyTime:
        return self.digest if kind == "digest" else self.summary


# -- when: pure functions over the real CronTrigger ----------------------------------------------------------------


def cron_trigger(when: WeeklyTime) -> CronTrigger:
    """Day *names* on purpose: APScheduler 3 counts Monday as 0, so a crontab's "1" would mean Tuesday."""
    return CronTrigger(day_of_week=when.day, hour=when.hour, minute=when.minute, timezone=NEW_YORK)


def next_fire_times(when: WeeklyTime, *, after: dt.datetime, n: int) -> list[dt.datetime]:
    """The next `n` fire times at or after `after` (aware), in New York time, as APScheduler will fire them."""
    if after.tzinfo is None:
        raise ValueError("`after` must be timezone-aware")
    trigger = cron_trigger(when)
    times: list[dt.datetime] = []
    previous = None
    now = after.astimezone(NEW_YORK)
    for _ in range(n):
        previous = trigger.get_next_fire_time(previous, now)
        times.append(previous)
        now = previous + dt.timedelta(microseconds=1)
    return times


def latest_fire_time(when: WeeklyTime, *, now: dt.datetime) -> dt.datetime:
    """The slot a run at `now` belongs to: the last fire time at or before `now` (at most a week back)."""
    candidates = next_fire_times(when, after=now - dt.timedelta(days=8), n=3)
    return max(t for t in candidates if t <= now)


# -- what: the scheduled functions only enqueue ----------------------------------------------------------------------


def enqueue_slot(conn: redis.Redis, kind: Kind, *, channels: Sequence[str], fire_time: dt.datetime,
                 sleep: Callable[[float], None] = time.sleep,
                 watchlists: Callable[[str], list[str]] | None = None) -> dict[str, Enqueued | None]:
    """Enqueue `kind` for every channel for the slot `fire_time`; logs each outcome. Returns channel → outcome
    (None where Redis, or the watchlist's database, kept failing: logged as an error, the other channels still get
    theirs). A digest covers the channel's watchlist (`watchlists`), the Dow30 when it has none."""
    client = JobsClient(conn)
    if kind == "digest":
        as_of = digest_as_of(fire_time)

        def enqueue(channel: str) -> Enqueued:
            return client.digest(channel=channel, as_of=as_of,
                                 symbols=(watchlists(channel) if watchlists else None) or None)

        what = f"digest (data as of {as_of})"
    else:
        week_ending = summary_week_ending(fire_time)

        def enqueue(channel: str) -> Enqueued:
            return client.summary(channel=channel, week_ending=week_ending)

        what = f"evaluation summary (week ending {week_ending})"
    slot = f"{fire_time.astimezone(NEW_YORK):%a %Y-%m-%d %H:%M %Z}"
    outcomes: dict[str, Enqueued | None] = {}
    for channel in channels:
        outcome = None
        for attempt, pause in enumerate((*ENQUEUE_RETRY_PAUSES_S, None)):
            try:
                outcome = enqueue(channel)
                break
            except (redis.RedisError, WatchlistUnreadable) as exc:
                if pause is None:
                    log.error("%s for %s, slot %s: NOT enqueued, Redis failed %d times (%s). Once Redis is back, "
                              "run `forecaster scheduler --fire %s` to enqueue it.", what, channel, slot,
                              attempt + 1, exc, kind)
                else:
                    log.warning("%s for %s: Redis failed (%s); retrying in %ds", what, channel, exc, pause)
                    sleep(pause)
        if outcome is not None:
            # "duplicate": another scheduler (or an earlier run of this one) already enqueued this slot.
            log.info("%s for %s, slot %s: %s (job %s)", what, channel, slot, outcome.status, outcome.job_id)
        outcomes[channel] = outcome
    return outcomes


def fire(conn: redis.Redis, kind: Kind, *, plan: Plan, now: Clock = _utcnow,
         sleep: Callable[[float], None] = time.sleep) -> dict[str, Enqueued | None]:
    """What a scheduled run does: enqueue the jobs of the slot this moment belongs to."""
    fire_time = latest_fire_time(plan.schedule(kind), now=now())
    return enqueue_slot(conn, kind, channels=plan.channels, fire_time=fire_time, sleep=sleep,
                        watchlists=plan.watchlists)


def missed_slot(when: WeeklyTime, *, now: dt.datetime, grace_s: int) -> dt.datetime | None:
    """The latest slot at or before `now` when it is at most `grace_s` old, else None."""
    latest = latest_fire_time(when, now=now)
    return latest if (now - latest).total_seconds() <= grace_s else None


def catch_up(conn: redis.Redis, *, plan: Plan, now: Clock = _utcnow,
             sleep: Callable[[float], None] = time.sleep) -> dict[Kind, dt.datetime]:
    """At start-up: enqueue each kind's latest slot that passed within the grace. Returns kind → slot caught up
    (a slot that was already enqueued counts too: Redis answers "duplicate" and nothing is posted twice)."""
    caught: dict[Kind, dt.datetime] = {}
    for kind in KINDS:
        slot = missed_slot(plan.schedule(kind), now=now(), grace_s=plan.misfire_grace_s)
        if slot is None:
            continue
        log.info("scheduler: %s slot %s passed %s ago, within the %d s grace: catching up", kind,
                 f"{slot.astimezone(NEW_YORK):%a %Y-%m-%d %H:%M %Z}", now() - slot, plan.misfire_grace_s)
        enqueue_slot(conn, kind, channels=plan.channels, fire_time=slot, sleep=sleep, watchlists=plan.watchlists)
        caught[kind] = slot
    return caught


def beat(conn: redis.Redis, *, now: Clock = _utcnow) -> None:
    """Write the heartbeat the healthcheck reads; it lapses by itself if this process dies or hangs."""
    try:
        conn.set(scheduler_heartbeat_key(), now().isoformat(timespec="seconds"), ex=SCHEDULER_HEARTBEAT_TTL_S)
    except redis.RedisError as exc:  # the next beat tries again; a lapsed key tells the healthcheck
        log.warning("scheduler heartbeat not written: %s", exc)


def heartbeat_age(conn: redis.Redis, *, now: Clock = _utcnow) -> float | None:
    """Seconds since the last heartbeat, or None when there is none (down, stopped, or never started)."""
    raw = conn.get(scheduler_heartbeat_key())
    if raw is None:
        return None
    return (now() - dt.datetime.fromisoformat(raw.decode())).total_seconds()


# -- the scheduler ---------------------------------------------------------------------------------------------------


def build_scheduler(plan: Plan, conn: redis.Redis, *, now: Clock = _utcnow,
                    scheduler_class: type[BaseScheduler] = BlockingScheduler) -> BaseScheduler:
    """The configured scheduler, not started: one cron job per kind, and the heartbeat. `now` is the clock a run
    reads its slot from (tests pin it); APScheduler itself always runs on the real clock."""
    scheduler = scheduler_class(
        timezone=NEW_YORK,
        jobstores={"default": MemoryJobStore()},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": plan.misfire_grace_s},
    )
    for kind in KINDS:
        when = plan.schedule(kind)
        scheduler.add_job(fire, cron_trigger(when), id=kind, name=f"{kind} at {when} New York",
                          kwargs={"conn": conn, "kind": kind, "plan": plan, "now": now}, replace_existing=True)
    scheduler.add_job(beat, IntervalTrigger(seconds=SCHEDULER_HEARTBEAT_EVERY_S, timezone=NEW_YORK),
                      id="heartbeat", name="heartbeat", kwargs={"conn": conn}, replace_existing=True,
                      next_run_time=_utcnow())  # beat at start-up, not 30 s later
    return scheduler


def run(plan: Plan, conn: redis.Redis) -> None:
    """Run until SIGINT or SIGTERM, then stop cleanly (a running enqueue finishes) and drop the heartbeat."""
    scheduler = build_scheduler(plan, conn)

    def stop(signum: int, _frame: object) -> None:
        log.info("scheduler: %s received, stopping", signal.Signals(signum).name)
        # wait=False: a handler must not block on the pool; its threads still finish before the process exits.
        scheduler.shutdown(wait=False)

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        catch_up(conn, plan=plan)
        for kind in KINDS:
            log.info("scheduler: %s every %s New York → %s; next %s", kind, plan.schedule(kind),
                     ", ".join(plan.channels), scheduler.get_job(kind).trigger.get_next_fire_time(None, _utcnow()))
        scheduler.start()  # blocks until stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        try:
            conn.delete(scheduler_heartbeat_key())
        except redis.RedisError:
            pass
        log.info("scheduler: stopped")
