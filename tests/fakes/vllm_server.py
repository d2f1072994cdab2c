"""A fake vLLM OpenAI-compatible server on 127.0.0.1, for the real `openai.OpenAI` client behind `RemoteAnalyst`.

It answers the routes a vLLM-backed worker uses, in the JSON shapes of vLLM's `vllm serve` (entrypoints/openai):
- `GET /v1/models`: the base (`parent` null, `max_model_len`) and every adapter it holds (`root` = its directory,
  `parent` = the base), whether named at start-up (`lora_modules=`, like `--lora-modules`) or loaded at run time.
- `POST /v1/completions`: `prompt` a string, a list of strings, or token ids (a list of ints, or a list of such
  lists); one choice per prompt in order, one `usage` for the request. Tokens are counted with the real tokenizer it
  is given, honouring `add_special_tokens`; the answer comes from `answer(prompt, model)` and is cut at `max_tokens`
  (finish_reason "length"). An unknown `model` is a 404, prompt + max_tokens over `max_model_len` a 400, with
  vLLM's messages.
  - `structured_outputs: {"regex": ...}` must compile (else a 400, as vLLM); the answer is the longest prefix of
    the canned answer that the regex matches whole (a constrained server stops where its grammar ends), and a 500
    names the mismatch when there is none (a real server could not have produced it, so the test is wrong).
  - A prompt whose assistant turn already holds text (a constrained answer's phase 2, ending "...Analysis:")
    gets the canned answer's continuation after that last line's label.
  - Any `guided_*` field is a 400 here. Current vLLM ignores those fields silently (the answer comes back
    unconstrained), which no test would notice, so the fake refuses them loudly.
  - `prompt_logprobs`: each choice carries vLLM's `prompt_logprobs` (None, then {token id: {"logprob", "rank",
    "decoded_token"}} for every later prompt token), from `scorer(tokens_before, token)`; the default is a
    deterministic function of the last three tokens.
- `POST /v1/load_lora_adapter`: a 404 `{"detail": "Not Found"}` unless `runtime_lora=True` (vLLM registers the route
  only with VLLM_ALLOW_RUNTIME_LORA_UPDATING, so FastAPI answers as for any unknown route); a 400 for a taken name;
  a 404 for a path with no adapter; a 500 for a rank over `max_lora_rank`; else 200 with vLLM's plain-text success.
- `POST /tokenize`: `{"count", "max_model_len", "tokens"}`.
- `api_key=` behaves like `--api-key`: anything else is a 401 `{"error": "Unauthorized"}`.

Failures on demand: `fail_next(status, times, path=...)`, `go_down()` (a killed server), and `latency_s` (every
completion takes that long), with `max_in_flight` recording how many completions were being answered at once (the
batching tests read it).
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
import zlib
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

from tests.fakes.loopback import reply_json, start_server, stop_server

_SYMBOL = re.compile(r"potential concerns for (?P<symbol>[A-Z.\-]+)\.")


def fingpt_answer(prompt: str, model: str) -> str:
    """A well-formed FinGPT answer naming the symbol the prompt asks about and the model that answered."""
    symbol = (_SYMBOL.search(prompt) or {"symbol": "the company"})["symbol"]
    return (
        "[Positive Developments]:\n"
        f"1. {symbol} reported steady demand in its core business.\n"
        f"2. Analysts highlighted {symbol}'s disciplined cost control.\n\n"
        "[Potential Concerns]:\n"
        "1. Broader market volatility could weigh on the shares.\n\n"
        "[Prediction & Analysis]:\n"
        "Prediction: Up by 2-3%\n"
        f"Analysis: Mostly constructive news flow for {symbol} (answered by {model})."
    )


def hashed_logprob(before: list[int], token: int) -> float:
    """A deterministic stand-in for a model's log-probability of `token` after `before`, in [-5, -0.01]."""
    key = json.dumps([before[-3:], token]).encode()
    return -0.01 - (zlib.crc32(key) % 1000) / 200


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # decoded JSON, or the raw text
    status: int  # what the fake answered


@dataclass
class _Failure:
    status: int
    times: int
    path: str


