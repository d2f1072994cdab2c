"""Benchmark: what `/track` costs the bot, and what keeping its reports costs the worker, on a year of forecasts
(30 tickers × 52 weeks = 1,560 scored ledger entries) and on ten years (15,600), in a real SQLite file and a real
PostgreSQL.

`/track` reads the scope's stored report and its newest forecasts (`jobs.track_reads`): the goal is `/track` (all
tickers) <= 50 ms at 15,600 entries, and about flat as the ledger grows. The work moved to the writer: recording a
week's 30 digest forecasts, and scoring them, each recompute the 31 scopes they touch (`jobs.ledger.report_builder`)
once per batch. Prints the time of each (best and median of several runs), the ratio to the goal, and, after the
ten-year run, the ratio of ten years to one. For comparison, the report computed on the fly (what `/track` did
before) and the weekly summary's report (2000 draws, computed when it posts).

    .venv/bin/python -m pytest tests/bench/test_track_record_read.py -s -m bench -p no:cacheprovider
"""

from __future__ import annotations

import datetime as dt
import random
import statistics
import time

import pytest

from engine.data.inputs import Sources
from engine.evaluation.track import Outcome, week_from_period
from engine.forecast_record import ForecastRecord, Prediction
from engine.market.weeks import NEW_YORK, Week
from engine.records import DailyClose
from jobs import ledger, track_reads, track_record
from jobs.ledger import report_builder
from jobs.ledger import writes as ledger_writes
from jobs.ledger.fields import forecast_fields, outcome_fields
from jobs.ledger.writes import insert_entries
from tests.fakes.forecasts import canned_forecast, distribution, stepped_market

TICKERS = [f"T{k:02d}" for k in range(30)]
PREDICTIONS = ["Up by 0-1%", "Up by 1-2%", "Up by 2-3%", "Down by 0-1%", "Down by 1-2%", "Down by 3-4%"]
GOAL_S = 0.050
NEW_WEEKS = 3  # digests recorded and scored on top of the filled ledger, each timed

pytestmark = pytest.mark.bench
_READS: dict[tuple[str, int], dict[str, float]] = {}  # (dialect, years) -> the read times, for the growth ratio


def weeks(n: int) -> list[Week]:
    return [Week(dt.date(2015, 1, 4), dt.date(2015, 1, 11)).previous(-k) for k in range(n)]


def _template() -> ForecastRecord:
    mem = stepped_market(("AXP",))
    return canned_forecast(Sources(mem, mem, mem), "AXP", at=dt.datetime(2024, 3, 8, 18, tzinfo=NEW_YORK),
                           prediction="Up by 1-2%", distribution=distribution(0.6, top="U2", p_top=0.3))


def _requested(week: Week) -> dt.datetime:
    return dt.datetime.combine(week.start - dt.timedelta(days=2), dt.time(18), tzinfo=NEW_YORK)


def _forecast(template: ForecastRecord, rng: random.Random, ticker: str, week: Week) -> ForecastRecord:
    label = rng.choice(PREDICTIONS)
    direction, magnitude = label.split(" by ")
    return template.model_copy(update={
        "symbol": ticker, "target_week": week.period, "cutoff": _requested(week).isoformat(),
        "prediction": Prediction(direction=direction.lower(), magnitude=magnitude, label=label.lower(),
                                 as_written=label),
        "probabilities": template.probabilities.model_copy(update={"p_up": rng.random()})})


def _outcome(rng: random.Random, week: Week) -> Outcome:
    start = DailyClose(date=week.start - dt.timedelta(days=2), close=100.0)
    end = DailyClose(date=week.end - dt.timedelta(days=2), close=100.0 * (1 + rng.gauss(0, 0.025)))
    return Outcome(start, end, rng.gauss(0, 0.025))


def fill(store, n_weeks: int) -> Week:
    """One digest forecast per ticker and week, each scored; written in bulk (the writer's own row builders), the
    reports computed once at the end."""
    template, rng = _template(), random.Random(0)
    rows = []
    for week in weeks(n_weeks):
        for ticker in TICKERS:
            data = _forecast(template, rng, ticker, week)
            fields = forecast_fields(data, job_id=f"digest-{week.start}", user=None, channel="C1",
                                     requested_at=_requested(week), latency_s=1.0, source="digest")
            rows.append(fields | outcome_fields(_outcome(rng, week), parsed=True, direction=data.direction,
                                                                     scored_at=_requested(week)))
    with ledger_writes.batched_reports():
        for i in range(0, len(rows), 2000):
            insert_entries(store, rows[i:i + 2000])
    return weeks(n_weeks)[-1]


