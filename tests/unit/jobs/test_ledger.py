"""jobs.ledger on a real Redis: recording (once per job and ticker), reading back, outcomes, export."""

from __future__ import annotations

import datetime as dt
import hashlib
import json

import pandas as pd
import pytest

from engine.forecast import prompt_sha256
from engine.inputs import Sources
from engine.market.weeks import NEW_YORK, Week
from engine.track import realized_outcome
from jobs import ledger
from jobs.keys import ledger_entry_key, ledger_index_key, ledger_pending_key, ledger_ticker_index_key
from tests.fakes.forecasts import distribution, forecast_json, stepped_market

FRIDAY_EVENING = dt.datetime(2024, 3, 8, 18, 0, tzinfo=NEW_YORK)  # forecasts the week of Mar 10
W2 = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))


@pytest.fixture
def market():
    mem = stepped_market()
    return mem, Sources(mem, mem, mem)


def record(redis, sources, symbol="AXP", *, job_id="forecast_AXP_live1_2wf_C1", prediction="Up by 1-2%",
           at=FRIDAY_EVENING, bins=None, **kwargs):
    data = forecast_json(sources, symbol, at=at, prediction=prediction, distribution=bins)
    values = {"user": "U1", "channel": "C1", "requested_at": at, "latency_s": 12.34567, "source": "forecast"}
    return ledger.record_forecast(redis, data, job_id=job_id, **(values | kwargs)), data


def test_a_forecast_is_recorded_with_everything_the_track_record_needs(redis, market):
    _, sources = market
    entry_id, data = record(redis, sources)
    entry = ledger.get_entry(redis, entry_id)
    assert entry_id == "forecast_AXP_live1_2wf_C1:AXP"
    assert entry["ticker"] == "AXP" and entry["user"] == "U1" and entry["channel"] == "C1"
    assert entry["source"] == "forecast" and entry["job_id"] == "forecast_AXP_live1_2wf_C1"
    assert entry["as_of"] == "live"  # the request ran at 18:00, not as of a past date's end
    assert entry["requested_at"] == "2024-03-08T23:00:00+00:00"
    assert (entry["target_week"], entry["week_start"], entry["week_end"]) == (W2.period, "2024-03-10", "2024-03-17")
    assert (entry["direction"], entry["magnitude"], entry["label"]) == ("up", "1-2%", "up by 1-2%")
    assert entry["as_written"] == "Up by 1-2%" and entry["parsed"] is True
    assert entry["model"] == "canned-analyst (adapter v7)" and entry["raw"] == data["raw"]
    assert entry["latency_s"] == 12.346 and entry["generation_s"] == 1.25 and entry["new_tokens"] == 40
    assert entry["prompt_hash"] == data["prompt_sha256"] and entry["prompt_hash_of"] == "prompt"
    assert json.loads(entry["details"])["analysis"] == data["analysis"]
    assert entry["scored_at"] is None and entry["hit"] is None and entry["realized_return"] is None
    assert redis.ttl(ledger_entry_key(entry_id)) == -1  # kept for good
    for key in (ledger_index_key(), ledger_ticker_index_key("AXP"), ledger_pending_key()):
        assert redis.ttl(key) == -1 and redis.zscore(key, entry_id) is not None


def test_a_retried_job_records_nothing_new(redis, market):
    _, sources = market
    first, _ = record(redis, sources)
    again, _ = record(redis, sources, prediction="Down by 3-4%", user="U2")  # a retry that answered differently
    assert again == first
    assert len(ledger.entries(redis)) == 1
    assert ledger.get_entry(redis, first)["label"] == "up by 1-2%" and ledger.get_entry(redis, first)["user"] == "U1"


def test_a_digest_records_one_entry_per_ticker_under_one_job(redis, market):
    _, sources = market
    a, _ = record(redis, sources, "AXP", job_id="digest_2024-03-08_C9", source="digest", user=None)
    k, _ = record(redis, sources, "KO", job_id="digest_2024-03-08_C9", source="digest", user=None)
    assert {a, k} == {"digest_2024-03-08_C9:AXP", "digest_2024-03-08_C9:KO"}
    assert ledger.get_entry(redis, k)["user"] is None


