"""`forecaster ledger migrate`: copy a Redis ledger (`jobs.ledger.redis_layout`) into the database, once.

Idempotent: an entry already in the database (by id) is left as it is, so a second run copies nothing and an
interrupted run can simply be started again. The Redis keys are left in place; delete them once satisfied.
"""

from __future__ import annotations

from dataclasses import dataclass

import redis

from jobs.ledger import redis_layout
from jobs.ledger.columns import FIELDS
from jobs.ledger.database import Ledger
from jobs.ledger.writes import batched_reports, insert_entries


@dataclass(frozen=True)
class Copied:
    found: int  # entries in the Redis ledger
    copied: int  # of them, newly written to the database
    present: int  # of them, already there (an earlier run, or recorded since)


def _complete(entry: dict) -> dict:
    """An entry from an early release may lack a text field added later: empty, as the Redis reader had it."""
    return {name: ("" if entry.get(name) is None and kind == "str" else entry.get(name))
            for name, kind in FIELDS.items()}


def copy_from_redis(conn: redis.Redis, ledger: Ledger, *, batch: int = 500) -> Copied:
    """Copy every entry of the Redis ledger on `conn` into `ledger`, `batch` per transaction; the track reports
    are recomputed once, at the end."""
    found = copied = 0
    with batched_reports():
        for entries in redis_layout.iter_entries(conn, batch=batch):
            found += len(entries)
            copied += insert_entries(ledger, [_complete(e) for e in entries])
    return Copied(found=found, copied=copied, present=found - copied)