def timed(fn, repeat: int = 5) -> tuple[float, float]:
    """(best, median) seconds of `repeat` runs."""
    runs = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        runs.append(time.perf_counter() - started)
    return min(runs), statistics.median(runs)


def a_new_weeks_digest(store, week: Week, rng: random.Random) -> tuple[float, float]:
    """Record the week's 30 forecasts as the digest job does, then score them as the weekly summary does (each in
    one batch, its recompute included): (seconds recording, seconds scoring)."""
    template = _template()
    forecasts = [_forecast(template, rng, ticker, week) for ticker in TICKERS]
    started = time.perf_counter()
    with ledger_writes.batched_reports():
        ids = [ledger_writes.record_forecast(store, data, job_id=f"digest-{week.start}", user=None, channel="C1",
                                      requested_at=_requested(week), latency_s=1.0, source="digest")
               for data in forecasts]
    recorded = time.perf_counter() - started
    started = time.perf_counter()
    with ledger_writes.batched_reports():
        for entry_id in ids:
            ledger_writes.store_outcome(store, entry_id, _outcome(rng, week), scored_at=_requested(week))
    return recorded, time.perf_counter() - started


def _ms(best_median: tuple[float, float]) -> str:
    best, median = best_median
    return f"{1000 * best:8.1f} ms (median {1000 * median:7.1f})"


@pytest.mark.parametrize("years", [1, 10])
def test_track_reads_a_stored_report_and_the_writer_keeps_it(ledger_db, years):
    latest = fill(ledger_db, 52 * years)
    rows = len(TICKERS) * 52 * years
    assert ledger.count(ledger_db) == rows
    record = track_reads.track_record(ledger_db)
    assert record.report.counts.scored == rows and record.report.latest_week == latest.period
    assert record.recorded == rows and len(record.recent) == 5

    one = timed(lambda: track_reads.track_record(ledger_db, "T07"), repeat=30)
    everyone = timed(lambda: track_reads.track_record(ledger_db), repeat=30)
    on_the_fly = timed(lambda: report_builder.compute(ledger_db, "*"), repeat=3)
    summary = timed(lambda: track_record.report(ledger_db, latest=week_from_period(latest.period)), repeat=3)
    rng = random.Random(1)
    writes = [a_new_weeks_digest(ledger_db, latest.previous(-k), rng) for k in range(1, NEW_WEEKS + 1)]
    after = track_reads.track_record(ledger_db)
    assert after.recorded == rows + 30 * NEW_WEEKS
    assert after.report.counts.scored == rows + 30 * NEW_WEEKS  # the new weeks' outcomes are in

    dialect = ledger_db.dialect
    _READS[(dialect, years)] = {"one": one[0], "all": everyone[0]}
    print(f"\n{dialect}: {rows:,} scored entries (best of several runs):")
    print(f"  /track T07 (one ticker)                       {_ms(one)}")
    print(f"  /track (all tickers)                          {_ms(everyone)}   = {everyone[0] / GOAL_S:.3f} × "
          f"the {1000 * GOAL_S:.0f} ms goal")
    print(f"  (before: the all-tickers report on the fly)  {_ms(on_the_fly)}")
    print(f"  weekly summary report (2000 draws)            {_ms(summary)}")
    for name, times in (("record", [r for r, _ in writes]), ("score", [s for _, s in writes]),
                        ("record + score", [r + s for r, s in writes])):
        print(f"  writer: a week's 30 forecasts, {name:<15}{_ms((min(times), statistics.median(times)))}  "
              f"(31 reports recomputed; {NEW_WEEKS} weeks)")
    small = _READS.get((dialect, 1))
    if years == 10 and small:
        print(f"  growth 1,560 -> 15,600 entries: /track all × {everyone[0] / small['all']:.2f}, "
              f"/track T07 × {one[0] / small['one']:.2f}")
