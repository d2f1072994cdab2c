"""What both model backends share, torch-free: the chat rendering, token counting, stop tokens, the adapter check
and the `Generation` record.

`engine.generation.model.Analyst` (transformers in this process) and `engine.generation.remote_model.RemoteAnalyst` (a
vLLM server) both go through these functions, so the two backends read byte-identical prompts and count them the same
way.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.exceptions import ModelError
from engine.generation.grammar import call_text
from engine.probabilities import ALL_BINS, BinDistribution
from engine.provenance import base_model_name

Conversation = Sequence[dict[str, str]]

# A constrained answer's phase 1 (the lists) leaves room for the longest written call and at least this many
# tokens of analysis (one short sentence). Both backends.
ANALYSIS_MIN_TOKENS = 24


@dataclass(frozen=True)
class Generation:
    """One answer and what it cost."""

    text: str
    prompt_tokens: int
    new_tokens: int
    seconds: float  # wall time of the generate call that produced it (shared by a batch)
    batch_size: int = 1
    # The model's distribution over the 12 bins at the `Prediction:` position, as served: calibrated
    # (engine.generation.bin_calibration), the distribution the stated call was chosen from. None: the backend computed
    # none.
    bin_distribution: BinDistribution | None = None
    # Wall time of scoring the bins for the batch (shared like `seconds`); None when no distribution was computed.
    bin_seconds: float | None = None
    # The same distribution before calibration (equal to `bin_distribution` when none is set): what the
    # evaluator fits temperatures on and compares against.
    raw_bin_distribution: BinDistribution | None = None


def render_chat(tokenizer: Any, conversation: Conversation) -> str:
    """The exact text the model reads, through the tokenizer's own chat template, ready for the answer."""
    return tokenizer.apply_chat_template(list(conversation), tokenize=False, add_generation_prompt=True)


def count_tokens(tokenizer: Any, text: str) -> int:
    """Tokens of already rendered text: the template put the special tokens in, so none are added here."""
    return len(tokenizer(text, add_special_tokens=False)["input_ids"])


def stop_token_ids(tokenizer: Any) -> list[int]:
    """Qwen chat models end a turn with <|im_end|>; base checkpoints with <|endoftext|>. Stop on either."""
    ids = {tokenizer.eos_token_id}
    for token in ("<|im_end|>", "<|endoftext|>"):
        token_id = tokenizer.convert_tokens_to_ids(token)
        if isinstance(token_id, int) and token_id != tokenizer.unk_token_id:
            ids.add(token_id)
    return sorted(i for i in ids if i is not None)


def lists_budget(tokenizer: Any, max_new_tokens: int) -> int:
    """Phase 1's max_new_tokens: what is left after the longest written call and ANALYSIS_MIN_TOKENS."""
    longest_call = max(count_tokens(tokenizer, call_text(b.code)) for b in ALL_BINS)
    return max(max_new_tokens - longest_call - ANALYSIS_MIN_TOKENS, 1)


def read_lora_config(path: Path) -> dict:
    """The adapter's `adapter_config.json`, after checking that `path` is a PEFT LoRA directory."""
    config = Path(path) / "adapter_config.json"
    if not config.is_file():
        raise ModelError(f"{path} is not a PEFT adapter (no adapter_config.json)")
    values = json.loads(config.read_text())
    if values.get("peft_type") != "LORA":
        raise ModelError(f"{path} holds a {values.get('peft_type')} adapter; only LoRA adapters are served")
    return values


def model_version(base: str, adapter: Path | None, *, name: str | None = None) -> str:
    """What is answering, for message footers and the ledger: the base's name (`name`, i.e. MODEL_NAME, else
    `engine.provenance.base_model_name`: a hub id, or "qwen2 1.5B" for a folder such as /weights) and the
    adapter's folder name (its registry version)."""
    base_name = base_model_name(base, name)
    return f"{base_name} + {Path(adapter).name}" if adapter else f"{base_name} (no adapter)"
