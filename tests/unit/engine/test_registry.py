"""The adapter registry and the promotion gate (files only)."""

from __future__ import annotations

import json

import pytest

from engine.training.registry import Registry, RegistryError, gate


def fake_adapter(tmp_path, name: str):
    folder = tmp_path / name
    folder.mkdir()
    (folder / "adapter_config.json").write_text(json.dumps({"peft_type": "LORA", "r": 8}))
    (folder / "adapter_model.safetensors").write_bytes(b"weights of " + name.encode())
    return folder


def test_versions_are_numbered_and_not_served_until_promoted(tmp_path):
    reg = Registry(tmp_path / "models")
    assert reg.versions() == [] and reg.current_version() is None
    v1 = reg.add(fake_adapter(tmp_path, "a"))
    v2 = reg.add(fake_adapter(tmp_path, "b"))
    assert (v1, v2) == ("v0001", "v0002")
    assert reg.current_version() is None
    reg.promote(v2, reason="first")
    assert reg.current_version() == "v0002"
    assert (reg.current_path() / "adapter_model.safetensors").read_bytes() == b"weights of b"


def test_rollback_walks_back_through_promotions_to_the_bare_base(tmp_path):
    reg = Registry(tmp_path / "models")
    for name in "abc":
        reg.promote(reg.add(fake_adapter(tmp_path, name)), reason="better")
    assert reg.rollback() == "v0002"
    assert reg.rollback() == "v0001"
    assert reg.rollback() is None
    assert reg.current_version() is None
    with pytest.raises(RegistryError, match="nothing to roll back"):
        reg.rollback()
    events = [e["event"] for e in reg.history()]
    assert events.count("promoted") == 3 and events.count("rolled back") == 3


def test_unknown_versions_and_non_adapters_are_refused(tmp_path):
    reg = Registry(tmp_path / "models")
    with pytest.raises(RegistryError, match="no adapter version 'v0009'"):
        reg.promote("v0009", reason="x")
    with pytest.raises(RegistryError, match="not an adapter folder"):
        reg.add(tmp_path)


def scores(accuracy: float | None, *, parse_rate: float = 1.0, baselines: dict | None = None, **more) -> dict:
    return {"binary_accuracy_all": accuracy, "parse_rate": parse_rate, "baselines": baselines or {}, **more}


NAIVE = {"constant Down by 0-1%": {"binary_accuracy_all": 0.40, "mse": 9.0},
         "constant Up by 0-1%": {"binary_accuracy_all": 0.60, "mse": 8.5},
         "last-week momentum": {"binary_accuracy_all": 0.50, "mse": 12.0}}


@pytest.mark.parametrize(
    ("new", "current", "metric", "promote"),
    [
        (scores(0.65, baselines=NAIVE), scores(0.62), "binary_accuracy_all", True),
        (scores(0.62, baselines=NAIVE), scores(0.62), "binary_accuracy_all", True),  # not worse
        (scores(0.61, baselines=NAIVE), scores(0.62), "binary_accuracy_all", False),
        (scores(0.70, mse=7.0, baselines=NAIVE), scores(0.5, mse=8.0), "mse", True),  # lower is better
        (scores(0.70, mse=9.0, baselines=NAIVE), scores(0.5, mse=8.0), "mse", False),
        (scores(0.70, mse=8.6, baselines=NAIVE), scores(0.5, mse=9.9), "mse", False),  # no better than constant up
        (scores(None), scores(0.1), "binary_accuracy_all", False),
        (scores(0.9, baselines=NAIVE), None, "binary_accuracy_all", False),  # nothing measured to compare with
    ],
)
def test_gate_promotes_only_when_not_worse_and_better_than_naive(new, current, metric, promote):
    assert gate(new, current, metric=metric).promote is promote


