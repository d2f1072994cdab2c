"""The HTTP side of the vLLM backend: one vLLM OpenAI-compatible server, its routes, bounded retries, clear errors.

`engine.generation.remote_model.RemoteAnalyst` decides what to ask; this module asks and turns every failure into a
`ModelServerError` that says what to do. The client is the `openai` package (already used by the teacher): typed
errors, a pooled HTTP client that is safe to share across threads, and the Authorization header. Its own retries
are off, so that there is one retry policy, ours (`engine.retry`): bounded in tries and in total waiting, capped
exponential backoff (never shorter than a Retry-After the server sends, capped), and logged. The API key lives only
inside the client: no message, log line or repr contains it.

Routes used (vLLM's `vllm serve`): GET /v1/models, POST /v1/completions, POST /v1/load_lora_adapter (registered only
when the server runs with VLLM_ALLOW_RUNTIME_LORA_UPDATING=True) and POST /tokenize (outside /v1).

Constrained decoding is asked for with `structured_outputs` (vLLM >= 0.10). The older `guided_regex`/`guided_json`
fields are silently ignored by current vLLM (the answer comes back unconstrained, with no error), so `complete`
refuses to send any `guided_*` field at all.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from engine.exceptions import ModelServerError
from engine.retry import Backoff, RetriesExhausted, Retryable, RetryNote, RetryPolicy, call_with_retries, retry_after_s

log = logging.getLogger(__name__)

START_HINT = (
    "start it with `VLLM_ALLOW_RUNTIME_LORA_UPDATING=True vllm serve MODEL --enable-lora --max-lora-rank 16 "
    "--max-model-len 4096` (README: \"vLLM backend\"), fix VLLM_BASE_URL, or set MODEL_BACKEND=transformers"
)
_RUNTIME_LORA_OFF = (
    "The vLLM server at {url} does not load adapters at run time (no /v1/load_lora_adapter). Restart it with "
    "VLLM_ALLOW_RUNTIME_LORA_UPDATING=True in its environment, or name the adapter at start-up with "
    "--lora-modules {name}={path}"
)
_NOT_ON_SERVER = (
    "The vLLM server at {url} found no adapter at {path} (HTTP {status}: {message}). That path is read on the "
    "server's side: mount the adapter registry there, or set VLLM_MODEL_DIR to where the server sees MODEL_DIR"
)
_LOAD_REFUSED = (
    "The vLLM server at {url} refused to load adapter {path} (HTTP {status}: {message}). It needs --enable-lora "
    "and --max-lora-rank of at least this adapter's rank ({rank})"
)


@dataclass(frozen=True)
class ServedModel:
    """One entry of the server's `/v1/models`: the base (parent None) or a LoRA adapter (root: its directory)."""

    id: str
    root: str | None
    parent: str | None
    max_model_len: int | None


@dataclass(frozen=True)
class Completion:
    text: str
    prompt_tokens: int | None  # from `usage`; None when the server reports none
    completion_tokens: int | None


