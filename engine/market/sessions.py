"""The New York Stock Exchange's trading sessions: which days it trades, when each session opens and closes.

The sessions are exchange_calendars' XNYS calendar (its holidays: New Year, MLK, Presidents' Day, Good Friday,
Memorial Day, Juneteenth, Independence Day, Labor Day, Thanksgiving, Christmas; its ad-hoc closures such as
2012-10-29/30 or 2025-01-09; its 13:00 early closes), kept beside this module as `xnys.csv`: every weekday it lists
differs from a 09:30-16:00 New York session, closed (no times) or at the times given. The table is read with the
standard library, once per process and only when first asked (about a millisecond), so the bot, which never
imports pandas (exchange_calendars is built on it, and takes about 0.7 s to import), names the same week as the
worker that answers.

`python -m engine.market.sessions_table` writes the table again from the installed exchange_calendars (after an
ad-hoc closure is announced, or to reach further ahead); tests/unit/engine/test_sessions.py fails when they disagree.
Outside the table's years every weekday counts as a 09:30-16:00 session, and the first such read logs a warning.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import re
from dataclasses import dataclass
from pathlib import Path
from zoneinfo import ZoneInfo

log = logging.getLogger(__name__)

NEW_YORK = ZoneInfo("America/New_York")
REGULAR_OPEN = dt.time(9, 30)
REGULAR_CLOSE = dt.time(16, 0)
TABLE = Path(__file__).with_name("xnys.csv")
# The years the table is written for: the training data and the ledger's history, and the holidays ahead that
# exchange_calendars knows by rule.
TABLE_FIRST = dt.date(1990, 1, 1)
TABLE_LAST = dt.date(2035, 12, 31)
_COVERS = re.compile(r"^# covers (\d{4}-\d{2}-\d{2}) to (\d{4}-\d{2}-\d{2})\b")


@dataclass(frozen=True)
class Session:
    """One trading day: its date and the New York times its session opens and closes."""

    day: dt.date
    opens: dt.datetime
    closes: dt.datetime


@dataclass(frozen=True)
class _Table:
    first: dt.date
    last: dt.date
    special: dict[dt.date, tuple[dt.time, dt.time] | None]  # None: closed that day


@functools.cache
def _table() -> _Table:
    return parse_table(TABLE.read_text(encoding="utf-8"))


def parse_table(text: str) -> _Table:
    covers, special = None, {}
    for line in text.splitlines():
        if found := _COVERS.match(line):
            covers = (dt.date.fromisoformat(found[1]), dt.date.fromisoformat(found[2]))
        if not line or line.startswith("#") or line.startswith("date,"):
            continue
        day, opens, closes = line.split(",")
        special[dt.date.fromisoformat(day)] = (
            (dt.time.fromisoformat(opens), dt.time.fromisoformat(closes)) if opens else None)
    if covers is None:
        raise ValueError(f"{TABLE.name} does not say which dates it covers ('# covers FIRST to LAST')")
    return _Table(covers[0], covers[1], special)


@functools.cache
def _warn_outside(year: int) -> None:
    table = _table()
    log.warning("%d is outside the NYSE session table (%s to %s): every weekday is taken as a 09:30-16:00 session; "
                "run `python -m engine.market.sessions_table` to extend it", year, table.first, table.last)


def session(day: dt.date) -> Session | None:
    """The session on `day`, or None when the exchange does not trade that day."""
    table = _table()
    if not table.first <= day <= table.last:
        _warn_outside(day.year)
        times = None if day.weekday() >= 5 else (REGULAR_OPEN, REGULAR_CLOSE)
    elif day in table.special:
        times = table.special[day]
    else:
        times = None if day.weekday() >= 5 else (REGULAR_OPEN, REGULAR_CLOSE)
    if times is None:
        return None
    return Session(day, dt.datetime.combine(day, times[0], tzinfo=NEW_YORK),
                   dt.datetime.combine(day, times[1], tzinfo=NEW_YORK))


def sessions(first: dt.date, last: dt.date) -> list[Session]:
    """The sessions from `first` to `last`, both included, in order."""
    days = (first + dt.timedelta(days=n) for n in range((last - first).days + 1))
    return [s for s in map(session, days) if s is not None]
