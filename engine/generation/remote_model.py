"""The analyst served by a vLLM server (MODEL_BACKEND=vllm): the same interface as `engine.generation.model.Analyst`, no
torch.

The worker keeps the base model's tokenizer (from MODEL_BASE: a local directory or the Hugging Face cache) and
sends vLLM's `/v1/completions` the prompt text already rendered through the shared chat template
(`engine.generation.base.render_chat`), so both backends read byte-identical prompts. Greedy decoding with the same stop
tokens and the same repetition penalty as the in-process backend (transformers 5 fills a generate call's unset
fields from the checkpoint's generation_config.json, and Qwen2.5-Instruct ships repetition_penalty 1.05), sent
explicitly so the server's own `--generation-config` cannot change it.

Batching: one request per prompt, all of a batch in flight at once (a bounded thread pool), and vLLM's continuous
batching runs them together on the GPU. vLLM would also take one request with a list `prompt`, but then:
- `usage` covers the whole list, so per-answer token counts would need `return_token_ids` (newer vLLM only);
- one slow or failed prompt fails or times out the whole list, and a retry regenerates every answer;
- it gives the GPU no more to batch than the same prompts arriving together: the scheduler sees the same queue.
Per-prompt requests give exact per-answer `usage`, per-prompt retries and timeouts, and work with any
OpenAI-compatible server.

Constrained decoding and bin probabilities: with `constrained` (MODEL_CONSTRAINED, on by default) an answer takes
three requests, as the in-process backend's two phases: the lists up to "Prediction:" under
`structured_outputs: {"regex": engine.generation.grammar.LISTS_REGEX}` (never a `guided_*` field: current vLLM drops
those silently); the 12 bin continuations scored as token-id prompts after the prompt and the lists, with
`prompt_logprobs` (engine.generation.bin_scoring defines the distribution; the in-process backend computes the same
one); and, after the call chosen from those probabilities (engine.probabilities.choose_call) is appended to the same
assistant message, the analysis, a completion of the rendered prompt plus everything written, under ANALYSIS_REGEX. The
answer prefix is re-tokenised from the returned text, which can differ from the tokens vLLM generated only where
those were not the tokenizer's own encoding. Cost: vLLM recomputes the prefill of a prompt-logprobs request (it
does not read the prefix cache for them), so the scoring is 12 prefills of the prompt per answer, batched in one
request; the alternative, logprobs on the generated bin tokens, sees only the branch the answer took.

Adapters: vLLM serves a LoRA under a name. `use_adapter(path)` reuses the name the server already has for that
directory (from `--lora-modules` or an earlier load, found through `/v1/models`), or loads it at run time (the
server needs VLLM_ALLOW_RUNTIME_LORA_UPDATING=True). Several workers may share one server: adapters are matched by
their directory, never replaced in place, and never unloaded by a worker.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any

from engine.exceptions import ModelError, ModelServerError
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
    written_call,
)
from engine.generation.bin_scoring import distribution, plan_from_text
from engine.generation.grammar import ANALYSIS_REGEX, LISTS_REGEX
from engine.generation.vllm_client import ServedModel, VllmClient
from engine.probabilities import BinDistribution

log = logging.getLogger(__name__)

_TOKENIZER_MISMATCH = (
    "MODEL_BASE={base} counts {local} tokens for a test prompt, but the model '{served}' at {url} counts {remote}: "
    "they are different tokenizers. Point MODEL_BASE at the model the vLLM server serves (the same Hugging Face id, "
    "or a local copy of it)"
)
_CONTEXT_TOO_SMALL = (
    "The vLLM server at {url} serves '{served}' with max_model_len={server_len}, less than MODEL_CONTEXT_TOKENS="
    "{context}. Restart vLLM with --max-model-len {context}, or lower MODEL_CONTEXT_TOKENS"
)
_PROBE = [{"role": "system", "content": "You are a seasoned stock market analyst."},
          {"role": "user", "content": "AXP closed at $221.47 on 2024-03-08, up 1.3% on the week. Predict next week."}]


@dataclass(frozen=True)
class _Answer:
    text: str
    prompt_tokens: int
    new_tokens: int
    raw_bin_distribution: BinDistribution | None = None
    bin_distribution: BinDistribution | None = None  # calibrated: what the call was chosen from
    bin_seconds: float | None = None


def _with_grammar(params: dict[str, Any], regex: str, *, max_tokens: int) -> dict[str, Any]:
    """`params` for one phase: its regex as `structured_outputs` (never a `guided_*` field) and its budget."""
    return {**params, "max_tokens": max_tokens,
            "extra_body": {**params["extra_body"], "structured_outputs": {"regex": regex}}}


class RemoteAnalyst(ChatBackend):
    """A model served by vLLM that turns chat conversations into answers, batched by concurrent requests."""

    def __init__(
        self,
        server: VllmClient,
        tokenizer: Any,
        *,
        base: str,
        served_base: str,
        concurrency: int = 8,
        constrained: bool = True,
        repetition_penalty: float = 1.0,
        model_dir: Path | None = None,
        server_model_dir: str | None = None,
    ) -> None:
        """`served_base` is the base's name at the server; `concurrency` bounds the requests in flight. Adapters
        under `model_dir` are named to the server under `server_model_dir` (where the server sees the same
        registry) when that is given."""
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        super().__init__(tokenizer, base=base)
        self.server = server
        self.served_base = served_base
        self.concurrency = concurrency
        self.constrained = constrained  # send the answer grammar with every request
        self.repetition_penalty = repetition_penalty
        self.model_dir = model_dir
        self.server_model_dir = server_model_dir
        self.served_name = served_base  # what `model` names in each request: the base or the adapter's name

    def __repr__(self) -> str:
        return f"RemoteAnalyst(base_url={self.server.base_url!r}, model={self.served_name!r})"

    @classmethod
    def connect(
        cls,
        base: str,
        *,
        base_url: str,
        api_key: str | None = None,
        served_model: str | None = None,
        adapter: Path | None = None,
        timeout_s: float = 300.0,
        wait_s: float = 0.0,
        context_tokens: int | None = None,
        concurrency: int = 8,
        constrained: bool = True,
        model_dir: Path | None = None,
        server_model_dir: str | None = None,
        **transport: Any,
    ) -> RemoteAnalyst:
        """Load MODEL_BASE's tokenizer here, reach the server (waiting up to `wait_s` for it to come up), check that
        it serves the same model with room for `context_tokens`, then serve `adapter` (None: the bare base).
        `transport` goes to `VllmClient` (attempts, base_delay_s, max_delay_s, max_total_wait_s, sleep)."""
        base = resolve_base(base)
        tokenizer = _load_tokenizer(base)
        server = VllmClient(base_url, api_key=api_key, timeout_s=timeout_s, **transport)
        models = server.wait_for_models(wait_s)
        served = _pick_base(models, served_model, base, server.base_url)
        if context_tokens is not None and served.max_model_len is not None and served.max_model_len < context_tokens:
            raise ModelServerError(_CONTEXT_TOO_SMALL.format(url=server.base_url, served=served.id,
                                                             server_len=served.max_model_len, context=context_tokens))
        analyst = cls(server, tokenizer, base=base, served_base=served.id, concurrency=concurrency,
                      constrained=constrained,
                      repetition_penalty=_repetition_penalty(base), model_dir=model_dir,
                      server_model_dir=server_model_dir)
        analyst._check_tokenizer()
        analyst.use_adapter(adapter)
        log.info("serving %s through vLLM at %s", analyst.version, server.base_url)
        return analyst

    def _check_tokenizer(self) -> None:
        """Same tokenizer on both sides, or every budget and token count here would be wrong."""
        probe = self.render(_PROBE)
        remote, local = self.server.count_tokens(self.served_base, probe), self.count_tokens(probe)
        if remote is None:
            log.info("%s has no /tokenize; the tokenizer match is not checked", self.server.base_url)
        elif remote != local:
            raise ModelError(_TOKENIZER_MISMATCH.format(base=self.base, local=local, served=self.served_base,
                                                        url=self.server.base_url, remote=remote))

    # -- adapters ----------------------------------------------------------------------------------------------

    def use_adapter(self, path: Path | None) -> None:
        """Serve `path` (a PEFT LoRA directory) from now on, or the bare base with None. No restart of anything."""
        if path is None:
            self.served_name = self.served_base
            self._now_serving(None, self.model_dir)
            return
        path = Path(path)
        rank = read_lora_config(path).get("r")  # the same local check as the in-process backend
        server_path = self.server_path(path)
        name = self._loaded_name(server_path) or self._load(server_path, path.name, rank)
        self.served_name = name
        self._now_serving(path, self.model_dir)
        log.info("vLLM now answers with adapter %s (served as %r)", path, name)

    def server_path(self, path: Path) -> str:
        """Where the server finds `path`: under VLLM_MODEL_DIR when the adapter lives in MODEL_DIR and the server
        mounts the registry elsewhere; else the same absolute path."""
        resolved = Path(path).resolve()
        if self.model_dir is not None and self.server_model_dir is not None:
            try:
                inside = resolved.relative_to(Path(self.model_dir).resolve())
            except ValueError:
                pass
            else:
                return str(PurePosixPath(self.server_model_dir, *inside.parts))
        return str(resolved)

    def _loaded_name(self, server_path: str) -> str | None:
        wanted = os.path.normpath(server_path)
        for model in self.server.models():
            if model.parent is not None and model.root and os.path.normpath(model.root) == wanted:
                return model.id
        return None

    def _load(self, server_path: str, folder: str, rank: Any) -> str:
        # The folder's name (v0003) when free; another directory of the same name gets a suffix from its path.
        for name in (folder, f"{folder}-{hashlib.sha256(server_path.encode()).hexdigest()[:8]}"):
            if self.server.load_adapter(name, server_path, rank=rank):
                return name
            if (loaded := self._loaded_name(server_path)) is not None:
                return loaded  # another worker sharing the server loaded it a moment ago
        raise ModelServerError(f"The vLLM server at {self.server.base_url} already serves other adapters named "
                               f"{folder} and its suffixed variant; unload them or rename the directory {server_path}")

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
        Every conversation is one request, at most `concurrency` in flight, batched on the GPU by vLLM.
        `on_text(row, text)` is told each answer as far as it is written: the lists, then the call, then the whole
        answer (each request completes at once), from the request threads, one row at a time."""
        if not conversations:
            return []
        prompts = [self.render(c) for c in conversations]
        params: dict[str, Any] = {
            "max_tokens": max_new_tokens,
            "temperature": temperature if sample else 0.0,
            "extra_body": {
                "add_special_tokens": False,  # the chat template already placed them, as in-process
                "stop_token_ids": self._stop_ids,
                "repetition_penalty": self.repetition_penalty,
                "skip_special_tokens": True,
            },
        }
        if sample:
            params["top_p"] = top_p
            if seed is not None:
                params["seed"] = seed
        model = self.served_name
        started = time.perf_counter()
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts)),
                                thread_name_prefix="vllm-request") as pool:
            told = threading.Lock()

            def teller(row: int) -> Callable[[str], None]:
                def tell_row(text: str) -> None:
                    if on_text is None:
                        return
                    with told:
                        tell(on_text, row, text)
                return tell_row

            futures = [pool.submit(self._complete, model, prompt, params, teller(row))
                       for row, prompt in enumerate(prompts)]
            try:
                answers = [future.result() for future in futures]
            except BaseException:
                for future in futures:
                    future.cancel()  # the ones not yet sent; those in flight finish and are dropped
                raise
        seconds = time.perf_counter() - started
        return [Generation(text=a.text, prompt_tokens=a.prompt_tokens, new_tokens=a.new_tokens, seconds=seconds,
                           batch_size=len(prompts), bin_distribution=a.bin_distribution, bin_seconds=a.bin_seconds,
                           raw_bin_distribution=a.raw_bin_distribution)
                for a in answers]

    def _complete(self, model: str, prompt: str, params: dict[str, Any], tell: Callable[[str], None]) -> _Answer:
        if not self.constrained:
            return self._complete_free(model, prompt, params, tell)
        return self._complete_in_two_phases(model, prompt, params, tell)

    def _complete_free(self, model: str, prompt: str, params: dict[str, Any],
                       tell: Callable[[str], None]) -> _Answer:
        done = self.server.complete(model, prompt, params)
        tell(done.text)
        started = time.perf_counter()
        raw = self._score_bins(model, prompt, done.text)
        return _Answer(done.text.strip(), self._prompt_tokens(done, prompt), self._new_tokens(done, done.text),
                       raw, self._served(raw), time.perf_counter() - started if raw is not None else None)

    def _complete_in_two_phases(self, model: str, prompt: str, params: dict[str, Any],
                                tell: Callable[[str], None]) -> _Answer:
        """The lists up to "Prediction:" under LISTS_REGEX; the bins scored there; the call chosen by
        engine.probabilities.choose_call and appended to the same assistant message; then the analysis under
        ANALYSIS_REGEX, as a completion of the rendered prompt and everything written so far (vLLM's prefix
        cache serves that prompt's prefill again)."""
        max_new_tokens = params["max_tokens"]
        first = self.server.complete(model, prompt, _with_grammar(
            params, LISTS_REGEX, max_tokens=lists_budget(self.tokenizer, max_new_tokens)))
        lists = first.text
        tell(lists)
        prompt_tokens, lists_tokens = self._prompt_tokens(first, prompt), self._new_tokens(first, lists)
        started = time.perf_counter()
        raw = self._score_bins(model, prompt, lists)
        bin_seconds = time.perf_counter() - started if raw is not None else None
        if raw is None:  # the lists never reached "Prediction:" (a budget too small): no call to write
            return _Answer(lists.strip(), prompt_tokens, lists_tokens)
        served = self._served(raw)
        written = written_call(served)
        head = lists + written
        tell(head)
        budget = analysis_budget(max_new_tokens, lists_tokens + self.count_tokens(written))
        second = self.server.complete(model, prompt + head, _with_grammar(params, ANALYSIS_REGEX,
                                                                          max_tokens=budget))
        tell(head + second.text)
        return _Answer((head + second.text).strip(), prompt_tokens,
                       lists_tokens + self.count_tokens(written) + self._new_tokens(second, second.text),
                       raw, served, bin_seconds)

    def _prompt_tokens(self, done: Any, prompt: str) -> int:
        # vLLM always reports usage; another OpenAI-compatible server might not.
        return done.prompt_tokens if done.prompt_tokens is not None else self.count_tokens(prompt)

    def _new_tokens(self, done: Any, text: str) -> int:
        return done.completion_tokens if done.completion_tokens is not None else self.count_tokens(text)

    def score_after(self, conversations: Sequence[Conversation], answer_prefix: str) -> list[BinDistribution | None]:
        """The raw 12-bin distribution after each prompt and a fixed `answer_prefix` ending in "Prediction:"
        (engine.generation.scaffold): one prompt-logprobs request per row, no generation. As in process."""
        prompts = [self.render(c) for c in conversations]
        if not prompts:
            return []
        with ThreadPoolExecutor(max_workers=min(self.concurrency, len(prompts)),
                                thread_name_prefix="vllm-request") as pool:
            return list(pool.map(lambda p: self._score_bins(self.served_name, p, answer_prefix), prompts))

    def _score_bins(self, model: str, prompt: str, answer: str) -> BinDistribution | None:
        """The answer's distribution over the 12 bins at its "Prediction:" (engine.generation.bin_scoring), from the
        server's prompt logprobs of the 12 continuations; None without a "Prediction:" line or prompt logprobs."""
        found = plan_from_text(self.tokenizer, answer)
        if found is None:
            return None
        prefix, plan = found
        head = self._encode(prompt) + self._encode(prefix)
        codes = list(plan.continuations)
        scored = self.server.prompt_logprobs(model, [head + list(plan.continuations[c]) for c in codes])
        if scored is None:
            log.warning("%s returned no prompt_logprobs: answers carry no bin probabilities", self.server.base_url)
            return None
        logprobs = {}
        for code, entries in zip(codes, scored, strict=True):
            tokens = plan.continuations[code]
            try:
                logprobs[code] = sum(entries[len(head) + i][str(token)] for i, token in enumerate(tokens))
            except (KeyError, TypeError):
                raise ModelServerError(f"The vLLM server at {self.server.base_url} left continuation tokens out of "
                                       "its prompt_logprobs") from None
        return distribution(logprobs)