class VllmClient:
    """One vLLM server. Safe to share across threads."""

    def __init__(
        self,
        base_url: str,
        *,
        api_key: str | None = None,
        timeout_s: float = 300.0,
        attempts: int = 3,
        base_delay_s: float = 1.0,
        max_delay_s: float = 30.0,
        max_total_wait_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`base_url`: the server's root or its /v1. `attempts` counts the first try of a request; a retry waits
        min(max_delay_s, base_delay_s * 2**n) seconds, or the server's Retry-After when longer (still capped), and
        all the waits of one request stay within `max_total_wait_s` (a retry that would pass it is not made)."""
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        import openai  # the `model` extra, like the teacher; importing this module alone must not need it

        self._openai = openai
        self.base_url = api_url(base_url)
        self.timeout_s = timeout_s
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.max_total_wait_s = max_total_wait_s
        self.retries = 0  # transport-level retries so far
        self._sleep = sleep
        # vLLM without --api-key ignores the header, but the client refuses an empty key. max_retries=0: the client's
        # own retries would multiply with ours; one retry policy, ours (engine.retry).
        self._client = openai.OpenAI(base_url=self.base_url, api_key=api_key or "EMPTY", timeout=timeout_s,
                                     max_retries=0)

    def __repr__(self) -> str:
        return f"VllmClient(base_url={self.base_url!r})"

    # -- routes ------------------------------------------------------------------------------------------------

    def models(self) -> list[ServedModel]:
        """The base and adapters the server serves now."""
        page = self._call(lambda: self._client.models.list(), "GET /v1/models")
        return [ServedModel(id=m.id, root=getattr(m, "root", None), parent=getattr(m, "parent", None),
                            max_model_len=getattr(m, "max_model_len", None)) for m in page.data]

    def wait_for_models(self, wait_s: float) -> list[ServedModel]:
        """`models()`, waiting up to `wait_s` for a server that is not up yet: vLLM opens its port only once the
        weights are loaded (minutes for a 7B), so a worker started beside it waits."""
        deadline = time.monotonic() + wait_s
        while True:
            try:
                return self.models()
            except ModelServerError as exc:
                if not isinstance(exc.__cause__, self._openai.APIConnectionError) or time.monotonic() >= deadline:
                    raise
                log.warning("waiting for the vLLM server at %s", self.base_url)
                self._sleep(min(5.0, max(0.0, deadline - time.monotonic())))

    def count_tokens(self, model: str, text: str) -> int | None:
        """How many tokens the server's tokenizer makes of `text` (no special tokens added); None when the server
        has no /tokenize (another OpenAI-compatible server)."""
        root = self.base_url.removesuffix("/v1")
        body = {"model": model, "prompt": text, "add_special_tokens": False}
        try:
            raw = self._call(lambda: self._client.post(f"{root}/tokenize", cast_to=str, body=body),
                             "POST /tokenize", retry=False)
        except ModelServerError as exc:
            if getattr(exc.__cause__, "status_code", None) in (404, 405):
                return None
            raise
        count = json.loads(raw).get("count")
        return int(count) if count is not None else None

    def complete(self, model: str, prompt: str, params: dict[str, Any]) -> Completion:
        """One completion of `prompt` by `model` (the base's or an adapter's name). `params` holds the sampling
        fields; vLLM's own fields go under "extra_body". Never a `guided_*` field (see the module docstring)."""
        guided = sorted(key for key in {**params, **params.get("extra_body", {})} if key.startswith("guided_"))
        if guided:
            raise ValueError(f"{', '.join(guided)}: current vLLM ignores guided_* fields without an error; send "
                             "structured_outputs={'regex': ...} instead")
        response = self._call(lambda: self._client.completions.create(model=model, prompt=prompt, **params),
                              "POST /v1/completions")
        if not response.choices:
            raise ModelServerError(f"The vLLM server at {self.base_url} answered without a completion")
        usage = response.usage
        return Completion(response.choices[0].text or "", usage.prompt_tokens if usage else None,
                          usage.completion_tokens if usage else None)

    def prompt_logprobs(self, model: str, prompts: list[list[int]]) -> list[list[dict[str, float] | None]] | None:
        """For each token-id prompt, the log-probability of each of its tokens given those before it (None for the
        first), as {str(token id): logprob}: vLLM's `prompt_logprobs`, in one request for all `prompts`. None when
        the server answers without them (an OpenAI-compatible server that is not vLLM).

        vLLM recomputes the whole prefill of a request that asks for prompt logprobs (it skips reading the prefix
        cache for them), so each prompt costs a full prefill on the server."""
        response = self._call(
            lambda: self._client.completions.create(
                model=model, prompt=prompts, max_tokens=1, temperature=0.0,
                extra_body={"prompt_logprobs": 0, "add_special_tokens": False}),
            "POST /v1/completions (prompt logprobs)")
        choices = sorted(response.choices, key=lambda c: c.index)
        if len(choices) != len(prompts):
            raise ModelServerError(f"The vLLM server at {self.base_url} scored {len(choices)} of {len(prompts)} "
                                   "prompts")
        scored = []
        for choice, prompt in zip(choices, prompts, strict=True):
            entries = getattr(choice, "prompt_logprobs", None)
            if not isinstance(entries, list) or len(entries) != len(prompt):
                return None
            scored.append([None if entry is None else {str(token): float(value["logprob"])
                                                        for token, value in entry.items()} for entry in entries])
        return scored

    def load_adapter(self, name: str, server_path: str, *, rank: Any = None) -> bool:
        """Load the LoRA at `server_path` (a path on the server's side) under `name`. False when the server already
        holds another adapter under that name; a ModelServerError that names the fix for every other refusal."""
        body = {"lora_name": name, "lora_path": server_path}
        try:
            # Loading is deterministic: a refusal (even a 500 for a rank too large) is not retried.
            self._call(lambda: self._client.post("/load_lora_adapter", cast_to=str, body=body),
                       "POST /v1/load_lora_adapter", retry_status=False)
            return True
        except ModelServerError as exc:
            cause = exc.__cause__
            status = getattr(cause, "status_code", None)
            if status is None:
                raise
            answer, message = getattr(cause, "body", None), server_message(cause)
            if status == 404 and isinstance(answer, dict) and "detail" in answer:  # FastAPI: no such route
                raise ModelServerError(_RUNTIME_LORA_OFF.format(url=self.base_url, name=name,
                                                                path=server_path)) from None
            if status == 404:
                raise ModelServerError(_NOT_ON_SERVER.format(url=self.base_url, path=server_path, status=status,
                                                             message=message)) from None
            if status == 400 and "already" in message:
                return False
            raise ModelServerError(_LOAD_REFUSED.format(url=self.base_url, path=server_path, status=status,
                                                        message=message, rank=rank)) from None

    # -- transport ---------------------------------------------------------------------------------------------

    def _call(self, send: Callable[[], Any], what: str, *, retry: bool = True, retry_status: bool = True) -> Any:
        """`send()` with bounded retries on connection errors, timeouts, 429 and 5xx (`retry_status=False`: on
        connection errors and timeouts only). Every failure is a ModelServerError caused by the client's
        exception."""
        openai = self._openai
        attempts = self.attempts if retry else 1

        def attempt() -> Any:
            try:
                return send()
            except openai.APIStatusError as exc:
                status = exc.status_code
                if status in (401, 403):
                    raise ModelServerError(
                        f"The vLLM server at {self.base_url} rejected VLLM_API_KEY (HTTP {status}); set it to the "
                        "server's --api-key") from exc
                if not ((status == 429 or status >= 500) and retry_status):
                    raise ModelServerError(self._refusal(what, status, server_message(exc))) from exc
                headers = getattr(getattr(exc, "response", None), "headers", None)
                raise Retryable(f"HTTP {status}", server_wait_s=retry_after_s(headers)) from exc
            except openai.APITimeoutError as exc:  # before APIConnectionError, its base class
                raise Retryable("timed out") from exc
            except openai.APIConnectionError as exc:
                raise Retryable("connection failed") from exc

        def on_retry(note: RetryNote) -> None:
            self.retries += 1
            log.warning("vLLM %s %s (attempt %d of %d); retrying in %.1fs", what, note.failure.reason, note.attempt,
                        note.attempts, note.wait_s)

        policy = RetryPolicy(attempts=attempts, backoff=Backoff(self.base_delay_s, self.max_delay_s),
                             max_wait_s=self.max_delay_s, max_total_wait_s=self.max_total_wait_s)
        try:
            return call_with_retries(attempt, policy, sleep=self._sleep, on_retry=on_retry)
        except RetriesExhausted as gave_up:
            raise self._gave_up(what, gave_up) from gave_up.cause

    def _gave_up(self, what: str, gave_up: RetriesExhausted) -> ModelServerError:
        """The error for a request whose tries ran out, by the last failure; it is `raise`d from that failure's
        own exception, which callers read (`wait_for_models`, `count_tokens`, `load_adapter`)."""
        cause, tries = gave_up.cause, gave_up.attempts
        if isinstance(cause, self._openai.APIStatusError):
            return ModelServerError(self._refusal(what, cause.status_code, server_message(cause)))
        if isinstance(cause, self._openai.APITimeoutError):
            return ModelServerError(
                f"The vLLM server at {self.base_url} did not answer {what} within {self.timeout_s:g}s, "
                f"{tries} times; raise VLLM_TIMEOUT_S or check the server's load")
        return ModelServerError(
            f"The vLLM server at {self.base_url} is not reachable ({what}: connection failed after "
            f"{tries} attempts). Is it running? {START_HINT}")

    def _refusal(self, what: str, status: int, message: str) -> str:
        text = f"The vLLM server at {self.base_url} refused {what} (HTTP {status}: {message})"
        if status == 404 and "does not exist" in message:
            return f"{text}. Check VLLM_MODEL, or whether the adapter was unloaded from the server"
        if "context length" in message or "max_model_len" in message or "maximum model length" in message:
            return f"{text}. Restart vLLM with a larger --max-model-len, or lower MODEL_CONTEXT_TOKENS"
        return text


def api_url(url: str) -> str:
    """vLLM's OpenAI routes live under /v1; accept the server's root too."""
    url = url.rstrip("/")
    return url if url.endswith("/v1") else f"{url}/v1"


def server_message(exc: Any) -> str:
    """The server's own words from an error answer (vLLM: {"error": {"message": ...}}; FastAPI: {"detail": ...})."""
    body = getattr(exc, "body", None)
    if isinstance(body, dict):
        return str(body.get("message") or body.get("detail") or body)[:300]
    return str(body if body is not None else exc)[:300]
