"""jobs.ledger.votes on a real SQLite file and a real PostgreSQL: one vote per user and forecast, replaced by the
other button, taken back by the same one; counts, the tally /track and the summary show, and the export."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest

from engine.data.inputs import Sources
from engine.evaluation.track import realized_outcome, week_from_period
from engine.market.weeks import NEW_YORK
from jobs import ledger
from jobs.ledger import export as ledger_export
from jobs.ledger import votes, writes
from jobs.ledger.views import Feedback
from tests.fakes.forecasts import canned_forecast, stepped_market

FRIDAY_EVENING = dt.datetime(2024, 3, 8, 18, 0, tzinfo=NEW_YORK)


@pytest.fixture
def recorded(ledger_db):
    mem = stepped_market()
    sources = Sources(mem, mem, mem)
    ids = []
    for symbol in ("AXP", "KO"):
        data = canned_forecast(sources, symbol, at=FRIDAY_EVENING, prediction="Up by 1-2%")
        ids.append(writes.record_forecast(ledger_db, data, job_id=f"job-{symbol}", user="U1", channel="C1",
                                          requested_at=FRIDAY_EVENING, latency_s=1.0, source="forecast"))
    return ids, mem


def test_a_vote_is_recorded_once_replaced_by_the_other_and_taken_back_by_the_same(ledger_db, recorded):
    (axp, _), _ = recorded
    first = votes.cast(ledger_db, axp, "U1", "up", channel="C1")
    assert (first.before, first.after, first.up, first.down, first.ticker) == (None, "up", 1, 0, "AXP")
    changed = votes.cast(ledger_db, axp, "U1", "down", channel="C1")
    assert (changed.before, changed.after, changed.up, changed.down) == ("up", "down", 0, 1)
    other = votes.cast(ledger_db, axp, "U2", "down")
    assert (other.up, other.down) == (0, 2)
    taken_back = votes.cast(ledger_db, axp, "U1", "down")
    assert (taken_back.before, taken_back.after, taken_back.up, taken_back.down) == ("down", None, 0, 1)
    assert votes.counts(ledger_db) == {axp: (0, 1)}


def test_a_vote_on_a_forecast_the_ledger_does_not_hold_is_refused(ledger_db, recorded):
    with pytest.raises(votes.UnknownForecast):
        votes.cast(ledger_db, "job-nope:AXP", "U1", "up")
    with pytest.raises(ValueError, match="up or down"):
        votes.cast(ledger_db, recorded[0][0], "U1", "sideways")
    assert votes.counts(ledger_db) == {}


def test_the_tally_counts_votes_people_and_how_the_voted_forecasts_did(ledger_db, recorded):
    (axp, ko), mem = recorded
    votes.cast(ledger_db, axp, "U1", "up")
    votes.cast(ledger_db, axp, "U2", "up")
    votes.cast(ledger_db, ko, "U1", "down")
    week = week_from_period(ledger.get_entry(ledger_db, axp)["target_week"])
    writes.store_outcome(ledger_db, axp, realized_outcome(mem.closes["AXP"], week, symbol="AXP"),
                         scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))
    hit = ledger.get_entry(ledger_db, axp)["hit"]
    everything = votes.tally(ledger_db)
    assert everything == Feedback(up=2, down=1, voters=2, forecasts=2, up_scored=2, up_hits=2 * hit, down_scored=0,
                                  down_hits=0)
    assert votes.tally(ledger_db, ticker="ko") == Feedback(up=0, down=1, voters=1, forecasts=1, up_scored=0, up_hits=0,
                                                           down_scored=0, down_hits=0)


def test_the_export_carries_each_forecasts_votes(ledger_db, recorded, tmp_path):
    (axp, ko), _ = recorded
    votes.cast(ledger_db, axp, "U1", "up")
    votes.cast(ledger_db, axp, "U2", "down")
    votes.cast(ledger_db, axp, "U3", "up")
    path = tmp_path / "ledger.csv"
    assert ledger_export.export(ledger_db, path) == 2
    frame = pd.read_csv(path).set_index("id")
    assert list(frame.columns[-2:]) == ["votes_up", "votes_down"]
    assert (frame.loc[axp, "votes_up"], frame.loc[axp, "votes_down"]) == (2, 1)
    assert (frame.loc[ko, "votes_up"], frame.loc[ko, "votes_down"]) == (0, 0)
