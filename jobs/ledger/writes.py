"""Writing ledger entries: recording forecasts and storing their outcomes. Runs in the worker (numpy: the scoring).

Every write keeps the track record's tables in step. In the write's own transaction: which forecast of a ticker
and week counts, and its numbers (`_stand`, `jobs.ledger.track_rows`), and the generation of each report scope
it changes (the ticker's and "*", `jobs.ledger.reports.bump`). After it commits, those scopes' stored reports are
recomputed (`jobs.ledger.report_builder`), at once or, inside `batched_reports`, once at the end of the batch.

Two writers at once converge: on PostgreSQL the upsert of the (ticker, week) row locks it, so the second writer of
that group waits for the first to commit and then compares against what it wrote; on SQLite the insert comes first
in its transaction, so the transaction holds the database's one write lock (BEGIN IMMEDIATE's effect) before it
looks at the group. The report scopes are bumped last, in sorted order, so writers never wait on each other in a
cycle.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable

from sqlalchemy import Connection, and_, or_, select, tuple_, update

from engine.evaluation.track import Outcome, closed_at, week_from_period
from engine.forecast_record import ForecastRecord
from jobs.ledger import reports
from jobs.ledger.columns import FIELDS
from jobs.ledger.database import Ledger, dialect_insert
from jobs.ledger.fields import forecast_fields, outcome_fields
from jobs.ledger.models import Forecast, TrackWeek
from jobs.ledger.report_builder import batched_reports, reports_changed
from jobs.ledger.track_rows import is_late, outcome_row, track_row

__all__ = ["batched_reports", "insert_entries", "record_forecast", "store_outcome"]


def _epochs(fields: dict) -> dict:
    """The instants the reads sort and compare on (see `jobs.ledger.models`), and the `late` flag they decide."""
    week = week_from_period(fields["target_week"])
    epochs = {"requested_epoch": dt.datetime.fromisoformat(fields["requested_at"]).timestamp(),
              "week_opens_epoch": week.opens.timestamp(), "week_closes_epoch": closed_at(week).timestamp()}
    return epochs | {"late": is_late(epochs)}


def _id_order(conn: Connection, column):
    # Ties on request time go to the greater id in Python's (code point) order: byte order, not the locale's.
    return column.collate("C") if conn.dialect.name == "postgresql" else column


_GROUP_CHUNK = 400  # (ticker, week) pairs per statement: two bound parameters each, far below SQLite's limit


def _stand(conn: Connection, new: list[dict]) -> None:
    """Let the newly inserted entries stand for their ticker and week where they are the latest request (then
    the greatest id), as `engine.evaluation.track.select_counted` decides; mark the others of those groups
    superseded."""
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
    statement = dialect_insert(conn, TrackWeek)
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
    present, by id, is left exactly as it is. The track record's tables follow (see the module's docstring)."""
    values = [{name: row.get(name) for name in FIELDS} | _epochs(row) for row in rows]
    if not values:
        return 0
    with ledger.begin() as conn:
        # RETURNING lists only the rows this statement inserted: an exact count even with another writer at work
        statement = (dialect_insert(conn, Forecast).on_conflict_do_nothing(index_elements=["id"])
                     .returning(Forecast.id))
        inserted = set(conn.execute(statement, values).scalars())
        new = [row for row in values if row["id"] in inserted]
        _stand(conn, new)
        # Every new entry changes its scopes' reports: the count, and pending, late or superseded if nothing else.
        scopes = reports.scopes_of(row["ticker"] for row in new) if new else []
        reports.bump(conn, scopes)
    reports_changed(ledger, scopes)
    return len(inserted)


def record_forecast(ledger: Ledger, data: ForecastRecord, *, job_id: str, user: str | None, channel: str,
                    requested_at: dt.datetime, latency_s: float, source: str, prompt_hash: str | None = None) -> str:
    """Record one forecast and return its entry id. Idempotent per (job_id,
    ticker): recording the same again returns the existing id and changes nothing.

    `requested_at` is when the user (or the scheduler) asked, timezone-aware; `latency_s` from request to answer;
    `source` is "forecast" or "digest"; `prompt_hash` see `prompt_sha256` (else the inputs are hashed).
    """
    fields = forecast_fields(data, job_id=job_id, user=user, channel=channel, requested_at=requested_at,
                             latency_s=latency_s, source=source, prompt_hash=prompt_hash)
    insert_entries(ledger, [fields])
    return fields["id"]


def store_outcome(ledger: Ledger, entry_id: str, outcome: Outcome, *, scored_at: dt.datetime) -> bool:
    """Write the realized outcome onto the entry (which takes it off the waiting list). False when there is no
    such entry. Storing again overwrites with the same numbers (prices of a closed week do not change)."""
    needed = (Forecast.ticker, Forecast.parsed, Forecast.direction, Forecast.magnitude, Forecast.p_up)
    with ledger.begin() as conn:
        found = conn.execute(select(*needed).where(Forecast.id == entry_id)).first()
        if found is None:
            return False
        fields = outcome_fields(outcome, parsed=found.parsed, direction=found.direction, scored_at=scored_at)
        conn.execute(update(Forecast).where(Forecast.id == entry_id).values(**fields))
        # Only while it stands: a later forecast that superseded it meanwhile keeps its own row.
        conn.execute(update(TrackWeek).where(TrackWeek.entry_id == entry_id)
                     .values(**outcome_row(found._asdict() | fields)))
        # Counted or not, a scored entry can move its scopes' latest scored week, and so their reports.
        scopes = reports.scopes_of([found.ticker])
        reports.bump(conn, scopes)
    reports_changed(ledger, scopes)
    return True
