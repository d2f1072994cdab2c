"""The analyst model: a Qwen2.5-Instruct base, an optional LoRA adapter, batched chat generation.

One of the three modules allowed to import torch/transformers/peft (with training and evaluation). Loading
takes a base model id or local path plus an optional adapter directory; prompts always go through the
tokenizer's own chat template. An adapter can be swapped while the process runs (`use_adapter`), so a worker
picks up a newly promoted adapter without a restart.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import AutoModelForCausalLM, AutoTokenizer, GenerationConfig, PreTrainedTokenizerBase

from engine.exceptions import ModelError
from engine.generation import (
    Conversation,
    Generation,
    count_tokens,
    model_version,
    read_lora_config,
    render_chat,
    stop_token_ids,
)

__all__ = ["Analyst", "Conversation", "Generation", "ModelError", "Placement", "choose_placement"]

log = logging.getLogger(__name__)


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


def _torch_dtype(name: str) -> torch.dtype:
    return {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}[name]


class Analyst:
    """A loaded model + tokenizer that turns chat conversations into answers."""

    def __init__(
        self,
        model: Any,
        tokenizer: PreTrainedTokenizerBase,
        *,
        base: str,
        placement: Placement,
        merge_adapter: bool = True,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self.base = base
        self.placement = placement
        self._merge = merge_adapter and not placement.load_in_4bit  # merging into 4-bit weights is lossy
        self.adapter: Path | None = None
        self._merged = False
        self._stop_ids = stop_token_ids(tokenizer)

    # -- loading -----------------------------------------------------------------------------------------------

    @classmethod
    def load(
        cls,
        base: str,
        *,
        adapter: Path | None = None,
        device: str = "auto",
        dtype: str = "auto",
        load_in_4bit: bool = False,
        merge_adapter: bool = True,
    ) -> Analyst:
        cuda = torch.cuda.is_available()
        placement = choose_placement(
            device=device, dtype=dtype, load_in_4bit=load_in_4bit, cuda_available=cuda,
            cuda_capability=torch.cuda.get_device_capability() if cuda else None,
        )
        if Path(base).expanduser().exists():
            base = str(Path(base).expanduser())
        elif base.startswith((".", "/", "~")):
            raise ModelError(f"MODEL_BASE={base} does not exist; give a local model directory or a Hugging Face id")
        kwargs: dict[str, Any] = {"dtype": _torch_dtype(placement.dtype), "attn_implementation": "sdpa"}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=_torch_dtype(placement.dtype),
            )
            kwargs["device_map"] = placement.device
        try:
            tokenizer = AutoTokenizer.from_pretrained(base)
            model = AutoModelForCausalLM.from_pretrained(base, **kwargs)
        except OSError as exc:
            raise ModelError(f"cannot load the base model {base}: {exc}") from None
        if not load_in_4bit:
            model.to(placement.device)
        model.eval()
        # Instruct checkpoints ship a sampling generation config (Qwen2.5: temperature 0.7, top_p 0.8, top_k 20)
        # that transformers merges into every call. Neutralise it: greedy unless a call asks to sample.
        defaults = model.generation_config
        defaults.do_sample, defaults.temperature, defaults.top_p, defaults.top_k = False, None, None, None
        if tokenizer.chat_template is None:
            raise ModelError(f"{base} has no chat template; use an Instruct model (e.g. Qwen/Qwen2.5-1.5B-Instruct)")
        # Decoder-only batching: pad on the left so every prompt ends where generation starts.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        analyst = cls(model, tokenizer, base=base, placement=placement, merge_adapter=merge_adapter)
        if adapter is not None:
            analyst.use_adapter(adapter)
        log.info("loaded %s on %s (%s%s)", base, placement.device, placement.dtype,
                 ", 4-bit" if load_in_4bit else "")
        return analyst

    @property
    def version(self) -> str:
        """What is answering, for message footers and the ledger."""
        return model_version(self.base, self.adapter)

    # -- adapters ----------------------------------------------------------------------------------------------

    def use_adapter(self, path: Path | None) -> None:
        """Serve `path` (a PEFT LoRA directory) from now on, or the bare base with None. No restart needed."""
        from peft import PeftModel

        if path is not None:
            path = Path(path)
            read_lora_config(path)
        if isinstance(self.model, PeftModel):
            if self._merged:
                self.model.unmerge_adapter()
                self._merged = False
            self.model = self.model.unload()  # drop the LoRA layers, back to the bare base weights
        self.adapter = None
        if path is None:
            return
        try:
            self.model = PeftModel.from_pretrained(self.model, str(path), is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            raise ModelError(f"adapter {path} does not fit base {self.base}: {str(exc)[:300]}") from None
        self.model.eval()
        if self._merge:
            # Merged in place but still unmergeable, so a later switch restores the exact base weights.
            self.model.merge_adapter()
            self._merged = True
        self.adapter = path

    # -- generation --------------------------------------------------------------------------------------------

    def render(self, conversation: Conversation) -> str:
        """The exact text the model reads, through the tokenizer's own chat template."""
        return render_chat(self.tokenizer, conversation)

    def count_tokens(self, text: str) -> int:
        return count_tokens(self.tokenizer, text)

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 700,
        sample: bool = False,
        seed: int | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
    ) -> list[Generation]:
        """One answer per conversation, in order. Greedy by default; `sample=True` with a `seed` is repeatable.
        All conversations run as one left-padded batch: chunk them upstream to bound memory."""
        if not conversations:
            return []
        texts = [self.render(c) for c in conversations]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self.placement.device if not self.placement.load_in_4bit else self.model.device)
        config = GenerationConfig(
            max_new_tokens=max_new_tokens,
            do_sample=sample,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._stop_ids,
            **({"temperature": temperature, "top_p": top_p} if sample else {}),
        )
        if sample and seed is not None:
            torch.manual_seed(seed)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=config)
        seconds = time.perf_counter() - started
        prompt_width = batch["input_ids"].shape[1]
        results = []
        for row, tokens in enumerate(output[:, prompt_width:].tolist()):
            new = _until_stop(tokens, set(self._stop_ids) | {self.tokenizer.pad_token_id})
            results.append(Generation(
                text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
                prompt_tokens=int(batch["attention_mask"][row].sum()),
                new_tokens=len(new),
                seconds=seconds,
                batch_size=len(conversations),
            ))
        return results


def _until_stop(tokens: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stops:
            return tokens[:i]
    return tokens
