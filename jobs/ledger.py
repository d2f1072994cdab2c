"""The forecast ledger: every forecast the product makes, kept in Redis for good, with its outcome once known.

Layout (keys in `jobs.keys`; nothing here has a TTL, so Redis must persist: AOF in compose):
- one hash per forecast, `fc:ledger:entry:<job id>:<TICKER>`, flat string fields (readable with `redis-cli
  HGETALL`, exported as one row each);
- sorted sets of entry ids scored by request time: all entries, and one per ticker (newest-first reads);
- a sorted set of entries still waiting for an outcome, scored by when their target week counts as closed, so
  the weekly summary finds what to score with one range query.

An entry's id is its (job id, ticker): a retried job, or a digest re-run after a crash, finds its entry and
writes nothing. The prompt hash is the SHA-256 of the chat messages sent to the model when the caller has them
(`prompt_sha256`); otherwise of the inputs that determine the prompt (symbol, target week, cutoff, prices as of,
news per week, dropped headlines, notes), and `prompt_hash_of` says which.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib.util
import json
from collections.abc import Sequence
from pathlib import Path

import redis

from engine.market.weeks import NEW_YORK
from engine.track import Outcome, TrackEntry, closed_at, week_from_period
from jobs.keys import (
    ledger_entry_id,
    ledger_entry_key,
    ledger_index_key,
    ledger_pending_key,
    ledger_ticker_index_key,
)

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
    # the model's probabilities (`engine.forecast.probabilities_json`); empty when its backend had none, and on
    # entries recorded before there were any: P(up), P(stated bin), expected move in %, the 12 bins as JSON
    "p_up": "float?", "p_stated": "float?", "expected_move": "float?", "bin_probabilities": "str?",
    # the outcome, empty until the target week has closed and been scored
    "scored_at": "str?", "realized_return": "float?", "actual_label": "str?", "hit": "bool?",
    "start_close_date": "str?", "start_close": "float?", "end_close_date": "str?", "end_close": "float?",
    "previous_return": "float?", "momentum_label": "str?",
    # the full texts last: long
    "raw": "str", "details": "str",
}
LONG_FIELDS = ("raw", "details")


def _inputs_sha256(data: dict) -> str:
    inputs = {k: data.get(k) for k in ("symbol", "target_week", "cutoff", "data_as_of", "news", "dropped_news",
                                       "notes")}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _as_of(cutoff: str) -> str:
    """A dated forecast's cutoff is the end of that New York day (23:59:59, `cutoff_for_date`); a live one's is
    the moment it ran, which never lands on that exact second with zero microseconds."""
    moment = dt.datetime.fromisoformat(cutoff).astimezone(NEW_YORK)
    return moment.date().isoformat() if moment.time() == dt.time(23, 59, 59) else "live"


def _encode(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "1" if value else "0"
    return str(value)


def _decode(kind: str, raw: str | None) -> object:
    if raw is None or (raw == "" and kind.endswith("?")):
        return None
    base = kind.rstrip("?")
    if base == "float":
        return float(raw)
    if base == "int":
        return int(raw)
    if base == "bool":
        return raw == "1"
    return raw


def record_forecast(conn: redis.Redis, data: dict, *, job_id: str, user: str | None, channel: str,
                    requested_at: dt.datetime, latency_s: float, source: str, prompt_hash: str | None = None) -> str:
    """Record one forecast (`engine.forecast.to_json`'s dict) and return its entry id. Idempotent per (job_id,
    ticker): recording the same again returns the existing id and changes nothing.

    `requested_at` is when the user (or the scheduler) asked, timezone-aware; `latency_s` from request to answer;
    `source` is "forecast" or "digest"; `prompt_hash` see `prompt_sha256` (else the inputs are hashed).
    """
    if source not in SOURCES:
        raise ValueError(f"source must be one of {SOURCES}, got {source!r}")
    if requested_at.tzinfo is None:
        raise ValueError("requested_at must be timezone-aware (e.g. datetime.now(datetime.UTC))")
    ticker = data["symbol"]
    week = week_from_period(data["target_week"])
    entry_id = ledger_entry_id(job_id=job_id, ticker=ticker)
    prediction = data["prediction"]
    probabilities = data.get("probabilities") or {}
    stated = probabilities.get("stated") or {}
    if prompt_hash is None and data.get("prompt_sha256"):
        prompt_hash = data["prompt_sha256"]
    details = {k: data.get(k) for k in ("positive_developments", "potential_concerns", "analysis", "news",
                                        "dropped_news", "notes")}
    fields = {
        "id": entry_id, "job_id": job_id, "source": source, "user": user, "channel": channel,
        "ticker": ticker, "as_of": _as_of(data["cutoff"]),
        "requested_at": requested_at.astimezone(dt.UTC).isoformat(), "cutoff": data["cutoff"],
        "data_as_of": data["data_as_of"], "target_week": week.period, "week_start": week.start.isoformat(),
        "week_end": week.end.isoformat(),
        "direction": prediction["direction"], "magnitude": prediction["magnitude"], "label": prediction["label"],
        "as_written": prediction["as_written"], "parsed": bool(data["parsed"]),
        "problems": "; ".join(data.get("problems") or []), "model": data["model"],
        "prompt_hash": prompt_hash or _inputs_sha256(data), "prompt_hash_of": "prompt" if prompt_hash else "inputs",
        "latency_s": round(float(latency_s), 3), "generation_s": data.get("seconds"),
        "prompt_tokens": data.get("prompt_tokens"), "new_tokens": data.get("new_tokens"),
        "p_up": probabilities.get("p_up"), "p_stated": stated.get("p"),
        "expected_move": probabilities.get("expected_move"),
        "bin_probabilities": json.dumps(probabilities["bins"]) if probabilities.get("bins") else None,
        "raw": data.get("raw") or "", "details": json.dumps(details, ensure_ascii=False),
    }
    key = ledger_entry_key(entry_id)
    score = requested_at.timestamp()
    with conn.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)  # a second writer of the same entry makes this transaction fail, then sees it
                if pipe.exists(key):
                    pipe.unwatch()
                    return entry_id
                pipe.multi()
                pipe.hset(key, mapping={name: _encode(value) for name, value in fields.items()})
                pipe.zadd(ledger_index_key(), {entry_id: score})
                pipe.zadd(ledger_ticker_index_key(ticker), {entry_id: score})
                pipe.zadd(ledger_pending_key(), {entry_id: closed_at(week).timestamp()})
                pipe.execute()
                return entry_id
            except redis.WatchError:
                continue


def _read(conn: redis.Redis, entry_ids: Sequence[str], *, texts: bool = True) -> list[dict]:
    names = list(FIELDS) if texts else [name for name in FIELDS if name not in LONG_FIELDS]
    with conn.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.hmget(ledger_entry_key(entry_id), names)
        rows = pipe.execute()
    result = []
    for values in rows:
        if values[0] is None:  # an index entry whose hash was deleted by hand: skip it rather than fail every reader
            continue
        entry = {name: _decode(FIELDS[name], None if value is None else value.decode())
                 for name, value in zip(names, values, strict=True)}
        if not texts:
            entry.update(dict.fromkeys(LONG_FIELDS))
        result.append(entry)
    return result


def get_entry(conn: redis.Redis, entry_id: str) -> dict | None:
    found = _read(conn, [entry_id])
    return found[0] if found else None


def entries(conn: redis.Redis, *, ticker: str | None = None, limit: int | None = None,
            texts: bool = True) -> list[dict]:
    """Recorded forecasts, newest request first; only `ticker`'s when given; at most `limit`. `texts=False`
    leaves out the long fields (`raw`, `details`: None), for readers that only score."""
    if limit is not None and limit <= 0:
        return []
    index = ledger_ticker_index_key(ticker.upper()) if ticker else ledger_index_key()
    ids = conn.zrevrange(index, 0, -1 if limit is None else limit - 1)
    return _read(conn, [i.decode() for i in ids], texts=texts)


def awaiting_outcome(conn: redis.Redis, *, closed_by: dt.datetime) -> list[dict]:
    """Entries with no outcome yet whose target week had closed by `closed_by` (oldest week first)."""
    ids = conn.zrangebyscore(ledger_pending_key(), "-inf", closed_by.timestamp())
    return _read(conn, [i.decode() for i in ids])


def store_outcome(conn: redis.Redis, entry_id: str, outcome: Outcome, *, scored_at: dt.datetime) -> bool:
    """Write the realized outcome onto the entry and take it off the pending set. False when there is no such
    entry. Storing again overwrites with the same numbers (prices of a closed week do not change)."""
    key = ledger_entry_key(entry_id)
    parsed, direction = conn.hmget(key, ["parsed", "direction"])
    if parsed is None:
        return False
    actual = outcome.actual
    momentum = outcome.momentum
    fields = {
        "scored_at": scored_at.astimezone(dt.UTC).isoformat(), "realized_return": outcome.realized_return,
        "actual_label": actual.label,
        # The evaluator's rule: an unparsed answer is a miss even when a direction can be read from it.
        "hit": parsed == b"1" and direction.decode() == actual.direction,
        "start_close_date": outcome.start_close.date.isoformat(), "start_close": outcome.start_close.close,
        "end_close_date": outcome.end_close.date.isoformat(), "end_close": outcome.end_close.close,
        "previous_return": outcome.previous_return, "momentum_label": momentum.label if momentum else None,
    }
    with conn.pipeline() as pipe:  # MULTI: the outcome and the pending set never disagree
        pipe.hset(key, mapping={name: _encode(value) for name, value in fields.items()})
        pipe.zrem(ledger_pending_key(), entry_id)
        pipe.execute()
    return True


def to_track_entry(entry: dict) -> TrackEntry:
    """A ledger entry as `engine.track` scores it."""
    return TrackEntry(
        entry_id=entry["id"], symbol=entry["ticker"], week=week_from_period(entry["target_week"]),
        requested_at=dt.datetime.fromisoformat(entry["requested_at"]), parsed=entry["parsed"],
        direction=entry["direction"], magnitude=entry["magnitude"], as_written=entry["as_written"],
        realized_return=entry["realized_return"], previous_return=entry["previous_return"], p_up=entry["p_up"],
    )


def export(conn: redis.Redis, path: Path) -> int:
    """Write every entry (oldest first) to `path`, CSV or Parquet by its extension; returns the row count.
    Raises ValueError for any other extension, or for Parquet without pyarrow."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"cannot export to {path.name!r}: the file name must end in .csv or .parquet")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("Parquet export needs pyarrow: `pip install pyarrow`, or export to a .csv file")
    import pandas as pd

    rows = list(reversed(entries(conn)))
    frame = pd.DataFrame(rows, columns=list(FIELDS))
    dtypes = {"float": "Float64", "int": "Int64", "bool": "boolean", "str": "string"}
    frame = frame.astype({name: dtypes[kind.rstrip("?")] for name, kind in FIELDS.items()})
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)
