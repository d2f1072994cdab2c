"""The ledger's old home: Redis hashes and sorted sets, as releases before the SQL ledger wrote them. Read by
`forecaster ledger migrate`; the writer is that release's own code, kept so the migration is tested on exactly
what it wrote. Nothing else writes this layout any more.

Layout (keys in `jobs.keys`; no TTLs):
- one hash per forecast, `fc:ledger:entry:<job id>:<TICKER>`, flat string fields (`FIELDS`; "" for empty,
  "1"/"0" for booleans);
- sorted sets of entry ids scored by request time: all entries, and one per ticker;
- a sorted set of entries still waiting for an outcome, scored by when their target week counts as closed.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator, Sequence

import redis

from engine.evaluation.track import Outcome, closed_at, week_from_period
from engine.forecast_record import ForecastRecord
from jobs.keys import ledger_entry_key, ledger_index_key, ledger_pending_key, ledger_ticker_index_key
from jobs.ledger.fields import FIELDS, forecast_fields, outcome_fields


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


def read_entries(conn: redis.Redis, entry_ids: Sequence[str]) -> list[dict]:
    """The entries with these ids, as FIELDS dicts (a field the old release did not write yet reads as None).
    An index entry whose hash is gone (deleted by hand) is skipped."""
    names = list(FIELDS)
    with conn.pipeline(transaction=False) as pipe:
        for entry_id in entry_ids:
            pipe.hmget(ledger_entry_key(entry_id), names)
        rows = pipe.execute()
    result = []
    for values in rows:
        if values[0] is None:
            continue
        result.append({name: _decode(FIELDS[name], None if value is None else value.decode())
                       for name, value in zip(names, values, strict=True)})
    return result


def entry_count(conn: redis.Redis) -> int:
    return conn.zcard(ledger_index_key())


def iter_entries(conn: redis.Redis, *, batch: int = 500) -> Iterator[list[dict]]:
    """Every entry of the old ledger, oldest request first, `batch` at a time."""
    start = 0
    while True:
        ids = conn.zrange(ledger_index_key(), start, start + batch - 1)
        if not ids:
            return
        yield read_entries(conn, [i.decode() for i in ids])
        start += batch


# ---- the old release's writer ----------------------------------------------------------------------------------


def record_forecast(conn: redis.Redis, data: ForecastRecord, *, job_id: str, user: str | None, channel: str,
                    requested_at: dt.datetime, latency_s: float, source: str, prompt_hash: str | None = None) -> str:
    """The old release's writer: one hash and three index entries per forecast, idempotent per (job, ticker)."""
    fields = forecast_fields(data, job_id=job_id, user=user, channel=channel, requested_at=requested_at,
                             latency_s=latency_s, source=source, prompt_hash=prompt_hash)
    entry_id, ticker = fields["id"], fields["ticker"]
    key = ledger_entry_key(entry_id)
    score = requested_at.timestamp()
    with conn.pipeline() as pipe:
        while True:
            try:
                pipe.watch(key)
                if pipe.exists(key):
                    pipe.unwatch()
                    return entry_id
                pipe.multi()
                pipe.hset(key, mapping={name: _encode(value) for name, value in fields.items()})
                pipe.zadd(ledger_index_key(), {entry_id: score})
                pipe.zadd(ledger_ticker_index_key(ticker), {entry_id: score})
                pipe.zadd(ledger_pending_key(), {entry_id: closed_at(week_from_period(fields["target_week"]))
                                                 .timestamp()})
                pipe.execute()
                return entry_id
            except redis.WatchError:
                continue


def store_outcome(conn: redis.Redis, entry_id: str, outcome: Outcome, *, scored_at: dt.datetime) -> bool:
    """The old release's outcome writer: fields onto the hash, the id off the pending set."""
    key = ledger_entry_key(entry_id)
    parsed, direction = conn.hmget(key, ["parsed", "direction"])
    if parsed is None:
        return False
    fields = outcome_fields(outcome, parsed=parsed == b"1", direction=direction.decode(), scored_at=scored_at)
    with conn.pipeline() as pipe:
        pipe.hset(key, mapping={name: _encode(value) for name, value in fields.items()})
        pipe.zrem(ledger_pending_key(), entry_id)
        pipe.execute()
    return True
