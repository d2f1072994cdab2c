"""The scheduler: fire times across DST and holiday weeks (the real CronTrigger), strict schedule settings, and
enqueueing on a real Redis, including two scheduler instances firing the same slot at once."""

from __future__ import annotations

import datetime as dt
import logging
import subprocess
import sys
import threading

import pytest
import redis as redis_lib
from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.cron import CronTrigger
from pydantic import ValidationError
from redis.backoff import NoBackoff
from redis.retry import Retry
from rq.job import Job
from rq.serializers import JSONSerializer

from engine.market.weekly_time import WeeklyTime, parse_weekly_time
from engine.market.weeks import NEW_YORK, Week, cutoff_for_date, forecast_week, week_close
from forecaster.settings import Settings
from jobs.client import DIGEST_TASK, SUMMARY_TASK, queue
from jobs.keys import SCHEDULER_HEARTBEAT_TTL_S, scheduler_heartbeat_key
from jobs.queues import BATCH
from jobs.scheduler import (
    ENQUEUE_RETRY_PAUSES_S,
    Plan,
    beat,
    build_scheduler,
    cron_trigger,
    digest_as_of,
    enqueue_slot,
    fire,
    heartbeat_age,
    latest_fire_time,
    missed_slot,
    next_fire_times,
)
from tests.fakes.sources import weekday_closes

MONDAY_8 = parse_weekly_time("mon 08:00")
SATURDAY_10 = parse_weekly_time("sat 10:00")
UTC = dt.UTC


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


def utc(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=UTC)


def in_utc(times: list[dt.datetime]) -> list[dt.datetime]:
    return [t.astimezone(UTC) for t in times]


def plan(*channels: str) -> Plan:
    return Plan(digest=MONDAY_8, summary=SATURDAY_10, channels=channels, misfire_grace_s=3 * 3600)


def batch_jobs(redis) -> list[Job]:
    q = queue(redis, BATCH)
    return [Job.fetch(job_id, connection=redis, serializer=JSONSerializer) for job_id in q.get_job_ids()]


# -- fire times ----------------------------------------------------------------------------------------------------


def test_the_monday_digest_follows_new_york_time_across_the_spring_dst_switch():
    # DST began Sunday 2026-03-08: 08:00 New York is 13:00 UTC the Monday before, 12:00 UTC after.
    times = next_fire_times(MONDAY_8, after=ny(2026, 3, 1), n=3)
    assert in_utc(times) == [utc(2026, 3, 2, 13), utc(2026, 3, 9, 12), utc(2026, 3, 16, 12)]
    assert all(t.astimezone(NEW_YORK).hour == 8 and t.weekday() == 0 for t in times)


def test_the_monday_digest_follows_new_york_time_across_the_fall_dst_switch():
    # DST ended Sunday 2026-11-01.
    assert in_utc(next_fire_times(MONDAY_8, after=ny(2026, 10, 25), n=2)) == [utc(2026, 10, 26, 12),
                                                                            utc(2026, 11, 2, 13)]


def test_the_summary_fires_on_saturdays_across_both_dst_switches():
    assert in_utc(next_fire_times(SATURDAY_10, after=ny(2026, 3, 1), n=2)) == [utc(2026, 3, 7, 15),
                                                                             utc(2026, 3, 14, 14)]
    times = next_fire_times(SATURDAY_10, after=ny(2026, 10, 25), n=2)
    assert in_utc(times) == [utc(2026, 10, 31, 14), utc(2026, 11, 7, 15)]
    assert {t.weekday() for t in times} == {5}


def test_day_names_are_why_it_fires_on_monday_a_crontab_number_would_fire_on_tuesday():
    # The pitfall the day-name rule exists for: APScheduler 3 counts Monday as 0.
    crontab = CronTrigger.from_crontab("0 8 * * 1", timezone=NEW_YORK)
    assert crontab.get_next_fire_time(None, ny(2026, 3, 1)).weekday() == 1  # Tuesday
    assert cron_trigger(MONDAY_8).get_next_fire_time(None, ny(2026, 3, 1)).weekday() == 0


