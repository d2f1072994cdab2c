"""The analyst model: a Qwen2.5-Instruct base, an optional LoRA adapter, batched chat generation.

One of the three modules allowed to import torch/transformers/peft (with training and evaluation). Loading
takes a base model id or local path plus an optional adapter directory; prompts always go through the
tokenizer's own chat template. An adapter can be swapped while the process runs (`use_adapter`), so a worker
picks up a newly promoted adapter without a restart.

Adapters are attached through PEFT's multi-adapter API and stay unmerged: the new one is loaded beside the old,
made active, then the old one is deleted. The base weights are never written, so they stay bit-identical after any
number of switches in every dtype. (Merging and unmerging is arithmetic in the weights' own precision: in bf16 one
unmerge→merge round trip changed about half of a matrix's elements.) Merging stays an opt-in for speed
(`merge_adapter=True`), and then the base weights it overwrites are restored from a pristine copy, not by
subtraction.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessor,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
)

from engine.bin_scoring import distribution, pack, plan_from_tokens, visible
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
from engine.grammar import ANSWER_REGEX
from engine.probabilities import BinDistribution

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
        merge_adapter: bool = False,
        constrained: bool = True,
    ) -> None:
        """`constrained`: generate under the FinGPT answer grammar (engine.grammar), compiled here once.
        `merge_adapter`: fold the served adapter into the weights for speed, keeping a host-memory copy of the
        weights it overwrites (restored exactly at the next switch); never into a 4-bit base."""
        self.model = model
        self.tokenizer = tokenizer
        self.base = base
        self.placement = placement
        self._merge = merge_adapter and not placement.load_in_4bit  # merging into 4-bit weights is lossy
        self.adapter: Path | None = None
        self.name: str | None = None  # MODEL_NAME, for footers; None: named from the base's files
        self._merged = False
        self._pristine: dict[str, tuple[torch.Tensor, torch.Tensor | None]] = {}  # merge only: name → weight, bias
        self._loads = 0  # adapters loaded so far, for unique PEFT adapter names
        self._stop_ids = stop_token_ids(tokenizer)
        self.grammar = (AnswerGrammar.compile(tokenizer, model.config.vocab_size, self._stop_ids) if constrained
                        else None)

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
        merge_adapter: bool = False,
        constrained: bool = True,
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
        analyst = cls(model, tokenizer, base=base, placement=placement, merge_adapter=merge_adapter,
                      constrained=constrained)
        if adapter is not None:
            analyst.use_adapter(adapter)
        log.info("loaded %s on %s (%s%s)", base, placement.device, placement.dtype,
                 ", 4-bit" if load_in_4bit else "")
        return analyst

    @property
    def version(self) -> str:
        """What is answering, for message footers and the ledger."""
        return model_version(self.base, self.adapter, name=self.name)

    # -- adapters ----------------------------------------------------------------------------------------------

    @property
    def merged(self) -> bool:
        """Whether the served adapter is folded into the weights (the MODEL_MERGE_ADAPTER opt-in)."""
        return self._merged

    def use_adapter(self, path: Path | None) -> None:
        """Serve `path` (a PEFT LoRA directory) from now on, or the bare base with None. No restart needed.

        The new adapter is loaded beside the served one and made active before the old one is deleted, so a
        failed load (an adapter for another base) leaves the served adapter serving. Base weights are never
        changed: bit for bit the same after any number of switches."""
        from peft import PeftModel

        if path is not None:
            path = Path(path)
            read_lora_config(path)
        self._unmerge()
        if path is None:
            if isinstance(self.model, PeftModel):
                self.model = self.model.unload()  # drops every LoRA layer: the bare base, its weights untouched
            self.adapter = None
            return
        self._loads += 1
        name = f"v{self._loads}_{re.sub(r'[^0-9A-Za-z_]', '_', path.name)}"  # a module key: no dots
        old = list(self.model.peft_config) if isinstance(self.model, PeftModel) else []
        try:
            if isinstance(self.model, PeftModel):
                self.model.load_adapter(str(path), adapter_name=name, is_trainable=False)
            else:
                self.model = PeftModel.from_pretrained(self.model, str(path), adapter_name=name, is_trainable=False)
        except (RuntimeError, ValueError, KeyError) as exc:
            self._drop_failed(name)
            if self._merge and self.adapter is not None:
                self._merge_served()
            raise ModelError(f"adapter {path} does not fit base {self.base}: {str(exc)[:300]}") from None
        self.model.set_adapter(name)
        for stale in old:
            self.model.delete_adapter(stale)  # its LoRA weights are freed: memory stays one adapter's worth
        self.model.eval()
        self.adapter = path
        if self._merge:
            self._merge_served()

    def _drop_failed(self, name: str) -> None:
        """Remove what a failed load injected, leaving the model as it was before."""
        from peft import PeftModel
        from peft.tuners.tuners_utils import BaseTunerLayer

        if isinstance(self.model, PeftModel):
            if name in self.model.peft_config:
                self.model.delete_adapter(name)
            self.model.set_adapter(self.model.active_adapter)  # the served adapter stays active
            return
        # PeftModel.from_pretrained injects its layers into the bare model before loading the weights.
        for key in [k for k, m in self.model.named_modules() if isinstance(m, BaseTunerLayer)]:
            layer = self.model.get_submodule(key)
            if isinstance(layer, BaseTunerLayer):  # not already replaced through an outer tuner layer
                parent, _, child = key.rpartition(".")
                setattr(self.model.get_submodule(parent), child, layer.get_base_layer())
        if hasattr(self.model, "peft_config"):
            del self.model.peft_config

    def _lora_layers(self) -> dict[str, Any]:
        from peft.tuners.tuners_utils import BaseTunerLayer

        return {key: module for key, module in self.model.get_base_model().named_modules()
                if isinstance(module, BaseTunerLayer)}

    def _merge_served(self) -> None:
        """Fold the active adapter into the weights, first copying (once) every base weight it will overwrite."""
        for key, layer in self._lora_layers().items():
            if key not in self._pristine:
                base = layer.get_base_layer()
                bias = base.bias.detach().to("cpu", copy=True) if base.bias is not None else None
                self._pristine[key] = (base.weight.detach().to("cpu", copy=True), bias)
        self.model.merge_adapter()
        self._merged = True

    def _unmerge(self) -> None:
        """Undo a merge exactly: PEFT's unmerge clears its state, then the pristine copies overwrite the rounding
        its subtraction left behind."""
        if not self._merged:
            return
        self.model.unmerge_adapter()
        with torch.no_grad():
            for key, layer in self._lora_layers().items():
                weight, bias = self._pristine[key]
                base = layer.get_base_layer()
                base.weight.copy_(weight)
                if bias is not None:
                    base.bias.copy_(bias)
        self._merged = False

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
        All conversations run as one left-padded batch: chunk them upstream to bound memory. Constrained, every
        answer is in FinGPT's format; each answer with a "Prediction:" line carries its bin distribution."""
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
            return_dict_in_generate=True,  # for the KV cache, which scores the bins
            **({"temperature": temperature, "top_p": top_p} if sample else {}),
        )
        prompt_width = batch["input_ids"].shape[1]
        processors = LogitsProcessorList()
        if self.grammar is not None:
            processors.extend(self.grammar.processors(len(texts), prompt_width=prompt_width,
                                                      max_new_tokens=max_new_tokens))
        if sample and seed is not None:
            torch.manual_seed(seed)
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=config, logits_processor=processors)
        seconds = time.perf_counter() - started
        stops = set(self._stop_ids) | {self.tokenizer.pad_token_id}
        answers = [_until_stop(tokens, stops) for tokens in output.sequences[:, prompt_width:].tolist()]
        started = time.perf_counter()
        bins = self._score_bins(batch, output.sequences, output.cache, answers)
        bin_seconds = time.perf_counter() - started
        return [
            Generation(
                text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
                prompt_tokens=int(batch["attention_mask"][row].sum()),
                new_tokens=len(new),
                seconds=seconds,
                batch_size=len(conversations),
                bin_distribution=bins[row],
                bin_seconds=bin_seconds if bins[row] is not None else None,
            )
            for row, new in enumerate(answers)
        ]

    def _score_bins(self, batch: Any, sequences: torch.Tensor, cache: Any,
                    answers: list[list[int]]) -> list[BinDistribution | None]:
        """Each answer's distribution over the 12 bins at its "Prediction:" (engine.bin_scoring), in one forward
        pass over the generation's own KV cache: per row, the 12 continuations are packed into one query
        sequence under a tree-shaped mask, and the row's cache past its "Prediction:" is masked out."""
        plans = [plan_from_tokens(self.tokenizer, tokens) for tokens in answers]
        if cache is None or all(plan is None for plan in plans):
            return [None] * len(plans)
        prompt_width, cached = batch["input_ids"].shape[1], cache.get_seq_length()
        packs = [None if plan is None else pack(int(sequences[row, prompt_width + plan.prefix_tokens - 1]), plan)
                 for row, plan in enumerate(plans)]
        width = max(len(p.tokens) for p in packs if p is not None)
        rows = len(plans)
        ids = torch.full((rows, width), self.tokenizer.pad_token_id, dtype=torch.long)
        positions = torch.zeros((rows, width), dtype=torch.long)
        allowed = torch.zeros((rows, 1, width, cached + width), dtype=torch.bool)
        diagonal = torch.arange(width)
        allowed[:, 0, diagonal, cached + diagonal] = True  # padding queries see only themselves (no NaN rows)
        prompt_mask = batch["attention_mask"].bool().cpu()
        for row, (plan, packed) in enumerate(zip(plans, packs, strict=True)):
            if plan is None or packed is None:
                continue
            last = prompt_width + plan.prefix_tokens - 1  # the prefix's last token, fed again as query 0
            count = len(packed.tokens)
            ids[row, :count] = torch.tensor(packed.tokens)
            real = int(prompt_mask[row].sum()) + plan.prefix_tokens  # positions count real tokens only
            positions[row, :count] = real - 1 + torch.tensor(packed.depth)
            allowed[row, 0, :count, :prompt_width] = prompt_mask[row]
            allowed[row, 0, :count, prompt_width:last] = True
            for query, seen in enumerate(visible(packed)):
                allowed[row, 0, query, cached + torch.tensor(seen)] = True
        device, dtype = sequences.device, self.model.dtype
        mask = torch.zeros(allowed.shape, dtype=dtype).masked_fill(~allowed, torch.finfo(dtype).min)
        with torch.inference_mode():
            logits = self.model(input_ids=ids.to(device), attention_mask=mask.to(device),
                                position_ids=positions.to(device), cache=cache, use_cache=True).logits
            logprobs = torch.log_softmax(logits.float(), dim=-1).cpu()
        results: list[BinDistribution | None] = []
        for row, packed in enumerate(packs):
            if packed is None:
                results.append(None)
                continue
            scores = {code: sum(float(logprobs[row, query, token]) for query, token in pairs)
                      for code, pairs in packed.targets.items()}
            results.append(distribution(scores))
        return results


