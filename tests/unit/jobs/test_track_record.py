"""jobs.track_record on a real Redis: outcomes fetched in one price call, per ticker when one fails; `/track`'s
reader answers from stored outcomes without touching market data. And the chart is a PNG."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.inputs import Sources
from engine.market.weeks import NEW_YORK
from engine.metrics import reliability
from jobs import ledger, track_record
from jobs.charts import hit_rate_chart, reliability_chart
from tests.fakes.forecasts import distribution, forecast_json, stepped_market

SATURDAY_NIGHT = dt.datetime(2024, 3, 24, 0, tzinfo=NEW_YORK)  # the weeks of Mar 3, 10 and 17 have closed


@pytest.fixture
def market():
    return stepped_market(("AXP", "KO", "MSFT"))


def record(redis, market, forecasts, bins=None) -> None:
    sources = Sources(market, market, market)
    for ticker, day, prediction in forecasts:
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        ledger.record_forecast(redis, forecast_json(sources, ticker, at=at, prediction=prediction, distribution=bins),
                               job_id=f"job{day}", user="U1", channel="C1", requested_at=at, latency_s=1.0,
                               source="forecast")


def test_outcomes_for_every_ticker_come_from_one_price_call(redis, market):
    record(redis, market, [("AXP", 1, "Down by 0-1%"), ("KO", 8, "Up by 2-3%"), ("MSFT", 15, "Up by 0-1%")])
    market.calls.clear()
    stored, failures = track_record.refresh_outcomes(redis, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)
    assert (stored, failures) == (3, {})
    assert market.calls["prices"] == 1
    assert [e["hit"] for e in ledger.entries(redis)] == [False, True, True]
    # Nothing left to score: no second call.
    assert track_record.refresh_outcomes(redis, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT) == (0, {})
    assert market.calls["prices"] == 1


def test_one_ticker_without_prices_does_not_hold_back_the_others(redis, market):
    record(redis, market, [("AXP", 1, "Down by 0-1%"), ("KO", 8, "Up by 2-3%")])
    del market.closes["KO"]
    stored, failures = track_record.refresh_outcomes(redis, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)
    assert stored == 1 and list(failures) == ["KO"] and "no prices for KO" in failures["KO"]
    assert ledger.get_entry(redis, "job8:KO")["scored_at"] is None  # still pending: tried again next week
    assert [e["id"] for e in ledger.awaiting_outcome(redis, closed_by=SATURDAY_NIGHT)] == ["job8:KO"]


def test_a_week_not_closed_yet_is_left_alone(redis, market):
    record(redis, market, [("AXP", 15, "Up by 0-1%")])
    friday_close = dt.datetime(2024, 3, 22, 16, 30, tzinfo=NEW_YORK)
    assert track_record.refresh_outcomes(redis, market, closed_by=friday_close, scored_at=friday_close) == (0, {})


def test_track_record_reads_stored_outcomes_only(redis, market):
    record(redis, market, [("AXP", 1, "Down by 0-1%"), ("AXP", 8, "Down by 1-2%"), ("KO", 8, "Up by 0-1%"),
                           ("AXP", 22, "Up by 0-1%")])
    track_record.refresh_outcomes(redis, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)
    market.calls.clear()

    axp = track_record.track_record(redis, "axp", recent=2)
    assert sum(market.calls.values()) == 0  # no market data touched
    assert axp["ticker"] == "AXP" and axp["recorded"] == 3
    model = axp["report"]["cumulative"]["model"]
    assert (model["hits"], model["n"]) == (1, 2)  # Mar 3 week right, Mar 10 week wrong
    assert axp["report"]["latest_week"] == "2024-03-10 to 2024-03-17"
    assert axp["report"]["counts"]["pending"] == 1
    assert [(r["target_week"], r["actual_label"], r["hit"]) for r in axp["recent"]] == [
        ("2024-03-24 to 2024-03-31", None, None), ("2024-03-10 to 2024-03-17", "up by 2-3%", False)]

    everyone = track_record.track_record(redis)
    assert everyone["ticker"] is None and everyone["report"]["cumulative"]["model"]["n"] == 3
    assert len(everyone["recent"]) == 4


def test_track_record_before_anything_is_scored(redis, market):
    record(redis, market, [("AXP", 22, "Up by 0-1%")])
    empty = track_record.track_record(redis, "AXP")
    assert empty["report"] is None and empty["recorded"] == 1 and empty["recent"][0]["counted"] is True


def test_the_chart_is_a_png_even_for_a_single_week():
    point = {"period": "2024-03-10 to 2024-03-17", "end": "2024-03-17", "n": 2, "model": 0.5,
             "constant Down by 0-1%": 0.0, "constant Up by 0-1%": 1.0, "last-week momentum": 0.5}
    png = hit_rate_chart([point], title="Cumulative hit rate")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    with pytest.raises(ValueError, match="nothing to chart"):
        hit_rate_chart([], title="empty")


def test_track_record_scores_the_stored_probabilities(redis, market):
    record(redis, market, [("AXP", 1, "Down by 0-1%"), ("KO", 8, "Up by 2-3%")],
           bins=distribution(0.25, top="D1", p_top=0.5))
    record(redis, market, [("MSFT", 8, "Up by 0-1%")])  # no probability: counted for hits, not for calibration
    track_record.refresh_outcomes(redis, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)
    calibration = track_record.track_record(redis)["report"]["calibration"]
    # Week of Mar 3 went down: (0.25 - 0)² = 0.0625; Mar 10 went up: (0.25 - 1)² = 0.5625. Mean 0.3125.
    assert calibration["n"] == 2 and calibration["brier"] == pytest.approx(0.3125)
    assert calibration["enough"] is False


def test_the_reliability_chart_is_a_png_and_refuses_an_empty_record():
    png = reliability_chart(reliability([0.1, 0.35, 0.8, 0.85], [False, True, True, False]), title="Reliability",
                            summary="Brier 0.2 · ECE 0.1 · n 4")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    with pytest.raises(ValueError, match="nothing to chart"):
        reliability_chart(reliability([], []), title="empty")