def test_a_run_delayed_by_a_misfire_still_belongs_to_its_slot():
    slot = ny(2026, 3, 9, 8)
    assert latest_fire_time(MONDAY_8, now=slot) == slot
    assert latest_fire_time(MONDAY_8, now=ny(2026, 3, 9, 10, 59)) == slot  # 3 hours of grace
    assert latest_fire_time(MONDAY_8, now=ny(2026, 3, 9, 7, 59)) == ny(2026, 3, 2, 8)


def test_a_missed_slot_is_the_latest_one_within_the_grace_and_none_past_it():
    slot = ny(2026, 3, 9, 8)
    assert missed_slot(MONDAY_8, now=ny(2026, 3, 9, 8, 2), grace_s=3 * 3600) == slot
    assert missed_slot(MONDAY_8, now=ny(2026, 3, 9, 11, 0), grace_s=3 * 3600) == slot  # exactly at the grace
    assert missed_slot(MONDAY_8, now=ny(2026, 3, 9, 11, 1), grace_s=3 * 3600) is None
    assert missed_slot(MONDAY_8, now=ny(2026, 3, 8, 12), grace_s=24 * 3600) is None  # six days past


# -- the digest's and the summary's dates, holiday weeks included ----------------------------------------------


def test_the_monday_digest_forecasts_the_week_that_opens_that_morning():
    as_of = digest_as_of(ny(2026, 3, 9, 8))
    assert as_of == dt.date(2026, 3, 8)
    # How the digest job reads its date: the end of that day, then the first week whose Monday open is ahead.
    assert forecast_week(cutoff_for_date(as_of)) == Week(dt.date(2026, 3, 8), dt.date(2026, 3, 15))
    # The fire date itself would target the week after (its end-of-day cutoff is past Monday's open).
    assert forecast_week(cutoff_for_date(dt.date(2026, 3, 9))) == Week(dt.date(2026, 3, 15), dt.date(2026, 3, 22))


def test_presidents_day_the_digest_still_posts_and_forecasts_the_shortened_week(redis):
    # Decision: a market holiday Monday is still the start of the trading week (Tue-Fri trade), and the digest's
    # readers want it before Tuesday's open; the week's close is Friday's as usual. So it posts on the holiday.
    [slot] = next_fire_times(MONDAY_8, after=ny(2026, 2, 14), n=1)
    assert slot == ny(2026, 2, 16, 8) and slot.astimezone(UTC) == utc(2026, 2, 16, 13)
    outcomes = enqueue_slot(redis, "digest", channels=["C1"], fire_time=slot)
    assert outcomes["C1"].status == "queued"
    [job] = batch_jobs(redis)
    assert job.func_name == DIGEST_TASK and job.kwargs == {"channel": "C1", "as_of": "2026-02-15", "weeks": 3}
    assert forecast_week(cutoff_for_date(dt.date(2026, 2, 15))) == Week(dt.date(2026, 2, 15), dt.date(2026, 2, 22))


def test_good_friday_the_summary_still_posts_saturday_for_the_week_that_closed_thursday(redis):
    # Decision: the week closed on Thursday's close (Good Friday 2026-04-03 the market is shut; the engine scores
    # such a week on its last close, as FinGPT's weekly resample does), so Saturday's summary has a closed week
    # to score, like any other: same day, same time, same ISO week id.
    [slot] = next_fire_times(SATURDAY_10, after=ny(2026, 4, 1), n=1)
    assert slot == ny(2026, 4, 4, 10) and slot.astimezone(UTC) == utc(2026, 4, 4, 14)
    closes = weekday_closes(dt.date(2026, 3, 23), dt.date(2026, 4, 10), holidays=[dt.date(2026, 4, 3)])
    week = Week(dt.date(2026, 3, 29), dt.date(2026, 4, 5))
    assert week_close(closes, week, symbol="AXP").date == dt.date(2026, 4, 2)  # Thursday
    enqueue_slot(redis, "summary", channels=["C1"], fire_time=slot)
    [job] = batch_jobs(redis)
    assert job.func_name == SUMMARY_TASK and job.id == "summary_2026-W14_C1"
    assert job.kwargs == {"channel": "C1", "week_ending": "2026-04-04"}
    assert dt.date(2026, 4, 4).isocalendar().week == dt.date(2026, 3, 30).isocalendar().week  # the closed week's


