"""Reading ledger entries: every forecast the product makes, kept for good, with its outcome once known.

Entries come back as plain dicts keyed by `FIELDS` (the shape `/track`, `ledger show` and the export use). The
writers are `jobs.ledger.writes`; this module stays off the numeric stack, for the bot.
"""

from __future__ import annotations

import datetime as dt

from sqlalchemy import Select, func, select

from jobs.ledger.columns import FIELDS, LONG_FIELDS, standing
from jobs.ledger.database import Ledger
from jobs.ledger.models import Forecast

_COLUMNS = {name: getattr(Forecast, name) for name in FIELDS}


def columns_of(texts: bool) -> list:
    return [column for name, column in _COLUMNS.items() if texts or name not in LONG_FIELDS]


def rows_of(ledger: Ledger, query: Select, *, texts: bool = True) -> list[dict]:
    with ledger.connect() as conn:
        result = conn.execute(query)
        names = list(result.keys())
        rows = [dict(zip(names, row, strict=True)) for row in result]
    if not texts:
        for row in rows:
            row.update(dict.fromkeys(LONG_FIELDS))
    return rows


def get_entry(ledger: Ledger, entry_id: str) -> dict | None:
    found = rows_of(ledger, select(*columns_of(True)).where(Forecast.id == entry_id))
    return found[0] if found else None


def newest_first(query: Select) -> Select:
    return query.order_by(Forecast.requested_epoch.desc(), Forecast.id.desc())


def entries(ledger: Ledger, *, ticker: str | None = None, limit: int | None = None,
            texts: bool = True) -> list[dict]:
    """Recorded forecasts, newest request first; only `ticker`'s when given; at most `limit`. `texts=False`
    leaves out the long fields (`raw`, `details`: None), for readers that only score."""
    if limit is not None and limit <= 0:
        return []
    query = newest_first(select(*columns_of(texts)))
    if ticker:
        query = query.where(Forecast.ticker == ticker.upper())
    if limit is not None:
        query = query.limit(limit)
    return rows_of(ledger, query, texts=texts)


def newest_with_standing(ledger: Ledger, *, ticker: str | None = None, limit: int) -> list[tuple[dict, str]]:
    """The `limit` newest entries (of `ticker`) without their long fields, each with its standing
    (`columns.standing`), in one query: what `/track` lists under the record."""
    if limit <= 0:
        return []
    query = newest_first(select(*columns_of(False), Forecast.late, Forecast.superseded)).limit(limit)
    if ticker:
        query = query.where(Forecast.ticker == ticker.upper())
    rows = rows_of(ledger, query, texts=False)
    return [(row, standing(row.pop("late"), row.pop("superseded"))) for row in rows]


def count(ledger: Ledger, *, ticker: str | None = None) -> int:
    query = select(func.count()).select_from(Forecast)
    if ticker:
        query = query.where(Forecast.ticker == ticker.upper())
    with ledger.connect() as conn:
        return conn.scalar(query)


def awaiting_outcome(ledger: Ledger, *, closed_by: dt.datetime) -> list[dict]:
    """Entries with no outcome yet whose target week had closed by `closed_by` (oldest week first)."""
    query = (select(*columns_of(True))
             .where(Forecast.scored_at.is_(None), Forecast.week_closes_epoch <= closed_by.timestamp())
             .order_by(Forecast.week_closes_epoch, Forecast.requested_epoch, Forecast.id))
    return rows_of(ledger, query)
