"""`forecaster prompt` and `forecaster data snapshot` end to end: the real CLI, the real finnhub client and
yfinance against fake servers on 127.0.0.1, a real Redis for cache and limiter, then replay with no network."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

import forecaster.cli
from engine.sources.factory import build_sources
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.market import populate
from tests.fakes.yahoo import FakeYahoo

pytestmark = pytest.mark.usefixtures("fresh_yfinance")
KEY = "cli-test-key-7c1d"


@pytest.fixture
def market(monkeypatch, redis_server):
    """Fake Finnhub + Yahoo with 2024-01..03 data for AXP and KO; the CLI wired to them and to Redis."""
    with FakeFinnhub() as finnhub, FakeYahoo() as yahoo:
        populate(["AXP", "KO"], dt.date(2024, 1, 2), dt.date(2024, 3, 15), finnhub=finnhub, yahoo=yahoo)
        monkeypatch.setenv("FINNHUB_API_KEY", KEY)
        monkeypatch.setenv("FINNHUB_API_URL", finnhub.api_url)
        monkeypatch.setenv("REDIS_URL", redis_server["url"])
        # yfinance cannot be pointed at another host by configuration; the CLI's one seam takes the session.
        monkeypatch.setattr(forecaster.cli.common, "build_live_sources", lambda settings: build_sources(
            settings, conn=forecaster.cli.common.connect_redis(settings), yahoo_session=yahoo.session()))
        yield finnhub, yahoo


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(forecaster.cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_prompt_prints_the_fingpt_prompt_and_a_summary(market, redis):
    code, out, err = run("prompt", "axp", "--date", "2024-03-08", "--weeks", "2")
    assert code == 0, err
    assert out.startswith("[Company Introduction]:\n\nAXP Synthetic Inc is a leading entity")
    assert "From 2024-02-25 to 2024-03-03, AXP's stock price" in out
    assert "[Headline]: AXP synthetic story" in out
    assert "Some recent basic financials of AXP, reported at 2023-12-31" in out
    assert "AXP stock price movement for next week (2024-03-10 to 2024-03-17)" in out
    assert "forecast for 2024-03-10 to 2024-03-17" in err
    assert KEY not in out + err


def test_second_run_comes_from_the_redis_cache(market, redis):
    finnhub, yahoo = market
    first = run("prompt", "AXP", "--date", "2024-03-08", "--json")
    calls = (len(finnhub.calls), len(yahoo.requests))
    second = run("prompt", "AXP", "--date", "2024-03-08", "--json")
    assert first[0] == second[0] == 0
    assert json.loads(first[1]) == json.loads(second[1])
    assert (len(finnhub.calls), len(yahoo.requests)) == calls


def test_snapshot_then_replay_offline_gives_the_same_prompt(market, redis, tmp_path, monkeypatch):
    finnhub, yahoo = market
    snap = tmp_path / "snap"
    code, _, err = run("data", "snapshot", "AXP", "KO", "ZZZZ", "--date", "2024-03-08", "--weeks", "3",
                       "--out", str(snap))
    assert code == 1, err  # ZZZZ failed, the others were written
    assert "2 of 3 symbols" in err and "ZZZZ" in err
    assert (snap / "manifest.json").is_file() and (snap / "AXP" / "prices.json").is_file()
    assert len(list((snap / "KO" / "news").glob("*.json"))) == 3
    live = json.loads(run("prompt", "KO", "--date", "2024-03-08", "--json")[1])

    monkeypatch.setenv("DATA_SNAPSHOT_DIR", str(snap))
    calls = (len(finnhub.calls), len(yahoo.requests))
    code, out, err = run("prompt", "KO", "--json")  # no --date: as of the snapshot's moment
    assert code == 0, err
    replay = json.loads(out)
    assert replay["messages"] == live["messages"]
    assert replay["target_week"] == "2024-03-10 to 2024-03-17"
    assert (len(finnhub.calls), len(yahoo.requests)) == calls  # nothing touched the network

    code, _, err = run("prompt", "MSFT")
    assert code == 2
    assert "has no prices for MSFT" in err and "forecaster data snapshot MSFT" in err


def test_user_errors_are_one_clear_line(market):
    assert "YYYY-MM-DD" in run("prompt", "AXP", "--date", "2024-13-45")[2]
    assert "future" in run("prompt", "AXP", "--date", "2099-01-01")[2]
    assert "not a ticker" in run("prompt", "A$X")[2]
    code, _, err = run("prompt", "ZZZZ", "--date", "2024-03-08")
    assert code == 2 and "no prices for ZZZZ" in err


def test_without_a_finnhub_key_news_and_profile_come_from_yahoo(market, monkeypatch):
    monkeypatch.delenv("FINNHUB_API_KEY")
    finnhub, _ = market
    code, out, err = run("prompt", "AXP", "--date", "2024-03-15", "--weeks", "1", "--json")
    assert code == 0, err
    result = json.loads(out)
    user = result["messages"][1]["content"]
    assert "AXP Synthetic Inc is a leading entity in the Synthetic Goods sector" in user
    assert "[Headline]: AXP synthetic update" in user
    assert "No basic financial reported." in user
    assert any("basic financials" in note for note in result["notes"])
    assert finnhub.calls == []


def test_unreachable_redis_is_reported_with_the_fix(market, monkeypatch):
    monkeypatch.setenv("REDIS_URL", "redis://:hunter2@127.0.0.1:9/0")
    code, _, err = run("prompt", "AXP", "--date", "2024-03-08")
    assert code == 2 and "did not answer" in err and "unset REDIS_URL" in err
    assert "hunter2" not in err


def test_dataset_build_writes_teacher_rows_that_prepare_for_training(market, redis, monkeypatch, tmp_path,
                                                                    tiny_model_dir):
    from tests.fakes.openai_server import FakeOpenAI

    with FakeOpenAI(api_key="teacher-key-9f2") as teacher:
        monkeypatch.setenv("TEACHER_BASE_URL", teacher.base_url)
        monkeypatch.setenv("TEACHER_MODEL", "fake-gpt")
        monkeypatch.setenv("TEACHER_API_KEY", "teacher-key-9f2")
        out = tmp_path / "built"
        code, _, err = run("dataset", "build", "AXP", "KO", "--start", "2024-02-18", "--end", "2024-03-03",
                           "--weeks", "2", "--out", str(out))
        assert code == 0, err
        assert "teacher-key-9f2" not in err
        rows = [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]
        assert sorted({r["period"] for r in rows}) == [
            "2024-02-18 to 2024-02-25", "2024-02-25 to 2024-03-03", "2024-03-03 to 2024-03-10"]
        assert {r["symbol"] for r in rows} == {"AXP", "KO"}
        # Resumable: a second run finds everything done and asks the teacher nothing.
        asked = len(teacher.chat_requests)
        assert run("dataset", "build", "AXP", "KO", "--start", "2024-02-18", "--end", "2024-03-03", "--weeks", "2",
                   "--out", str(out))[0] == 0
        assert len(teacher.chat_requests) == asked

    monkeypatch.setenv("MODEL_BASE", str(tiny_model_dir))
    code, text, err = run("dataset", "prepare", "--source", str(out / "rows.jsonl"), "--out", str(tmp_path / "prep"))
    assert code == 0, err
    assert "Prepared 6 rows" in text