# -- helpers ---------------------------------------------------------------------------------------------------------


def _pick_base(models: list[ServedModel], served_model: str | None, base: str, url: str) -> ServedModel:
    """The base model at the server: VLLM_MODEL when set, else MODEL_BASE when listed, else the only base."""
    bases = {m.id: m for m in models if m.parent is None}
    if served_model is not None:
        if served_model not in bases:
            raise ModelServerError(f"VLLM_MODEL={served_model} is not served by {url}; it serves "
                                   f"{list(bases) or 'nothing'}")
        return bases[served_model]
    if base in bases:
        return bases[base]
    if len(bases) == 1:
        return next(iter(bases.values()))
    raise ModelServerError(f"{url} serves {list(bases) or 'no base model'}; set VLLM_MODEL to the one to use")


def _load_tokenizer(base: str) -> Any:
    """MODEL_BASE's tokenizer, through AutoTokenizer as in-process (the same class, so the same tokens).

    Lazy: transformers 5's AutoTokenizer imports torch when torch is installed (configuration_utils →
    modeling_rope_utils), but works without it, so a vLLM-backed worker needs no torch."""
    from transformers import AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(base)
    except OSError as exc:
        raise ModelError(f"cannot load the tokenizer of {base}: {exc}") from None
    require_chat_template(tokenizer, base)
    return tokenizer


def _repetition_penalty(base: str) -> float:
    """The checkpoint's repetition_penalty (1.0 when it has none), which in-process greedy decoding applies too."""
    from transformers.utils import cached_file

    found = cached_file(base, "generation_config.json", _raise_exceptions_for_missing_entries=False,
                        _raise_exceptions_for_connection_errors=False)
    if not found:
        return 1.0
    value = json.loads(Path(found).read_text()).get("repetition_penalty")
    return float(value) if value is not None else 1.0
