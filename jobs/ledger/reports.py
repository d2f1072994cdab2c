"""The stored track reports (`models.TrackReport`): one row per scope, "*" (all tickers) or a ticker.

The writers bump a scope's generation in their transaction (`bump`); the report computed afterwards is saved with
the generation it read before reading the data (`save`), and only over a report of the same or an older one. So
whatever order writers and recomputes interleave in, the row ends up holding a report of every committed write,
and a row whose generations differ is stale (`StoredReport.stale`): a crash came between a write and its
recompute, or one is still under way. Plain SQL and the report's own JSON
(`engine.evaluation.track_report.TrackReport.to_json`): the bot reads through here (`read`), without numpy.

Each row says which REPORT_VERSION wrote it. One of another version is stale, and its report is not read: its JSON
is another shape. The bot shows such a scope as not computed yet until the worker recomputes it (at its start,
`jobs.worker.catch_up_track_reports`, and weekly, `jobs.track_record.rebuild_reports`).
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, or_, select

from engine.evaluation import track_report
from engine.evaluation.track_report import REPORT_VERSION
from jobs.ledger.database import Ledger, dialect_insert
from jobs.ledger.models import Forecast, TrackReport

ALL = "*"  # the scope of every ticker; tickers are upper-case letters, so it never names one


@dataclass(frozen=True)
class StoredReport:
    scope: str
    generation: int  # of the writes that changed this scope
    computed_generation: int | None  # the generation `report` was computed from; None: never computed
    version: int | None  # the REPORT_VERSION that computed it
    latest_week: str | None  # the newest scored week; None before any
    recorded: int | None  # the scope's entries when computed
    report: track_report.TrackReport | None  # None before anything is scored, or computed by another REPORT_VERSION
    computed_at: str | None

    @property
    def stale(self) -> bool:
        """A write since it was computed has not been folded in yet, or an older release computed it."""
        return self.computed_generation != self.generation or self.version != REPORT_VERSION

    @property
    def readable(self) -> bool:
        """Computed, by this REPORT_VERSION: `report` and `recorded` say what the scope held then."""
        return self.computed_generation is not None and self.version == REPORT_VERSION


def scope_of(ticker: str | None) -> str:
    return ticker.upper() if ticker else ALL


def scopes_of(tickers: Iterable[str]) -> list[str]:
    """The scopes a write to these tickers' entries changes: each ticker's and "*", sorted."""
    return sorted({ALL, *tickers})


def bump(conn: Connection, scopes: Iterable[str]) -> None:
    """Within a writer's transaction: mark these scopes' reports as behind by one more write. In sorted order, the
    same in every writer, so two writers never hold each other's rows (PostgreSQL locks each until commit)."""
    scopes = sorted(set(scopes))
    if not scopes:
        return
    statement = dialect_insert(conn, TrackReport)
    statement = statement.on_conflict_do_update(index_elements=["scope"],
                                                set_={"generation": TrackReport.generation + 1})
    conn.execute(statement, [{"scope": scope, "generation": 1} for scope in scopes])


def generations(conn: Connection, scopes: Iterable[str]) -> dict[str, int]:
    """{scope: its generation}; 0 for a scope without a row yet (no write since the table was made)."""
    scopes = sorted(set(scopes))
    found = dict(conn.execute(select(TrackReport.scope, TrackReport.generation)
                              .where(TrackReport.scope.in_(scopes))).all())
    return {scope: found.get(scope, 0) for scope in scopes}


def save(conn: Connection, scope: str, *, generation: int, report: track_report.TrackReport | None,
         latest_week: str | None, recorded: int, now: dt.datetime) -> None:
    """Store `scope`'s report, computed from data read after its generation was `generation`, unless a report
    from a later generation is there already (a recompute that started later and finished first)."""
    t = TrackReport
    values = {"computed_generation": generation, "version": REPORT_VERSION, "latest_week": latest_week,
              "recorded": recorded,
              "report": None if report is None else json.dumps(report.to_json(), separators=(",", ":")),
              "computed_at": now.astimezone(dt.UTC).isoformat()}
    statement = dialect_insert(conn, t).values(scope=scope, generation=generation, **values)
    conn.execute(statement.on_conflict_do_update(
        index_elements=["scope"], set_=values,
        where=or_(t.computed_generation.is_(None), t.computed_generation <= generation)))


def _stored(row) -> StoredReport:
    values = row._asdict()
    text, values["report"] = values["report"], None
    if text is not None and values["version"] == REPORT_VERSION:  # another version's JSON is another shape
        values["report"] = track_report.TrackReport.from_json(json.loads(text))
    return StoredReport(**values)


_COLUMNS = [getattr(TrackReport, c.name) for c in TrackReport.__table__.columns]


def read(ledger: Ledger, scope: str) -> StoredReport | None:
    """`scope`'s stored report (one primary-key lookup); None when the scope has no row yet."""
    with ledger.connect() as conn:
        row = conn.execute(select(*_COLUMNS).where(TrackReport.scope == scope)).first()
    return None if row is None else _stored(row)


def _tickers(conn: Connection) -> list[str]:
    return list(conn.scalars(select(Forecast.ticker).distinct()))


def all_scopes(ledger: Ledger) -> list[str]:
    """"*" and every ticker with entries, sorted."""
    with ledger.connect() as conn:
        return scopes_of(_tickers(conn))


def needing_rebuild(ledger: Ledger) -> list[str]:
    """The scopes (of `all_scopes`) whose stored report is stale or missing, sorted."""
    t = TrackReport
    with ledger.connect() as conn:
        tickers = _tickers(conn)
        fresh = set(conn.scalars(select(t.scope).where(t.computed_generation == t.generation,
                                                       t.version == REPORT_VERSION)))
    return [scope for scope in scopes_of(tickers) if scope not in fresh]
