"""`make gpu-test`: what the GPU tests share, and the one table printed at the end.

The session builds the Qwen2.5-1.5B shape once (random bf16 weights, on the GPU, in a child process) with a LoRA
adapter, and gives it two tokenizers: the tiny test tokenizer for the training row (fitted to 4096 tokens), and the
same tokenizer trained on the FinGPT prompts for the forecasts (realistic prompt lengths). After the run the table
of tests/gpu/report.py is printed (every row: measured, skipped with the reason, or not measured and why) and
written as JSON to GPU_TEST_OUT (default /tmp/gpu-test.json).

Without a GPU, `-p tests.gpu.dry_run` runs this whole orchestration on the CPU with tiny shapes (tests/gpu/dry_run.py).
"""

from __future__ import annotations

import shutil
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import torch

from tests.gpu.models import build_weights, model_folder, special_ids, training_folder
from tests.gpu.report import BATCH, GB, NO_CUDA, REPORT, out_path, timed

_HERE = Path(__file__).resolve().parent
_STARTED = time.perf_counter()
_COLLECTED = {"gpu": False}


def pytest_collection_modifyitems(session, config, items) -> None:  # noqa: ANN001 (pytest's hook)
    _COLLECTED["gpu"] = any(_HERE in Path(item.path).resolve().parents for item in items)


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:  # noqa: ANN001
    if not _COLLECTED["gpu"] or config.option.collectonly:
        return
    missing = f"skipped: {NO_CUDA}" if not torch.cuda.is_available() else (
        "its test failed, was deselected or did not run (see above)")
    REPORT.context["whole run"] = (f"{time.perf_counter() - _STARTED:.0f} s (budget 600 s; pytest's own start-up "
                                   "excluded)")
    terminalreporter.write_sep("=", "GPU run: one table")
    for line in REPORT.render(missing).splitlines():
        terminalreporter.write_line(line)
    try:
        path = REPORT.write_json(out_path(), missing)
        terminalreporter.write_line(f"every figure: {path}")
    except OSError as exc:
        terminalreporter.write_line(f"could not write the JSON file: {exc}")


@pytest.fixture(scope="session")
def gpu_workdir(tmp_path_factory) -> Iterator[Path]:
    """The session's folder; removed at the end (it holds gigabytes of random weights)."""
    if torch.cuda.is_available():
        props = torch.cuda.get_device_properties(0)  # mem_get_info would hold a CUDA context here
        import transformers

        try:
            import bitsandbytes

            bnb = bitsandbytes.__version__
        except ImportError:
            bnb = "missing"
        REPORT.context["device"] = (f"{props.name}, {props.total_memory / GB:.1f} GB, compute capability "
                                    f"{props.major}.{props.minor}; torch {torch.__version__} (CUDA "
                                    f"{torch.version.cuda}), transformers {transformers.__version__}, "
                                    f"bitsandbytes {bnb}")
    folder = tmp_path_factory.mktemp("gpu-run")
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture(scope="session")
def train_tokenizer(gpu_workdir) -> tuple[Path, dict]:
    """The tiny test tokenizer alone in a folder (copied into every training model folder), and the ids the
    model configs need."""
    from tests.fakes.tiny_model import build_tokenizer

    folder = gpu_workdir / "tokenizer-train"
    tokenizer = build_tokenizer(folder)
    return folder, special_ids(tokenizer)


@pytest.fixture(scope="session")
def weights_1_5b(gpu_workdir, train_tokenizer) -> dict:
    """The Qwen2.5-1.5B shape (hidden 1536, 28 layers, 12 heads / 2 KV heads, intermediate 8960, vocabulary
    151,936, tied embeddings; 1,543,714,304 parameters) and a rank-8 LoRA adapter for it."""
    weights, adapter = gpu_workdir / "weights-1.5b", gpu_workdir / "lora-1.5b"
    build_weights("qwen2.5-1.5b", weights, train_tokenizer[1], adapter=adapter)
    return {"weights": weights, "adapter": adapter}


@pytest.fixture(scope="session")
def base_dir(gpu_workdir, train_tokenizer, weights_1_5b) -> Path:
    """The 1.5B training folder: the tiny tokenizer and the random weights."""
    return training_folder(train_tokenizer[0], weights_1_5b["weights"], gpu_workdir / "qwen2.5-1.5b-shaped")


@pytest.fixture(scope="session")
def row(gpu_workdir, base_dir) -> dict:
    """One row of ~4096 tokens prepared with `prepare_dataset` (the FinGPT test split's longest when it is on the
    machine, else a synthetic one), for the 1.5B and the 7B: both load the same tokenizer. Counted from the model
    folder, as the trainer loads it (the weights' config makes it a Qwen2Tokenizer)."""
    from tests.bench.test_training_memory import prepare_row
    from tests.gpu.prompts import records

    started = time.perf_counter()
    rows, where = records()
    line = prepare_row(rows, base_dir, gpu_workdir / "data")
    timed("training row (prepare_dataset)", time.perf_counter() - started)
    REPORT.context["training row"] = (f"{where}: {line['symbol']} {line['period']}, {line['prompt_tokens']} + "
                                      f"{line['completion_tokens']} tokens (tiny tokenizer)")
    return {**line, "dataset": str(gpu_workdir / "data" / "dataset"), "source": where}


@pytest.fixture(scope="session")
def serving_setup(gpu_workdir, train_tokenizer, weights_1_5b) -> dict:
    """The 1.5B serving folder (the tokenizer trained on the prompts, the same weights) and the BATCH
    conversations nearest a realistic prompt length."""
    from tests.gpu.prompts import (
        TARGET_PROMPT_TOKENS,
        pick_conversations,
        product_tokenizer,
        serving_tokenizer,
        user_prompts,
    )

    started = time.perf_counter()
    users, source, real = user_prompts()
    folder = gpu_workdir / "qwen2.5-1.5b-serving"
    tokenizer = serving_tokenizer(folder, users, real=real)
    assert special_ids(tokenizer) == train_tokenizer[1], "the weights' config names the training tokenizer's ids"
    model_folder(weights_1_5b["weights"], folder)
    tokenizer = product_tokenizer(folder)
    conversations, tokens = pick_conversations(users, tokenizer, count=BATCH, target_tokens=TARGET_PROMPT_TOKENS)
    timed("forecast prompts and tokenizer", time.perf_counter() - started)
    REPORT.context["forecast prompts"] = (f"{source}: {BATCH} nearest {TARGET_PROMPT_TOKENS} tokens, "
                                          f"{min(tokens)}-{max(tokens)} tokens (tokenizer of {len(tokenizer):,} "
                                          f"ids trained on them); batch 1 takes the first")
    return {"model": folder, "adapter": weights_1_5b["adapter"], "conversations": conversations, "tokens": tokens}
