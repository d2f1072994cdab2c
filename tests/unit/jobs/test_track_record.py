"""jobs.track_record and jobs.track_reads on a real SQLite file and a real PostgreSQL: outcomes fetched in one price
call, per ticker when one fails; `/track`'s reader answers from stored reports without touching market data, and
the sums aggregated in SQL are exactly those `engine.evaluation.track` gathers from the entries in memory. And the
chart is a PNG."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest

from engine.data.inputs import Sources
from engine.evaluation import track
from engine.evaluation.calibration import reliability
from engine.evaluation.track import week_from_period
from engine.evaluation.track_report import PerSystem, ReliabilityBin, SeriesPoint
from engine.market.weeks import NEW_YORK
from jobs import ledger, track_reads, track_record
from jobs.charts import hit_rate_chart, reliability_chart
from jobs.ledger import fields as ledger_fields
from jobs.ledger import track_queries, writes
from tests.fakes.forecasts import canned_forecast, distribution, stepped_market
from tests.same_report import assert_same

SATURDAY_NIGHT = dt.datetime(2024, 3, 24, 0, tzinfo=NEW_YORK)  # the weeks of Mar 3, 10 and 17 have closed


@pytest.fixture
def market():
    return stepped_market(("AXP", "KO", "MSFT"))


def record(store, market, forecasts, bins=None) -> None:
    sources = Sources(market, market, market)
    for ticker, day, prediction in forecasts:
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        writes.record_forecast(store, canned_forecast(sources, ticker, at=at, prediction=prediction, distribution=bins),
                               job_id=f"job{day}", user="U1", channel="C1", requested_at=at, latency_s=1.0,
                               source="forecast")


def test_outcomes_for_every_ticker_come_from_one_price_call(ledger_db, market):
    record(ledger_db, market, [("AXP", 1, "Down by 0-1%"), ("KO", 8, "Up by 2-3%"), ("MSFT", 15, "Up by 0-1%")])
    market.calls.clear()
    stored, failures = track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                       scored_at=SATURDAY_NIGHT)
    assert (stored, failures) == (3, {})
    assert market.calls["prices"] == 1
    assert [e["hit"] for e in ledger.entries(ledger_db)] == [False, True, True]
    # Nothing left to score: no second call.
    assert track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                       scored_at=SATURDAY_NIGHT) == (0, {})
    assert market.calls["prices"] == 1


def test_one_ticker_without_prices_does_not_hold_back_the_others(ledger_db, market):
    record(ledger_db, market, [("AXP", 1, "Down by 0-1%"), ("KO", 8, "Up by 2-3%")])
    del market.closes["KO"]
    stored, failures = track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                       scored_at=SATURDAY_NIGHT)
    assert stored == 1 and failures == {"KO": "no prices were found for this ticker in that period"}  # for Slack
    assert ledger.get_entry(ledger_db, "job8:KO")["scored_at"] is None  # still pending: tried again next week
    assert [e["id"] for e in ledger.awaiting_outcome(ledger_db, closed_by=SATURDAY_NIGHT)] == ["job8:KO"]


def test_a_week_not_closed_yet_is_left_alone(ledger_db, market):
    record(ledger_db, market, [("AXP", 15, "Up by 0-1%")])
    friday_close = dt.datetime(2024, 3, 22, 16, 30, tzinfo=NEW_YORK)
    assert track_record.refresh_outcomes(ledger_db, market, closed_by=friday_close, scored_at=friday_close) == (0, {})


def test_track_record_reads_stored_outcomes_only(ledger_db, market):
    record(ledger_db, market, [("AXP", 1, "Down by 0-1%"), ("AXP", 8, "Down by 1-2%"), ("KO", 8, "Up by 0-1%"),
                           ("AXP", 22, "Up by 0-1%")])
    track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                       scored_at=SATURDAY_NIGHT)
    market.calls.clear()

    axp = track_reads.track_record(ledger_db, "axp", recent=2)
    assert sum(market.calls.values()) == 0  # no market data touched
    assert axp.ticker == "AXP" and axp.recorded == 3
    model = axp.report.cumulative.model
    assert (model.hits, model.n) == (1, 2)  # Mar 3 week right, Mar 10 week wrong
    assert axp.report.latest_week == "2024-03-10 to 2024-03-17"
    assert axp.report.counts.pending == 1
    assert [(r.target_week, r.actual_label, r.hit) for r in axp.recent] == [
        ("2024-03-24 to 2024-03-31", None, None), ("2024-03-10 to 2024-03-17", "up by 2-3%", False)]

    everyone = track_reads.track_record(ledger_db)
    assert everyone.ticker is None and everyone.report.cumulative.model.n == 3
    assert len(everyone.recent) == 4


def test_track_record_before_anything_is_scored(ledger_db, market):
    record(ledger_db, market, [("AXP", 22, "Up by 0-1%")])
    empty = track_reads.track_record(ledger_db, "AXP")
    assert empty.report is None and empty.recorded == 1 and empty.recent[0].counted is True


def test_the_chart_is_a_png_even_for_a_single_week():
    point = SeriesPoint(period="2024-03-10 to 2024-03-17", end=dt.date(2024, 3, 17), n=2,
                        hit_rates=PerSystem[float](model=0.5, down=0.0, up=1.0, momentum=0.5))
    png = hit_rate_chart([point], title="Cumulative hit rate")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    with pytest.raises(ValueError, match="nothing to chart"):
        hit_rate_chart([], title="empty")


def test_track_record_scores_the_stored_probabilities(ledger_db, market):
    record(ledger_db, market, [("AXP", 1, "Down by 0-1%"), ("KO", 8, "Up by 2-3%")],
           bins=distribution(0.25, top="D1", p_top=0.5))
    record(ledger_db, market, [("MSFT", 8, "Up by 0-1%")])  # no probability: counted for hits, not for calibration
    track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                       scored_at=SATURDAY_NIGHT)
    calibration = track_reads.track_record(ledger_db).report.calibration
    # Week of Mar 3 went down: (0.25 - 0)² = 0.0625; Mar 10 went up: (0.25 - 1)² = 0.5625. Mean 0.3125.
    assert calibration.n == 2 and calibration.brier == pytest.approx(0.3125)
    assert calibration.enough is False


def test_the_reliability_chart_is_a_png_and_refuses_an_empty_record():
    def bins(p_up: list[float], up: list[bool]) -> list[ReliabilityBin]:
        return [ReliabilityBin(**b) for b in reliability(p_up, up)]

    png = reliability_chart(bins([0.1, 0.35, 0.8, 0.85], [False, True, True, False]), title="Reliability",
                            summary="Brier 0.2 · ECE 0.1 · n 4")
    assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000
    with pytest.raises(ValueError, match="nothing to chart"):
        reliability_chart(bins([], []), title="empty")


LATE_ONE = 7


def _plain(sums) -> dict:
    """TrackSums as plain data, each ticker's hits as nested lists, for `assert_same`."""
    found = dataclasses.asdict(sums)
    for row in found["by_ticker"]:
        row["hits"] = row["hits"].tolist()
    return found


