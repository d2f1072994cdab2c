"""`forecaster forecast` end to end with no network: a recorded snapshot, the tiny Qwen2 model loaded through the
product's loading code, generation, parsing and the terminal/JSON output."""

from __future__ import annotations

import datetime as dt
import json

import pytest
from typer.testing import CliRunner

import forecaster.cli
from engine.data.inputs import Sources, gather
from engine.market.weeks import NEW_YORK
from engine.records import BasicFinancials, NewsItem
from engine.sources.snapshot import RecordingSources, write_snapshot
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes


@pytest.fixture
def snapshot_dir(tmp_path):
    mem = MemorySources()
    mem.profiles["AXP"] = synthetic_profile("AXP")
    mem.closes["AXP"] = weekday_closes(dt.date(2024, 1, 1), dt.date(2024, 3, 29))
    mem.reports["AXP"] = [BasicFinancials(period="2023-12-31", metrics={"eps": 2.5})]
    mem.news["AXP"] = [NewsItem(published=dt.datetime(2024, 3, d, 10, tzinfo=NEW_YORK),
                                headline=f"AXP invented headline {d}", summary="Invented summary.") for d in (4, 5, 11)]
    recording = RecordingSources(news=mem, fundamentals=mem, prices=mem)
    cutoff = dt.datetime(2024, 3, 15, 23, 59, tzinfo=NEW_YORK)
    now = dt.datetime(2026, 11, 25, 12, tzinfo=NEW_YORK)
    gather(["AXP"], sources=Sources(recording, recording, recording), cutoff=cutoff, now=now, weeks=2)
    out = tmp_path / "snapshot"
    write_snapshot(recording, out, description={"cutoff": cutoff.isoformat(), "recorded_now": now.isoformat()})
    return out


