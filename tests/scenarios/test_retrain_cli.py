"""`forecaster dataset prepare` → `retrain` → `model list/promote/rollback`, end to end on CPU with the tiny
Qwen2: real FinGPT rows, a few real TRL steps, real generation for the gate's evaluation."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

import forecaster.cli
from engine.training.registry import Registry


def run(*args: str) -> tuple[int, str, str]:
    result = CliRunner().invoke(forecaster.cli.app, list(args))
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


def test_a_first_adapter_worse_than_always_up_is_refused_and_the_output_says_which_comparison(setup):
    # The random tiny model parses nothing, with or without the new adapter: it ties the bare base at 0.0 and loses
    # to "always up" (2 of these 3 weeks went up). A gate that only compared with a served adapter promoted this.
    dataset, registry = setup
    code, out, err = retrain(dataset)
    assert code == 0, err
    lines = out.strip().splitlines()
    assert lines[0] == ("v0001: not promoted, the bare base stays served (decided by best naive baseline) — "
                        "binary_accuracy_all 0.0000 does not beat the best naive baseline "
                        "(constant Up by 0-1%: 0.6667)")
    # Then both score sets side by side, the baselines, and the training run in one line.
    assert lines[1] == "On the same 3 rows:" and lines[2].split() == ["bare", "base", "v0001"]
    [parse_row] = [line for line in lines if line.startswith("answers that parse")]
    assert parse_row.split()[-4:] == ["0%", "(0/3)", "0%", "(0/3)"]  # the random tiny model, either way
    assert any(line.startswith("  constant Up by 0-1%: 0.667") for line in lines)
    assert lines[-1].startswith("training: 2 updates in ") and "answers.json" in lines[-1]
    assert registry.current_version() is None
    assert sorted(p.name for p in registry.path("v0001").iterdir()) == [
        "adapter_config.json", "adapter_model.safetensors", "answers.json", "decision.json", "evaluation.json",
        "provenance.json", "training.json"]
    answers = registry.read("v0001", "answers.json")  # what both wrote, for a reader to check the figures against
    assert len(answers["new"]) == len(answers["compared"]) == 3
    assert set(answers["new"][0]) == {"symbol", "period", "label", "answer", "probabilities"}
    evaluation = registry.read("v0001", "evaluation.json")
    assert evaluation["scores"]["n"] == 3 and evaluation["compared_with"]["version"] is None
    assert evaluation["compared_with"]["scores"]["n"] == 3  # the bare base, scored on the same rows
    assert registry.base_model("v0001").startswith("qwen2 ")
    assert forecaster.cli.common.served_adapter(forecaster.cli.common.load_settings()) is None


def test_a_refused_adapter_can_be_forced_then_rolled_back_and_promoted_by_hand(setup, monkeypatch):
    dataset, registry = setup
    monkeypatch.setenv("MODEL_NAME", "tiny-qwen2-test")
    code, out, err = retrain(dataset, "--force")
    assert code == 0, err
    assert out.startswith("v0001: promoted (decided by an admin's --force) — forced by an admin (the gate said: ")
    assert registry.current_version() == "v0001" and registry.base_model("v0001") == "tiny-qwen2-test"

    # Compared with the served v0001 now (its stored scores on the same rows), and still no better than naive.
    code, out, err = retrain(dataset)
    assert code == 0, err
    assert out.startswith("v0002: not promoted, v0001 stays served (decided by best naive baseline)")
    assert registry.read("v0002", "evaluation.json")["compared_with"]["label"] == "served v0001"
    assert registry.current_version() == "v0001"
    listing = run("model", "list")[1]
    assert "* v0001  on tiny-qwen2-test" in listing and "  v0002  on tiny-qwen2-test" in listing
    assert "refused" in listing

    assert run("model", "rollback")[1].strip() == "now serving the bare base model"
    assert run("model", "promote", "v0002")[0] == 0 and registry.current_version() == "v0002"
    code, _, err = run("model", "promote", "v0042")
    assert code == 2 and "no adapter version 'v0042'" in err


def test_retrain_without_an_evaluation_set_refuses_to_start(setup, monkeypatch):
    dataset, registry = setup
    monkeypatch.delenv("EVAL_DATASET")
    code, _, err = retrain(dataset)
    assert code == 2 and "EVAL_DATASET" in err
    assert registry.versions() == []