def test_the_monday_after_easter_digests_the_week_from_easter_sunday(redis):
    [slot] = next_fire_times(MONDAY_8, after=ny(2026, 4, 4), n=1)
    enqueue_slot(redis, "digest", channels=["C1"], fire_time=slot)
    [job] = batch_jobs(redis)
    assert job.kwargs["as_of"] == "2026-04-05"
    assert forecast_week(cutoff_for_date(dt.date(2026, 4, 5))) == Week(dt.date(2026, 4, 5), dt.date(2026, 4, 12))


# -- enqueueing: only enqueue, deduped ------------------------------------------------------------------------


def test_a_scheduled_run_enqueues_one_job_per_channel_and_logs_the_outcome(redis, caplog):
    clock = lambda: ny(2026, 3, 9, 8, 0, 1)  # noqa: E731
    with caplog.at_level(logging.INFO, logger="jobs.scheduler"):
        first = fire(redis, "digest", plan=plan("C1", "C2"), now=clock)
        again = fire(redis, "digest", plan=plan("C1", "C2"), now=clock)
    assert [o.status for o in first.values()] == ["queued", "queued"]
    assert [o.status for o in again.values()] == ["duplicate", "duplicate"]
    assert sorted(j.id for j in batch_jobs(redis)) == ["digest_2026-03-08_C1", "digest_2026-03-08_C2"]
    lines = [r.getMessage() for r in caplog.records]
    assert sum("C1, slot Mon 2026-03-09 08:00 EDT: queued" in line for line in lines) == 1
    assert sum("C1, slot Mon 2026-03-09 08:00 EDT: duplicate" in line for line in lines) == 1