def test_a_dated_forecast_records_its_date_and_a_given_prompt_hash(redis, market):
    _, sources = market
    data = forecast_json(sources, "AXP", at=dt.datetime(2024, 3, 8, 23, 59, 59, tzinfo=NEW_YORK),
                         prediction="Up by 0-1%")
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    entry_id = ledger.record_forecast(redis, data, job_id="forecast_AXP_2024-03-08_2wf_C1", user="U1", channel="C1",
                                      requested_at=dt.datetime(2026, 1, 5, tzinfo=dt.UTC), latency_s=3,
                                      source="forecast", prompt_hash=prompt_sha256(messages))
    entry = ledger.get_entry(redis, entry_id)
    assert entry["as_of"] == "2024-03-08"
    expected = hashlib.sha256(json.dumps(messages, sort_keys=True, separators=(",", ":")).encode()).hexdigest()
    assert (entry["prompt_hash"], entry["prompt_hash_of"]) == (expected, "prompt")


def test_bad_arguments_are_refused_with_the_fix(redis, market):
    _, sources = market
    with pytest.raises(ValueError, match="'forecast', 'digest'"):
        record(redis, sources, source="backtest")
    with pytest.raises(ValueError, match="timezone-aware"):
        record(redis, sources, requested_at=dt.datetime(2024, 3, 8, 18))
    assert ledger.entries(redis) == []


def test_readers_are_newest_first_filter_by_ticker_and_limit(redis, market):
    _, sources = market
    for day, symbol in ((4, "AXP"), (5, "KO"), (6, "AXP")):
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        record(redis, sources, symbol, job_id=f"job-{day}", at=at, requested_at=at)
    assert [e["id"] for e in ledger.entries(redis)] == ["job-6:AXP", "job-5:KO", "job-4:AXP"]
    assert [e["id"] for e in ledger.entries(redis, ticker="axp")] == ["job-6:AXP", "job-4:AXP"]
    assert [e["id"] for e in ledger.entries(redis, limit=1)] == ["job-6:AXP"]
    assert ledger.entries(redis, limit=0) == [] and ledger.entries(redis, ticker="MSFT") == []


def test_an_outcome_is_stored_on_the_entry_and_leaves_the_pending_set(redis, market):
    mem, sources = market
    entry_id, _ = record(redis, sources)  # Up by 1-2% for a week that went up 3%
    assert [e["id"] for e in ledger.awaiting_outcome(redis, closed_by=dt.datetime(2024, 3, 15, 23, tzinfo=NEW_YORK))
            ] == []  # Friday night: the week has not closed yet
    closed_by = dt.datetime(2024, 3, 16, 0, tzinfo=NEW_YORK)
    assert [e["id"] for e in ledger.awaiting_outcome(redis, closed_by=closed_by)] == [entry_id]

    outcome = realized_outcome(mem.closes["AXP"], W2, symbol="AXP")
    assert ledger.store_outcome(redis, entry_id, outcome, scored_at=dt.datetime(2024, 3, 16, 15, tzinfo=dt.UTC))
    entry = ledger.get_entry(redis, entry_id)
    assert entry["realized_return"] == pytest.approx(0.03) and entry["actual_label"] == "up by 2-3%"
    assert entry["hit"] is True  # direction right (the bin was not)
    assert (entry["start_close_date"], entry["end_close_date"]) == ("2024-03-08", "2024-03-15")
    assert entry["previous_return"] == pytest.approx(-0.01) and entry["momentum_label"] == "down by 0-1%"
    assert ledger.awaiting_outcome(redis, closed_by=closed_by) == []
    assert not ledger.store_outcome(redis, "no-such-entry", outcome, scored_at=closed_by)


def test_an_unparsed_answer_is_a_miss_even_when_the_week_moved_its_way(redis, market):
    mem, sources = market
    entry_id, _ = record(redis, sources, prediction=None)
    outcome = realized_outcome(mem.closes["AXP"], W2, symbol="AXP")
    ledger.store_outcome(redis, entry_id, outcome, scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))
    entry = ledger.get_entry(redis, entry_id)
    assert entry["parsed"] is False and entry["direction"] == "none" and entry["hit"] is False


