"""The NYSE calendar (issue 20, item 8): the week a request forecasts is counted in trading sessions, holidays
included, and the bot's acknowledgement and the worker's answer name it from the same function."""

from __future__ import annotations

import datetime as dt
import subprocess
import sys

import pytest

from engine.evaluation.track import closed_at
from engine.market.sessions import TABLE, session, sessions
from engine.market.sessions_table import build_table
from engine.market.weeks import NEW_YORK, Week, close_time, forecast_week, request_cutoff, request_week


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


def week(start: str) -> Week:
    return Week.containing(dt.date.fromisoformat(start))


def test_the_shipped_table_is_what_exchange_calendars_says():
    # After exchange_calendars learns of a new closure (a national day of mourning), this fails until the table
    # is written again: `python -m engine.market.sessions_table`.
    shipped = [line for line in TABLE.read_text().splitlines() if not line.startswith("#")]
    assert shipped == [line for line in build_table().splitlines() if not line.startswith("#")]


@pytest.mark.parametrize(("day", "what"), [
    ("2024-01-15", "Martin Luther King Jr. Day"), ("2024-02-19", "Presidents' Day"), ("2024-03-29", "Good Friday"),
    ("2024-05-27", "Memorial Day"), ("2024-06-19", "Juneteenth"), ("2024-07-04", "Independence Day"),
    ("2024-09-02", "Labor Day"), ("2024-11-28", "Thanksgiving"), ("2024-12-25", "Christmas"),
    ("2025-01-09", "the national day of mourning for President Carter"), ("2012-10-29", "Hurricane Sandy"),
])
def test_the_exchange_is_closed_on_its_holidays(day, what):
    assert session(dt.date.fromisoformat(day)) is None, what


def test_sessions_open_at_0930_and_close_at_1600_or_1300_on_an_early_close():
    [wednesday, black_friday] = [session(dt.date(2024, 11, 27)), session(dt.date(2024, 11, 29))]
    assert (wednesday.opens, wednesday.closes) == (ny(2024, 11, 27, 9, 30), ny(2024, 11, 27, 16))
    assert (black_friday.opens, black_friday.closes) == (ny(2024, 11, 29, 9, 30), ny(2024, 11, 29, 13))
    assert session(dt.date(2024, 11, 30)) is None  # Saturday
    assert [s.day.day for s in sessions(dt.date(2024, 11, 24), dt.date(2024, 11, 30))] == [25, 26, 27, 29]


def test_a_week_opens_with_its_first_session_and_closes_with_its_last():
    assert week("2024-05-26").opens == ny(2024, 5, 28, 9, 30)  # Memorial Day: Tuesday's open
    assert week("2024-03-24").closes == ny(2024, 3, 28, 16)  # Good Friday: Thursday's close
    assert week("2024-11-24").closes == ny(2024, 11, 29, 13)  # Thanksgiving week: Friday's early close
    assert (week("2024-03-03").opens, week("2024-03-03").closes) == (ny(2024, 3, 4, 9, 30), ny(2024, 3, 8, 16))


@pytest.mark.parametrize(("cutoff", "expected_start"), [
    (ny(2024, 5, 27, 10), "2024-05-26"),  # Memorial Day, after what would be the open: the market has not opened
    (ny(2024, 5, 27, 23, 59, 59), "2024-05-26"),  # ... nor by the end of the day: the week's four sessions ahead
    (ny(2024, 5, 28, 9, 29), "2024-05-26"),  # Tuesday, a minute before the week's first open
    (ny(2024, 5, 28, 9, 30), "2024-06-02"),  # the open itself: next week
    (ny(2024, 9, 2, 12), "2024-09-01"),  # Labor Day
    (ny(2024, 1, 15, 12), "2024-01-14"),  # Martin Luther King Jr. Day
    (ny(2024, 2, 19, 12), "2024-02-18"),  # Presidents' Day
    (ny(2024, 3, 29, 10), "2024-03-31"),  # Good Friday: the week's sessions are over, the next week's ahead
    (ny(2024, 11, 28, 10), "2024-12-01"),  # Thanksgiving Thursday: the week opened on Monday
])
def test_the_week_to_forecast_is_the_first_whose_first_session_is_ahead(cutoff, expected_start):
    assert forecast_week(cutoff).start.isoformat() == expected_start


