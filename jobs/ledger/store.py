"""Reading and writing ledger entries: every forecast the product makes, kept for good, with its outcome once known.

Entries come back as plain dicts keyed by `FIELDS` (the shape `/track`, `ledger show` and the export use).

Every write keeps the track record's table in step in the same transaction (`_stand`): which forecast of a ticker
and week counts, and its numbers (`jobs.ledger.track_rows`). Two writers at once converge: on PostgreSQL the
upsert of the (ticker, week) row locks it, so the second writer of that group waits for the first to commit and
then compares against what it wrote; on SQLite the insert comes first in its transaction, so the transaction holds
the database's one write lock (BEGIN IMMEDIATE's effect) before it looks at the group.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
from collections.abc import Iterable
from pathlib import Path

from sqlalchemy import Connection, Select, and_, func, or_, select, tuple_, update
from sqlalchemy.dialects import postgresql, sqlite

from engine.track import Outcome, closed_at, week_from_period
from jobs.ledger.database import Ledger
from jobs.ledger.fields import EXPORT_FORMATS, FIELDS, LONG_FIELDS, forecast_fields, outcome_fields
from jobs.ledger.models import Forecast, TrackWeek
from jobs.ledger.track_rows import is_late, outcome_row, track_row

_COLUMNS = {name: getattr(Forecast, name) for name in FIELDS}


def _epochs(fields: dict) -> dict:
    """The instants the reads sort and compare on (see `jobs.ledger.models`), and the `late` flag they decide."""
    week = week_from_period(fields["target_week"])
    epochs = {"requested_epoch": dt.datetime.fromisoformat(fields["requested_at"]).timestamp(),
              "week_opens_epoch": week.monday_open.timestamp(), "week_closes_epoch": closed_at(week).timestamp()}
    return epochs | {"late": is_late(epochs)}


def _dialect(ledger_or_conn) -> object:
    name = ledger_or_conn.dialect if isinstance(ledger_or_conn, Ledger) else ledger_or_conn.dialect.name
    return postgresql if name == "postgresql" else sqlite


def _id_order(conn: Connection, column):
    # Ties on request time go to the greater id in Python's (code point) order: byte order, not the locale's.
    return column.collate("C") if conn.dialect.name == "postgresql" else column


_GROUP_CHUNK = 400  # (ticker, week) pairs per statement: two bound parameters each, far below SQLite's limit


def _stand(conn: Connection, new: list[dict]) -> None:
    """Let the newly inserted entries stand for their ticker and week where they are the latest request (then
    the greatest id), as `engine.track.select_counted` decides; mark the others of those groups superseded."""
    latest: dict[tuple[str, str], dict] = {}
    for row in new:
        if row["late"]:
            continue
        key = (row["ticker"], row["week_start"])
        if key not in latest or (row["requested_epoch"], row["id"]) > (latest[key]["requested_epoch"],
                                                                      latest[key]["id"]):
            latest[key] = row
    if not latest:
        return
    statement = _dialect(conn).insert(TrackWeek)
    current, offered = TrackWeek, statement.excluded
    newer = or_(current.requested_epoch < offered.requested_epoch,
                and_(current.requested_epoch == offered.requested_epoch,
                     _id_order(conn, current.entry_id) < _id_order(conn, offered.entry_id)))
    columns = [c.name for c in TrackWeek.__table__.columns if c.name not in ("ticker", "week_start")]
    # On PostgreSQL, DO UPDATE locks the conflicting row even where `newer` is false: the group's lock.
    statement = statement.on_conflict_do_update(index_elements=["ticker", "week_start"],
                                                set_={name: offered[name] for name in columns}, where=newer)
    conn.execute(statement, [track_row(row) for row in latest.values()])
    standing = (select(TrackWeek.entry_id)
                .where(TrackWeek.ticker == Forecast.ticker, TrackWeek.week_start == Forecast.week_start)
                .scalar_subquery())
    groups = sorted(latest)
    for i in range(0, len(groups), _GROUP_CHUNK):
        conn.execute(update(Forecast)
                     .where(tuple_(Forecast.ticker, Forecast.week_start).in_(groups[i:i + _GROUP_CHUNK]),
                            Forecast.late.is_(False))
                     .values(superseded=Forecast.id != standing))


def insert_entries(ledger: Ledger, rows: Iterable[dict]) -> int:
    """Insert whole entries (FIELDS dicts) that are not there yet; returns how many were new. An entry already
    present, by id, is left exactly as it is. The track record's table follows in the same transaction."""
    values = [{name: row.get(name) for name in FIELDS} | _epochs(row) for row in rows]
    if not values:
        return 0
    # RETURNING lists only the rows this statement inserted: an exact count even with another writer at work
    statement = (_dialect(ledger).insert(Forecast).on_conflict_do_nothing(index_elements=["id"])
                 .returning(Forecast.id))
    with ledger.begin() as conn:
        inserted = set(conn.execute(statement, values).scalars())
        _stand(conn, [row for row in values if row["id"] in inserted])
    return len(inserted)