def test_the_sql_sums_and_report_are_those_gathered_in_memory_from_the_same_entries(ledger_db, market):
    """Late, superseded, unparsed, probability and no-probability forecasts over three tickers and four weeks: the
    sums the ledger gathers in SQL are the sums `engine.evaluation.track` gathers from its entries in memory, and so
    is the report both hand to `score_report` (its figures are held to the evaluator's own code in
    tests/unit/engine/test_track.py)."""
    sources = Sources(market, market, market)
    bins = [distribution(0.25, top="D1", p_top=0.5), distribution(0.8, top="U2", p_top=0.4), None]
    requests = [("AXP", 1, 18, "Down by 0-1%"), ("KO", 1, 18, "Up by 2-3%"), ("MSFT", 1, 18, None),
                ("AXP", 8, 9, "Up by 1-2%"), ("AXP", 8, 18, "Down by more than 5%"),  # the earlier is superseded
                ("KO", 8, 18, "Up by 0-1%"), ("MSFT", 8, 18, "Down by 2-3%"),
                ("KO", 8, 18, "Up by 4-5%"),  # asked on Tuesday the 12th with the 8th's data (LATE_ONE): late
                ("AXP", 15, 18, "Up by 3-4%"), ("KO", 15, 18, None), ("MSFT", 15, 18, "Up by 0-1%"),
                ("AXP", 22, 18, "Up by 0-1%")]  # pending
    for i, (ticker, day, hour, prediction) in enumerate(requests):
        at = dt.datetime(2024, 3, day, hour, tzinfo=NEW_YORK)
        requested = dt.datetime(2024, 3, 12, 10, tzinfo=NEW_YORK) if i == LATE_ONE else at
        writes.record_forecast(ledger_db, canned_forecast(sources, ticker, at=at, prediction=prediction,
                                                        distribution=bins[i % 3]),
                               job_id=f"job{i}", user="U1", channel="C1", requested_at=requested, latency_s=1.0,
                               source="forecast")
    track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                       scored_at=SATURDAY_NIGHT)
    entries = [ledger_fields.to_track_entry(e) for e in ledger.entries(ledger_db)]
    for ticker in (None, "AXP", "KO"):
        chosen = [e for e in entries if ticker in (None, e.symbol)]
        for latest in ("2024-03-17 to 2024-03-24", "2024-03-10 to 2024-03-17"):
            week = week_from_period(latest)
            assert_same(_plain(track_queries.track_sums(ledger_db, latest=week, ticker=ticker)),
                        _plain(track.track_sums(chosen, latest=week)), f"sums {ticker} {latest}")
            expected = track.score_track(chosen, latest=week, bootstrap=300)
            assert_same(track_record.report(ledger_db, latest=week, ticker=ticker, bootstrap=300).model_dump(),
                        expected.model_dump())
    full = track_record.report(ledger_db, latest=week_from_period("2024-03-17 to 2024-03-24"))
    assert full.counts.late == 1 and full.counts.superseded == 1 and full.counts.pending == 1
    assert full.counts.unparsed == 2 and full.calibration.n > 0