@pytest.mark.parametrize("name", ["ledger.csv", "ledger.parquet"])
def test_export_writes_every_entry_oldest_first_and_reads_back(redis, market, tmp_path, name):
    mem, sources = market
    scored, _ = record(redis, sources, job_id="job-a")
    record(redis, sources, "KO", job_id="job-b", prediction=None,
           requested_at=FRIDAY_EVENING + dt.timedelta(minutes=5))
    ledger.store_outcome(redis, scored, realized_outcome(mem.closes["AXP"], W2, symbol="AXP"),
                         scored_at=dt.datetime(2024, 3, 16, tzinfo=dt.UTC))
    path = tmp_path / name
    assert ledger.export(redis, path) == 2
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert list(frame.columns) == list(ledger.FIELDS)
    assert list(frame["id"]) == ["job-a:AXP", "job-b:KO"]
    assert list(frame["parsed"]) == [True, False]
    assert frame["realized_return"][0] == pytest.approx(0.03) and pd.isna(frame["realized_return"][1])
    assert frame["hit"][0] == True and pd.isna(frame["hit"][1])  # noqa: E712 (numpy/pandas booleans)
    assert frame["raw"][1].startswith("I would rather not say")


def test_export_refuses_other_formats_with_the_fix(redis, tmp_path):
    with pytest.raises(ValueError, match=r"must end in \.csv or \.parquet"):
        ledger.export(redis, tmp_path / "ledger.xlsx")


PROBABILITY_FIELDS = ("p_up", "p_stated", "expected_move", "bin_probabilities")


def test_the_probabilities_are_recorded_and_feed_the_track_entry(redis, market):
    _, sources = market
    bins = distribution(0.61, top="U2", p_top=0.34)  # the answer says "Up by 1-2%"
    entry_id, data = record(redis, sources, bins=bins)
    entry = ledger.get_entry(redis, entry_id)
    assert entry["p_up"] == pytest.approx(0.61) and entry["p_stated"] == pytest.approx(0.34)
    assert entry["expected_move"] == pytest.approx(data["probabilities"]["expected_move"])
    assert json.loads(entry["bin_probabilities"]) == bins.to_json()
    assert ledger.to_track_entry(entry).p_up == pytest.approx(0.61)


def test_entries_without_probabilities_and_entries_from_before_them_read_as_none(redis, market):
    _, sources = market
    without, _ = record(redis, sources, job_id="job-none")  # a backend that computed none
    old, _ = record(redis, sources, "KO", job_id="job-old", bins=distribution(0.5, top="U1", p_top=0.2))
    redis.hdel(ledger_entry_key(old), *PROBABILITY_FIELDS)  # as an entry recorded before these fields existed
    for entry_id in (without, old):
        entry = ledger.get_entry(redis, entry_id)
        assert all(entry[name] is None for name in PROBABILITY_FIELDS)
        assert ledger.to_track_entry(entry).p_up is None


@pytest.mark.parametrize("name", ["ledger.csv", "ledger.parquet"])
def test_export_has_the_probability_columns_empty_where_there_were_none(redis, market, tmp_path, name):
    _, sources = market
    record(redis, sources, job_id="job-a", bins=distribution(0.61, top="U2", p_top=0.34))
    record(redis, sources, "KO", job_id="job-b", requested_at=FRIDAY_EVENING + dt.timedelta(minutes=5))
    path = tmp_path / name
    ledger.export(redis, path)
    frame = pd.read_csv(path) if name.endswith(".csv") else pd.read_parquet(path)
    assert frame["p_up"][0] == pytest.approx(0.61) and frame["p_stated"][0] == pytest.approx(0.34)
    assert json.loads(frame["bin_probabilities"][0])["U2"] == pytest.approx(0.34)
    assert all(pd.isna(frame[name][1]) for name in PROBABILITY_FIELDS)