# -- constrained generation ----------------------------------------------------------------------------------------

# A list item or header line longer than this many tokens is ended at the next token the grammar allows with a
# newline. The longest item in the 300 shared 7B answers is 418 characters (about 90 Qwen tokens).
LINE_TOKENS = 128
# From this many tokens before max_new_tokens, lines end as soon as the grammar allows: the shortest way from any
# point of the lists to "Analysis: " is under 150 characters (headers, one-character items, the longest bin), so
# under 150 tokens whatever the tokenizer, and the prediction is always written.
STRUCTURE_RESERVE = 160
# In the last tokens of the budget the analysis closes its sentence, then the answer stops.
ANALYSIS_CLOSE = 4


@dataclass
class AnswerGrammar:
    """The answer regex compiled by xgrammar for one tokenizer (once per Analyst), and the token classes the
    line budget needs."""

    compiled: Any  # xgrammar.CompiledGrammar
    token_bytes: list[bytes]
    newline: torch.Tensor  # bool per token: its text holds a newline
    sentence_end: torch.Tensor  # bool per token: its text ends with . ! or ? (spaces aside)
    stop: torch.Tensor  # bool per token: a stop token
    compile_seconds: float

    @classmethod
    def compile(cls, tokenizer: PreTrainedTokenizerBase, vocab_size: int, stop_ids: list[int]) -> AnswerGrammar:
        try:
            import xgrammar
        except ImportError:
            raise ModelError("constrained generation needs xgrammar (pip install xgrammar==0.2.8); or set "
                             "MODEL_CONSTRAINED=false") from None
        started = time.perf_counter()
        # vocab_size: the model's logits width, which pads past the tokenizer's vocabulary (Qwen2.5: 151936).
        info = xgrammar.TokenizerInfo.from_huggingface(tokenizer, vocab_size=vocab_size, stop_token_ids=stop_ids)
        compiled = xgrammar.GrammarCompiler(info).compile_regex(ANSWER_REGEX)
        seconds = time.perf_counter() - started
        log.info("compiled the answer grammar for %d tokens in %.2fs", vocab_size, seconds)
        vocab = list(info.decoded_vocab) + [b""] * (vocab_size - len(info.decoded_vocab))
        stop = torch.zeros(vocab_size, dtype=torch.bool)
        stop[stop_ids] = True
        return cls(
            compiled=compiled,
            token_bytes=vocab,
            newline=torch.tensor([b"\n" in piece for piece in vocab]),
            sentence_end=torch.tensor([piece.rstrip(b" ").endswith((b".", b"!", b"?")) for piece in vocab]),
            stop=stop,
            compile_seconds=seconds,
        )

    def processors(self, rows: int, *, prompt_width: int, max_new_tokens: int) -> list[LogitsProcessor]:
        """Fresh for each generate call (they hold each row's state): the grammar mask, then the line budget."""
        from xgrammar.contrib.hf import LogitsProcessor as GrammarMask

        return [GrammarMask(self.compiled),
                _LineBudget(self, rows, prompt_width=prompt_width, max_new_tokens=max_new_tokens)]