def test_a_first_adapter_worse_than_a_constant_baseline_is_refused_and_says_why():
    # The case: nothing served, the new adapter at 0.0; the bare base is no better, but "always up" is.
    decision = gate(scores(0.0, parse_rate=0.0, baselines=NAIVE), scores(0.0, parse_rate=0.0))
    assert not decision.promote
    assert decision.decided_by == "best naive baseline"
    assert decision.baseline == "constant Up by 0-1%" and decision.baseline_score == 0.60
    assert decision.reason == ("binary_accuracy_all 0.0000 does not beat the best naive baseline "
                               "(constant Up by 0-1%: 0.6000)")
    assert decision.to_dict()["decided_by"] == "best naive baseline"


def test_a_parse_rate_drop_is_refused_even_when_the_hit_rate_holds():
    decision = gate(scores(0.70, parse_rate=0.80, baselines=NAIVE), scores(0.62, parse_rate=0.95),
                    compared_with="served v0003")
    assert not decision.promote and decision.decided_by == "parse rate"
    assert decision.reason == "parse rate 0.800 is below served v0003's 0.950"


def test_a_worse_adapter_names_the_model_it_lost_to():
    decision = gate(scores(0.61, baselines=NAIVE), scores(0.62), compared_with="served v0003")
    assert not decision.promote and decision.decided_by == "served v0003"
    assert "worse than served v0003's 0.6200" in decision.reason


def test_a_promotion_says_every_comparison_it_passed():
    decision = gate(scores(0.65, baselines=NAIVE), scores(0.62))
    assert decision.promote and decision.decided_by == "parse rate, the bare base, best naive baseline"
    assert decision.reason == ("parse rate 1.000 ≥ the bare base's 1.000; binary_accuracy_all 0.6500 is not worse "
                               "than the bare base's 0.6200; binary_accuracy_all 0.6500 beats the best naive "
                               "baseline (constant Up by 0-1%: 0.6000)")


def test_parse_rate_as_the_metric_has_no_baseline_to_beat():
    # Baselines are answer strings that always parse: a parse-rate gate compares with the served model only.
    decision = gate({"parse_rate": 0.9, "baselines": NAIVE}, {"parse_rate": 0.8}, metric="parse_rate")
    assert decision.promote and decision.baseline is None


def test_force_overrides_and_says_so():
    decision = gate(scores(0.3, mse=9.0), scores(0.5, mse=8.0), metric="mse", force=True)
    assert decision.promote and decision.forced and "forced" in decision.reason
    assert "worse than the bare base's 8.0000" in decision.reason and decision.decided_by == "an admin's --force"


def test_unknown_gate_metric_is_an_error():
    with pytest.raises(RegistryError, match="unknown gate metric"):
        gate({}, None, metric="vibes")


def test_each_version_records_the_base_model_it_was_trained_on(tmp_path):
    reg = Registry(tmp_path / "models")
    version = reg.add(fake_adapter(tmp_path, "a"), note="trained on rows", base_model="qwen2 1.5B",
                      base_path="/weights")
    assert reg.base_model(version) == "qwen2 1.5B"
    assert reg.read(version, "provenance.json")["base_path"] == "/weights"
    assert reg.history()[-1]["detail"] == "trained on rows (base qwen2 1.5B)"
    assert reg.base_model(reg.add(fake_adapter(tmp_path, "b"))) is None  # an older, unrecorded version


def test_base_scores_are_reused_only_under_the_same_key(tmp_path):
    reg = Registry(tmp_path / "models")
    assert reg.base_scores(base_model="qwen2 1.5B", eval_limit=3) is None
    reg.write_base_scores({"binary_accuracy_all": 0.5}, base_model="qwen2 1.5B", eval_limit=3)
    assert reg.base_scores(base_model="qwen2 1.5B", eval_limit=3) == {"binary_accuracy_all": 0.5}
    assert reg.base_scores(base_model="qwen2 1.5B", eval_limit=300) is None
    assert reg.base_scores(base_model="qwen2 7.6B", eval_limit=3) is None


def test_current_pointer_is_replaced_atomically(tmp_path):
    reg = Registry(tmp_path / "models")
    reg.promote(reg.add(fake_adapter(tmp_path, "a")), reason="x")
    assert not list((tmp_path / "models").glob("*.tmp"))
    assert json.loads((tmp_path / "models" / "current.json").read_text())["version"] == "v0001"
