"""The stored `/track` reports on a real SQLite file and a real PostgreSQL: after every kind of write each scope's
report is `engine.evaluation.track.score_track`'s from scratch; a batch of writes recomputes each scope once; the bot's
reader returns what the old on-the-fly reader did, without numpy; and a report a crash left stale is detected
and healed."""

from __future__ import annotations

import datetime as dt
import json
import os
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import delete, event, update

from bot.track_blocks import track_message
from engine.data.inputs import Sources
from engine.evaluation import track_report
from engine.evaluation.track import score_track, week_from_period
from engine.market.weeks import NEW_YORK
from jobs import ledger, track_reads, track_record
from jobs.ledger import fields as ledger_fields
from jobs.ledger import reports, writes
from jobs.ledger.models import TrackReport
from jobs.ledger.report_builder import TRACK_BOOTSTRAP
from jobs.ledger.track_queries import latest_scored_week, statuses_of
from jobs.ledger.views import Feedback, RecentForecast, TrackView
from jobs.worker import catch_up_track_reports
from tests.fakes.forecasts import canned_forecast, distribution, stepped_market
from tests.same_report import assert_same

ROOT = Path(__file__).resolve().parents[3]
TICKERS = ("AXP", "KO", "MSFT")
SATURDAY_NIGHT = dt.datetime(2024, 3, 24, 0, tzinfo=NEW_YORK)  # the weeks of Mar 3, 10 and 17 have closed


@pytest.fixture
def market():
    return stepped_market(TICKERS)


def _at(day: int, hour: int = 18) -> dt.datetime:
    return dt.datetime(2024, 3, day, hour, tzinfo=NEW_YORK)


def record(store, market, ticker, day, prediction, *, job, requested=None, bins=None) -> str:
    data = canned_forecast(Sources(market, market, market), ticker, at=_at(day), prediction=prediction,
                         distribution=bins)
    return writes.record_forecast(store, data, job_id=job, user="U1", channel="C1",
                                  requested_at=requested or _at(day), latency_s=1.0, source="forecast")


def from_scratch(store, scope: str) -> track_report.TrackReport | None:
    """`score_track` over every entry of the scope (the sums gathered in memory, not in SQL), up to its latest scored
    week, with /track's draws, without the series /track does not keep."""
    chosen = [ledger_fields.to_track_entry(e) for e in ledger.entries(store, ticker=None if scope == "*" else scope)]
    scored = [e.week for e in chosen if e.realized_return is not None]
    if not scored:
        return None
    report = score_track(chosen, latest=max(scored, key=lambda w: w.start), bootstrap=TRACK_BOOTSTRAP)
    return report.model_copy(update={"series": None})


def assert_every_report_is_current(store) -> None:
    scopes = reports.all_scopes(store)
    assert reports.needing_rebuild(store) == []
    for scope in scopes:
        stored = reports.read(store, scope)
        assert not stored.stale, scope
        assert stored.recorded == ledger.count(store, ticker=None if scope == "*" else scope), scope
        expected = from_scratch(store, scope)
        if expected is None:
            assert stored.report is None and stored.latest_week is None, scope
        else:
            assert_same(stored.report.model_dump(), expected.model_dump(), f"{scope}")
            assert stored.latest_week == expected.latest_week, scope


def test_the_stored_report_is_the_report_from_scratch_after_every_kind_of_write(ledger_db, market):
    bins = distribution(0.25, top="D1", p_top=0.5)
    record(ledger_db, market, "AXP", 1, "Down by 0-1%", job="a1", bins=bins)
    record(ledger_db, market, "KO", 1, "Up by 2-3%", job="k1")
    record(ledger_db, market, "MSFT", 8, None, job="m8")  # unparsed
    record(ledger_db, market, "AXP", 8, "Up by 1-2%", job="a8", bins=bins)
    assert_every_report_is_current(ledger_db)  # recorded, nothing scored: pending only

    track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)
    assert reports.read(ledger_db, "*").report.counts.scored == 4
    assert_every_report_is_current(ledger_db)

    # Asked on Friday the 8th, recorded only now: it supersedes the scored a8, so the week of Mar 10 is pending again
    record(ledger_db, market, "AXP", 8, "Down by 1-2%", job="a8-later", requested=_at(8, 20))
    assert reports.read(ledger_db, "AXP").report.counts.superseded == 1
    assert_every_report_is_current(ledger_db)

    # Asked on Tuesday the 12th about the week that opened on Monday: kept, never counted
    record(ledger_db, market, "KO", 8, "Up by 4-5%", job="k-late", requested=_at(12, 10))
    assert reports.read(ledger_db, "KO").report.counts.late == 1
    assert_every_report_is_current(ledger_db)

    track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)
    assert_every_report_is_current(ledger_db)

    # A rescore: the same entry's outcome stored again, by hand
    from engine.evaluation.track import realized_outcome

    entry = ledger.get_entry(ledger_db, "a1:AXP")
    outcome = realized_outcome(market.closes["AXP"], week_from_period(entry["target_week"]), symbol="AXP")
    before = reports.read(ledger_db, "AXP")
    assert writes.store_outcome(ledger_db, "a1:AXP", outcome, scored_at=SATURDAY_NIGHT + dt.timedelta(days=7))
    after = reports.read(ledger_db, "AXP")
    assert after.generation == before.generation + 1 and after.computed_at >= before.computed_at
    assert_every_report_is_current(ledger_db)


