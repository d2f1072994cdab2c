"""The adapter registry and the promotion gate (files only)."""

from __future__ import annotations

import json

import pytest

from engine.registry import Registry, RegistryError, gate


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


@pytest.mark.parametrize(
    ("new", "current", "metric", "promote"),
    [
        ({"binary_accuracy_all": 0.55}, {"binary_accuracy_all": 0.52}, "binary_accuracy_all", True),
        ({"binary_accuracy_all": 0.52}, {"binary_accuracy_all": 0.52}, "binary_accuracy_all", True),  # not worse
        ({"binary_accuracy_all": 0.50}, {"binary_accuracy_all": 0.52}, "binary_accuracy_all", False),
        ({"mse": 7.0}, {"mse": 8.0}, "mse", True),  # lower is better
        ({"mse": 9.0}, {"mse": 8.0}, "mse", False),
        ({"binary_accuracy_all": 0.40}, None, "binary_accuracy_all", True),  # nothing to beat
        ({"binary_accuracy_all": None}, None, "binary_accuracy_all", False),
    ],
)
def test_gate_promotes_only_when_not_worse(new, current, metric, promote):
    assert gate(new, current, metric=metric).promote is promote


def test_force_overrides_and_says_so():
    decision = gate({"mse": 9.0}, {"mse": 8.0}, metric="mse", force=True)
    assert decision.promote and decision.forced and "forced" in decision.reason


def test_unknown_gate_metric_is_an_error():
    with pytest.raises(RegistryError, match="unknown gate metric"):
        gate({}, None, metric="vibes")


def test_current_pointer_is_replaced_atomically(tmp_path):
    reg = Registry(tmp_path / "models")
    reg.promote(reg.add(fake_adapter(tmp_path, "a")), reason="x")
    assert not list((tmp_path / "models").glob("*.tmp"))
    assert json.loads((tmp_path / "models" / "current.json").read_text())["version"] == "v0001"
