"""What a ledger entry holds and how it stands in the track record, as plain constants.

Kept apart from `jobs.ledger.fields` (which builds entries with `engine.evaluation.track`, and so imports numpy): the
bot reads the ledger through these names and must stay off the numeric stack.
"""

from __future__ import annotations

from engine.evaluation.track_report import LATE, SUPERSEDED  # light: pydantic only

SOURCES = ("forecast", "digest")
EXPORT_FORMATS = (".csv", ".parquet")

# Every field of an entry, in export column order, with its type: str, float, int or bool; "?" = may be empty.
FIELDS: dict[str, str] = {
    "id": "str", "job_id": "str", "source": "str", "user": "str?", "channel": "str",
    "ticker": "str", "as_of": "str", "requested_at": "str", "cutoff": "str", "data_as_of": "str",
    "target_week": "str", "week_start": "str", "week_end": "str",
    "direction": "str", "magnitude": "str?", "label": "str?", "as_written": "str", "parsed": "bool",
    "problems": "str", "model": "str", "prompt_hash": "str", "prompt_hash_of": "str",
    "latency_s": "float", "generation_s": "float?", "prompt_tokens": "int?", "new_tokens": "int?",
    # the model's probabilities (`engine.forecast.probabilities`); empty when its backend had none, and on
    # entries recorded before there were any: P(up), P(stated bin), expected move in %, the 12 bins as JSON, and
    # whether P(up) lay outside 0.5 ± SIGNAL_BAND (False: shown as "no clear signal", without an arrow)
    "p_up": "float?", "p_stated": "float?", "expected_move": "float?", "bin_probabilities": "str?",
    "clear_signal": "bool?",
    # the outcome, empty until the target week has closed and been scored
    "scored_at": "str?", "realized_return": "float?", "actual_label": "str?", "hit": "bool?",
    "start_close_date": "str?", "start_close": "float?", "end_close_date": "str?", "end_close": "float?",
    "previous_return": "float?", "momentum_label": "str?",
    # the full texts last: long
    "raw": "str", "details": "str",
}
LONG_FIELDS = ("raw", "details")
OUTCOME_FIELDS = ("scored_at", "realized_return", "actual_label", "hit", "start_close_date", "start_close",
                  "end_close_date", "end_close", "previous_return", "momentum_label")

# An entry's standing (`engine.evaluation.track.select_counted`): COUNTED, or the track report's own LATE or
# SUPERSEDED.
COUNTED = "counted"


def standing(late: bool, superseded: bool) -> str:
    """COUNTED, LATE or SUPERSEDED, from an entry's two flags (late wins: a late entry is never in the running)."""
    return LATE if late else SUPERSEDED if superseded else COUNTED