@pytest.fixture
def offline(monkeypatch, snapshot_dir, tiny_model_dir):
    monkeypatch.setenv("DATA_SNAPSHOT_DIR", str(snapshot_dir))
    monkeypatch.setenv("MODEL_BASE", str(tiny_model_dir))
    monkeypatch.setenv("MODEL_DEVICE", "cpu")
    monkeypatch.setenv("MODEL_MAX_NEW_TOKENS", "24")


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(forecaster.cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_forecast_json_from_a_snapshot_with_the_tiny_model(offline):
    code, out, err = run("forecast", "AXP", "--weeks", "2", "--json")
    assert code == 0, err
    result = json.loads(out)
    assert result["symbol"] == "AXP"
    assert result["target_week"] == "2024-03-17 to 2024-03-24"
    assert result["model"].endswith("(no adapter)")
    assert 0 < result["new_tokens"] <= 24 and result["prompt_tokens"] > 100
    # Random weights write gibberish: it is kept, flagged and explained, never dropped.
    assert result["parsed"] is False and result["problems"]
    assert result["raw"] is not None
    assert [w["week"] for w in result["news"]] == ["2024-03-03 to 2024-03-10", "2024-03-10 to 2024-03-17"]


def test_forecast_panel_shows_the_raw_answer_flagged_and_the_disclaimer(offline):
    code, out, err = run("forecast", "AXP", "--weeks", "2")
    assert code == 0, err
    text = " ".join(out.replace("│", " ").split())  # undo the panel's borders and wrapping
    assert "AXP weekly forecast" in text
    assert "could not be parsed" in text
    assert "Not financial advice" in text


def test_forecast_with_an_adapter_names_it(offline, monkeypatch, tiny_adapter_dirs):
    monkeypatch.setenv("MODEL_ADAPTER", str(tiny_adapter_dirs[0]))
    code, out, err = run("forecast", "AXP", "--weeks", "2", "--json")
    assert code == 0, err
    assert json.loads(out)["model"].endswith("+ adapter-a")


def test_bad_input_is_one_clear_line_and_a_nonzero_exit(offline, monkeypatch, tmp_path):
    assert run("forecast", "AXP", "--weeks", "5")[0] == 2
    code, _, err = run("forecast", "AXP", "--date", "2099-01-01")
    assert code == 2 and "future" in err
    code, _, err = run("forecast", "MSFT")
    assert code == 2 and "has no prices for MSFT" in err
    monkeypatch.setenv("MODEL_BASE", str(tmp_path / "missing-model"))
    code, _, err = run("forecast", "AXP", "--weeks", "2")
    assert code == 2 and "does not exist" in err


def test_an_incompatible_adapter_is_refused(offline, monkeypatch, tmp_path):
    from tests.fakes.tiny_model import build_lora_adapter, build_tiny_model

    wider = build_tiny_model(tmp_path / "wider", hidden=96)
    monkeypatch.setenv("MODEL_ADAPTER", str(build_lora_adapter(wider, tmp_path / "wider-adapter")))
    code, _, err = run("forecast", "AXP", "--weeks", "2")
    assert code == 2 and "does not fit base" in err


def test_evaluate_generates_with_the_configured_model_and_reports_speed(monkeypatch, tiny_model_dir,
                                                                        fingpt_test_split_dir):
    monkeypatch.setenv("MODEL_BASE", str(tiny_model_dir))
    monkeypatch.setenv("MODEL_DEVICE", "cpu")
    monkeypatch.setenv("MODEL_MAX_NEW_TOKENS", "16")
    monkeypatch.setenv("MODEL_BATCH_SIZE", "2")
    code, out, err = run("evaluate", "--dataset", str(fingpt_test_split_dir), "--limit", "4", "--json")
    assert code == 0, err
    report = json.loads(out)
    assert report["n"] == 4 and report["model"].endswith("(no adapter)")
    assert report["latency_s"] > 0 and report["tokens_per_s"] > 0
    assert 4 <= report["new_tokens"] <= 64
    assert set(report["baselines"]) >= {"constant Down by 0-1%", "constant Up by 0-1%", "last-week momentum"}


def test_forecast_json_has_a_probabilities_field_with_the_full_distribution_when_the_backend_gives_one(offline):
    code, out, err = run("forecast", "AXP", "--weeks", "2", "--json")
    assert code == 0, err
    probabilities = json.loads(out)["probabilities"]  # None: this backend computed no distribution
    if probabilities is not None:
        assert len(probabilities["bins"]) == 12 and abs(sum(probabilities["bins"].values()) - 1) < 1e-3
        assert probabilities["p_up"] + probabilities["p_down"] == pytest.approx(1)
        assert set(probabilities) == {"bins", "p_up", "p_down", "most_likely", "stated", "expected_move"}


def _saved_answers(path, rows, p_up):
    """A predictions file of the dataset's own reference answers with a P(up) column."""
    path.write_text("".join(json.dumps({"prediction": r["answer"], "p_up": p}) + "\n"
                            for r, p in zip(rows, p_up, strict=True)))
    return path


def test_evaluate_saved_answers_with_probabilities_reports_calibration_and_plots(fingpt_test_split_dir,
                                                                               fingpt_test_rows, tmp_path):
    rows = fingpt_test_rows[:6]
    p_up = [0.8 if r["label"].startswith("up") else 0.3 for r in rows]
    saved = _saved_answers(tmp_path / "answers.jsonl", rows, p_up)
    plot = tmp_path / "reliability.png"
    code, out, err = run("evaluate", "--dataset", str(fingpt_test_split_dir), "--limit", "6", "--predictions",
                         str(saved), "--train-up-rate", "0.55", "--plot", str(plot), "--json")
    assert code == 0, err
    report = json.loads(out)
    ups = sum(r["label"].startswith("up") for r in rows)
    # Ups at 0.8 cost 0.2² = 0.04 each, downs at 0.3 cost 0.3² = 0.09 each.
    assert report["calibration"]["model"]["brier"] == pytest.approx((ups * 0.04 + (6 - ups) * 0.09) / 6)
    assert report["calibration"]["base_rates"]["source"] == "--train-up-rate"
    assert report["calibration"]["baselines"]["last-week momentum"] is None  # no conditional rates from one number
    assert [r["threshold"] for r in report["abstain"]] == [0.5, 0.55, 0.6, 0.65, 0.7]
    assert plot.read_bytes().startswith(b"\x89PNG\r\n\x1a\n")
    assert "reliability diagram written to" in err

    code, out, err = run("evaluate", "--dataset", str(fingpt_test_split_dir), "--limit", "6", "--predictions",
                         str(saved))
    assert code == 0, err
    assert "Calibration of P(up)" in out and "IN-SAMPLE" in out and "Abstaining ('no clear signal')" in out


def test_evaluate_refuses_a_plot_without_probabilities_and_in_sample_training_rates(fingpt_test_split_dir,
                                                                                  fingpt_test_rows, tmp_path):
    saved = tmp_path / "plain.jsonl"
    saved.write_text("".join(json.dumps({"prediction": r["answer"]}) + "\n" for r in fingpt_test_rows[:3]))
    base = ("evaluate", "--dataset", str(fingpt_test_split_dir), "--limit", "3", "--predictions", str(saved))
    code, _, err = run(*base, "--plot", str(tmp_path / "r.png"))
    assert code == 2 and "--plot needs probabilities" in err
    code, _, err = run(*base, "--plot", str(tmp_path / "r.svg"))
    assert code == 2 and "ending in .png" in err
    code, _, err = run(*base, "--train-split", "train")  # a split folder has no other split: in-sample
    assert code == 2 and "evaluated rows themselves" in err
    code, _, err = run(*base, "--train-split", "train", "--train-up-rate", "0.5")
    assert code == 2 and "not both" in err


def test_evaluate_generation_saves_answers_that_rescore_the_same(monkeypatch, tiny_model_dir, fingpt_test_split_dir,
                                                                 tmp_path):
    monkeypatch.setenv("MODEL_BASE", str(tiny_model_dir))
    monkeypatch.setenv("MODEL_DEVICE", "cpu")
    monkeypatch.setenv("MODEL_MAX_NEW_TOKENS", "16")
    monkeypatch.setenv("MODEL_BATCH_SIZE", "2")
    saved = tmp_path / "answers.jsonl"
    code, out, err = run("evaluate", "--dataset", str(fingpt_test_split_dir), "--limit", "2", "--save-predictions",
                         str(saved), "--json")
    assert code == 0, err
    first = json.loads(out)
    lines = [json.loads(line) for line in saved.read_text().splitlines()]
    assert len(lines) == 2 and set(lines[0]) == {"symbol", "period", "prediction", "p_up", "bin_probabilities"}
    code, out, err = run("evaluate", "--dataset", str(fingpt_test_split_dir), "--limit", "2", "--predictions",
                         str(saved), "--json")
    assert code == 0, err
    again = json.loads(out)
    assert again["calibration"]["model"] == first["calibration"]["model"]  # None when the backend gives none
    assert again["binary_accuracy_all"] == first["binary_accuracy_all"]