def record_forecast(ledger: Ledger, data: dict, *, job_id: str, user: str | None, channel: str,
                    requested_at: dt.datetime, latency_s: float, source: str, prompt_hash: str | None = None) -> str:
    """Record one forecast (`engine.forecast.to_json`'s dict) and return its entry id. Idempotent per (job_id,
    ticker): recording the same again returns the existing id and changes nothing.

    `requested_at` is when the user (or the scheduler) asked, timezone-aware; `latency_s` from request to answer;
    `source` is "forecast" or "digest"; `prompt_hash` see `prompt_sha256` (else the inputs are hashed).
    """
    fields = forecast_fields(data, job_id=job_id, user=user, channel=channel, requested_at=requested_at,
                             latency_s=latency_s, source=source, prompt_hash=prompt_hash)
    insert_entries(ledger, [fields])
    return fields["id"]


def _columns(texts: bool) -> list:
    return [column for name, column in _COLUMNS.items() if texts or name not in LONG_FIELDS]


def _rows(ledger: Ledger, query: Select, *, texts: bool = True) -> list[dict]:
    with ledger.connect() as conn:
        result = conn.execute(query)
        names = list(result.keys())
        rows = [dict(zip(names, row, strict=True)) for row in result]
    if not texts:
        for row in rows:
            row.update(dict.fromkeys(LONG_FIELDS))
    return rows


def get_entry(ledger: Ledger, entry_id: str) -> dict | None:
    found = _rows(ledger, select(*_columns(True)).where(Forecast.id == entry_id))
    return found[0] if found else None


def newest_first(query: Select) -> Select:
    return query.order_by(Forecast.requested_epoch.desc(), Forecast.id.desc())


def entries(ledger: Ledger, *, ticker: str | None = None, limit: int | None = None,
            texts: bool = True) -> list[dict]:
    """Recorded forecasts, newest request first; only `ticker`'s when given; at most `limit`. `texts=False`
    leaves out the long fields (`raw`, `details`: None), for readers that only score."""
    if limit is not None and limit <= 0:
        return []
    query = newest_first(select(*_columns(texts)))
    if ticker:
        query = query.where(Forecast.ticker == ticker.upper())
    if limit is not None:
        query = query.limit(limit)
    return _rows(ledger, query, texts=texts)


def count(ledger: Ledger, *, ticker: str | None = None) -> int:
    query = select(func.count()).select_from(Forecast)
    if ticker:
        query = query.where(Forecast.ticker == ticker.upper())
    with ledger.connect() as conn:
        return conn.scalar(query)


def awaiting_outcome(ledger: Ledger, *, closed_by: dt.datetime) -> list[dict]:
    """Entries with no outcome yet whose target week had closed by `closed_by` (oldest week first)."""
    query = (select(*_columns(True))
             .where(Forecast.scored_at.is_(None), Forecast.week_closes_epoch <= closed_by.timestamp())
             .order_by(Forecast.week_closes_epoch, Forecast.requested_epoch, Forecast.id))
    return _rows(ledger, query)


def store_outcome(ledger: Ledger, entry_id: str, outcome: Outcome, *, scored_at: dt.datetime) -> bool:
    """Write the realized outcome onto the entry (which takes it off the waiting list). False when there is no
    such entry. Storing again overwrites with the same numbers (prices of a closed week do not change)."""
    needed = (Forecast.parsed, Forecast.direction, Forecast.magnitude, Forecast.p_up)
    with ledger.begin() as conn:
        found = conn.execute(select(*needed).where(Forecast.id == entry_id)).first()
        if found is None:
            return False
        fields = outcome_fields(outcome, parsed=found.parsed, direction=found.direction, scored_at=scored_at)
        conn.execute(update(Forecast).where(Forecast.id == entry_id).values(**fields))
        # Only while it stands: a later forecast that superseded it meanwhile keeps its own row.
        conn.execute(update(TrackWeek).where(TrackWeek.entry_id == entry_id)
                     .values(**outcome_row(found._asdict() | fields)))
    return True


def export(ledger: Ledger, path: Path) -> int:
    """Write every entry (oldest first) to `path`, CSV or Parquet by its extension; returns the row count.
    Raises ValueError for any other extension, or for Parquet without pyarrow."""
    suffix = path.suffix.lower()
    if suffix not in EXPORT_FORMATS:
        raise ValueError(f"cannot export to {path.name!r}: the file name must end in .csv or .parquet")
    if suffix == ".parquet" and importlib.util.find_spec("pyarrow") is None:
        raise ValueError("Parquet export needs pyarrow: `pip install pyarrow`, or export to a .csv file")
    import pandas as pd

    query = select(*_columns(True)).order_by(Forecast.requested_epoch, Forecast.id)
    frame = pd.DataFrame(_rows(ledger, query), columns=list(FIELDS))
    dtypes = {"float": "Float64", "int": "Int64", "bool": "boolean", "str": "string"}
    frame = frame.astype({name: dtypes[kind.rstrip("?")] for name, kind in FIELDS.items()})
    if suffix == ".csv":
        frame.to_csv(path, index=False)
    else:
        frame.to_parquet(path, index=False)
    return len(frame)
