"""`forecaster ledger show`, `export` and `migrate` through the real CLI, on a real SQLite file and a real
PostgreSQL (DATABASE_URL), and a real Redis holding an old release's ledger."""

from __future__ import annotations

import datetime as dt

import pandas as pd
import pytest
from typer.testing import CliRunner

import forecaster.cli
from engine.data.inputs import Sources
from engine.evaluation.track import realized_outcome
from engine.market.weeks import NEW_YORK, Week
from jobs import ledger
from jobs.ledger import redis_layout, writes
from tests.fakes.forecasts import canned_forecast, stepped_market


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(forecaster.cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def recorded(ledger_db, monkeypatch):
    """Two forecasts in the ledger, AXP's scored (a hit), KO's unparsed and pending."""
    monkeypatch.setenv("DATABASE_URL", ledger_db.url)
    monkeypatch.setenv("COLUMNS", "160")  # rich reads it on each print: a wide terminal, one line per row
    mem = stepped_market()
    sources = Sources(mem, mem, mem)
    at = dt.datetime(2024, 3, 8, 18, tzinfo=NEW_YORK)
    for symbol, prediction, minutes in (("AXP", "Up by 1-2%", 0), ("KO", None, 5)):
        data = canned_forecast(sources, symbol, at=at, prediction=prediction)
        writes.record_forecast(ledger_db, data, job_id=f"job-{symbol}", user="U1", channel="C1",
                               requested_at=at + dt.timedelta(minutes=minutes), latency_s=9.5, source="forecast")
    week = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))
    writes.store_outcome(ledger_db, "job-AXP:AXP", realized_outcome(mem.closes["AXP"], week, symbol="AXP"),
                         scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))


def test_show_lists_the_newest_forecasts_with_their_outcomes(recorded):
    code, out, err = run("ledger", "show")
    assert code == 0, err
    lines = out.splitlines()
    ko = next(i for i, line in enumerate(lines) if " KO " in line)
    axp = next(i for i, line in enumerate(lines) if " AXP " in line)
    assert ko < axp  # newest first
    assert "unparsed" in lines[ko] and "pending" in lines[ko]
    assert "up by 1-2%" in lines[axp] and "up by 2-3%" in lines[axp] and "+3.00%" in lines[axp] and "✓" in lines[axp]


def test_show_filters_by_ticker_and_limits(recorded):
    code, out, _ = run("ledger", "show", "--ticker", "axp", "--limit", "1")
    assert code == 0 and " AXP " in out and " KO " not in out
    code, _, err = run("ledger", "show", "--ticker", "MSFT")
    assert code == 0 and "no forecasts recorded for MSFT yet" in err


@pytest.mark.parametrize("name", ["out.csv", "out.parquet"])
def test_export_writes_csv_or_parquet_by_extension(recorded, tmp_path, name):
    path = tmp_path / name
    code, _, err = run("ledger", "export", "--out", str(path))
    assert code == 0, err
    assert "wrote 2 forecast(s)" in err
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert list(frame["ticker"]) == ["AXP", "KO"] and list(frame["actual_label"].isna()) == [False, True]


def test_export_to_another_format_fails_with_the_fix(recorded, tmp_path):
    code, _, err = run("ledger", "export", "--out", str(tmp_path / "out.json"))
    assert code == 2
    assert "--out must end in .csv or .parquet" in err
    assert not (tmp_path / "out.json").exists()


def test_without_database_url_the_ledger_is_a_sqlite_file_under_data_dir(tmp_path, monkeypatch):
    monkeypatch.setenv("DATA_DIR", str(tmp_path / "state"))
    code, _, err = run("ledger", "show")
    assert code == 0 and "no forecasts recorded yet" in err
    assert (tmp_path / "state" / "ledger.sqlite3").is_file()


def test_an_unreachable_database_fails_with_the_fix(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "postgresql+psycopg://nobody:secret-pw@127.0.0.1:1/none")
    code, _, err = run("ledger", "show")
    assert code == 2 and "Check DATABASE_URL" in err
    assert "secret-pw" not in err  # the password never printed


def test_migrate_copies_a_redis_ledger_once_and_says_how_many(ledger_db, redis, redis_server, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", ledger_db.url)
    monkeypatch.setenv("REDIS_URL", redis_server["url"])
    mem = stepped_market()
    sources = Sources(mem, mem, mem)
    at = dt.datetime(2024, 3, 8, 18, tzinfo=NEW_YORK)
    ids = [redis_layout.record_forecast(redis, canned_forecast(sources, symbol, at=at, prediction="Up by 1-2%"),
                                        job_id=f"job-{symbol}", user="U1", channel="C1", requested_at=at,
                                        latency_s=1, source="forecast") for symbol in ("AXP", "KO")]
    week = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))
    redis_layout.store_outcome(redis, ids[0], realized_outcome(mem.closes["AXP"], week, symbol="AXP"),
                               scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))

    code, _, err = run("ledger", "migrate")
    assert code == 0, err
    assert "2 forecast(s) in the Redis ledger: 2 copied" in err and "0 already there" in err
    assert {e["id"] for e in ledger.entries(ledger_db)} == set(ids)
    assert ledger.get_entry(ledger_db, ids[0])["hit"] is True
    code, _, err = run("ledger", "migrate")
    assert code == 0 and "0 copied" in err and "2 already there" in err
    assert ledger.count(ledger_db) == 2


def test_migrate_needs_the_old_redis_and_says_so(ledger_db, monkeypatch):
    monkeypatch.setenv("DATABASE_URL", ledger_db.url)
    code, _, err = run("ledger", "migrate")
    assert code == 2 and "set REDIS_URL" in err
