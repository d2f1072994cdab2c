"""Where the real pretrained weights are: REAL_MODEL_DIR, default `real-qwen` beside the checkout (built by
../shared/tools/real-qwen DIR). Shared by the real-weights tier (tests/real) and the benchmarks."""

from __future__ import annotations

import os
from pathlib import Path

# Beside the checkout, not inside it: 3.5 GB that must never be committed or carried.
DEFAULT_REAL_MODEL_DIR = str(Path(__file__).resolve().parents[3] / "real-qwen")


def real_model_dir() -> Path | None:
    """The folder, when it holds a model (config.json and safetensors weights); else None."""
    folder = Path(os.environ.get("REAL_MODEL_DIR") or DEFAULT_REAL_MODEL_DIR)
    return folder if (folder / "config.json").is_file() and any(folder.glob("*.safetensors")) else None


def missing_reason() -> str:
    where = os.environ.get("REAL_MODEL_DIR") or DEFAULT_REAL_MODEL_DIR
    return (f"no real weights at {where} (config.json and *.safetensors): build them with "
            "`../shared/tools/real-qwen DIR` and set REAL_MODEL_DIR=DIR")
