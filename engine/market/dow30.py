"""Dow Jones Industrial Average membership, as dated data (`dow30.csv` next to this file).

A constant list goes stale: FinGPT's is four names out of date. Backtests ask for the members on the day they
simulate; the live bot asks for today's.
"""

from __future__ import annotations

import csv
import datetime as dt
from dataclasses import dataclass
from functools import cache
from importlib import resources


@dataclass(frozen=True)
class Membership:
    ticker: str
    start: dt.date
    end: dt.date | None  # inclusive; None while still a member

    def covers(self, day: dt.date) -> bool:
        return self.start <= day and (self.end is None or day <= self.end)


@cache
def memberships() -> tuple[Membership, ...]:
    """Every membership row, read once from the packaged CSV."""
    text = resources.files("engine.market").joinpath("dow30.csv").read_text(encoding="utf-8")
    rows = csv.DictReader(line for line in text.splitlines() if line and not line.startswith("#"))
    return tuple(
        Membership(
            ticker=row["ticker"],
            start=dt.date.fromisoformat(row["start"]),
            end=dt.date.fromisoformat(row["end"]) if row["end"] else None,
        )
        for row in rows
    )


def members(on: dt.date) -> list[str]:
    """The index members on `on`, sorted. Always 30 names for dates covered by the table."""
    return sorted({m.ticker for m in memberships() if m.covers(on)})


def was_member(ticker: str, on: dt.date) -> bool:
    return any(m.ticker == ticker and m.covers(on) for m in memberships())
