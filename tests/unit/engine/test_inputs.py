"""Gathering a forecast's inputs: weeks, closes, news windows, financials, notes, partial failures."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.data.inputs import Sources, gather, select_report
from engine.data.prompts import NO_BASICS, NO_NEWS, build_user_prompt
from engine.exceptions import NoPriceData, UnknownTicker
from engine.market.weeks import NEW_YORK
from engine.records import BasicFinancials, NewsItem
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


@pytest.fixture
def mem() -> MemorySources:
    src = MemorySources()
    for symbol in ("AXP", "KO"):
        src.profiles[symbol] = synthetic_profile(symbol)
        src.closes[symbol] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 4, 30),
                                            holidays=[dt.date(2024, 3, 29)])
    src.reports["AXP"] = [
        BasicFinancials(period="2024-03-31", metrics={"eps": 3.3}),
        BasicFinancials(period="2023-12-31", metrics={"eps": 2.6}),
        BasicFinancials(period="2023-09-30", metrics={"eps": 3.0}),
    ]
    src.news["AXP"] = [
        NewsItem(published=ny(2024, 3, 1, 15, 0), headline=f"Early item {i}") for i in range(2)
    ] + [
        NewsItem(published=ny(2024, 3, 1, 17, 0) + dt.timedelta(hours=i), headline=f"Week two item {i}")
        for i in range(8)
    ]
    return src


def sources(mem: MemorySources) -> Sources:
    return Sources(news=mem, fundamentals=mem, prices=mem)


def test_backtest_inputs_cover_the_weeks_before_the_target(mem):
    cutoff = ny(2024, 3, 9, 23, 59)
    result = gather(["AXP"], sources=sources(mem), cutoff=cutoff, now=ny(2026, 11, 25, 12), weeks=2)["AXP"]

    assert result.target.period == "2024-03-10 to 2024-03-17"
    assert [b.start for b in result.parts.weeks] == ["2024-02-25", "2024-03-03"]
    # Week 1 (Feb 23 close .. Mar 1 close) has the two early items; week 2 samples 5 of 8.
    assert [n.used for n in result.news] == [2, 5] and [n.available for n in result.news] == [2, 8]
    assert result.latest_close.date == dt.date(2024, 3, 8)
    # A backtest counts a quarter as public only 45 days after it ends: the 2023-12-31 report.
    assert result.parts.financials.period == "2023-12-31"
    assert mem.calls["prices"] == 1


def test_same_request_gives_the_same_prompt(mem):
    args = dict(sources=sources(mem), cutoff=ny(2024, 3, 9, 12), now=ny(2026, 11, 25, 12), weeks=2)
    first = build_user_prompt(gather(["AXP"], **args)["AXP"].parts)
    assert build_user_prompt(gather(["AXP"], **args)["AXP"].parts) == first


def test_live_forecast_uses_the_latest_report_and_drops_closes_not_struck_yet(mem):
    now = ny(2024, 4, 24, 11, 0)  # Wednesday morning: Wednesday's close does not exist yet
    mem.closes["AXP"].append(mem.closes["AXP"][-1].model_copy(update={"date": dt.date(2024, 4, 24)}))
    result = gather(["AXP"], sources=sources(mem), cutoff=now, now=now, weeks=1)["AXP"]
    assert result.parts.financials.period == "2024-03-31"
    assert result.latest_close.date == dt.date(2024, 4, 23)
    assert result.target.period == "2024-04-28 to 2024-05-05"
    assert result.parts.weeks[-1].start == "2024-04-21"


def test_a_week_without_news_says_so_in_the_prompt_and_in_the_notes(mem):
    result = gather(["KO"], sources=sources(mem), cutoff=ny(2024, 3, 9, 12), now=ny(2026, 11, 25), weeks=2)["KO"]
    assert result.empty_weeks == 2
    assert NO_NEWS in build_user_prompt(result.parts)
    assert NO_BASICS in build_user_prompt(result.parts)
    assert any("no news found for KO" in note for note in result.notes)
    assert any("no quarterly basic financials" in note for note in result.notes)


def test_one_bad_symbol_does_not_sink_the_others(mem):
    results = gather(["AXP", "ZZZZ", "KO"], sources=sources(mem), cutoff=ny(2024, 3, 9, 12),
                     now=ny(2026, 11, 25), weeks=1)
    assert isinstance(results["ZZZZ"], NoPriceData) and "ZZZZ" in str(results["ZZZZ"])
    assert results["AXP"].symbol == "AXP" and results["KO"].symbol == "KO"


def test_unknown_profile_is_reported_per_symbol(mem):
    mem.closes["NEW"] = mem.closes["AXP"]
    results = gather(["NEW"], sources=sources(mem), cutoff=ny(2024, 3, 9, 12), now=ny(2026, 11, 25), weeks=1)
    assert isinstance(results["NEW"], UnknownTicker)


def test_holiday_week_uses_thursdays_close(mem):
    result = gather(["AXP"], sources=sources(mem), cutoff=ny(2024, 4, 6, 12), now=ny(2026, 11, 25), weeks=2)["AXP"]
    good_friday_week = result.parts.weeks[0]
    assert good_friday_week.start == "2024-03-24"
    closes = {c.date: c.close for c in mem.closes["AXP"]}
    assert good_friday_week.end_price == closes[dt.date(2024, 3, 28)]


def test_without_financials_the_prompt_says_none_reported(mem):
    result = gather(["AXP"], sources=sources(mem), cutoff=ny(2024, 3, 9, 12), now=ny(2026, 11, 25), weeks=1,
                    with_financials=False)["AXP"]
    assert result.parts.financials is None and mem.calls["financials"] == 0


def test_select_report_respects_the_lag():
    reports = [BasicFinancials(period="2024-03-31", metrics={}), BasicFinancials(period="2023-12-31", metrics={})]
    assert select_report(reports, cutoff=dt.date(2024, 4, 5), lag_days=0).period == "2024-03-31"
    assert select_report(reports, cutoff=dt.date(2024, 4, 5), lag_days=45).period == "2023-12-31"
    assert select_report(reports, cutoff=dt.date(2023, 12, 31), lag_days=0) is None
