"""The ledger's bounded waits and its schema check (issue 20, item 6), on real databases: a statement past the
timeout is cancelled by PostgreSQL, SQLite waits for a lock no longer than asked, migrations are not cut short, and
a Ledger that does not migrate (the bot's) refuses a schema that is missing or behind instead of migrating it."""

from __future__ import annotations

import time
import uuid

import pytest
from sqlalchemy import create_engine, inspect, text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from jobs import ledger
from jobs.ledger import LedgerNotReady, database


@pytest.fixture
def empty_postgres(postgres_database: str):
    """A database of its own on the test PostgreSQL, with nothing in it, dropped afterwards."""
    server = make_url(postgres_database)
    admin = create_engine(server, isolation_level="AUTOCOMMIT")
    name = f"fc_empty_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield server.set(database=name).render_as_string(hide_password=False)
    finally:
        database.close_all()
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def test_postgres_cancels_a_statement_past_the_timeout(postgres_ledger):
    store = ledger.Ledger(postgres_ledger.url, statement_timeout_s=0.3)
    try:
        with store.connect() as conn:
            assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "300ms"
            started = time.perf_counter()
            with pytest.raises(OperationalError, match="statement timeout"):
                conn.exec_driver_sql("SELECT pg_sleep(5)")
        assert time.perf_counter() - started < 2
    finally:
        store.dispose()


def test_the_settings_timeouts_reach_the_connection_and_the_urls_own_options_are_kept(postgres_ledger):
    from forecaster.settings import Settings

    url = make_url(postgres_ledger.url).update_query_dict({"options": "-c application_name=forecaster-test"})
    settings = Settings(_env_file=None, database_url=url.render_as_string(hide_password=False),
                        database_statement_timeout_s=7, database_connect_timeout_s=3)
    store = ledger.open_ledger(settings)
    with store.connect() as conn:
        assert conn.exec_driver_sql("SHOW statement_timeout").scalar() == "7s"
        assert conn.exec_driver_sql("SHOW application_name").scalar() == "forecaster-test"
        assert conn.connection.dbapi_connection.info.get_parameters()["connect_timeout"] == "3"


def test_migrations_are_not_cut_short_by_the_statement_timeout(empty_postgres):
    store = ledger.Ledger(empty_postgres, statement_timeout_s=0.001)  # every DDL statement would be cancelled
    for _ in range(50):  # the driver's own catalog queries on its first connection may exceed 1 ms on a busy server
        try:
            with store.engine.connect():
                break
        except OperationalError:
            continue
    store.migrate()
    store.dispose()
    check = ledger.Ledger(empty_postgres, migrate=False)
    assert database.current_revision(check.engine) == database.head_revision()
    check.dispose()


def test_sqlite_waits_for_another_writers_lock_no_longer_than_the_statement_timeout(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    writer = ledger.Ledger(url)
    hasty = ledger.Ledger(url, statement_timeout_s=0.5)
    try:
        with writer.begin() as held:
            held.exec_driver_sql("DELETE FROM forecasts")  # holds the write lock until this block ends
            with hasty.connect() as conn:
                assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 500
                started = time.perf_counter()
                with pytest.raises(OperationalError, match="locked"):
                    conn.exec_driver_sql("DELETE FROM forecasts")
                waited = time.perf_counter() - started
        assert 0.4 < waited < 2
    finally:
        writer.dispose()
        hasty.dispose()


@pytest.mark.parametrize("backend", ["sqlite", "postgres"])
def test_a_ledger_that_does_not_migrate_refuses_a_missing_schema_and_creates_nothing(backend, tmp_path, request):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}" if backend == "sqlite" else request.getfixturevalue(
        "empty_postgres")
    reader = ledger.Ledger(url, migrate=False)
    with pytest.raises(LedgerNotReady, match="no ledger schema") as refused:
        ledger.count(reader)
    assert refused.value.revision is None and refused.value.head == database.head_revision()
    assert "forecaster ledger migrate" in str(refused.value)
    check = create_engine(url)
    assert inspect(check).get_table_names() == []
    check.dispose()

    ledger.Ledger(url).migrate()  # a worker starts
    assert ledger.count(reader) == 0  # asked again, it reads
    reader.dispose()


def test_a_ledger_that_does_not_migrate_refuses_an_older_schema_and_reads_a_newer_one(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    engine = create_engine(url)
    database.upgrade(engine, "0002")  # an earlier release's schema
    with pytest.raises(LedgerNotReady, match="revision 0002"):
        ledger.count(ledger.Ledger(url, migrate=False))

    database.upgrade(engine)
    with engine.begin() as conn:  # a newer release migrated it first
        conn.execute(text("UPDATE alembic_version SET version_num = '9999'"))
    engine.dispose()
    reader = ledger.Ledger(url, migrate=False)
    assert ledger.count(reader) == 0
    reader.dispose()
