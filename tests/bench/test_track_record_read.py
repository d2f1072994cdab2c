"""Benchmark: what `/track` costs on a year of forecasts (30 tickers × 52 weeks = 1,560 scored ledger entries) on a
real Redis, against the baseline of only reading the entries back.

Prints the time of each step and its ratio to the plain read. `/track` must answer inside Slack's 3-second ack
window without touching market data, so the figure that matters is `track_record(all tickers)`.

    .venv/bin/python -m pytest tests/bench/test_track_record_read.py -s -m bench
"""

from __future__ import annotations

import datetime as dt
import random
import time

from engine.inputs import Sources
from engine.market.weeks import NEW_YORK, Week
from engine.records import DailyClose
from engine.track import Outcome
from jobs import ledger, track_record
from tests.fakes.forecasts import forecast_json, stepped_market

TICKERS = [f"T{k:02d}" for k in range(30)]
WEEKS = [Week(dt.date(2023, 1, 1), dt.date(2023, 1, 8)).previous(-k) for k in range(52)]
PREDICTIONS = ["Up by 0-1%", "Up by 1-2%", "Up by 2-3%", "Down by 0-1%", "Down by 1-2%", "Down by 3-4%"]


def fill(redis) -> None:
    mem = stepped_market(("AXP",))
    template = forecast_json(Sources(mem, mem, mem), "AXP", at=dt.datetime(2024, 3, 8, 18, tzinfo=NEW_YORK),
                             prediction="Up by 1-2%")
    rng = random.Random(0)
    for week in WEEKS:
        requested = dt.datetime.combine(week.start - dt.timedelta(days=2), dt.time(18), tzinfo=NEW_YORK)
        for ticker in TICKERS:
            label = rng.choice(PREDICTIONS)
            direction, magnitude = label.split(" by ")
            data = {**template, "symbol": ticker, "target_week": week.period, "cutoff": requested.isoformat(),
                    "prediction": {"direction": direction.lower(), "magnitude": magnitude, "label": label.lower(),
                                   "as_written": label}}
            entry_id = ledger.record_forecast(redis, data, job_id=f"digest-{week.start}", user=None, channel="C1",
                                              requested_at=requested, latency_s=1.0, source="digest")
            start = DailyClose(date=week.start - dt.timedelta(days=2), close=100.0)
            end = DailyClose(date=week.end - dt.timedelta(days=2), close=100.0 * (1 + rng.gauss(0, 0.025)))
            ledger.store_outcome(redis, entry_id, Outcome(start, end, rng.gauss(0, 0.025)), scored_at=requested)


def timed(fn, repeat: int = 5) -> float:
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def test_track_reads_a_year_of_forecasts_well_inside_slacks_ack_window(redis):
    fill(redis)
    assert len(ledger.entries(redis)) == len(TICKERS) * len(WEEKS)

    read = timed(lambda: ledger.entries(redis))
    one = timed(lambda: track_record.track_record(redis, "T07"))
    everyone = timed(lambda: track_record.track_record(redis))
    summary = timed(lambda: track_record.report(redis, latest=WEEKS[-1]), repeat=2)

    print(f"\n{len(TICKERS) * len(WEEKS)} scored entries (best of several runs):")
    print(f"  read every entry (baseline)      {1000 * read:8.1f} ms   1.0×")
    print(f"  track_record(one ticker, 52)     {1000 * one:8.1f} ms   {one / read:.2f}×")
    print(f"  track_record(all tickers)        {1000 * everyone:8.1f} ms   {everyone / read:.2f}×")
    print(f"  weekly summary report (2000 bootstrap draws, by ticker too) "
          f"{1000 * summary:8.1f} ms   {summary / read:.2f}×")