def _saves(store) -> Counter:
    """Counts, per scope, the statements that store a computed report (`reports.save`), from now on."""
    saved: Counter = Counter()

    def seen(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith("INSERT INTO TRACK_REPORTS") and "computed_generation" in statement:
            for values in (parameters if executemany else [parameters]):
                saved[values["scope"] if isinstance(values, dict) else values[0]] += 1

    event.listen(store.engine, "before_cursor_execute", seen)
    return saved


def test_a_digest_batch_recomputes_each_scope_once(ledger_db):
    digest = tuple(f"T{k:02d}" for k in range(30))
    market = stepped_market(digest)
    sources = Sources(market, market, market)
    forecasts = [canned_forecast(sources, ticker, at=_at(8), prediction="Up by 1-2%") for ticker in digest]
    saved = _saves(ledger_db)
    with writes.batched_reports():  # as the digest job records its thirty
        for data in forecasts:
            writes.record_forecast(ledger_db, data, job_id="digest-1", user=None, channel="C1", requested_at=_at(8),
                                   latency_s=1.0, source="digest")
        assert saved == Counter()  # nothing before the batch ends
    assert saved == Counter({scope: 1 for scope in ("*", *digest)})

    saved.clear()
    stored, failures = track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT,
                                                     scored_at=SATURDAY_NIGHT)
    assert (stored, failures) == (30, {})
    assert saved == Counter({scope: 1 for scope in ("*", *digest)})  # a week's outcomes: once each too
    assert_every_report_is_current(ledger_db)

    saved.clear()  # outside a batch, each write recomputes its own scopes
    for ticker in digest[:2]:
        record(ledger_db, market, ticker, 15, "Up by 0-1%", job="one-by-one")
    assert saved == Counter({"*": 2, digest[0]: 1, digest[1]: 1})


def _old_track_record(store, ticker: str | None, recent: int) -> dict:
    """What jobs.track_record.track_record answered before the reports were stored: all of it computed now."""
    ticker = ticker.upper() if ticker else None
    latest = latest_scored_week(store, ticker=ticker)
    result = (track_record.report(store, latest=week_from_period(latest), ticker=ticker, bootstrap=TRACK_BOOTSTRAP)
              if latest else None)
    rows = ledger.entries(store, ticker=ticker, limit=max(recent, 0), texts=False)
    statuses = statuses_of(store, [row["id"] for row in rows])
    return {"ticker": ticker, "recorded": ledger.count(store, ticker=ticker), "report": result, "recent": [
        {"id": r["id"], "ticker": r["ticker"], "target_week": r["target_week"], "requested_at": r["requested_at"],
         "source": r["source"], "parsed": r["parsed"], "direction": r["direction"], "label": r["label"],
         "as_written": r["as_written"], "clear_signal": r["clear_signal"], "actual_label": r["actual_label"],
         "realized_return": r["realized_return"], "hit": r["hit"], "counted": statuses[r["id"]] == "counted",
         "why_not_counted": None if statuses[r["id"]] == "counted" else statuses[r["id"]]} for r in rows]}


NO_FEEDBACK = Feedback(up=0, down=0, voters=0, forecasts=0, up_scored=0, up_hits=0, down_scored=0, down_hits=0)


def _as_view(old: dict) -> TrackView:
    """The old reader's answer as today's view, with what the reader adds since (issue 22): no votes, no feedback."""
    recent = tuple(RecentForecast(**row, votes_up=0, votes_down=0) for row in old["recent"])
    return TrackView(**old | {"recent": recent}, feedback=NO_FEEDBACK)


