"""jobs.ledger on a real SQLite file and a real PostgreSQL: recording (once per job and ticker), reading back,
outcomes, export; the schema Alembic makes matches the model; `migrate` copies a Redis ledger written by the old
release's own code."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pandas as pd
import pytest

from engine.data.inputs import Sources
from engine.evaluation.track import realized_outcome
from engine.forecast import prompt_sha256
from engine.forecast_record import ForecastRecord
from engine.market.weeks import NEW_YORK, Week
from jobs import ledger
from jobs.keys import ledger_entry_key
from jobs.ledger import database, redis_layout, writes
from jobs.ledger import export as ledger_export
from jobs.ledger import fields as ledger_fields
from jobs.ledger.migrate import copy_from_redis
from tests.fakes.forecasts import canned_forecast, distribution, stepped_market

FRIDAY_EVENING = dt.datetime(2024, 3, 8, 18, 0, tzinfo=NEW_YORK)  # forecasts the week of Mar 10
W2 = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))


@pytest.fixture
def market():
    mem = stepped_market()
    return mem, Sources(mem, mem, mem)


def record(store, sources, symbol="AXP", *, job_id="forecast_AXP_live1_2wf_C1", prediction="Up by 1-2%",
           at=FRIDAY_EVENING, bins=None, signal_band=0.0, **kwargs):
    data = canned_forecast(sources, symbol, at=at, prediction=prediction, distribution=bins, signal_band=signal_band)
    values = {"user": "U1", "channel": "C1", "requested_at": at, "latency_s": 12.34567, "source": "forecast"}
    return writes.record_forecast(store, data, job_id=job_id, **(values | kwargs)), data


def test_a_forecast_is_recorded_with_everything_the_track_record_needs(ledger_db, market):
    _, sources = market
    entry_id, data = record(ledger_db, sources)
    entry = ledger.get_entry(ledger_db, entry_id)
    assert entry_id == "forecast_AXP_live1_2wf_C1:AXP"
    assert entry["ticker"] == "AXP" and entry["user"] == "U1" and entry["channel"] == "C1"
    assert entry["source"] == "forecast" and entry["job_id"] == "forecast_AXP_live1_2wf_C1"
    assert entry["as_of"] == "live"  # the request ran at 18:00, not as of a past date's end
    assert entry["requested_at"] == "2024-03-08T23:00:00+00:00"
    assert (entry["target_week"], entry["week_start"], entry["week_end"]) == (W2.period, "2024-03-10", "2024-03-17")
    assert (entry["direction"], entry["magnitude"], entry["label"]) == ("up", "1-2%", "up by 1-2%")
    assert entry["as_written"] == "Up by 1-2%" and entry["parsed"] is True
    assert entry["model"] == "canned-analyst (adapter v7)" and entry["raw"] == data.raw
    assert entry["latency_s"] == 12.346 and entry["generation_s"] == 1.25 and entry["new_tokens"] == 40
    assert entry["prompt_hash"] == data.prompt_sha256 and entry["prompt_hash_of"] == "prompt"
    assert json.loads(entry["details"])["analysis"] == data.analysis
    assert entry["scored_at"] is None and entry["hit"] is None and entry["realized_return"] is None
    assert set(entry) == set(ledger.FIELDS)
    assert [e["id"] for e in ledger.awaiting_outcome(ledger_db, closed_by=dt.datetime(2024, 3, 16, tzinfo=NEW_YORK))
            ] == [entry_id]


def test_a_retried_job_records_nothing_new(ledger_db, market):
    _, sources = market
    first, _ = record(ledger_db, sources)
    again, _ = record(ledger_db, sources, prediction="Down by 3-4%", user="U2")  # a retry that answered differently
    assert again == first
    assert len(ledger.entries(ledger_db)) == 1
    entry = ledger.get_entry(ledger_db, first)
    assert entry["label"] == "up by 1-2%" and entry["user"] == "U1"


def test_a_digest_records_one_entry_per_ticker_under_one_job(ledger_db, market):
    _, sources = market
    a, _ = record(ledger_db, sources, "AXP", job_id="digest_2024-03-08_C9", source="digest", user=None)
    k, _ = record(ledger_db, sources, "KO", job_id="digest_2024-03-08_C9", source="digest", user=None)
    assert {a, k} == {"digest_2024-03-08_C9:AXP", "digest_2024-03-08_C9:KO"}
    assert ledger.get_entry(ledger_db, k)["user"] is None


def test_a_dated_forecast_records_its_date_and_a_given_prompt_hash(ledger_db, market):
    _, sources = market
    data = canned_forecast(sources, "AXP", at=dt.datetime(2024, 3, 8, 23, 59, 59, tzinfo=NEW_YORK),
                         prediction="Up by 0-1%")
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    entry_id = writes.record_forecast(ledger_db, data, job_id="forecast_AXP_2024-03-08_2wf_C1", user="U1", channel="C1",
                                      requested_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC), latency_s=3,
                                      source="forecast", prompt_hash=prompt_sha256(messages))
    entry = ledger.get_entry(ledger_db, entry_id)
    assert entry["as_of"] == "2024-03-08"
    expected = hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert (entry["prompt_hash"], entry["prompt_hash_of"]) == (expected, "prompt")


def test_bad_arguments_are_refused_with_the_fix(ledger_db, market):
    _, sources = market
    with pytest.raises(ValueError, match="'forecast', 'digest'"):
        record(ledger_db, sources, source="backtest")
    with pytest.raises(ValueError, match="timezone-aware"):
        record(ledger_db, sources, requested_at=dt.datetime(2024, 3, 8, 18))
    assert ledger.entries(ledger_db) == []


def test_readers_are_newest_first_filter_by_ticker_and_limit(ledger_db, market):
    _, sources = market
    for day, symbol in ((4, "AXP"), (5, "KO"), (6, "AXP")):
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        record(ledger_db, sources, symbol, job_id=f"job-{day}", at=at, requested_at=at)
    assert [e["id"] for e in ledger.entries(ledger_db)] == ["job-6:AXP", "job-5:KO", "job-4:AXP"]
    assert [e["id"] for e in ledger.entries(ledger_db, ticker="axp")] == ["job-6:AXP", "job-4:AXP"]
    assert [e["id"] for e in ledger.entries(ledger_db, limit=1)] == ["job-6:AXP"]
    assert ledger.entries(ledger_db, limit=0) == [] and ledger.entries(ledger_db, ticker="MSFT") == []


def test_an_outcome_is_stored_on_the_entry_and_leaves_the_pending_set(ledger_db, market):
    mem, sources = market
    entry_id, _ = record(ledger_db, sources)  # Up by 1-2% for a week that went up 3%
    assert [e["id"] for e in ledger.awaiting_outcome(ledger_db, closed_by=dt.datetime(2024, 3, 15, 23, tzinfo=NEW_YORK))
            ] == []  # Friday night: the week has not closed yet
    closed_by = dt.datetime(2024, 3, 16, 0, tzinfo=NEW_YORK)
    assert [e["id"] for e in ledger.awaiting_outcome(ledger_db, closed_by=closed_by)] == [entry_id]

    outcome = realized_outcome(mem.closes["AXP"], W2, symbol="AXP")
    assert writes.store_outcome(ledger_db, entry_id, outcome, scored_at=dt.datetime(2024, 3, 16, 15, tzinfo=dt.UTC))
    entry = ledger.get_entry(ledger_db, entry_id)
    assert entry["realized_return"] == pytest.approx(0.03) and entry["actual_label"] == "up by 2-3%"
    assert entry["hit"] is True  # direction right (the bin was not)
    assert (entry["start_close_date"], entry["end_close_date"]) == ("2024-03-08", "2024-03-15")
    assert entry["previous_return"] == pytest.approx(-0.01) and entry["momentum_label"] == "down by 0-1%"
    assert ledger.awaiting_outcome(ledger_db, closed_by=closed_by) == []
    assert not writes.store_outcome(ledger_db, "no-such-entry", outcome, scored_at=closed_by)


def test_an_unparsed_answer_is_a_miss_even_when_the_week_moved_its_way(ledger_db, market):
    mem, sources = market
    entry_id, _ = record(ledger_db, sources, prediction=None)
    outcome = realized_outcome(mem.closes["AXP"], W2, symbol="AXP")
    writes.store_outcome(ledger_db, entry_id, outcome, scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))
    entry = ledger.get_entry(ledger_db, entry_id)
    assert entry["parsed"] is False and entry["direction"] == "none" and entry["hit"] is False


@pytest.mark.parametrize("name", ["ledger.csv", "ledger.parquet"])
def test_export_writes_every_entry_oldest_first_and_reads_back(ledger_db, market, tmp_path, name):
    mem, sources = market
    scored, _ = record(ledger_db, sources, job_id="job-a")
    record(ledger_db, sources, "KO", job_id="job-b", prediction=None,
           requested_at=FRIDAY_EVENING + dt.timedelta(minutes=5))
    writes.store_outcome(ledger_db, scored, realized_outcome(mem.closes["AXP"], W2, symbol="AXP"),
                         scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))
    path = tmp_path / name
    assert ledger_export.export(ledger_db, path) == 2
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert list(frame.columns) == [*ledger.FIELDS, *ledger_export.VOTE_COLUMNS]
    assert list(frame["id"]) == ["job-a:AXP", "job-b:KO"]
    assert list(frame["parsed"]) == [True, False]
    assert frame["realized_return"][0] == pytest.approx(0.03) and pd.isna(frame["realized_return"][1])
    assert frame["hit"][0] == True and pd.isna(frame["hit"][1])  # noqa: E712 (numpy/pandas booleans)
    assert frame["raw"][1].startswith("I would rather not say")


def test_export_refuses_other_formats_with_the_fix(ledger_db, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.csv or \.parquet"):
        ledger_export.export(ledger_db, tmp_path / "ledger.xlsx")


PROBABILITY_FIELDS = ("p_up", "p_stated", "expected_move", "bin_probabilities", "clear_signal")


def test_the_probabilities_are_recorded_and_feed_the_track_entry(ledger_db, market):
    _, sources = market
    bins = distribution(0.61, top="U2", p_top=0.34)  # the answer says "Up by 1-2%"
    entry_id, data = record(ledger_db, sources, bins=bins)
    entry = ledger.get_entry(ledger_db, entry_id)
    assert entry["p_up"] == pytest.approx(0.61) and entry["p_stated"] == pytest.approx(0.34)
    assert entry["expected_move"] == pytest.approx(data.probabilities.expected_move)
    assert json.loads(entry["bin_probabilities"]) == bins.to_json()
    assert ledger_fields.to_track_entry(entry).p_up == pytest.approx(0.61)


def test_entries_without_probabilities_and_entries_from_before_them_read_as_none(ledger_db, redis, market):
    _, sources = market
    without, _ = record(ledger_db, sources, job_id="job-none")  # a backend that computed none
    # An entry the Redis ledger held from before these fields existed, migrated.
    data = canned_forecast(sources, "KO", at=FRIDAY_EVENING, prediction="Up by 0-1%",
                         distribution=distribution(0.5, top="U1", p_top=0.2))
    old = redis_layout.record_forecast(redis, data, job_id="job-old", user="U1", channel="C1",
                                       requested_at=FRIDAY_EVENING, latency_s=1, source="forecast")
    redis.hdel(ledger_entry_key(old), *PROBABILITY_FIELDS)
    assert copy_from_redis(redis, ledger_db).copied == 1
    for entry_id in (without, old):
        entry = ledger.get_entry(ledger_db, entry_id)
        assert all(entry[name] is None for name in PROBABILITY_FIELDS)
        assert ledger_fields.to_track_entry(entry).p_up is None


@pytest.mark.parametrize("name", ["ledger.csv", "ledger.parquet"])
def test_export_has_the_probability_columns_empty_where_there_were_none(ledger_db, market, tmp_path, name):
    _, sources = market
    record(ledger_db, sources, job_id="job-a", bins=distribution(0.61, top="U2", p_top=0.34))
    record(ledger_db, sources, "KO", job_id="job-b", requested_at=FRIDAY_EVENING + dt.timedelta(minutes=5))
    path = tmp_path / name
    ledger_export.export(ledger_db, path)
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert frame["p_up"][0] == pytest.approx(0.61) and frame["p_stated"][0] == pytest.approx(0.34)
    assert json.loads(frame["bin_probabilities"][0])["U2"] == pytest.approx(0.34)
    assert all(pd.isna(frame[name][1]) for name in PROBABILITY_FIELDS)


def test_whether_a_call_had_a_clear_signal_is_recorded_and_read_back(ledger_db, market):
    _, sources = market
    band = 0.05
    unclear, data = record(ledger_db, sources, job_id="job-unclear", bins=distribution(0.52, top="U2", p_top=0.23),
                           signal_band=band)
    assert data.probabilities.clear_signal is False
    clear, _ = record(ledger_db, sources, "KO", job_id="job-clear", bins=distribution(0.61, top="U2", p_top=0.34),
                      signal_band=band)
    without, _ = record(ledger_db, sources, "KO", job_id="job-none")  # a backend without probabilities
    old_data = canned_forecast(sources, "AXP", at=FRIDAY_EVENING, prediction="Up by 1-2%",
                             distribution=distribution(0.52, top="U2", p_top=0.23))
    stored = old_data.to_json()
    for key in ("clear_signal", "signal_band"):  # a forecast made before the flag
        del stored["probabilities"][key]
    old_data = ForecastRecord.from_json(stored)
    old = writes.record_forecast(ledger_db, old_data, job_id="job-old", user="U1", channel="C1",
                                 requested_at=FRIDAY_EVENING, latency_s=1, source="forecast")
    read = {entry_id: ledger.get_entry(ledger_db, entry_id)["clear_signal"] for entry_id in (unclear, clear, without,
                                                                                            old)}
    assert read == {unclear: False, clear: True, without: None, old: None}
    assert {e["id"]: e["clear_signal"] for e in ledger.entries(ledger_db, texts=False)} == read


def test_track_reads_carry_the_flag_and_track_shows_no_arrow_for_it(ledger_db, market):
    from bot.track_blocks import track_message
    from jobs.track_reads import track_record

    _, sources = market
    record(ledger_db, sources, job_id="job-unclear", bins=distribution(0.52, top="U2", p_top=0.23), signal_band=0.05)
    record(ledger_db, sources, "KO", job_id="job-clear", bins=distribution(0.61, top="U2", p_top=0.34),
           signal_band=0.05)
    answer = track_record(ledger_db, recent=5)
    assert {row.ticker: row.clear_signal for row in answer.recent} == {"AXP": False, "KO": True}
    shown = "\n".join(b["text"]["text"] for b in track_message(answer)[1] if b["type"] == "section")
    assert "*AXP* ◆ no clear signal (Up by 1-2%) → _pending_" in shown
    assert "*KO* ▲ Up by 1-2% → _pending_" in shown


@pytest.mark.parametrize("name", ["ledger.csv", "ledger.parquet"])
def test_export_has_the_clear_signal_column_and_reads_back(ledger_db, market, tmp_path, name):
    _, sources = market
    record(ledger_db, sources, job_id="job-a", bins=distribution(0.52, top="U2", p_top=0.23), signal_band=0.05)
    record(ledger_db, sources, "KO", job_id="job-b", bins=distribution(0.61, top="U2", p_top=0.34), signal_band=0.05,
           requested_at=FRIDAY_EVENING + dt.timedelta(minutes=5))
    record(ledger_db, sources, "KO", job_id="job-c", requested_at=FRIDAY_EVENING + dt.timedelta(minutes=10))
    path = tmp_path / name
    assert ledger_export.export(ledger_db, path) == 3
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert list(frame.columns).index("clear_signal") == list(ledger.FIELDS).index("clear_signal")
    assert frame["clear_signal"][0] == False and frame["clear_signal"][1] == True  # noqa: E712 (pandas booleans)
    assert pd.isna(frame["clear_signal"][2])


# ---- the database itself -----------------------------------------------------------------------------------------


def test_the_migrations_make_the_schema_the_model_describes(ledger_db):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from jobs.ledger.models import Base

    with ledger_db.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    assert database.current_revision(ledger_db.engine) == database.head_revision()


def test_migration_0003_adds_clear_signal_to_a_filled_ledger_and_goes_back(ledger_db, market):
    """A ledger the release before filled (schema 0002) gets the column, empty on its entries, which read as shown
    with their arrow; the downgrade takes it away again, keeping the entries."""
    from alembic import command
    from sqlalchemy import inspect

    from jobs.track_reads import track_record

    _, sources = market
    entry_id, _ = record(ledger_db, sources, bins=distribution(0.52, top="U2", p_top=0.23), signal_band=0.05)

    def columns() -> set[str]:
        with ledger_db.connect() as conn:
            return {c["name"] for c in inspect(conn).get_columns("forecasts")}

    def migrate(step, revision: str) -> None:
        with ledger_db.engine.begin() as conn:
            step(database.alembic_config(conn), revision)

    try:
        migrate(command.downgrade, "0002")
        assert "clear_signal" not in columns() and database.current_revision(ledger_db.engine) == "0002"
        with ledger_db.connect() as conn:
            assert conn.exec_driver_sql("SELECT id FROM forecasts").scalars().all() == [entry_id]
    finally:
        migrate(command.upgrade, "head")
    assert "clear_signal" in columns() and database.current_revision(ledger_db.engine) == database.head_revision()
    assert ledger.get_entry(ledger_db, entry_id)["clear_signal"] is None  # as recorded before the flag
    assert track_record(ledger_db).recent[0].clear_signal is None


def test_the_default_database_is_a_sqlite_file_in_wal_mode_under_data_dir(tmp_path):
    from forecaster.settings import Settings

    settings = Settings(_env_file=None, data_dir=tmp_path / "state")
    store = ledger.open_ledger(settings)
    assert store.url == f"sqlite:///{tmp_path / 'state' / 'ledger.sqlite3'}"
    assert not (tmp_path / "state").exists()  # nothing made, nothing connected, until first use
    assert ledger.entries(store) == []
    assert (tmp_path / "state" / "ledger.sqlite3").is_file()
    with store.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert ledger.open_ledger(settings) is store  # one engine per database per process
    other = Settings(_env_file=None, data_dir=tmp_path / "state", database_url="postgresql+psycopg://u@h/db")
    assert ledger.ledger_url(other) == "postgresql+psycopg://u@h/db"


def test_a_second_process_sees_the_first_ones_writes(ledger_db, market):
    _, sources = market
    entry_id, _ = record(ledger_db, sources)
    other = ledger.Ledger(ledger_db.url)  # the bot's engine, next to the worker's
    try:
        assert [e["id"] for e in ledger.entries(other)] == [entry_id]
    finally:
        other.dispose()


# ---- `forecaster ledger migrate`: out of the old Redis layout --------------------------------------------------


def fill_redis_ledger(redis, sources) -> list[str]:
    """A Redis ledger as the old release wrote it: forecasts and a digest, some scored, one unparsed."""
    mem = sources.prices
    ids = []
    for day, symbol, prediction, bins in ((4, "AXP", "Up by 1-2%", distribution(0.61, top="U2", p_top=0.34)),
                                          (5, "KO", None, None), (6, "AXP", "Down by 0-1%", None)):
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        data = canned_forecast(sources, symbol, at=at, prediction=prediction, distribution=bins)
        ids.append(redis_layout.record_forecast(redis, data, job_id=f"job-{day}", user="U1", channel="C1",
                                                requested_at=at, latency_s=2.5, source="forecast"))
    for symbol in ("AXP", "KO"):
        data = canned_forecast(sources, symbol, at=FRIDAY_EVENING, prediction="Up by 0-1%")
        ids.append(redis_layout.record_forecast(redis, data, job_id="digest_2024-03-08_C9", user=None,
                                                channel="C9", requested_at=FRIDAY_EVENING, latency_s=30,
                                                source="digest"))
    for entry_id in ids[:2]:
        symbol = entry_id.split(":")[1]
        redis_layout.store_outcome(redis, entry_id, realized_outcome(mem.closes[symbol], W2, symbol=symbol),
                                   scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))
    return ids


def test_migrate_copies_every_entry_of_a_redis_ledger_once(ledger_db, redis, market):
    _, sources = market
    ids = fill_redis_ledger(redis, sources)
    before = {e["id"]: e for e in redis_layout.read_entries(redis, ids)}
    assert len(before) == 5 == redis_layout.entry_count(redis)

    first = copy_from_redis(redis, ledger_db, batch=2)  # batches: several transactions
    assert (first.found, first.copied, first.present) == (5, 5, 0)
    after = {e["id"]: e for e in ledger.entries(ledger_db)}
    assert ledger.count(ledger_db) == 5 and after.keys() == before.keys()
    for entry_id, entry in before.items():
        assert after[entry_id] == entry  # every field, outcome and probabilities included
    assert after["job-4:AXP"]["hit"] is True and after["job-4:AXP"]["p_up"] == pytest.approx(0.61)
    assert after["job-5:KO"]["parsed"] is False
    # the pending ones are still waiting for their outcome in the database
    waiting = ledger.awaiting_outcome(ledger_db, closed_by=dt.datetime(2024, 3, 16, tzinfo=NEW_YORK))
    assert sorted(e["id"] for e in waiting) == sorted(ids[2:])

    again = copy_from_redis(redis, ledger_db)
    assert (again.found, again.copied, again.present) == (5, 0, 5)
    assert ledger.count(ledger_db) == 5


def test_migrate_keeps_what_the_database_recorded_meanwhile(ledger_db, redis, market):
    _, sources = market
    fill_redis_ledger(redis, sources)
    ours, _ = record(ledger_db, sources, "KO", job_id="job-new")
    kept, _ = record(ledger_db, sources, "AXP", job_id="job-4", prediction="Down by 3-4%")  # same id as Redis's
    copied = copy_from_redis(redis, ledger_db)
    assert (copied.copied, copied.present) == (4, 1)
    assert ledger.count(ledger_db) == 6
    assert ledger.get_entry(ledger_db, kept)["label"] == "down by 3-4%"  # the database's own entry wins
    assert ledger.get_entry(ledger_db, ours) is not None


def test_processes_opening_a_new_sqlite_ledger_together_each_get_the_schema_once(tmp_path):
    """`forecaster up` starts the bot, the worker and the trainer at once; each migrates on first use."""
    import subprocess
    import sys

    url = f"sqlite:///{tmp_path / 'ledger.sqlite3'}"
    script = ("import sys; from jobs.ledger import Ledger, count; ledger = Ledger(sys.argv[1]); "
              "print(count(ledger))")
    children = [subprocess.Popen([sys.executable, "-c", script, url], stdout=subprocess.PIPE,
                                 stderr=subprocess.PIPE, text=True) for _ in range(4)]
    results = [child.communicate(timeout=120) for child in children]
    assert [child.returncode for child in children] == [0] * 4, [err for _, err in results]
    assert [out.strip() for out, _ in results] == ["0"] * 4
    assert database.current_revision(ledger.Ledger(url).engine) == database.head_revision()
