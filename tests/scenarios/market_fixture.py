"""The small in-memory market the job scenarios share (AXP, Jan–Mar 2024, a few invented headlines)."""

from __future__ import annotations

import datetime as dt

from engine.market.weeks import NEW_YORK
from engine.records import NewsItem
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes


def memory_market() -> MemorySources:
    mem = MemorySources()
    mem.profiles["AXP"] = synthetic_profile("AXP")
    mem.closes["AXP"] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    mem.news["AXP"] = [NewsItem(published=dt.datetime(2024, 3, d, 10, tzinfo=NEW_YORK),
                                headline=f"AXP invented headline {d}") for d in (4, 5, 11)]
    return mem