class _LineBudget(LogitsProcessor):
    """Keeps a constrained answer whole within max_new_tokens, which the regex cannot do alone (its lines have no
    length bound: bounded repeats are what makes such a regex slow to compile). Runs after the grammar mask and
    only narrows it: a structure line past LINE_TOKENS, or any structure line once STRUCTURE_RESERVE tokens are
    left, takes the model's best allowed token that ends the line; in the last ANALYSIS_CLOSE tokens the analysis
    takes a sentence end, then a stop token. Where the grammar allows none of those, nothing changes."""

    def __init__(self, grammar: AnswerGrammar, rows: int, *, prompt_width: int, max_new_tokens: int) -> None:
        self.grammar = grammar
        self.prompt_width = prompt_width
        self.max_new_tokens = max_new_tokens
        self.line = [0] * rows  # tokens since the last newline
        self.tail = [b""] * rows  # the answer's last bytes, to see "Analysis:" begin
        self.in_analysis = [False] * rows

    def __call__(self, input_ids: torch.LongTensor, scores: torch.FloatTensor) -> torch.FloatTensor:
        made = input_ids.shape[1] - self.prompt_width
        left = self.max_new_tokens - made
        for row in range(scores.shape[0]):
            if made:
                piece = self.grammar.token_bytes[int(input_ids[row, -1])]
                self.line[row] = 0 if b"\n" in piece else self.line[row] + 1
                self.tail[row] = (self.tail[row] + piece)[-16:]
                self.in_analysis[row] = self.in_analysis[row] or b"\nAnalysis:" in self.tail[row]
            if self.in_analysis[row]:
                if left <= ANALYSIS_CLOSE and not _prefer(scores, row, self.grammar.stop):
                    _prefer(scores, row, self.grammar.sentence_end)
            elif self.line[row] >= LINE_TOKENS or left <= STRUCTURE_RESERVE:
                _prefer(scores, row, self.grammar.newline)
        return scores


def _prefer(scores: torch.Tensor, row: int, wanted: torch.Tensor) -> bool:
    """Keep only the allowed tokens of `wanted` in this row, when there are any; True when it narrowed."""
    keep = torch.isfinite(scores[row]) & wanted.to(scores.device)
    if not bool(keep.any()):
        return False
    scores[row] = scores[row].masked_fill(~keep, float("-inf"))
    return True


def _until_stop(tokens: list[int], stops: set[int]) -> list[int]:
    for i, token in enumerate(tokens):
        if token in stops:
            return tokens[:i]
    return tokens
