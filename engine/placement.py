"""Where and in what precision the analyst model runs: the device and dtype rules, testable without a GPU.

`choose_placement` is pure and imports nothing heavy, so `forecaster doctor` and the trainer apply the worker's
rules without loading a model; `torch_dtype` imports torch only when it is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from engine.exceptions import ModelError

if TYPE_CHECKING:
    import torch


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda", "cuda:1"
    dtype: str  # "float32", "bfloat16", "float16"
    load_in_4bit: bool = False


def choose_placement(
    *,
    device: str = "auto",
    dtype: str = "auto",
    load_in_4bit: bool = False,
    cuda_available: bool,
    cuda_capability: tuple[int, int] | None,
) -> Placement:
    """Pick device and precision. Pure, so the rules are testable without a GPU.

    CPU → float32 (bf16 is 35-50x slower on AVX2 CPUs, and transformers 5 would load the checkpoint's bf16).
    GPU → bfloat16 from Ampere (compute capability 8.0) on; float16 before (a T4 "supports" bf16 only by slow
    emulation). An explicit dtype always wins.
    """
    chosen_device = ("cuda" if cuda_available else "cpu") if device == "auto" else device
    if chosen_device.startswith("cuda") and not cuda_available:
        raise ModelError(f"MODEL_DEVICE={device} but CUDA is not available here; use cpu or auto")
    if dtype == "auto":
        if chosen_device == "cpu":
            dtype = "float32"
        else:
            dtype = "bfloat16" if cuda_capability is not None and cuda_capability >= (8, 0) else "float16"
    return Placement(chosen_device, dtype, load_in_4bit)


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a Placement's `dtype` names."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
