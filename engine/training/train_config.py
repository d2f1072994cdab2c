"""What a LoRA/QLoRA training run is asked to do. Torch-free, saved next to every adapter.

Defaults follow FinGPT where it was right (r=8, alpha=16, dropout 0.1 on all seven projections, lr 5e-5) and
depart where it was not: the loss covers the answer only, `max_length` is always explicit, and memory is kept
lean by construction (see `engine.training.train`).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field

LORA_TARGETS = ("q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj")


@dataclass(frozen=True)
class TrainConfig:
    base: str
    """Base model: Hugging Face id or local directory (the tokenizer comes from it too)."""
    qlora: bool = False
    """Load the base in 4-bit NF4 with double quantization (bitsandbytes); LoRA trains on top."""
    max_length: int = 4096
    """Longest prompt + answer in tokens. Rows are fitted to it when the dataset is prepared (news dropped,
    never the answer); a row still longer stops training with a message instead of being truncated."""
    epochs: float = 1.0
    learning_rate: float = 5e-5
    rank: int = 8
    alpha: int = 16
    dropout: float = 0.1
    target_modules: tuple[str, ...] = LORA_TARGETS
    gradient_accumulation: int = 8
    """Batch size is always 1 (no padding waste, the smallest activation peak); this many rows per update."""
    max_steps: int = -1
    """Stop after this many optimizer updates (-1: run the epochs). Smoke tests and benchmarks use it."""
    warmup_steps: float = 0.03
    """Below 1: a fraction of the updates; from 1: a number of updates."""
    gradient_checkpointing: bool = True
    seed: int = 0
    dtype: str = "auto"
    """auto: as serving decides (engine.generation.placement): bfloat16 on CPUs with native bf16 (AMX, AVX512-BF16)
    and on Ampere+ GPUs, float32 on other CPUs, float16 (with loss scaling) on older GPUs."""
    device: str = "auto"
    extra: dict = field(default_factory=dict)
    """Anything else recorded with the run (who asked, why)."""

    def __post_init__(self) -> None:
        problems = []
        if self.max_length < 256:
            problems.append(f"max_length {self.max_length} is too small for a FinGPT prompt and answer")
        if self.rank < 1 or self.alpha < 1:
            problems.append("rank and alpha must be positive")
        if not 0 <= self.dropout < 1:
            problems.append("dropout must be in [0, 1)")
        if self.learning_rate <= 0 or self.epochs <= 0 or self.gradient_accumulation < 1:
            problems.append("learning rate, epochs and gradient accumulation must be positive")
        if problems:
            raise ValueError("; ".join(problems))

    def to_dict(self) -> dict:
        data = asdict(self)
        data["target_modules"] = list(self.target_modules)
        return data