def test_a_week_in_which_the_exchange_never_opens_is_skipped():
    # 2001-09-11 to 14 closed after the attacks; the week before trades Monday 2001-09-10 only. Asked on that
    # Monday after the open, the next week to open is the one starting 2001-09-16 (the reopening on the 17th).
    assert forecast_week(ny(2001, 9, 10, 10)).start == dt.date(2001, 9, 16)
    assert closed_at(week("2001-09-09")) == ny(2001, 9, 11, 0)  # eight hours after its one close


def test_a_request_dated_today_knows_no_more_than_the_moment_it_was_asked():
    sunday_evening = ny(2024, 3, 3, 20)
    assert request_cutoff(dt.date(2024, 3, 3), sunday_evening) == sunday_evening
    assert request_cutoff(dt.date(2024, 3, 1), sunday_evening) == ny(2024, 3, 1, 23, 59, 59)
    assert request_cutoff(None, sunday_evening) == sunday_evening


@pytest.mark.parametrize(("as_of", "asked_at", "expected"), [
    # `/forecast AXP <today>` on a Monday before the open: this week, not the next (the old ack said the next one,
    # from the end of today, while the answer forecast this one, from the moment it ran).
    ("2024-03-04", ny(2024, 3, 4, 8), "2024-03-03 to 2024-03-10"),
    # ... on the Sunday before (the ack and the answer agreed here already).
    ("2024-03-03", ny(2024, 3, 3, 20), "2024-03-03 to 2024-03-10"),
    # ... on Memorial Day, asked at noon: the week's first session is Tuesday's.
    ("2024-05-27", ny(2024, 5, 27, 12), "2024-05-26 to 2024-06-02"),
    # Dated the Memorial Day, asked weeks later: as of the end of that day, Tuesday's open still ahead.
    ("2024-05-27", ny(2024, 7, 1, 12), "2024-05-26 to 2024-06-02"),
    # On Good Friday: the next week.
    ("2024-03-29", ny(2024, 3, 29, 11), "2024-03-31 to 2024-04-07"),
    (None, ny(2024, 3, 29, 11), "2024-03-31 to 2024-04-07"),
])
def test_the_week_a_request_forecasts(as_of, asked_at, expected):
    day = dt.date.fromisoformat(as_of) if as_of else None
    assert request_week(day, asked_at).period == expected


def test_a_close_is_struck_at_its_sessions_close():
    assert close_time(dt.date(2024, 11, 29)) == ny(2024, 11, 29, 13)  # the day after Thanksgiving
    assert close_time(dt.date(2024, 12, 24)) == ny(2024, 12, 24, 13)
    assert close_time(dt.date(2024, 11, 27)) == ny(2024, 11, 27, 16)


def test_a_good_friday_week_counts_as_closed_eight_hours_after_thursdays_close():
    assert closed_at(week("2024-03-24")) == ny(2024, 3, 29, 0)
    assert closed_at(week("2024-03-03")) == ny(2024, 3, 9, 0)  # a full week: Saturday 00:00, as before


def test_the_calendar_costs_the_bot_no_pandas_and_about_a_millisecond():
    code = ("import sys, time, datetime as dt\n"
            "from engine.market.weeks import request_week, NEW_YORK\n"
            "t = time.perf_counter()\n"
            "request_week(None, dt.datetime(2024, 5, 27, 12, tzinfo=NEW_YORK))\n"
            "print(time.perf_counter() - t, 'pandas' in sys.modules, 'exchange_calendars' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.split()
    assert out[1:] == ["False", "False"]
    assert float(out[0]) < 0.05  # the table's first read included
