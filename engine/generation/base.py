"""What both model backends share, torch-free: the chat rendering, token counting, stop tokens, the adapter check,
the base's checks, the constrained answer's budgets and written call, and the `Generation` record.

`engine.generation.model.Analyst` (transformers in this process) and `engine.generation.remote_model.RemoteAnalyst` (a
vLLM server) both go through these functions, and both are a `ChatBackend` (what is served, named, rendered, counted and
calibrated around the tokenizer), so the two backends read byte-identical prompts and count them the same way.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from engine.exceptions import ModelError
from engine.generation.bin_calibration import IDENTITY, BinCalibration, served_calibration
from engine.generation.grammar import call_text
from engine.probabilities import ALL_BINS, BinDistribution, choose_call
from engine.provenance import base_model_name

log = logging.getLogger(__name__)

Conversation = Sequence[dict[str, str]]
OnText = Callable[[int, str], None]  # (row in the batch, the answer as far as it is written)

# A constrained answer's phase 1 (the lists) leaves room for the longest written call and at least this many
# tokens of analysis (one short sentence). Both backends.
ANALYSIS_MIN_TOKENS = 24
# In process, from this many tokens before phase 1's max_new_tokens, every list line ends as soon as the grammar
# allows (engine.generation.constrained's line budget): the shortest way from any point of the lists to
# "Prediction:" is under 150 characters (headers, one-character items), so under 150 tokens whatever the tokenizer,
# and the lists always reach the call.
STRUCTURE_RESERVE = 160
# The tokens real lists take: Qwen2.5-7B + LoRA's 300 shared test answers, in Qwen's tokenizer, median 196, 90th
# percentile 253, longest 319. Phase 1 with less room than this before STRUCTURE_RESERVE cuts such lists short, down
# to items of a token or two ("1. /**" from the 1.5B base at MODEL_MAX_NEW_TOKENS=160).
LISTS_ROOM_NEEDED = 253
# What MODEL_MAX_NEW_TOKENS needs for that room: the reserve, the lists, a written call (~12) and the analysis minimum.
MIN_CONSTRAINED_NEW_TOKENS = STRUCTURE_RESERVE + LISTS_ROOM_NEEDED + 12 + ANALYSIS_MIN_TOKENS


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


def tell(on_text: OnText, row: int, text: str) -> None:
    """Hand `on_text` a row's answer as far as it is written. Showing progress must never break the answer: a
    failure is logged, and generation goes on."""
    try:
        on_text(row, text)
    except Exception:  # noqa: BLE001 — showing progress must never break the answer
        log.exception("on_text failed for row %d; generation goes on", row)


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


def lists_room(lists_budget: int) -> int:
    """The tokens phase 1's lists may take before the line budget ends every line as soon as it can."""
    return max(lists_budget - STRUCTURE_RESERVE, 0)


_warned_room: set[int] = set()


def warn_if_lists_starved(lists_budget: int, max_new_tokens: int) -> None:
    """Log, once per budget and process, that MODEL_MAX_NEW_TOKENS leaves the constrained lists less room than real
    lists take: the answers still parse, but their items are cut short (to nothing, below the reserve)."""
    room = lists_room(lists_budget)
    if room >= LISTS_ROOM_NEEDED or max_new_tokens in _warned_room:
        return
    _warned_room.add(max_new_tokens)
    # The call and the analysis minimum as this tokenizer counts them (its call may take more than the 12 assumed).
    needed = (max_new_tokens - lists_budget) + STRUCTURE_RESERVE + LISTS_ROOM_NEEDED
    log.warning("max_new_tokens=%d leaves constrained lists %d tokens before their lines are cut short (real lists "
                "take up to %d): items will be clipped, down to a token or two; set MODEL_MAX_NEW_TOKENS to %d or "
                "more (700 is the default)", max_new_tokens, room, LISTS_ROOM_NEEDED, needed)


def analysis_budget(max_new_tokens: int, written_tokens: int) -> int:
    """Phase 2's max_new_tokens: what is left of `max_new_tokens` after the lists and the written call (at least 1)."""
    return max(max_new_tokens - written_tokens, 1)


def written_call(served: BinDistribution) -> str:
    """The call a constrained answer states, as written after "Prediction:": chosen from the served (calibrated)
    distribution by engine.probabilities.choose_call."""
    return call_text(choose_call(served).code)


def resolve_base(base: str) -> str:
    """MODEL_BASE as loaded: a local directory (with ~ expanded) when it exists, else a Hugging Face id; a path that
    does not exist is refused."""
    if Path(base).expanduser().exists():
        return str(Path(base).expanduser())
    if base.startswith((".", "/", "~")):
        raise ModelError(f"MODEL_BASE={base} does not exist; give a local model directory or a Hugging Face id")
    return base


def require_chat_template(tokenizer: Any, base: str) -> None:
    """Prompts always go through the tokenizer's chat template: a base without one is refused."""
    if tokenizer.chat_template is None:
        raise ModelError(f"{base} has no chat template; use an Instruct model (e.g. Qwen/Qwen2.5-1.5B-Instruct)")


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


class ChatBackend:
    """What both backends keep and do the same around the tokenizer: the base and the adapter served on it, their name
    (`version`), the chat rendering and token counting, the stop tokens, and the bin calibration served with the
    adapter. Each backend adds its own loading, adapter switching and generation."""

    def __init__(self, tokenizer: Any, *, base: str) -> None:
        self.tokenizer = tokenizer
        self.base = base
        self.adapter: Path | None = None
        self.name: str | None = None  # MODEL_NAME, for footers; None: named from the base's files
        self._stop_ids = stop_token_ids(tokenizer)
        # How raw bin scores become served probabilities (engine.generation.bin_calibration), read for whatever is
        # served (the adapter's calibration.json, or MODEL_DIR/base's) by `_now_serving`. Identity: the raw
        # distribution.
        self.calibration: BinCalibration = IDENTITY

    @property
    def version(self) -> str:
        """What is answering, for message footers and the ledger; the same form for both backends."""
        return model_version(self.base, self.adapter, name=self.name)

    def render(self, conversation: Conversation) -> str:
        """The exact text the model reads, through the tokenizer's own chat template."""
        return render_chat(self.tokenizer, conversation)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def _encode(self, text: str) -> list[int]:
        return list(self.tokenizer(text, add_special_tokens=False)["input_ids"])

    def _now_serving(self, adapter: Path | None, model_dir: Path | None) -> None:
        """Record `adapter` (None: the bare base) as served, with its calibration: the adapter's own, else the base's
        under `model_dir` (MODEL_DIR)."""
        self.adapter = adapter
        self.calibration = served_calibration(adapter, model_dir, base_model_name(self.base))

    def _served(self, raw: BinDistribution | None) -> BinDistribution | None:
        """The calibrated distribution a raw one is served as (None stays None)."""
        return None if raw is None else self.calibration.apply(raw)
