"""Weekly windows, closes, returns and FinGPT bins."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.exceptions import BadDate, NoPriceData
from engine.market.weeks import (
    NEW_YORK,
    Week,
    forecast_week,
    move_bin,
    parse_day,
    past_weeks,
    week_close,
    week_prices,
    weekly_return,
)
from engine.records import DailyClose


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


def closes(*pairs: tuple[str, float]) -> list[DailyClose]:
    return [DailyClose(date=dt.date.fromisoformat(d), close=c) for d, c in pairs]


@pytest.mark.parametrize(
    ("cutoff", "expected_start"),
    [
        (ny(2024, 3, 2, 12), "2024-03-03"),  # Saturday: the coming week
        (ny(2024, 3, 3, 20), "2024-03-03"),  # Sunday evening: the coming week
        (ny(2024, 3, 4, 8), "2024-03-03"),  # Monday before the open (the digest): this week
        (ny(2024, 3, 4, 10), "2024-03-10"),  # Monday after the open: next week
        (ny(2024, 3, 6, 15), "2024-03-10"),  # Wednesday: next week
        (ny(2024, 3, 8, 17), "2024-03-10"),  # Friday after the close: next week
    ],
)
def test_forecast_week_is_the_first_week_not_yet_open(cutoff, expected_start):
    assert forecast_week(cutoff).start.isoformat() == expected_start


def test_forecast_week_needs_an_aware_cutoff():
    with pytest.raises(ValueError):
        forecast_week(dt.datetime(2024, 3, 4))


def test_past_weeks_are_sunday_to_sunday_oldest_first():
    target = Week.ending(dt.date(2024, 3, 10))
    assert [w.period for w in past_weeks(target, 3)] == [
        "2024-02-11 to 2024-02-18", "2024-02-18 to 2024-02-25", "2024-02-25 to 2024-03-03"]
    with pytest.raises(ValueError):
        past_weeks(target, 5)


def test_a_week_must_run_sunday_to_sunday():
    with pytest.raises(ValueError):
        Week(dt.date(2024, 3, 4), dt.date(2024, 3, 11))


def test_holiday_week_closes_on_the_last_trading_day_present():
    # Good Friday 2024-03-29: the week's close is Thursday's.
    series = closes(("2024-03-22", 100.0), ("2024-03-25", 101.0), ("2024-03-28", 103.0), ("2024-04-01", 99.0))
    close = week_close(series, Week.ending(dt.date(2024, 3, 31)), symbol="AXP")
    assert close == DailyClose(date=dt.date(2024, 3, 28), close=103.0)


def test_a_week_with_no_prices_is_a_clear_error():
    series = closes(("2024-03-01", 100.0))
    with pytest.raises(NoPriceData, match="AXP in the week 2024-03-03 to 2024-03-10"):
        week_close(series, Week.ending(dt.date(2024, 3, 10)), symbol="AXP")


def test_news_windows_run_close_to_close_and_the_last_one_to_the_cutoff():
    series = closes(("2024-02-23", 100.0), ("2024-03-01", 102.0), ("2024-03-06", 104.0))
    cutoff = ny(2024, 3, 7, 9)
    target = forecast_week(cutoff)
    got = week_prices(series, past_weeks(target, 2), symbol="AXP", cutoff=cutoff)
    assert [(w.start_close.close, w.end_close.close) for w in got] == [(100.0, 102.0), (102.0, 104.0)]
    assert got[0].news_from == ny(2024, 2, 23, 16) and got[0].news_to == ny(2024, 3, 1, 16)
    assert got[1].news_from == ny(2024, 3, 1, 16) and got[1].news_to == cutoff


@pytest.mark.parametrize(
    ("r", "label", "code", "midpoint"),
    [
        (0.0, "up by 0-1%", "U1", 0.5),  # upstream wrote "up by 0" and crashed
        (0.01, "up by 0-1%", "U1", 0.5),  # exactly 1% is 0-1%
        (0.0100001, "up by 1-2%", "U2", 1.5),
        (1.05 / 1.0 - 1, "up by 4-5%", "U5", 4.5),  # float noise above 5% stays 4-5%
        (0.0500001, "up by more than 5%", "U5+", 5.5),
        (-0.004, "down by 0-1%", "D1", -0.5),
        (-0.025, "down by 2-3%", "D3", -2.5),
        (-0.2, "down by more than 5%", "D5+", -5.5),
    ],
)
def test_move_bins_follow_fingpt(r, label, code, midpoint):
    b = move_bin(r)
    assert (b.label, b.code, b.midpoint) == (label, code, midpoint)
    assert b.prediction_text == label.capitalize()


def test_weekly_return_rejects_impossible_prices():
    assert weekly_return(100.0, 103.0) == pytest.approx(0.03)
    with pytest.raises(ValueError):
        weekly_return(0.0, 1.0)


def test_prompt_prices_reproduce_the_dataset_labels(fingpt_test_rows):
    """For rows whose week appears as a past week elsewhere, the two-decimal prices give the row's label."""
    import re

    head = re.compile(r"From (\S+) to (\S+), (\w+)'s stock price \w+ from ([\d.]+) to ([\d.]+)\.")
    moves = {}
    for row in fingpt_test_rows:
        for start, end, symbol, p0, p1 in head.findall(row["prompt"]):
            moves[(symbol, f"{start} to {end}")] = (float(p0), float(p1))
    checked = 0
    for row in fingpt_test_rows:
        key = (row["symbol"], row["period"])
        if key in moves:
            assert move_bin(weekly_return(*moves[key])).label == row["label"], key
            checked += 1
    assert checked == 270


def test_user_dates_are_checked():
    today = dt.date(2026, 11, 25)
    assert parse_day("2024-03-01", today=today) == dt.date(2024, 3, 1)
    with pytest.raises(BadDate, match="YYYY-MM-DD"):
        parse_day("03/01/2024", today=today)
    with pytest.raises(BadDate, match="future"):
        parse_day("2026-12-01", today=today)
