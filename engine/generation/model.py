"""The analyst model: a Qwen2.5-Instruct base, an optional LoRA adapter, batched chat generation.

One of the few modules allowed to import torch/transformers/peft (with engine.generation.constrained,
engine.generation.adapters and training). Loading takes a base model id or local path plus an optional adapter
directory, on the device and in the precision engine.generation.placement picks; prompts always go through the
tokenizer's own chat template. An adapter can be swapped while the process runs (`use_adapter`), so a worker picks up a
newly promoted adapter without a restart; the base weights stay bit-identical however often it switches
(engine.generation.adapters says how).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch
from transformers import (
    AutoModelForCausalLM,
    AutoTokenizer,
    GenerationConfig,
    LogitsProcessorList,
    PreTrainedTokenizerBase,
)
from transformers.generation.streamers import BaseStreamer

from engine.exceptions import ModelError
from engine.generation.adapters import Originals, merge_keeping_originals, remove_failed_load, unmerge_exactly
from engine.generation.base import (
    ChatBackend,
    Conversation,
    Generation,
    OnText,
    analysis_budget,
    lists_budget,
    read_lora_config,
    require_chat_template,
    resolve_base,
    tell,
    warn_if_lists_starved,
    written_call,
)
from engine.generation.bin_scoring import distribution, pack, plan_from_tokens, visible
from engine.generation.constrained import AnswerGrammar
from engine.generation.placement import Placement, choose_placement, read_cpu_flags, torch_dtype
from engine.probabilities import BinDistribution

__all__ = ["Analyst", "Conversation", "Generation", "ModelError"]

log = logging.getLogger(__name__)

STREAM_EVERY_S = 1.0  # how often a batch's partial answers are decoded and handed to `on_text`


class _AnswerStreamer(BaseStreamer):
    """Hands each row's answer so far to `on_text` while `generate` runs: at most every STREAM_EVERY_S, and once
    more at the end. transformers' streamer receives the prompt first, then each step's tokens for the whole
    batch; rows that stopped keep receiving padding, which `until_stop` cuts. `before[row]` is what the row had
    written before this call (phase 2 continues phase 1's text); None: the row generates along but is not shown."""

    def __init__(self, on_text: OnText, decode: Callable[[list[int]], str], before: list[str | None]) -> None:
        self.on_text, self.decode, self.before = on_text, decode, before
        self.tokens: list[list[int]] = [[] for _ in before]
        self.prompt_seen = False
        self.last = time.monotonic()

    def put(self, value: torch.Tensor) -> None:
        if not self.prompt_seen:  # the first call carries the prompt (or phase 2's input ids)
            self.prompt_seen = True
            return
        for row, token in enumerate(value.reshape(-1).tolist()):
            self.tokens[row].append(token)
        if time.monotonic() - self.last >= STREAM_EVERY_S:
            self._report()

    def end(self) -> None:
        self._report()

    def _report(self) -> None:
        self.last = time.monotonic()
        for row, tokens in enumerate(self.tokens):
            shown = self.before[row]
            if shown is not None:
                tell(self.on_text, row, shown + self.decode(tokens))


def _int8_weight_only() -> Any:
    """transformers' config for torchao's weight-only int8 (per-row scales). Imported only when asked for:
    torchao takes seconds to import and is an optional extra."""
    from transformers import TorchAoConfig

    try:
        from torchao.quantization import Int8WeightOnlyConfig
    except ImportError:
        raise ModelError("MODEL_QUANTIZE=int8 needs torchao (in the model extra): pip install torchao") from None
    return TorchAoConfig(quant_type=Int8WeightOnlyConfig())


class Analyst(ChatBackend):
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
        """`constrained`: generate under the FinGPT answer grammar (engine.generation.grammar), compiled here once.
        `merge_adapter`: fold the served adapter into the weights for speed, keeping a host-memory copy of the
        weights it overwrites (restored exactly at the next switch); never into a 4-bit base."""
        super().__init__(tokenizer, base=base)
        self.model = model
        self.placement = placement
        # Merging into quantized weights is lossy, and the base could not be restored bit for bit.
        self._merge = merge_adapter and not placement.load_in_4bit and placement.quantize == "none"
        self._merged = False
        self._originals: Originals = {}  # merge only: what the merge overwrote
        self._loads = 0  # adapters loaded so far, for unique PEFT adapter names
        self.calibration_dir: Path | None = None  # MODEL_DIR: where the bare base's calibration is kept
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
        quantize: str = "none",
        merge_adapter: bool = False,
        constrained: bool = True,
        calibration_dir: Path | None = None,
        threads: int = 0,
    ) -> Analyst:
        """`calibration_dir`: MODEL_DIR, where the bare base's bin calibration is kept
        (engine.generation.bin_calibration); an adapter's is read from its own folder. `quantize="int8"`: the linear
        layers' weights in int8 (torchao's weight-only int8, which PEFT's LoRA layers wrap), computed in the placement's
        dtype; adapters stay unmerged. `threads` (MODEL_THREADS): torch's CPU threads for this process; 0 leaves torch's
        default."""
        if threads > 0:
            torch.set_num_threads(threads)
        cuda = torch.cuda.is_available()
        placement = choose_placement(
            device=device, dtype=dtype, load_in_4bit=load_in_4bit, cuda_available=cuda,
            cuda_capability=torch.cuda.get_device_capability() if cuda else None, cpu_flags=read_cpu_flags(),
            quantize=quantize,
        )
        base = resolve_base(base)
        kwargs: dict[str, Any] = {"dtype": torch_dtype(placement.dtype), "attn_implementation": "sdpa"}
        if load_in_4bit:
            from transformers import BitsAndBytesConfig

            kwargs["quantization_config"] = BitsAndBytesConfig(
                load_in_4bit=True,
                bnb_4bit_quant_type="nf4",
                bnb_4bit_use_double_quant=True,
                bnb_4bit_compute_dtype=torch_dtype(placement.dtype),
            )
            kwargs["device_map"] = placement.device
        if placement.quantize == "int8":
            kwargs["quantization_config"] = _int8_weight_only()
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
        require_chat_template(tokenizer, base)
        # Decoder-only batching: pad on the left so every prompt ends where generation starts.
        tokenizer.padding_side = "left"
        if tokenizer.pad_token is None:
            tokenizer.pad_token = tokenizer.eos_token
        analyst = cls(model, tokenizer, base=base, placement=placement, merge_adapter=merge_adapter,
                      constrained=constrained)
        analyst.calibration_dir = calibration_dir
        analyst.use_adapter(adapter)
        quantized = ", 4-bit NF4 weights" if load_in_4bit else ", int8 weights" if placement.quantize == "int8" else ""
        log.info("loaded %s on %s in %s (%s)%s, %d torch threads", base, placement.device, placement.dtype,
                 placement.reason, quantized, torch.get_num_threads())
        return analyst

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
            self._now_serving(None, self.calibration_dir)
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
            remove_failed_load(self.model, name)
            if self._merge and self.adapter is not None:
                self._merge_served()
            raise ModelError(f"adapter {path} does not fit base {self.base}: {str(exc)[:300]}") from None
        self.model.set_adapter(name)
        for stale in old:
            self.model.delete_adapter(stale)  # its LoRA weights are freed: memory stays one adapter's worth
        self.model.eval()
        self._now_serving(path, self.calibration_dir)
        if self._merge:
            self._merge_served()

    def _merge_served(self) -> None:
        merge_keeping_originals(self.model, self._originals)
        self._merged = True

    def _unmerge(self) -> None:
        if self._merged:
            unmerge_exactly(self.model, self._originals)
            self._merged = False

    # -- generation --------------------------------------------------------------------------------------------

    def generate(
        self,
        conversations: Sequence[Conversation],
        *,
        max_new_tokens: int = 700,
        sample: bool = False,
        seed: int | None = None,
        temperature: float = 0.7,
        top_p: float = 0.9,
        on_text: OnText | None = None,
    ) -> list[Generation]:
        """One answer per conversation, in order. Greedy by default; `sample=True` with a `seed` is repeatable.
        All conversations run as one left-padded batch: chunk them upstream to bound memory. `on_text(row, text)`
        is told each answer as far as it is written, about every STREAM_EVERY_S (engine.generation.streaming reads it).

        Constrained (the default), an answer is made in two phases that share one KV cache: the lists up to
        "Prediction:" under the grammar; the 12 bins scored there and calibrated (`self.calibration`); the call
        chosen from those probabilities (engine.probabilities.choose_call) and written in the tokenizer's own
        encoding; then the analysis, generated after the call so it argues for what the user reads. Every answer
        is in FinGPT's format and carries its distribution. Unconstrained, the answer is free text and its stated
        call is whatever the model wrote (the bins are still scored where it wrote "Prediction:")."""
        if not conversations:
            return []
        texts = [self.render(c) for c in conversations]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        batch = batch.to(self._input_device)
        if sample and seed is not None:
            torch.manual_seed(seed)
        sampling = {"do_sample": sample, **({"temperature": temperature, "top_p": top_p} if sample else {})}
        if self.grammar is None:
            return self._generate_free(batch, max_new_tokens, sampling, on_text)
        return self._generate_in_two_phases(batch, max_new_tokens, sampling, on_text)

    def _streamer(self, on_text: OnText | None, before: list[str | None]) -> _AnswerStreamer | None:
        if on_text is None:
            return None
        return _AnswerStreamer(on_text, lambda tokens: self.tokenizer.decode(self._until_stop(tokens),
                                                                             skip_special_tokens=True), before)

    @property
    def _input_device(self) -> Any:
        return self.placement.device if not self.placement.load_in_4bit else self.model.device

    def _config(self, max_new_tokens: int, sampling: dict) -> GenerationConfig:
        return GenerationConfig(
            max_new_tokens=max_new_tokens,
            pad_token_id=self.tokenizer.pad_token_id,
            eos_token_id=self._stop_ids,
            return_dict_in_generate=True,  # for the KV cache, which scores the bins and carries phase 2
            **sampling,
        )

    def _generate_free(self, batch: Any, max_new_tokens: int, sampling: dict,
                       on_text: OnText | None) -> list[Generation]:
        prompt_width = batch["input_ids"].shape[1]
        started = time.perf_counter()
        with torch.inference_mode():
            output = self.model.generate(**batch, generation_config=self._config(max_new_tokens, sampling),
                                         streamer=self._streamer(on_text, [""] * len(batch["input_ids"])))
        seconds = time.perf_counter() - started
        answers = [self._until_stop(tokens) for tokens in output.sequences[:, prompt_width:].tolist()]
        started = time.perf_counter()
        raw = self._score_bins(batch, output.sequences, output.cache, answers)
        bin_seconds = time.perf_counter() - started
        return [self._generation(batch, row, new, seconds, raw[row], bin_seconds) for row, new in enumerate(answers)]

    def _generate_in_two_phases(self, batch: Any, max_new_tokens: int, sampling: dict,
                                on_text: OnText | None) -> list[Generation]:
        assert self.grammar is not None
        rows, prompt_width = batch["input_ids"].shape
        # Phase 1 leaves room for the longest call and a short analysis; its line budget ends the lists in time.
        budget = lists_budget(self.tokenizer, max_new_tokens)
        warn_if_lists_starved(budget, max_new_tokens)
        started = time.perf_counter()
        with torch.inference_mode():
            first = self.model.generate(
                **batch, generation_config=self._config(budget, sampling),
                logits_processor=LogitsProcessorList(self.grammar.lists_processors(
                    rows, prompt_width=prompt_width, max_new_tokens=budget)),
                streamer=self._streamer(on_text, [""] * rows))
        seconds = time.perf_counter() - started
        lists = [self._until_stop(tokens) for tokens in first.sequences[:, prompt_width:].tolist()]
        started = time.perf_counter()
        raw = self._score_bins(batch, first.sequences, first.cache, lists)
        bin_seconds = time.perf_counter() - started
        # The call chosen from each calibrated distribution, in the tokenizer's own encoding; none without one.
        written = [[] if served is None else self._encode(written_call(served)) for served in map(self._served, raw)]
        started = time.perf_counter()
        before = [self.tokenizer.decode(lists[row] + written[row], skip_special_tokens=True) if written[row] else None
                  for row in range(rows)]
        analyses = (self._analyses(batch, first, lists, written, max_new_tokens, sampling,
                                   self._streamer(on_text, before))
                    if any(written) else [[] for _ in range(rows)])
        seconds += time.perf_counter() - started
        return [self._generation(batch, row, lists[row] + written[row] + analyses[row], seconds, raw[row],
                                 bin_seconds) for row in range(rows)]

    def _analyses(self, batch: Any, first: Any, lists: list[list[int]], written: list[list[int]],
                  max_new_tokens: int, sampling: dict, streamer: _AnswerStreamer | None) -> list[list[int]]:
        """Phase 2: each row's analysis after its written call, continuing phase 1's KV cache (no second
        prefill). Rows end phase 1 at different lengths, so the batch continues with holes: each row's stop and
        padding tokens are masked out, its call is right-aligned, and positions follow the mask. A row with no
        call (its lists never reached "Prediction:") generates along but its tokens are dropped."""
        assert self.grammar is not None
        rows, prompt_width = batch["input_ids"].shape
        sequences = first.sequences
        width, call_width = sequences.shape[1], max(len(w) for w in written)
        ids = torch.full((rows, width + call_width), self.tokenizer.pad_token_id, dtype=torch.long)
        ids[:, :width] = sequences.cpu()
        mask = torch.zeros((rows, width + call_width), dtype=torch.long)
        mask[:, :prompt_width] = batch["attention_mask"].cpu()
        for row in range(rows):
            mask[row, prompt_width:prompt_width + len(lists[row])] = 1
            if written[row]:
                ids[row, width + call_width - len(written[row]):] = torch.tensor(written[row])
                mask[row, width + call_width - len(written[row]):] = 1
        budget = analysis_budget(max_new_tokens, (width - prompt_width) + call_width)
        device = sequences.device
        with torch.inference_mode():
            second = self.model.generate(
                input_ids=ids.to(device), attention_mask=mask.to(device), cache=first.cache,
                generation_config=self._config(budget, sampling),
                logits_processor=LogitsProcessorList(self.grammar.analysis_processors(
                    rows, prompt_width=width + call_width, max_new_tokens=budget)),
                streamer=streamer)
        new = second.sequences[:, width + call_width:].tolist()
        return [self._until_stop(tokens) if written[row] else [] for row, tokens in enumerate(new)]

    def _generation(self, batch: Any, row: int, new: list[int], seconds: float, raw: BinDistribution | None,
                    bin_seconds: float) -> Generation:
        return Generation(
            text=self.tokenizer.decode(new, skip_special_tokens=True).strip(),
            prompt_tokens=int(batch["attention_mask"][row].sum()),
            new_tokens=len(new),
            seconds=seconds,
            batch_size=batch["input_ids"].shape[0],
            bin_distribution=self._served(raw),
            raw_bin_distribution=raw,
            bin_seconds=bin_seconds if raw is not None else None,
        )

    def _until_stop(self, tokens: list[int]) -> list[int]:
        stops = set(self._stop_ids) | {self.tokenizer.pad_token_id}
        for i, token in enumerate(tokens):
            if token in stops:
                return tokens[:i]
        return tokens

    def score_after(self, conversations: Sequence[Conversation], answer_prefix: str) -> list[BinDistribution | None]:
        """The raw 12-bin distribution after each conversation's prompt and a fixed `answer_prefix` ending in
        "Prediction:" (engine.generation.scaffold): one prefill per row, no generation. For the evaluator's cheap mode
        and the content-free prompt of contextual calibration."""
        if not conversations:
            return []
        texts = [self.render(c) for c in conversations]
        batch = self.tokenizer(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        prefix = self._encode(answer_prefix)
        rows = batch["input_ids"].shape[0]
        device = self._input_device
        sequences = torch.cat([batch["input_ids"], torch.tensor([prefix] * rows, dtype=torch.long)], dim=1)
        mask = torch.cat([batch["attention_mask"], torch.ones((rows, len(prefix)), dtype=torch.long)], dim=1)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        from transformers import DynamicCache

        cache = DynamicCache(config=self.model.config)
        with torch.inference_mode():  # only the cache is wanted: logits for the last position alone
            self.model(input_ids=sequences.to(device), attention_mask=mask.to(device),
                       position_ids=positions.to(device), cache=cache, use_cache=True, logits_to_keep=1)
        return self._score_bins(batch.to(device), sequences.to(device), cache, [prefix] * rows)

    def _score_bins(self, batch: Any, sequences: torch.Tensor, cache: Any,
                    answers: list[list[int]]) -> list[BinDistribution | None]:
        """Each answer's distribution over the 12 bins at its "Prediction:" (engine.generation.bin_scoring), in one
        forward pass over the generation's own KV cache: per row, the 12 continuations are packed into one query
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
        cache.crop(-(cache.get_seq_length() - cached))  # the queries' entries: phase 2 continues from the answer
        results: list[BinDistribution | None] = []
        for row, packed in enumerate(packs):
            if packed is None:
                results.append(None)
                continue
            scores = {code: sum(float(logprobs[row, query, token]) for query, token in pairs)
                      for code, pairs in packed.targets.items()}
            results.append(distribution(scores))
        return results