# ---- which forecast counts, decided when each is recorded ----------------------------------------------------


def _statuses_match_select_counted(store) -> None:
    from engine.evaluation.track import select_counted
    from jobs.ledger.track_queries import statuses_of

    entries = ledger.entries(store)
    counted, excluded = select_counted([ledger_fields.to_track_entry(e) for e in entries])
    expected = {e.entry_id: "counted" for e in counted} | excluded
    assert statuses_of(store, [e["id"] for e in entries]) == expected


def test_a_later_forecast_supersedes_whatever_order_they_are_recorded_in(ledger_db, market):
    sources = Sources(market, market, market)
    friday, thursday = (dt.datetime(2024, 3, d, 18, tzinfo=NEW_YORK) for d in (8, 7))
    for job, at in (("job-fri", friday), ("job-thu", thursday), ("job-tie", friday)):  # the later first
        writes.record_forecast(ledger_db, canned_forecast(sources, "AXP", at=at, prediction="Up by 1-2%"),
                               job_id=job, user="U1", channel="C1", requested_at=at, latency_s=1.0,
                               source="forecast")
    _statuses_match_select_counted(ledger_db)
    # Same request instant: the greater id counts ("job-tie:AXP" > "job-fri:AXP").
    assert track_reads.track_record(ledger_db, "AXP").recent[0].id == "job-tie:AXP"
    assert [r.counted for r in track_reads.track_record(ledger_db, "AXP").recent] == [True, False, False]


def test_two_writers_at_once_leave_one_counted_forecast_per_ticker_and_week(ledger_db, market):
    """Two processes' engines recording forecasts for the same ticker and weeks at the same moment."""
    import threading

    sources = Sources(market, market, market)
    base = dt.datetime(2024, 3, 8, 12, tzinfo=NEW_YORK)
    data = {t: canned_forecast(sources, t, at=base, prediction="Up by 1-2%") for t in ("AXP", "KO")}
    writers = [ledger.Ledger(ledger_db.url) for _ in range(2)]
    start = threading.Barrier(len(writers))
    failures = []

    def write(k: int) -> None:
        try:
            start.wait(timeout=30)
            for i in range(12):
                at = base + dt.timedelta(minutes=i, seconds=k)  # interleaved request instants
                writes.record_forecast(writers[k], data["AXP" if i % 3 else "KO"], job_id=f"w{k}-{i}",
                                       user="U1", channel="C1", requested_at=at, latency_s=1.0, source="forecast")
        except Exception as exc:  # noqa: BLE001 — reported below, on the test's thread
            failures.append(exc)

    threads = [threading.Thread(target=write, args=(k,)) for k in range(len(writers))]
    try:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=120)
    finally:
        for writer in writers:
            writer.dispose()
    assert failures == [] and ledger.count(ledger_db) == 24
    _statuses_match_select_counted(ledger_db)
    # Each writer recomputed its scopes after each write, interleaved with the other's: the last report of each
    # scope still folds in every write of both, and none is left stale.
    from jobs.ledger import reports

    for scope, recorded in (("*", 24), ("AXP", 16), ("KO", 8)):
        stored = reports.read(ledger_db, scope)
        assert (stored.generation, stored.recorded, stored.stale) == (recorded, recorded, False), scope
        assert stored.report is None  # nothing scored yet