def test_two_scheduler_instances_firing_the_same_slot_make_one_job_per_channel_and_kind(redis):
    """Two real schedulers (each its own thread pool), every job forced to run now, all at once."""
    clock = lambda: ny(2026, 3, 14, 10, 0, 2)  # noqa: E731  (Saturday: the digest slot is Monday the 9th)
    results, errors = [], []
    done = threading.Semaphore(0)

    def record(event) -> None:
        if event.job_id in ("digest", "summary"):
            (errors if event.exception else results).append(event.retval or event.exception)
            done.release()

    schedulers = [build_scheduler(plan("C1", "C2"), redis, now=clock, scheduler_class=BackgroundScheduler)
                  for _ in range(2)]
    for scheduler in schedulers:
        scheduler.add_listener(record, EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
        scheduler.start(paused=True)
    try:
        due = dt.datetime.now(UTC)
        for scheduler in schedulers:
            for kind in ("digest", "summary"):
                scheduler.modify_job(kind, next_run_time=due)
        for scheduler in schedulers:
            scheduler.resume()
        for _ in range(4):
            assert done.acquire(timeout=20), "a scheduled run did not happen"
    finally:
        for scheduler in schedulers:
            scheduler.shutdown(wait=True)

    assert errors == []
    assert sorted(j.id for j in batch_jobs(redis)) == ["digest_2026-03-08_C1", "digest_2026-03-08_C2",
                                                       "summary_2026-W11_C1", "summary_2026-W11_C2"]
    statuses = sorted(o.status for outcomes in results for o in outcomes.values())
    assert statuses == ["duplicate"] * 4 + ["queued"] * 4


def test_the_scheduler_is_configured_as_the_reference_says(redis):
    scheduler = build_scheduler(plan("C1"), redis, scheduler_class=BackgroundScheduler)
    scheduler.start(paused=True)  # job defaults apply when jobs reach the store
    jobs = {job.id: job for job in scheduler.get_jobs()}
    scheduler.shutdown()
    assert set(jobs) == {"digest", "summary", "heartbeat"}
    for job in jobs.values():
        assert job.coalesce is True and job.max_instances == 1 and job.misfire_grace_time == 3 * 3600
    assert str(jobs["digest"].trigger) == "cron[day_of_week='mon', hour='8', minute='0']"
    assert str(scheduler.timezone) == "America/New_York"


def test_redis_down_at_fire_time_is_retried_then_reported_and_other_channels_still_tried(caplog):
    # A real client whose server is gone (redis-py's own backoff turned off: only ours is under test).
    dead = redis_lib.Redis(unix_socket_path="/nonexistent/redis.sock", retry=Retry(NoBackoff(), 0))
    pauses = []
    with caplog.at_level(logging.WARNING, logger="jobs.scheduler"):
        outcomes = enqueue_slot(dead, "digest", channels=["C1", "C2"], fire_time=ny(2026, 3, 9, 8),
                                sleep=pauses.append)
    assert outcomes == {"C1": None, "C2": None}
    assert pauses == list(ENQUEUE_RETRY_PAUSES_S) * 2
    errors = [r.getMessage() for r in caplog.records if r.levelno == logging.ERROR]
    assert len(errors) == 2 and all("forecaster scheduler --fire digest" in e for e in errors)


def test_the_heartbeat_is_a_key_that_lapses(redis):
    assert heartbeat_age(redis) is None
    beat(redis, now=lambda: utc(2026, 3, 9, 12))
    assert 0 < redis.ttl(scheduler_heartbeat_key()) <= SCHEDULER_HEARTBEAT_TTL_S
    assert heartbeat_age(redis, now=lambda: utc(2026, 3, 9, 12, 0, 30)) == 30


# -- strict settings -------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("mon 08:00", WeeklyTime("mon", 8, 0)),
    ("  SAT 10:00 ", WeeklyTime("sat", 10, 0)),
    ("sun 00:30", WeeklyTime("sun", 0, 30)),
    ("fri 03:00", WeeklyTime("fri", 3, 0)),
    ("tue 23:59", WeeklyTime("tue", 23, 59)),
])
def test_weekly_times_are_a_day_name_and_a_24_hour_time(text, expected):
    assert parse_weekly_time(text) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("1 08:00", "write the day as a name"),
    ("0 8 * * 1", "write the day as a name"),
    ("monday 08:00", "unknown day 'monday'"),
    ("mon 8:00", 'write "<day> <HH:MM>"'),
    ("mon 08:00am", 'write "<day> <HH:MM>"'),
    ("mon,thu 08:00", 'write "<day> <HH:MM>"'),
    ("mon 24:00", "not a time of day"),
    ("mon 08:60", "not a time of day"),
    ("sun 01:30", "happen never or twice"),
    ("sun 02:00", "happen never or twice"),
    ("", 'write "<day> <HH:MM>"'),
])
def test_bad_weekly_times_are_refused_with_the_form_to_use(text, says):
    with pytest.raises(ValueError) as raised:
        parse_weekly_time(text)
    assert says in str(raised.value)


def test_schedule_settings_come_from_the_environment_strictly(monkeypatch):
    monkeypatch.setenv("DIGEST_SCHEDULE", "tue 07:30")
    monkeypatch.setenv("DIGEST_CHANNELS", "C0123ABCD, G777,C0123ABCD")
    settings = Settings(_env_file=None)
    assert settings.digest_schedule == "tue 07:30" and settings.summary_schedule == "sat 10:00"
    assert settings.digest_channels == ["C0123ABCD", "G777"]
    assert Plan.from_settings(settings).digest == WeeklyTime("tue", 7, 30)

    monkeypatch.setenv("SUMMARY_SCHEDULE", "6 10:00")
    monkeypatch.setenv("DIGEST_CHANNELS", "#markets")
    with pytest.raises(ValidationError) as raised:
        Settings(_env_file=None)
    problems = {e["loc"][0]: e["msg"] for e in raised.value.errors()}
    assert "write the day as a name" in problems["summary_schedule"]
    assert "#markets: not Slack channel ids" in problems["digest_channels"]


def test_no_channels_by_default():
    assert Settings(_env_file=None).digest_channels == []


def test_the_scheduler_imports_nothing_of_the_model_stack():
    # It ships in the slim bot image: no torch there.
    heavy = ("torch", "transformers", "peft", "trl", "pandas")
    probe = (f"import sys, jobs.scheduler, forecaster.cli.schedule; "
             f"print(','.join(n for n in {heavy!r} if n in sys.modules))")
    done = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60)
    assert done.stdout.strip() == ""
