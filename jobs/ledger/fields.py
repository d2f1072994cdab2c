"""What one ledger entry records, as pure functions: the row a forecast becomes, and the outcome written onto it.

Both the database and the old Redis layout (`jobs.ledger.redis_layout`, kept for `forecaster ledger migrate`)
store exactly these fields, so a migrated entry reads back as the same dict.

An entry's id is its (job id, ticker): a retried job, or a digest re-run after a crash, finds its entry and writes
nothing. The prompt hash is the SHA-256 of the chat messages sent to the model when the caller has them
(`prompt_sha256`); otherwise of the inputs that determine the prompt (symbol, target week, cutoff, prices as of,
news per week, dropped headlines, notes), and `prompt_hash_of` says which.

The field names themselves are `jobs.ledger.columns`' (numpy-free, for the readers); they are re-exported here.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json

from engine.evaluation.track import Outcome, TrackEntry, week_from_period
from engine.forecast_record import ForecastRecord
from engine.market.weeks import NEW_YORK
from jobs.keys import ledger_entry_id
from jobs.ledger.columns import EXPORT_FORMATS, FIELDS, LONG_FIELDS, OUTCOME_FIELDS, SOURCES

__all__ = ["EXPORT_FORMATS", "FIELDS", "LONG_FIELDS", "OUTCOME_FIELDS", "SOURCES", "forecast_fields",
           "outcome_fields", "to_track_entry"]


def _inputs_sha256(stored: dict) -> str:
    inputs = {k: stored[k] for k in ("symbol", "target_week", "cutoff", "data_as_of", "news", "dropped_news",
                                     "notes")}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _as_of(cutoff: str) -> str:
    """A dated forecast's cutoff is the end of that New York day (23:59:59, `cutoff_for_date`); a live one's is
    the moment it ran, which never lands on that exact second with zero microseconds."""
    moment = dt.datetime.fromisoformat(cutoff).astimezone(NEW_YORK)
    return moment.date().isoformat() if moment.time() == dt.time(23, 59, 59) else "live"


def forecast_fields(data: ForecastRecord, *, job_id: str, user: str | None, channel: str,
                    requested_at: dt.datetime, latency_s: float, source: str, prompt_hash: str | None = None) -> dict:
    """The entry one forecast becomes: every FIELDS name but the outcome's. Raises ValueError for an unknown
    `source` or a naive `requested_at`."""
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if requested_at.tzinfo is None:
        raise ValueError("requested_at must be timezone-aware (e.g. datetime.now(datetime.UTC))")
    week = week_from_period(data.target_week)
    prediction = data.prediction
    probabilities = data.probabilities
    stated = probabilities.stated if probabilities else None
    if prompt_hash is None and data.prompt_sha256:
        prompt_hash = data.prompt_sha256
    stored = data.to_json()
    details = {k: stored[k] for k in ("positive_developments", "potential_concerns", "analysis", "news",
                                      "dropped_news", "notes")}
    return {
        "id": ledger_entry_id(job_id=job_id, ticker=data.symbol), "job_id": job_id, "source": source, "user": user,
        "channel": channel, "ticker": data.symbol, "as_of": _as_of(data.cutoff),
        "requested_at": requested_at.astimezone(dt.UTC).isoformat(), "cutoff": data.cutoff,
        "data_as_of": data.data_as_of, "target_week": week.period, "week_start": week.start.isoformat(),
        "week_end": week.end.isoformat(),
        "direction": prediction.direction, "magnitude": prediction.magnitude, "label": prediction.label,
        "as_written": prediction.as_written, "parsed": data.parsed,
        "problems": "; ".join(data.problems), "model": data.model,
        "prompt_hash": prompt_hash or _inputs_sha256(stored), "prompt_hash_of": "prompt" if prompt_hash else "inputs",
        "latency_s": round(float(latency_s), 3), "generation_s": data.seconds,
        "prompt_tokens": data.prompt_tokens, "new_tokens": data.new_tokens,
        "p_up": probabilities.p_up if probabilities else None, "p_stated": stated.p if stated else None,
        "expected_move": probabilities.expected_move if probabilities else None,
        "bin_probabilities": json.dumps(probabilities.bins) if probabilities else None,
        "clear_signal": probabilities.clear_signal if probabilities else None,  # None: made before the flag
        "raw": data.raw, "details": json.dumps(details, ensure_ascii=False),
    }


def outcome_fields(outcome: Outcome, *, parsed: bool, direction: str, scored_at: dt.datetime) -> dict:
    """The OUTCOME_FIELDS an entry gets once its week has closed."""
    actual = outcome.actual
    momentum = outcome.momentum
    return {
        "scored_at": scored_at.astimezone(dt.UTC).isoformat(), "realized_return": outcome.realized_return,
        "actual_label": actual.label,
        # The evaluator's rule: an unparsed answer is a miss even when a direction can be read from it.
        "hit": parsed and direction == actual.direction,
        "start_close_date": outcome.start_close.date.isoformat(), "start_close": outcome.start_close.close,
        "end_close_date": outcome.end_close.date.isoformat(), "end_close": outcome.end_close.close,
        "previous_return": outcome.previous_return, "momentum_label": momentum.label if momentum else None,
    }


def to_track_entry(entry: dict) -> TrackEntry:
    """A ledger entry as `engine.evaluation.track` scores it."""
    return TrackEntry(
        entry_id=entry["id"], symbol=entry["ticker"], week=week_from_period(entry["target_week"]),
        requested_at=dt.datetime.fromisoformat(entry["requested_at"]), parsed=entry["parsed"],
        direction=entry["direction"], magnitude=entry["magnitude"], as_written=entry["as_written"],
        realized_return=entry["realized_return"], previous_return=entry["previous_return"], p_up=entry["p_up"],
    )
