"""Where and in what precision the analyst model runs: the device and dtype rules, testable without a GPU.

`choose_placement` is pure and imports nothing heavy, so `forecaster doctor` and the trainer apply the worker's
rules without loading a model; `torch_dtype` imports torch only when it is called.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from engine.exceptions import ModelError

if TYPE_CHECKING:
    import torch


# CPU instructions that make bf16 matmuls native: Intel AMX tiles (Sapphire Rapids on) and AVX-512 BF16 (Cooper
# Lake, AMD Zen 4 on). Without either, oneDNN emulates bf16 and a forward pass is 35-50x slower than fp32.
CPU_BF16_FLAGS = ("amx_bf16", "avx512_bf16")


@dataclass(frozen=True)
class Placement:
    device: str  # "cpu", "cuda", "cuda:1"
    dtype: str  # "float32", "bfloat16", "float16"
    load_in_4bit: bool = False
    reason: str = ""  # why this dtype, for the worker's log and `forecaster doctor`
    quantize: str = "none"  # "int8": weight-only int8 linears (torchao), activations in `dtype`


def choose_placement(
    *,
    device: str = "auto",
    dtype: str = "auto",
    load_in_4bit: bool = False,
    cuda_available: bool,
    cuda_capability: tuple[int, int] | None,
    cpu_flags: frozenset[str] = frozenset(),
    quantize: str = "none",
) -> Placement:
    """Pick device and precision. Pure, so the rules are testable without a GPU.

    CPU → bfloat16 where the CPU has native bf16 (`CPU_BF16_FLAGS`, from `read_cpu_flags`): on the real 1.5B
    weights prefill 2.2x and decode 1.6x fp32's on a Zen 4 EPYC (README: Measured figures), prefill ~4.5x with
    AMX; float32 elsewhere, where bf16 is emulated. GPU → bfloat16 from Ampere (compute capability 8.0) on;
    float16 before (a T4 "supports" bf16 only by slow emulation). An explicit dtype always wins.
    `quantize="int8"` (MODEL_QUANTIZE) stores the linear layers' weights in int8 and computes in the chosen dtype:
    it cannot be combined with 4-bit loading.
    """
    chosen_device = ("cuda" if cuda_available else "cpu") if device == "auto" else device
    if chosen_device.startswith("cuda") and not cuda_available:
        raise ModelError(f"MODEL_DEVICE={device} but CUDA is not available here; use cpu or auto")
    if quantize not in ("none", "int8"):
        raise ModelError(f"MODEL_QUANTIZE={quantize} is not known; use none or int8")
    if quantize != "none" and load_in_4bit:
        raise ModelError("MODEL_QUANTIZE=int8 and MODEL_LOAD_IN_4BIT=true both quantize the weights; choose one")
    if dtype != "auto":
        chosen, reason = dtype, "MODEL_DTYPE"
    elif chosen_device == "cpu":
        native = sorted(set(CPU_BF16_FLAGS) & cpu_flags)
        chosen, reason = (("bfloat16", f"CPU has {', '.join(native)}") if native else
                          ("float32", "CPU lacks amx_bf16 and avx512_bf16 (bf16 would be emulated)"))
    elif cuda_capability is not None and cuda_capability >= (8, 0):
        chosen, reason = "bfloat16", f"GPU compute capability {cuda_capability}"
    else:
        chosen, reason = "float16", f"GPU compute capability {cuda_capability} has no native bf16"
    return Placement(chosen_device, chosen, load_in_4bit, reason=reason, quantize=quantize)


def parse_cpu_flags(cpuinfo: str) -> frozenset[str]:
    """The instruction-set flags of a Linux /proc/cpuinfo text (its first "flags" line)."""
    for line in cpuinfo.splitlines():
        key, _, value = line.partition(":")
        if key.strip() == "flags":
            return frozenset(value.split())
    return frozenset()


def read_cpu_flags(path: Path = Path("/proc/cpuinfo")) -> frozenset[str]:
    """This machine's CPU flags; empty where there is no /proc/cpuinfo (macOS, Windows), which means fp32."""
    try:
        return parse_cpu_flags(path.read_text())
    except OSError:
        return frozenset()


def torch_dtype(name: str) -> torch.dtype:
    """The torch dtype a Placement's `dtype` names."""
    import torch

    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]
