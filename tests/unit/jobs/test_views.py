"""jobs.ledger.views: what the bot reads from the ledger (/track's view, the feedback, the last calls) refuses a
renamed or unknown field, cannot be changed once read, takes its names from the ledger's own columns, and goes through
JSON and back unchanged."""

from __future__ import annotations

import pytest
from pydantic import ValidationError

from jobs.ledger.columns import FIELDS
from jobs.ledger.views import Feedback, LastCall, RecentForecast, TrackView
from tests.unit.bot.layout_cases import NO_FEEDBACK, last_call, recent_forecast, track_report, track_view

# What /track's rows add to the ledger's columns: the standing and the votes.
ADDED = {"counted", "why_not_counted", "votes_up", "votes_down"}


def test_a_renamed_or_unknown_field_is_refused_naming_it():
    row = recent_forecast().to_json()
    with pytest.raises(ValidationError, match="votes_upp"):
        RecentForecast.from_json({k: v for k, v in row.items() if k != "votes_up"} | {"votes_upp": 1})
    with pytest.raises(ValidationError, match="down_hit"):
        Feedback(**NO_FEEDBACK.to_json() | {"down_hit": 0})
    with pytest.raises(ValidationError, match="p_up"):  # a missing field is named too
        LastCall(**{k: v for k, v in last_call("AXP").to_json().items() if k != "p_up"})
    with pytest.raises(ValidationError, match="calls"):
        TrackView.from_json(track_view().to_json() | {"calls": []})


def test_a_direction_the_ledger_never_writes_is_refused():
    with pytest.raises(ValidationError, match="direction"):
        recent_forecast(direction="sideways")


def test_a_view_cannot_be_changed_once_read():
    view = track_view([recent_forecast()])
    with pytest.raises(ValidationError):
        view.recorded = 3
    with pytest.raises(ValidationError):
        view.recent[0].hit = True


def test_the_rows_take_their_names_from_the_ledgers_columns():
    assert set(RecentForecast.model_fields) - ADDED <= set(FIELDS)
    assert set(LastCall.model_fields) <= set(FIELDS)


def test_a_view_goes_through_json_and_back_unchanged():
    view = track_view([recent_forecast(), recent_forecast(id="e1", clear_signal=False, actual_label="down by 0-1%",
                                                          realized_return=-0.004, hit=False, votes_up=2)],
                      ticker="AXP", recorded=2, report=track_report(["AXP"]),
                      feedback=Feedback(up=2, down=0, voters=2, forecasts=1, up_scored=1, up_hits=0, down_scored=0,
                                        down_hits=0))
    assert TrackView.from_json(view.to_json()) == view
    assert LastCall.from_json(last_call("AXP").to_json()) == last_call("AXP")
    assert NO_FEEDBACK.voted is False and view.feedback.voted is True
