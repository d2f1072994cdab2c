"""Each channel's watchlist (`/watch`): the tickers its weekly digest and its `/digest` cover instead of the Dow30.

Kept in the ledger's `watchlists` table (migration 0004). Plain reads and writes, no numpy: the bot lists and edits
watchlists inside its ack. Tickers are stored as given here: callers pass them validated and in canonical form
(`jobs.watch_check`: upper case, class shares with a dot, BRK.B).
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import delete, func, select, text
from sqlalchemy.exc import SQLAlchemyError

from jobs.ledger.database import Ledger, LedgerNotReady, dialect_insert, open_ledger
from jobs.ledger.models import Forecast, WatchlistEntry
from jobs.ledger.views import LastCall


@dataclass
class Added:
    """What `add` did: the names added, those already on the list, and those left out by the cap."""

    added: list[str] = field(default_factory=list)
    already: list[str] = field(default_factory=list)
    over_cap: list[str] = field(default_factory=list)
    size: int = 0  # the list's size after the add
    cap: int = 0


def _lock_channel(conn, channel: str) -> None:
    """Two adds to one channel at once take turns on PostgreSQL, so the cap holds (SQLite has one writer anyway)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(hashtext(:key))"), {"key": f"watchlist:{channel}"})


def add(ledger: Ledger, channel: str, tickers: list[str], *, user: str | None, cap: int) -> Added:
    """Add `tickers` to `channel`'s list, in order, up to `cap` names in all; those past the cap are not added."""
    result = Added(cap=cap)
    now = dt.datetime.now(dt.UTC)
    with ledger.begin() as conn:
        _lock_channel(conn, channel)
        present = set(conn.scalars(select(WatchlistEntry.ticker).where(WatchlistEntry.channel == channel)))
        size = len(present)
        for index, ticker in enumerate(dict.fromkeys(tickers)):
            if ticker in present:
                result.already.append(ticker)
                continue
            if size >= cap:
                result.over_cap.append(ticker)
                continue
            # microseconds apart, so the list reads back in the order given
            added_at = (now + dt.timedelta(microseconds=index)).isoformat(timespec="microseconds")
            conn.execute(dialect_insert(conn, WatchlistEntry)
                         .values(channel=channel, ticker=ticker, added_by=user, added_at=added_at)
                         .on_conflict_do_nothing())
            present.add(ticker)
            result.added.append(ticker)
            size += 1
        result.size = size
    return result


def remove(ledger: Ledger, channel: str, tickers: list[str]) -> tuple[list[str], list[str]]:
    """Take `tickers` off `channel`'s list: (removed, not on the list)."""
    wanted = list(dict.fromkeys(tickers))
    with ledger.begin() as conn:
        present = set(conn.scalars(select(WatchlistEntry.ticker).where(
            WatchlistEntry.channel == channel, WatchlistEntry.ticker.in_(wanted))))
        if present:
            conn.execute(delete(WatchlistEntry).where(WatchlistEntry.channel == channel,
                                                      WatchlistEntry.ticker.in_(present)))
    return [t for t in wanted if t in present], [t for t in wanted if t not in present]


def tickers_of(ledger: Ledger, channel: str) -> list[str]:
    """`channel`'s watchlist in the order its names were added; [] when it has none."""
    with ledger.connect() as conn:
        return list(conn.scalars(select(WatchlistEntry.ticker).where(WatchlistEntry.channel == channel)
                                 .order_by(WatchlistEntry.added_at, WatchlistEntry.ticker)))


def all_watchlists(ledger: Ledger, *, limit_channels: int | None = None) -> dict[str, list[str]]:
    """Every channel's watchlist, {channel: tickers in the order added}, channels by their first name's age."""
    with ledger.connect() as conn:
        rows = conn.execute(select(WatchlistEntry.channel, WatchlistEntry.ticker)
                            .order_by(WatchlistEntry.added_at, WatchlistEntry.ticker)).all()
    lists: dict[str, list[str]] = {}
    for channel, ticker in rows:
        if channel not in lists and limit_channels is not None and len(lists) >= limit_channels:
            continue
        lists.setdefault(channel, []).append(ticker)
    return lists


LAST_CALL_FIELDS = tuple(LastCall.model_fields)  # the forecasts' columns a last call reads, by the same names


def last_calls(ledger: Ledger, tickers: list[str]) -> dict[str, LastCall]:
    """Each ticker's newest recorded forecast (any channel, `/forecast` or a digest), {ticker: its `LastCall`}; a
    ticker never forecast is absent. One query (a window over the ticker index)."""
    if not tickers:
        return {}
    columns = [getattr(Forecast, name) for name in LAST_CALL_FIELDS]
    ranked = (select(*columns, func.row_number().over(
        partition_by=Forecast.ticker, order_by=(Forecast.requested_epoch.desc(), Forecast.id.desc())).label("rank"))
        .where(Forecast.ticker.in_(list(dict.fromkeys(tickers)))).subquery())
    query = select(*[ranked.c[name] for name in LAST_CALL_FIELDS]).where(ranked.c.rank == 1)
    with ledger.connect() as conn:
        return {row.ticker: LastCall(**row._mapping) for row in conn.execute(query)}


class WatchlistUnreadable(Exception):
    """A channel's watchlist could not be read (the database refused or timed out); the message is for the log."""


def watchlist_reader(settings: Any) -> Callable[[str], list[str]]:
    """channel → its watchlist, for the scheduler: reads without migrating (a schema from before watchlists, or
    none, means no channel has one: []); raises `WatchlistUnreadable` when the database fails. Connects on first
    call, not here."""
    def read(channel: str) -> list[str]:
        try:
            return tickers_of(open_ledger(settings, migrate=False), channel)
        except LedgerNotReady:
            return []
        except SQLAlchemyError as exc:
            raise WatchlistUnreadable(f"{type(exc).__name__}: {str(getattr(exc, 'orig', exc)).strip()[:200]}") from exc

    return read
