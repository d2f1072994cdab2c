"""`forecaster dataset prepare` → `retrain` → `model list/promote/rollback`, end to end on CPU with the tiny
Qwen2: real FinGPT rows, a few real TRL steps, real generation for the gate's evaluation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import jobs.cli
from engine.registry import Registry


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(jobs.cli.app, list(args))
    return result.exit_code, result.stdout, result.stderr


@pytest.fixture
def setup(monkeypatch, tmp_path, tiny_model_dir, fingpt_test_rows, fingpt_test_split_dir):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in fingpt_test_rows[:4]))
    monkeypatch.setenv("MODEL_BASE", str(tiny_model_dir))
    monkeypatch.setenv("MODEL_DEVICE", "cpu")
    monkeypatch.setenv("MODEL_DIR", str(tmp_path / "models"))
    monkeypatch.setenv("MODEL_MAX_NEW_TOKENS", "16")
    monkeypatch.setenv("EVAL_DATASET", str(fingpt_test_split_dir))
    # 3072 tokens: the tiny BPE makes these rows ~3,500 tokens, so fitting (oldest news dropped) is exercised too.
    code, out, err = run("dataset", "prepare", "--source", str(source), "--out", str(tmp_path / "prepared"),
                         "--max-length", "3072")
    assert code == 0, err
    assert "Prepared 4 rows" in out
    return tmp_path / "prepared", Registry(tmp_path / "models")


def retrain(dataset, *extra: str) -> tuple[int, str, str]:
    return run("retrain", "--dataset", str(dataset), "--max-steps", "2", "--grad-accum", "1", "--eval-limit", "3",
               *extra)


def test_first_adapter_is_promoted_and_served(setup):
    dataset, registry = setup
    code, out, err = retrain(dataset)
    assert code == 0, err
    assert "v0001: promoted" in out
    assert registry.current_version() == "v0001"
    assert sorted(p.name for p in registry.path("v0001").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "decision.json", "evaluation.json", "training.json"]
    evaluation = registry.read("v0001", "evaluation.json")
    assert evaluation["scores"]["n"] == 3 and evaluation["compared_with"]["version"] is None
    assert jobs.cli.common.served_adapter(jobs.cli.common.load_settings()) == registry.path("v0001")


def test_a_worse_adapter_is_refused_then_forced_then_rolled_back(setup):
    dataset, registry = setup
    assert retrain(dataset)[0] == 0
    # Pretend the served adapter scored well on the same rows: the new one (random, unparseable) is worse.
    stored = registry.read("v0001", "evaluation.json")
    stored["scores"]["binary_accuracy_all"] = 0.9
    registry.write("v0001", "evaluation.json", stored)

    code, out, err = retrain(dataset)
    assert code == 0, err
    assert "v0002: kept the current adapter" in out and "worse than the current 0.9000" in out
    assert registry.current_version() == "v0001"
    listing = run("model", "list")[1]
    assert "* v0001" in listing and "  v0002" in listing and "refused" in listing

    code, out, _ = retrain(dataset, "--force")
    assert "v0003: promoted" in out and "forced" in out
    assert run("model", "rollback")[1].strip() == "now serving v0001"
    assert run("model", "promote", "v0002")[0] == 0 and registry.current_version() == "v0002"
    code, _, err = run("model", "promote", "v0042")
    assert code == 2 and "no adapter version 'v0042'" in err


def test_retrain_without_an_evaluation_set_refuses_to_start(setup, monkeypatch):
    dataset, registry = setup
    monkeypatch.delenv("EVAL_DATASET")
    code, _, err = retrain(dataset)
    assert code == 2 and "EVAL_DATASET" in err
    assert registry.versions() == []
