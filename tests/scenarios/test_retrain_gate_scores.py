"""The retrain gate compares like with like (issue 20, item 11): scores kept from an earlier retrain (the bare base's,
the served adapter's) are reused only when they were measured under the settings of this one. Changing
MODEL_CONSTRAINED or MODEL_MAX_NEW_TOKENS between two `forecaster retrain` runs measures the compared model again;
the same settings reuse what was kept. End to end on CPU: the tiny Qwen2, real TRL steps, real generation.

What the gate read is seen in each version's evaluation.json: the scores it compared, with their latency and
throughput, whose product is the tokens each answer took (the tiny model writes until MODEL_MAX_NEW_TOKENS when
unconstrained, so a score measured under another setting shows another length)."""

from __future__ import annotations

from tests.scenarios.test_retrain_cli import retrain, setup  # noqa: F401 — the fixture, shared


def tokens_per_answer(scores: dict) -> float:
    return round(scores["latency_s"] * scores["tokens_per_s"], 6)


def compared(registry, version: str) -> dict:
    return registry.read(version, "evaluation.json")["compared_with"]["scores"]


def new(registry, version: str) -> dict:
    return registry.read(version, "evaluation.json")["scores"]


def test_the_bare_base_is_scored_again_when_model_constrained_changes(setup, monkeypatch):  # noqa: F811
    dataset, registry = setup
    monkeypatch.setenv("MODEL_CONSTRAINED", "true")
    assert retrain(dataset)[0] == 0  # v0001, refused: the bare base stays served, its scores kept
    monkeypatch.setenv("MODEL_CONSTRAINED", "false")
    code, _, err = retrain(dataset)  # v0002, compared with the bare base again
    assert code == 0, err

    assert registry.current_version() is None
    # Both sides of v0002's comparison generated unconstrained, to MODEL_MAX_NEW_TOKENS.
    assert tokens_per_answer(new(registry, "v0002")) == 16.0
    assert tokens_per_answer(compared(registry, "v0002")) == 16.0, "the bare base's constrained scores were reused"
    assert tokens_per_answer(compared(registry, "v0001")) != 16.0  # the constrained ones were another measurement


def test_the_served_adapter_is_scored_again_under_new_settings_and_its_new_scores_are_kept(setup,  # noqa: F811
                                                                                         monkeypatch):
    dataset, registry = setup
    monkeypatch.setenv("MODEL_CONSTRAINED", "false")
    assert retrain(dataset, "--force")[0] == 0  # v0001 served, scored with MODEL_MAX_NEW_TOKENS=16
    assert tokens_per_answer(new(registry, "v0001")) == 16.0

    monkeypatch.setenv("MODEL_MAX_NEW_TOKENS", "24")
    code, _, err = retrain(dataset)  # v0002 against the served v0001, both with 24 tokens
    assert code == 0, err
    assert registry.read("v0002", "evaluation.json")["compared_with"]["label"] == "served v0001"
    assert tokens_per_answer(compared(registry, "v0002")) == 24.0, "v0001's 16-token scores were reused"

    code, _, err = retrain(dataset)  # same settings: v0001's 24-token scores are reused, not measured a third time
    assert code == 0, err
    assert compared(registry, "v0003") == compared(registry, "v0002")