def _mixed_ledger(store, market) -> None:
    for i, (ticker, day, prediction) in enumerate([("AXP", 1, "Down by 0-1%"), ("KO", 1, "Up by 2-3%"),
                                                   ("AXP", 8, "Up by 1-2%"), ("MSFT", 8, None),
                                                   ("KO", 15, "Up by 0-1%"), ("AXP", 22, "Up by 0-1%")]):
        record(store, market, ticker, day, prediction, job=f"j{i}", bins=distribution(0.6, top="U1", p_top=0.3))
    record(store, market, "AXP", 8, "Down by 2-3%", job="later", requested=_at(8, 21))  # supersedes j2
    record(store, market, "KO", 8, "Up by 4-5%", job="late", requested=_at(12, 10))
    track_record.refresh_outcomes(store, market, closed_by=SATURDAY_NIGHT, scored_at=SATURDAY_NIGHT)


def test_the_reader_returns_what_the_old_reader_computed(ledger_db, market):
    _mixed_ledger(ledger_db, market)
    for ticker in (None, "axp", "KO", "MSFT", "NOPE"):
        for recent in (0, 3, 5):
            ours, theirs = track_reads.track_record(ledger_db, ticker, recent=recent), \
                _old_track_record(ledger_db, ticker, recent)
            # What the reader adds since (issue 22): the feedback and each row's votes, none here.
            assert ours.feedback == NO_FEEDBACK
            assert all((row.votes_up, row.votes_down) == (0, 0) for row in ours.recent)
            if theirs["report"] is not None:  # the old reader also returned the chart's series; /track never drew it
                theirs["report"] = theirs["report"].model_copy(update={"series": None})
            theirs = _as_view(theirs)  # every field the old reader answered, none missing, none unknown
            assert_same(ours.to_json(), theirs.to_json(), f"/track {ticker} recent={recent}")
            assert track_message(ours) == track_message(theirs)  # the same message in Slack
    assert track_reads.track_record(ledger_db, "NOPE") == TrackView(ticker="NOPE", recorded=0, report=None, recent=(),
                                                                    feedback=NO_FEEDBACK)


READ_IN_A_FRESH_PROCESS = """
import json, sys
import jobs.ledger, jobs.track_reads
heavy = sorted({"numpy", "pandas", "apscheduler"} & set(sys.modules))
answers = [jobs.track_reads.track_record(jobs.ledger.Ledger(sys.argv[1]), t) for t in (None, "AXP")]
heavy_after = sorted({"numpy", "pandas", "apscheduler"} & set(sys.modules))
answers = [a.to_json() for a in answers]
print(json.dumps({"heavy": heavy, "heavy_after": heavy_after, "answers": answers}))
"""


def _python(script: str, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", script, *args], input=stdin, capture_output=True, text=True,
                          timeout=120, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})


def test_the_bot_reads_the_track_record_without_numpy_pandas_or_apscheduler(ledger_db, market):
    _mixed_ledger(ledger_db, market)
    done = _python(READ_IN_A_FRESH_PROCESS, ledger_db.url)
    assert done.returncode == 0, done.stderr
    found = json.loads(done.stdout)
    assert found["heavy"] == [] and found["heavy_after"] == []  # importing, and answering /track
    expected = [track_reads.track_record(ledger_db, t).to_json() for t in (None, "AXP")]
    assert found["answers"] == json.loads(json.dumps(expected))
    assert found["answers"][1]["report"]["cumulative"]["model"]["n"] == 2


@pytest.mark.parametrize("module", ["jobs.ledger.columns", "jobs.ledger.views", "jobs.track_reads"])
def test_the_ledgers_plain_names_stay_off_the_numeric_stack(module):
    """The bot reads the ledger through jobs.ledger.columns, which takes the standings from the track report's type,
    and reads /track's view, the feedback and the last calls as jobs.ledger.views' types."""
    code = (f"import sys; import {module}; "
            "print(sorted(m for m in ('numpy', 'pandas', 'torch') if m in sys.modules))")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT)
    assert done.stdout.strip() == "[]"


CRASH_BEFORE_THE_RECOMPUTE = """
import datetime as dt, json, os, sys
from engine.forecast_record import ForecastRecord
from jobs import ledger
from jobs.ledger import writes
store = ledger.Ledger(sys.argv[1])
at = dt.datetime.fromisoformat(sys.argv[2])
with writes.batched_reports():
    data = ForecastRecord.from_json(json.loads(sys.stdin.read()))
    writes.record_forecast(store, data, job_id="crashed", user="U1", channel="C1", requested_at=at, latency_s=1.0,
                           source="forecast")
    os._exit(3)  # the process dies with the write committed and the batch's recompute not yet run
"""


