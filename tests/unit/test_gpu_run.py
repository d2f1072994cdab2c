"""`make gpu-test`'s serving measurements, run on the CPU with a tiny model: the same code the GPU run uses.

tests/gpu measures on CUDA (skipped without it). Its logic must work the first time a GPU is lent, so this runs
the same steps here: a random-weight Qwen2 built and saved by tests/gpu/models.py (a tiny shape with a vocabulary
larger than the tokenizer's, like the real shapes), a LoRA adapter for it, prompts picked by length
(tests/gpu/prompts.py), the four analysts and their timed forecasts (tests/gpu/serving.py, through its child's
spec file), and the one table and JSON file (tests/gpu/report.py) with every row.
"""

from __future__ import annotations

import json

import pytest
import torch

from tests.gpu import report as gpu_report
from tests.gpu.models import TINY_SHAPE, build_random_model, model_folder, special_ids
from tests.gpu.prompts import pick_conversations, product_tokenizer, serving_tokenizer, user_prompts
from tests.gpu.serving import child_main

NEW_TOKENS = 128  # room for the random model's constrained lists and call in the tiny tokenizer's tokens
PROMPT_TOKENS = 500
BATCH = 3  # the GPU run's is gpu_report.BATCH (8); the same code, less CPU time


@pytest.fixture(scope="module")
def measured(tmp_path_factory) -> dict:
    # One thread: the tiny model gains nothing from more, and on a shared 2-core machine OpenMP's spinning threads
    # made this 6x slower.
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return _measure(tmp_path_factory.mktemp("gpu-run-smoke"))
    finally:
        torch.set_num_threads(threads)


def _measure(root) -> dict:
    users, source, real = user_prompts(real=False)
    tokenizer = serving_tokenizer(root / "model", users, real=real)
    built = build_random_model(TINY_SHAPE, root / "weights", device="cpu", adapter=root / "lora",
                               **special_ids(tokenizer))
    assert built["parameters"] > 0
    folder = model_folder(root / "weights", root / "model")
    # Counted as the product loads the folder (a Qwen2Tokenizer once the weights' config is beside it).
    conversations, tokens = pick_conversations(users, product_tokenizer(folder), count=BATCH,
                                               target_tokens=PROMPT_TOKENS)
    spec = {"model": str(folder), "adapter": str(root / "lora"), "conversations": conversations, "device": "cpu",
            "dtype": "float32", "max_new_tokens": NEW_TOKENS, "repeats": 1, "batch": BATCH,
            "result": str(root / "result.json")}
    (root / "spec.json").write_text(json.dumps(spec))
    child_main(root / "spec.json")
    return {"result": json.loads((root / "result.json").read_text()), "tokens": tokens, "source": source}


def test_prompts_are_picked_by_length(measured):
    tokens = measured["tokens"]
    assert len(tokens) == BATCH
    assert all(abs(t - PROMPT_TOKENS) <= 100 for t in tokens), tokens
    assert [abs(t - PROMPT_TOKENS) for t in tokens] == sorted(abs(t - PROMPT_TOKENS) for t in tokens)


def test_every_serving_row_is_measured_with_sane_figures(measured):
    rows = measured["result"]["rows"]
    assert set(rows) == set(gpu_report.SERVING_ROWS)
    for key, row in rows.items():
        assert row["batch"] == (1 if ".b1." in key else BATCH), key
        assert abs(row["prompt_tokens"] - PROMPT_TOKENS) <= 100, (key, row["prompt_tokens"])
        if key.startswith("serve.b1."):  # the product counts the prompt as it was picked
            assert row["prompt_tokens"] == measured["tokens"][0]
        assert 0 < row["new_tokens"] <= NEW_TOKENS * row["batch"], (key, row["new_tokens"])
        assert 0 < row["generate_s"] <= row["wall_s"] < 60, key
        assert row["tok_s"] > 0, key
        assert row["peak_gb"] is None, key  # CPU: no CUDA peak
        if key.endswith("free"):
            continue
        # Constrained (with or without an adapter): every row writes the sections, states a call, gets bins.
        assert row["rows_with_bins"] == row["batch"], key
        assert 0 < row["bin_s"] < row["wall_s"], key
        assert row["rows_with_a_section"] == row["batch"], key
        assert 0 < row["first_section_min_s"] <= row["first_section_s"] <= row["wall_s"], key
    for slot in ("b1", "bN"):
        assert rows[f"lora.{slot}.unmerged"]["vs_no_adapter"] > 0
        assert rows[f"lora.{slot}.unmerged"]["vs_merged"] > 0
        assert "of no adapter" in rows[f"lora.{slot}.merged"]["note"]
        assert rows[f"serve.{slot}.free"]["constrained_vs_free"] > 0
    context = measured["result"]["context"]
    assert context["max_new_tokens"] == NEW_TOKENS
    assert context["placement"].startswith("cpu, float32")
    assert set(context["loads_s"]) == {"constrained", "free", "unmerged", "merged"}


def test_the_table_and_json_have_every_row(measured, tmp_path, monkeypatch):
    table = gpu_report.Report()
    table.context["prompts"] = measured["source"]
    for key, row in measured["result"]["rows"].items():
        table.record(key, **row)
    table.skip("train.7b.qlora", "this card has 16.0 GB; needs 20 GB")
    text = table.render(missing="not measured here (CPU smoke test)")
    lines = text.splitlines()
    assert lines[0].startswith("prompts: synthetic")
    for key in gpu_report.ROWS:
        label = table.label(key)
        assert "{" not in label and ("bN" not in key or label.endswith(f"batch {BATCH}") or f"batch {BATCH}," in label)
        (line,) = [line for line in lines if line.startswith(f"| {label} ")]
        if key in gpu_report.SERVING_ROWS:
            assert "—" not in line.split("|")[2:6], line  # prompt tok, new tok, wall s, tok/s all measured
        elif key == "train.7b.qlora":
            assert "skipped: this card has 16.0 GB" in line
        else:
            assert "not measured: not measured here (CPU smoke test)" in line
    header = [line for line in lines if line.startswith("| measurement")]
    assert len(header) == 1 and all(column in header[0] for column in gpu_report.COLUMNS)

    monkeypatch.setenv("GPU_TEST_OUT", str(tmp_path / "out"))
    path = table.write_json(gpu_report.out_path(), missing="not run")
    assert path == tmp_path / "out" / "gpu-test.json"
    saved = json.loads(path.read_text())
    assert [r["key"] for r in saved["rows"]] == list(gpu_report.ROWS)
    by_key = {r["key"]: r for r in saved["rows"]}
    assert by_key["serve.b1.constrained"]["status"] == "measured"
    assert by_key["serve.b1.constrained"]["tok_s"] > 0
    assert by_key["serve.bN.free"]["measurement"] == f"forecast, batch {BATCH}, free (constrained=False)"
    assert by_key["train.7b.qlora"] == {"key": "train.7b.qlora", "measurement": gpu_report.ROWS["train.7b.qlora"],
                                        "status": "skipped", "reason": "this card has 16.0 GB; needs 20 GB"}
    assert by_key["train.1.5b.lora"]["status"] == "not measured"
    monkeypatch.setenv("GPU_TEST_OUT", str(tmp_path / "given.json"))
    assert gpu_report.out_path() == tmp_path / "given.json"
