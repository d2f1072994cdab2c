"""The `track_weeks` row of one counted forecast, worked out once when it is recorded or scored, so the reads are
plain sums (`jobs.ledger.track_queries`). Pure.

The numbers in it are `engine.evaluation.track_sums`' terms, the same `engine.evaluation.track.score_track` sums in
memory; this module only adds the row's keys and reads them out of a ledger entry.
"""

from __future__ import annotations

from engine.evaluation.track_sums import outcome_terms, recorded_terms


def is_late(entry: dict) -> bool:
    """Requested at or after its week's Monday open: scored and kept, never counted (`select_counted`)."""
    return entry["requested_epoch"] >= entry["week_opens_epoch"]


def track_row(entry: dict) -> dict:
    """The `track_weeks` row of this entry (a FIELDS dict plus `requested_epoch`), were it the counted one."""
    row = {
        "ticker": entry["ticker"], "week_start": entry["week_start"], "week_end": entry["week_end"],
        "target_week": entry["target_week"], "entry_id": entry["id"], "requested_epoch": entry["requested_epoch"],
    }
    return row | recorded_terms(parsed=bool(entry["parsed"]), direction=entry["direction"], p_up=entry["p_up"]) \
        | outcome_row(entry)


def outcome_row(entry: dict) -> dict:
    """The columns this entry's outcome sets (`engine.evaluation.track_sums.OUTCOME_TERMS`): all empty (scored 0)
    until its outcome is stored."""
    actual = None if entry["realized_return"] is None else entry["actual_label"]
    return outcome_terms(parsed=bool(entry["parsed"]), direction=entry["direction"], magnitude=entry["magnitude"],
                         p_up=entry["p_up"], actual_label=actual, momentum_label=entry["momentum_label"])