class FakeVllm:
    """Use as a context manager; point RemoteAnalyst at `base_url`."""

    def __init__(self, tokenizer_dir: Path, *, served_model_name: str | None = None, max_model_len: int = 4096,
                 answer: Callable[[str, str], str] = fingpt_answer, runtime_lora: bool = True,
                 lora_modules: dict[str, str] | None = None, max_lora_rank: int = 16, api_key: str | None = None,
                 latency_s: float = 0.0, port: int = 0, tokenize_route: bool = True,
                 scorer: Callable[[list[int], int], float] = hashed_logprob) -> None:
        from transformers import AutoTokenizer

        self.tokenizer = AutoTokenizer.from_pretrained(tokenizer_dir)
        self.base = served_model_name or str(tokenizer_dir)  # vllm serve's default name is its model argument
        self.max_model_len = max_model_len
        self.answer = answer
        self.runtime_lora = runtime_lora
        self.loras: dict[str, str] = dict(lora_modules or {})  # name -> path, as --lora-modules name=path
        self.max_lora_rank = max_lora_rank
        self.api_key = api_key
        self.latency_s = latency_s
        self.port = port
        self.tokenize_route = tokenize_route
        self.scorer = scorer
        self.requests: list[Request] = []
        self.in_flight = 0
        self.max_in_flight = 0
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._down = False

    # -- configuration and inspection ----------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, *, path: str = "/v1/completions") -> None:
        """Answer the next `times` requests to `path` with `status` and a vLLM-shaped error."""
        with self._lock:
            self._failures.append(_Failure(status, times, path))

    def completions(self) -> list[Request]:
        """The generation requests (completions without prompt_logprobs) answered with 200, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/completions" and r.status == 200
                    and r.body.get("prompt_logprobs") is None]

    def scorings(self) -> list[Request]:
        """The prompt-logprobs requests answered with 200, in arrival order."""
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/completions" and r.status == 200
                    and r.body.get("prompt_logprobs") is not None]

    def loads(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path == "/v1/load_lora_adapter"]

    @property
    def root_url(self) -> str:
        assert self._server is not None, "use FakeVllm as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def base_url(self) -> str:
        return f"{self.root_url}/v1"

    # -- server --------------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeVllm:
        self._server = start_server(self._handle, port=self.port)
        return self

    def __exit__(self, *exc: object) -> None:
        if not self._down:
            stop_server(self._server)

    def go_down(self) -> None:
        """Stop as a killed server does: refuse new connections and drop the kept-alive ones unanswered."""
        self._down = True
        stop_server(self._server)

    def _take_failure(self, path: str) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.times > 0 and failure.path == path:
                    failure.times -= 1
                    return failure
        return None

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode("utf-8")
        if self._down:
            req.close_connection = True  # a pooled connection to a dead server: closed without an answer
            return
        try:
            body: Any = json.loads(raw) if raw else None
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in req.headers.items()}
        path = req.path.split("?")[0].rstrip("/")
        status, payload = self._route(req.command, path, headers, body)
        with self._lock:
            self.requests.append(Request(req.command, path, headers, body, status))
        if isinstance(payload, str):
            _reply_text(req, status, payload)
        else:
            reply_json(req, status, payload)

    def _route(self, method: str, path: str, headers: dict[str, str], body: Any) -> tuple[int, Any]:
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return 401, {"error": "Unauthorized"}  # vLLM's --api-key middleware, word for word
        failure = self._take_failure(path)
        if failure is not None:
            kind = "InternalServerError" if failure.status >= 500 else "BadRequestError"
            return failure.status, _error(f"synthetic failure {failure.status}", kind, failure.status)
        routes = {("GET", "/v1/models"): self._models, ("POST", "/v1/completions"): self._completions,
                  ("POST", "/v1/load_lora_adapter"): self._load_lora}
        if self.tokenize_route:
            routes[("POST", "/tokenize")] = self._tokenize
        if (method, path) == ("POST", "/v1/load_lora_adapter") and not self.runtime_lora:
            return 404, {"detail": "Not Found"}
        route = routes.get((method, path))
        if route is None:
            return 404, {"detail": "Not Found"}
        return route(body)

    def _models(self, _body: Any) -> tuple[int, Any]:
        created = int(time.time())
        card = {"object": "model", "created": created, "owned_by": "vllm"}
        with self._lock:
            loras = dict(self.loras)
        data = [{"id": self.base, **card, "root": self.base, "parent": None, "max_model_len": self.max_model_len}]
        data += [{"id": name, **card, "root": path, "parent": self.base} for name, path in loras.items()]
        return 200, {"object": "list", "data": data}

    def _tokens(self, text: str, add_special_tokens: bool = True) -> list[int]:
        return self.tokenizer(text, add_special_tokens=add_special_tokens)["input_ids"]

    def _tokenize(self, body: Any) -> tuple[int, Any]:
        tokens = self._tokens(body["prompt"], body.get("add_special_tokens", True))
        return 200, {"count": len(tokens), "max_model_len": self.max_model_len, "tokens": tokens, "token_strs": None}

    def _completions(self, body: Any) -> tuple[int, Any]:
        model = body.get("model")
        with self._lock:
            known = model == self.base or model in self.loras
        if not known:
            return 404, _error(f"The model `{model}` does not exist.", "NotFoundError", 404, param="model")
        guided = sorted(key for key in body if key.startswith("guided_"))
        if guided:
            return 400, _error(f"fake vLLM: {guided} would be ignored silently by current vLLM; send "
                               "structured_outputs", "BadRequestError", 400)
        pattern = None
        if (structured := body.get("structured_outputs")) is not None:
            try:
                pattern = re.compile(structured["regex"])
            except (KeyError, TypeError, re.error) as exc:
                return 400, _error(f"Invalid structured_outputs: {exc}", "BadRequestError", 400)
        prompt = body["prompt"]
        if isinstance(prompt, list) and prompt and all(isinstance(t, int) for t in prompt):
            prompts = [prompt]  # one prompt of token ids
        else:
            prompts = prompt if isinstance(prompt, list) else [prompt]
        max_tokens = body.get("max_tokens") or 16
        with self._lock:
            self.in_flight += 1
            self.max_in_flight = max(self.max_in_flight, self.in_flight)
        try:
            if self.latency_s:
                time.sleep(self.latency_s)
            choices, prompt_total, completion_total = [], 0, 0
            for index, prompt in enumerate(prompts):
                text = prompt if isinstance(prompt, str) else self.tokenizer.decode(prompt)
                prompt_ids = self._tokens(prompt, body.get("add_special_tokens", True)) if isinstance(
                    prompt, str) else list(prompt)
                if len(prompt_ids) + max_tokens > self.max_model_len:
                    return 400, _error(
                        f"This model's maximum context length is {self.max_model_len} tokens. However, you requested "
                        f"{len(prompt_ids) + max_tokens} tokens ({len(prompt_ids)} in the messages, {max_tokens} in "
                        "the completion). Please reduce the length of the messages or completion.",
                        "BadRequestError", 400)
                answer = _continuation(self.answer(text, model), text)
                if pattern is not None:
                    matched = _longest_match(answer, pattern)
                    if matched is None:
                        return 500, _error("fake vLLM: the canned answer does not match the requested "
                                           f"structured_outputs regex: {answer[:120]!r}", "InternalServerError", 500)
                    answer = matched
                answer_ids = self._tokens(answer, add_special_tokens=False)
                cut = answer_ids[:max_tokens]
                choice = {"index": index, "text": self.tokenizer.decode(cut, skip_special_tokens=True),
                          "logprobs": None, "finish_reason": "length" if len(cut) < len(answer_ids) else "stop",
                          "stop_reason": None}
                if body.get("prompt_logprobs") is not None:
                    choice["prompt_logprobs"] = [None] + [
                        {str(token): {"logprob": self.scorer(prompt_ids[:i], token), "rank": 1,
                                      "decoded_token": self.tokenizer.decode([token])}}
                        for i, token in enumerate(prompt_ids) if i > 0]
                choices.append(choice)
                prompt_total += len(prompt_ids)
                completion_total += len(cut)
        finally:
            with self._lock:
                self.in_flight -= 1
        return 200, {
            "id": f"cmpl-fake-{next(self._ids)}", "object": "text_completion", "created": int(time.time()),
            "model": model, "choices": choices,
            "usage": {"prompt_tokens": prompt_total, "completion_tokens": completion_total,
                      "total_tokens": prompt_total + completion_total},
        }

    def _load_lora(self, body: Any) -> tuple[int, Any]:
        name, path = body.get("lora_name"), body.get("lora_path")
        if not name or not path:
            return 400, _error("Both 'lora_name' and 'lora_path' must be provided.", "InvalidUserInput", 400)
        with self._lock:
            if name in self.loras and not body.get("load_inplace"):
                return 400, _error(f"The lora adapter '{name}' has already been loaded. If you want to load the "
                                   "adapter in place, set 'load_inplace' to True.", "InvalidUserInput", 400)
        config = Path(path) / "adapter_config.json"
        if not config.is_file():
            return 404, _error(f"Loading lora {name} failed: No adapter found for {path}", "NotFoundError", 404)
        rank = json.loads(config.read_text()).get("r", 0)
        if rank > self.max_lora_rank:
            return 500, _error(f"LoRA rank {rank} is greater than max_lora_rank {self.max_lora_rank}.",
                               "InternalServerError", 500)
        with self._lock:
            self.loras[name] = path
        return 200, f"Success: LoRA adapter '{name}' added successfully."


def _continuation(answer: str, prompt: str) -> str:
    """The rest of the canned `answer` after what the prompt's assistant turn already holds: a request that
    continues an answer (the constrained backends' phase 2: "...Prediction: Down by 0-1%\nAnalysis:") gets the
    canned text after its last line label, whatever call was written before it."""
    written = prompt.rsplit("<|im_start|>assistant\n", 1)[1] if "<|im_start|>assistant\n" in prompt else ""
    if not written:
        return answer
    label = written.rsplit("\n", 1)[-1]
    if label and label in answer:
        return answer.split(label, 1)[1]
    return answer


def _longest_match(answer: str, pattern: re.Pattern) -> str | None:
    """The longest prefix of `answer` the regex matches whole, as a constrained server stops where the grammar
    ends (phase 1 stops after "Prediction:"); None when no prefix does."""
    for end in range(len(answer), 0, -1):
        if pattern.fullmatch(answer, 0, end):
            return answer[:end]
    return None


def _error(message: str, kind: str, code: int, param: str | None = None) -> dict:
    return {"error": {"message": message, "type": kind, "param": param, "code": code}}


def _reply_text(req: BaseHTTPRequestHandler, status: int, text: str) -> None:
    payload = text.encode()
    try:
        req.send_response(status)
        req.send_header("Content-Type", "text/plain; charset=utf-8")
        req.send_header("Content-Length", str(len(payload)))
        req.end_headers()
        req.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
