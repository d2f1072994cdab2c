"""The forecast ledger: every forecast the product makes, kept for good in SQL, with its outcome once known.

SQLite by default (`DATA_DIR/ledger.sqlite3`, WAL mode), PostgreSQL by DATABASE_URL; the schema is Alembic's
(`jobs/ledger/migrations`), applied on first use by the worker, the CLI and `forecaster up`, never by the bot
(`database.LedgerNotReady` until then). Redis stays the queue, cache and limiter; a ledger kept in Redis
by earlier releases is copied over once by `forecaster ledger migrate`.

- `columns`: what an entry records (constants); `fields`: the entry a forecast becomes (pure); `models`: the
  tables; `database`: the engine and the migrations;
- `store`: read entries; `export`: write them to CSV or Parquet; `writes`: record and score them, keeping the
  track record's tables in step;
- `track_rows`, `track_queries`: the track record's numbers, per ticker-week and summed in SQL (the report from
  the sums is `engine.evaluation.track_scores`');
- `reports` and `report_builder`: the stored report of each scope, read by `/track`, recomputed by the writers;
- `watchlists`: each channel's watchlist (`/watch`), which its digest covers instead of the Dow30; `votes`: the 👍/👎
  on forecasts;
- `views`: what the bot reads, as typed records: `/track`'s view, the feedback, each watched name's last call;
- `redis_layout` and `migrate`: the old Redis ledger and the one-shot copy out of it.

This package's own names are the readers, which import without numpy or pandas (the bot reads the ledger and
must stay light: pyproject.toml's import contract). The writers score with `engine.evaluation.track`, which needs numpy,
so the worker imports them from `jobs.ledger.writes` (and `export`, `fields`) by name.
"""

from jobs.ledger.columns import EXPORT_FORMATS, FIELDS, LONG_FIELDS, SOURCES
from jobs.ledger.database import Ledger, LedgerNotReady, ledger_url, open_ledger
from jobs.ledger.store import awaiting_outcome, count, entries, get_entry

__all__ = ["EXPORT_FORMATS", "FIELDS", "LONG_FIELDS", "SOURCES", "Ledger", "LedgerNotReady", "awaiting_outcome",
           "count", "entries", "get_entry", "ledger_url", "open_ledger"]
