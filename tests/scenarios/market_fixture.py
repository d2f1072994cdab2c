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


def record_snapshot(out):
    """A `forecaster data snapshot`-style folder of the memory market, recorded as of 2024-03-15's close, for
    processes that read DATA_SNAPSHOT_DIR (a live request replays as of that moment)."""
    from engine.data.inputs import Sources, gather
    from engine.sources.snapshot import RecordingSources, write_snapshot

    mem = memory_market()
    recording = RecordingSources(news=mem, fundamentals=mem, prices=mem)
    cutoff = dt.datetime(2024, 3, 15, 23, 59, tzinfo=NEW_YORK)
    now = dt.datetime(2024, 3, 16, 12, tzinfo=NEW_YORK)
    gather(["AXP"], sources=Sources(recording, recording, recording), cutoff=cutoff, now=now, weeks=3)
    write_snapshot(recording, out, description={"cutoff": cutoff.isoformat(), "recorded_now": now.isoformat()})
    return out
