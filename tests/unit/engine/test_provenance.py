"""What footers, the ledger and the registry call the base model: never just the folder it sits in."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from engine.generation.base import model_version
from engine.provenance import _short_count, base_model_name


@pytest.fixture
def weights(tmp_path, tiny_model_dir) -> Path:
    """The tiny model where Docker mounts the real one: a folder called `weights`."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "weights"))


def test_a_folder_is_named_by_its_architecture_and_size_not_its_path(weights):
    from transformers import AutoModelForCausalLM

    model = AutoModelForCausalLM.from_pretrained(weights)
    params = sum(p.numel() for p in model.parameters())  # tied embeddings once, as stored
    name = base_model_name(str(weights))
    assert name == f"qwen2 {_short_count(params)}" and "weights" not in name
    assert model_version(str(weights), None) == f"{name} (no adapter)"
    assert model_version(str(weights), weights.parent / "versions" / "v0003") == f"{name} + v0003"


def test_model_name_wins_over_what_the_files_say(weights):
    assert base_model_name(str(weights), "Qwen2.5-1.5B-Instruct (Q4 dequantized)") == \
        "Qwen2.5-1.5B-Instruct (Q4 dequantized)"
    assert model_version(str(weights), None, name="Qwen2.5-7B-Instruct") == "Qwen2.5-7B-Instruct (no adapter)"
    assert base_model_name(str(weights), "  ") != "  "  # a blank setting is no name


def test_a_hub_id_names_itself():
    assert base_model_name("Qwen/Qwen2.5-1.5B-Instruct") == "Qwen/Qwen2.5-1.5B-Instruct"
    assert model_version("Qwen/Qwen2.5-1.5B-Instruct", None) == "Qwen/Qwen2.5-1.5B-Instruct (no adapter)"


def test_a_hub_id_left_in_the_config_is_used(tmp_path):
    folder = tmp_path / "weights"
    folder.mkdir()
    (folder / "config.json").write_text(json.dumps({"model_type": "qwen2", "_name_or_path": "Qwen/Qwen2.5-7B"}))
    assert base_model_name(str(folder)) == "Qwen/Qwen2.5-7B"


def test_a_folder_without_weights_or_config_says_what_it_can(tmp_path):
    only_config = tmp_path / "a"
    only_config.mkdir()
    (only_config / "config.json").write_text(json.dumps({"model_type": "llama", "_name_or_path": "/weights"}))
    assert base_model_name(str(only_config)) == "llama"
    empty = tmp_path / "my-model"
    empty.mkdir()
    assert base_model_name(str(empty)) == "my-model"


@pytest.mark.parametrize(("n", "text"), [(1_543_714_304, "1.5B"), (7_615_616_512, "7.6B"), (494_032_768, "494M"),
                                         (126_016, "126K"), (12, "12")])
def test_sizes_read_the_way_model_cards_write_them(n, text):
    assert _short_count(n) == text


def test_the_worker_loads_the_model_under_model_name(tmp_path, weights):
    from forecaster.cli.common import load_analyst
    from forecaster.settings import Settings

    settings = Settings(_env_file=None, model_base=str(weights), model_device="cpu", model_dir=tmp_path / "models",
                        model_name="Qwen2.5-1.5B-Instruct")
    assert load_analyst(settings).version == "Qwen2.5-1.5B-Instruct (no adapter)"
