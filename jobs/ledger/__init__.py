"""The forecast ledger: every forecast the product makes, kept for good in SQL, with its outcome once known.

SQLite by default (`DATA_DIR/ledger.sqlite3`, WAL mode), PostgreSQL by DATABASE_URL; the schema is Alembic's
(`jobs/ledger/migrations`), applied on first use. Redis stays the queue, cache and limiter; a ledger kept in Redis
by earlier releases is copied over once by `forecaster ledger migrate`.

- `fields`: what an entry records (pure); `models`: the table; `database`: the engine and the migrations;
- `store`: record, read, score and export entries; `track_queries`: the track record's aggregates, in SQL;
- `redis_layout` and `migrate`: the old Redis ledger and the one-shot copy out of it.
"""

from jobs.ledger.database import Ledger, ledger_url, open_ledger
from jobs.ledger.fields import EXPORT_FORMATS, FIELDS, LONG_FIELDS, SOURCES, to_track_entry
from jobs.ledger.store import (
    awaiting_outcome,
    count,
    entries,
    export,
    get_entry,
    record_forecast,
    store_outcome,
)

__all__ = [
    "EXPORT_FORMATS", "FIELDS", "LONG_FIELDS", "SOURCES", "Ledger", "awaiting_outcome", "count", "entries", "export",
    "get_entry", "ledger_url", "open_ledger", "record_forecast", "store_outcome", "to_track_entry",
]