def test_a_report_a_crash_left_behind_is_stale_until_rebuild_reports_heals_it(ledger_db, market):
    _mixed_ledger(ledger_db, market)
    before = reports.read(ledger_db, "MSFT")
    data = canned_forecast(Sources(market, market, market), "MSFT", at=_at(15), prediction="Down by 0-1%")
    done = _python(CRASH_BEFORE_THE_RECOMPUTE, ledger_db.url, _at(15).isoformat(), stdin=json.dumps(data.to_json()))
    assert done.returncode == 3, done.stderr
    assert ledger.get_entry(ledger_db, "crashed:MSFT") is not None  # the write is in

    stale = reports.read(ledger_db, "MSFT")
    assert stale.stale and stale.generation == before.generation + 1
    assert stale.computed_generation == before.computed_generation and stale.report == before.report
    assert track_reads.track_record(ledger_db, "MSFT").recorded == before.recorded  # what the bot still shows
    assert reports.needing_rebuild(ledger_db) == ["*", "MSFT"]

    assert track_record.rebuild_reports(ledger_db) == ["*", "MSFT"]
    assert_every_report_is_current(ledger_db)
    assert track_reads.track_record(ledger_db, "MSFT").recorded == before.recorded + 1
    assert track_record.rebuild_reports(ledger_db) == []  # nothing stale: the weekly call costs a lookup


def test_a_ledger_from_before_the_stored_reports_reads_and_is_rebuilt(ledger_db, market):
    _mixed_ledger(ledger_db, market)
    with ledger_db.begin() as conn:  # as after migration 0002 on a ledger written by the release before
        conn.execute(delete(TrackReport))
    before = track_reads.track_record(ledger_db, "AXP")
    assert before.report is None and before.recorded == 4 and len(before.recent) == 4
    assert reports.needing_rebuild(ledger_db) == ["*", "AXP", "KO", "MSFT"]
    assert track_record.rebuild_reports(ledger_db) == ["*", "AXP", "KO", "MSFT"]
    assert_every_report_is_current(ledger_db)
    assert track_record.rebuild_reports(ledger_db, everything=True) == ["*", "AXP", "KO", "MSFT"]


def test_a_report_from_an_older_release_reads_as_stale(ledger_db, market, monkeypatch):
    _mixed_ledger(ledger_db, market)
    monkeypatch.setattr(reports, "REPORT_VERSION", reports.REPORT_VERSION + 1)
    assert reports.read(ledger_db, "*").stale
    assert reports.needing_rebuild(ledger_db) == ["*", "AXP", "KO", "MSFT"]


# What release 1 stored, before the report had a type: the baselines under the evaluator's names.
VERSION_1_REPORT = json.dumps({"latest_week": "2024-03-17 to 2024-03-24", "counts": {"scored": 5},
                               "cumulative": {"model": {"n": 5}, "constant Down by 0-1%": {"n": 5}}})


def test_an_older_releases_report_is_not_read_as_this_shape_and_the_rebuild_replaces_it(ledger_db, market):
    _mixed_ledger(ledger_db, market)
    with ledger_db.begin() as conn:  # as the previous release left every row
        conn.execute(update(TrackReport).values(version=track_report.REPORT_VERSION - 1, report=VERSION_1_REPORT))
    old = reports.read(ledger_db, "AXP")
    assert old.stale and not old.readable and old.report is None  # its JSON is never validated as today's type
    shown = track_reads.track_record(ledger_db, "AXP")
    assert shown.report is None and shown.recorded == 4  # as before the reports were stored: nothing scored
    assert track_message(shown)[0] == "Track record for AXP: nothing scored yet"
    assert catch_up_track_reports(ledger_db) == ["*", "AXP", "KO", "MSFT"]  # the worker's start recomputes them
    assert_every_report_is_current(ledger_db)
    assert track_reads.track_record(ledger_db, "AXP").report.cumulative.model.n == 2


def test_a_starting_worker_fills_in_the_reports_a_ledger_from_before_them_lacks(ledger_db, market, caplog):
    _mixed_ledger(ledger_db, market)
    track_record.refresh_outcomes(ledger_db, market, closed_by=SATURDAY_NIGHT + dt.timedelta(days=21),
                                  scored_at=SATURDAY_NIGHT + dt.timedelta(days=21))
    with ledger_db.connect() as conn:  # as the 0002 migration leaves a ledger the previous release filled
        conn.execute(delete(TrackReport))
        conn.commit()
    assert track_reads.track_record(ledger_db).report is None
    assert catch_up_track_reports(ledger_db) == reports.all_scopes(ledger_db)
    assert_every_report_is_current(ledger_db)
    assert track_reads.track_record(ledger_db).report.counts.scored > 0
    assert catch_up_track_reports(ledger_db) == []  # all current: nothing recomputed


def test_a_worker_that_cannot_reach_the_ledger_still_starts(caplog):
    unreachable = ledger.Ledger("postgresql+psycopg://nobody@127.0.0.1:1/none?connect_timeout=2")
    assert catch_up_track_reports(unreachable) == []
    assert "could not bring the stored track reports up to date" in caplog.text
