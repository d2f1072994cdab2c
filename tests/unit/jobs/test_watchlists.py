"""Each channel's watchlist in the ledger (jobs.ledger.watchlists, migration 0004), on SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.data.inputs import Sources
from engine.market.weeks import NEW_YORK
from jobs.ledger import database, watchlists, writes
from tests.fakes.forecasts import canned_forecast, stepped_market

FRIDAY_EVENING = dt.datetime(2024, 3, 8, 18, 0, tzinfo=NEW_YORK)


def test_names_are_added_in_order_once_each_up_to_the_cap_and_per_channel(ledger_db):
    first = watchlists.add(ledger_db, "C1", ["NVDA", "AMD", "NVDA"], user="U1", cap=3)
    assert (first.added, first.already, first.over_cap, first.size) == (["NVDA", "AMD"], [], [], 2)
    second = watchlists.add(ledger_db, "C1", ["AMD", "BRK.B", "MSFT"], user="U2", cap=3)
    assert (second.added, second.already, second.over_cap, second.size) == (["BRK.B"], ["AMD"], ["MSFT"], 3)
    watchlists.add(ledger_db, "C2", ["AXP"], user="U1", cap=3)
    assert watchlists.tickers_of(ledger_db, "C1") == ["NVDA", "AMD", "BRK.B"]
    assert watchlists.tickers_of(ledger_db, "C3") == []
    assert watchlists.all_watchlists(ledger_db) == {"C1": ["NVDA", "AMD", "BRK.B"], "C2": ["AXP"]}
    assert watchlists.all_watchlists(ledger_db, limit_channels=1) == {"C1": ["NVDA", "AMD", "BRK.B"]}


def test_removing_says_which_names_were_not_on_the_list(ledger_db):
    watchlists.add(ledger_db, "C1", ["NVDA", "AMD"], user="U1", cap=50)
    assert watchlists.remove(ledger_db, "C1", ["NVDA", "TSLA"]) == (["NVDA"], ["TSLA"])
    assert watchlists.remove(ledger_db, "C2", ["AMD"]) == ([], ["AMD"])  # another channel's list is untouched
    assert watchlists.tickers_of(ledger_db, "C1") == ["AMD"]


def test_each_names_last_call_is_its_newest_forecast(ledger_db):
    mem = stepped_market(("AXP", "MSFT"))
    sources = Sources(mem, mem, mem)

    def record(symbol: str, prediction: str, at: dt.datetime, job: str) -> None:
        data = canned_forecast(sources, symbol, at=at, prediction=prediction)
        writes.record_forecast(ledger_db, data, job_id=job, user="U1", channel="C1", requested_at=at,
                               latency_s=1.0, source="forecast")

    record("AXP", "Up by 1-2%", FRIDAY_EVENING - dt.timedelta(days=7), "j1")
    record("AXP", "Down by 2-3%", FRIDAY_EVENING, "j2")
    record("MSFT", "Up by 0-1%", FRIDAY_EVENING, "j3")
    calls = watchlists.last_calls(ledger_db, ["AXP", "MSFT", "NVDA"])
    assert set(calls) == {"AXP", "MSFT"}  # NVDA was never forecast
    assert calls["AXP"].label == "down by 2-3%" and calls["MSFT"].label == "up by 0-1%"
    assert watchlists.last_calls(ledger_db, []) == {}


def test_migration_0004_makes_the_table_and_goes_back(sqlite_ledger):
    from alembic import command
    from sqlalchemy import inspect

    watchlists.add(sqlite_ledger, "C1", ["NVDA"], user="U1", cap=50)

    def tables() -> set[str]:
        with sqlite_ledger.connect() as conn:
            return set(inspect(conn).get_table_names())

    def migrate(step, revision: str) -> None:
        with sqlite_ledger.engine.begin() as conn:
            step(database.alembic_config(conn), revision)

    try:
        migrate(command.downgrade, "0003")
        assert "watchlists" not in tables() and database.current_revision(sqlite_ledger.engine) == "0003"
    finally:
        migrate(command.upgrade, "0004")
    assert "watchlists" in tables() and watchlists.tickers_of(sqlite_ledger, "C1") == []


@pytest.mark.parametrize("cap", [0, 1])
def test_the_cap_counts_what_is_already_there(sqlite_ledger, cap):
    result = watchlists.add(sqlite_ledger, "C1", ["NVDA", "AMD"], user="U1", cap=cap)
    assert len(result.added) == cap and result.over_cap == ["NVDA", "AMD"][cap:]


# -- the scheduler reads each channel's list when it enqueues its digest ------------------------------------------


def test_each_channels_digest_carries_its_list_and_an_unreadable_list_is_not_replaced_by_the_dow30(redis, caplog):
    from rq.job import Job
    from rq.serializers import JSONSerializer

    from jobs.client import queue
    from jobs.keys import digest_job_id
    from jobs.ledger.watchlists import WatchlistUnreadable
    from jobs.queues import BATCH
    from jobs.scheduler import enqueue_slot

    def lists(channel: str) -> list[str]:
        if channel == "C0DOWN":
            raise WatchlistUnreadable("OperationalError: connection refused")
        return {"C0WATCH": ["NVDA", "BRK.B"]}.get(channel, [])

    monday = dt.datetime(2024, 3, 18, 8, 0, tzinfo=NEW_YORK)
    outcomes = enqueue_slot(redis, "digest", channels=["C0WATCH", "C0DOW30", "C0DOWN"], fire_time=monday,
                            sleep=lambda _s: None, watchlists=lists)
    assert outcomes["C0DOWN"] is None  # retried, then logged as not enqueued
    assert "C0DOWN" in caplog.text and "NOT enqueued" in caplog.text
    jobs = {job.kwargs["channel"]: job for job in (Job.fetch(i, connection=redis, serializer=JSONSerializer)
                                                   for i in queue(redis, BATCH).get_job_ids())}
    assert set(jobs) == {"C0WATCH", "C0DOW30"}
    assert jobs["C0WATCH"].kwargs["symbols"] == ["NVDA", "BRK.B"] and "symbols" not in jobs["C0DOW30"].kwargs
    day = dt.date(2024, 3, 17)
    assert jobs["C0WATCH"].id == digest_job_id(channel="C0WATCH", as_of=day, symbols=["NVDA", "BRK.B"]) != \
        digest_job_id(channel="C0WATCH", as_of=day, symbols=["NVDA"])  # a changed list is a new digest
    assert jobs["C0DOW30"].id == "digest_2024-03-17_C0DOW30"  # as before watchlists


def test_the_schedulers_reader_knows_no_list_before_migration_0004_and_fails_loudly_without_a_database(tmp_path):
    from forecaster.settings import Settings
    from jobs.ledger.watchlists import WatchlistUnreadable, watchlist_reader

    settings = Settings(_env_file=None, data_dir=tmp_path)
    ledger = database.open_ledger(settings)
    database.upgrade(ledger._create_engine(), "0003")  # a ledger a release before watchlists left
    assert watchlist_reader(settings)("C0WATCH") == []  # the Dow30
    ledger.migrate()
    watchlists.add(ledger, "C0WATCH", ["NVDA"], user="U1", cap=50)
    database.close_all()
    assert watchlist_reader(settings)("C0WATCH") == ["NVDA"]
    down = Settings(_env_file=None, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
                    database_connect_timeout_s=2)
    with pytest.raises(WatchlistUnreadable):
        watchlist_reader(down)("C0WATCH")
