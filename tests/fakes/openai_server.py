"""A fake OpenAI-compatible chat endpoint on 127.0.0.1, for the real `openai.OpenAI` client.

It answers POST /v1/chat/completions in the real JSON shape, records every request (headers included, so a test
can check the Authorization header arrives), and can be told to fail: a status for the next N requests
(`fail_next`), a wrong key (`api_key=` makes it answer 401 and, like real providers, quote the key it got), or
slowness (`latency_s`, for client timeouts). The default answer is a FinGPT-format analysis whose text echoes the
prediction the hindsight prompt asks for ("... is up by 2-3%."), so the dataset builder's rewrite gives a parseable
answer.
"""

from __future__ import annotations

import itertools
import json
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from tests.fakes.loopback import reply_json, start_server, stop_server

_HINDSIGHT = re.compile(
    r"let's assume your prediction for next week \((?P<period>[^)]*)\) is (?P<prediction>(?:up|down) by [^%]*%)\."
)
_SYMBOL = re.compile(r"potential concerns for (?P<symbol>[A-Z.\-]+)\.")


def fingpt_answer(request: dict) -> str:
    """A made-up analysis in the teacher's format (upstream's system prompt: free text after the last header)."""
    user = next((m["content"] for m in reversed(request.get("messages", [])) if m.get("role") == "user"), "")
    symbol = (_SYMBOL.search(user) or {"symbol": "the company"})["symbol"]
    hint = _HINDSIGHT.search(user)
    if hint:
        outlook = (f"Taken together, these factors point to the stock moving {hint['prediction']} over "
                   f"{hint['period']}, as the positives and concerns above roughly balance out that way.")
    else:
        outlook = "Taken together, the factors above leave the near-term direction open."
    return (
        "[Positive Developments]:\n"
        f"1. {symbol} reported steady demand in its core business, according to recent news.\n"
        f"2. Analysts highlighted {symbol}'s disciplined cost control.\n\n"
        "[Potential Concerns]:\n"
        "1. Broader market volatility could weigh on the shares.\n"
        f"2. Competition in {symbol}'s sector remains intense.\n\n"
        "[Prediction & Analysis]:\n"
        f"{outlook} Recent news flow was mixed but mostly constructive."
    )


@dataclass(frozen=True)
class Request:
    path: str
    headers: dict[str, str]  # lower-case names
    body: Any  # decoded JSON, or the raw text when it was not JSON
    status: int  # what the fake answered
    at: float  # time.monotonic()


@dataclass
class _Failure:
    status: int
    times: int
    headers: dict[str, str]
    body: dict


class FakeOpenAI:
    """Use as a context manager; point the client at `base_url`."""

    def __init__(self, *, answer: Callable[[dict], str] = fingpt_answer, api_key: str | None = None,
                 latency_s: float = 0.0) -> None:
        self.answer = answer
        self.api_key = api_key  # when set, any other bearer token gets a 401
        self.latency_s = latency_s
        self.requests: list[Request] = []
        self._failures: list[_Failure] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    # -- configuration and inspection ----------------------------------------------------------------------------

    def fail_next(self, status: int, times: int = 1, *, headers: dict[str, str] | None = None,
                  message: str = "synthetic failure", code: str | None = None) -> None:
        """Answer the next `times` chat requests with `status` and an OpenAI-shaped error body."""
        error = {"message": message, "type": "server_error" if status >= 500 else "invalid_request_error",
                 "param": None, "code": code}
        with self._lock:
            self._failures.append(_Failure(status, times, headers or {}, {"error": error}))

    @property
    def chat_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.path.endswith("/chat/completions")]

    def user_prompts(self) -> list[str]:
        """The user message of every chat request, in order."""
        return [next(m["content"] for m in r.body["messages"] if m["role"] == "user") for r in self.chat_requests]

    @property
    def base_url(self) -> str:
        assert self._server is not None, "use FakeOpenAI as a context manager"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/v1"

    # -- server --------------------------------------------------------------------------------------------------

    def __enter__(self) -> FakeOpenAI:
        self._server = start_server(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_server(self._server)

    def _take_failure(self) -> _Failure | None:
        with self._lock:
            for failure in self._failures:
                if failure.times > 0:
                    failure.times -= 1
                    return failure
        return None

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        raw = req.rfile.read(int(req.headers.get("Content-Length") or 0)).decode("utf-8")
        try:
            body: Any = json.loads(raw)
        except ValueError:
            body = raw
        headers = {k.lower(): v for k, v in req.headers.items()}
        if self.latency_s:
            time.sleep(self.latency_s)
        status, payload, extra = self._route(req.path, headers, body)
        with self._lock:
            self.requests.append(Request(req.path, headers, body, status, time.monotonic()))
        reply_json(req, status, payload, extra)

    def _route(self, path: str, headers: dict[str, str], body: Any) -> tuple[int, dict, dict[str, str]]:
        if path.rstrip("/") != "/v1/chat/completions":
            return 404, _error(f"Unknown request URL: POST {path}", "invalid_request_error", None), {}
        token = headers.get("authorization", "").removeprefix("Bearer ")
        if self.api_key is not None and token != self.api_key:
            # Real providers quote (part of) the key they were given; the client must not pass that on.
            return 401, _error(f"Incorrect API key provided: {token}.", "invalid_request_error",
                               "invalid_api_key"), {}
        failure = self._take_failure()
        if failure is not None:
            return failure.status, failure.body, failure.headers
        if not isinstance(body, dict) or not body.get("messages"):
            return 400, _error("'messages' is required", "invalid_request_error", None), {}
        try:
            text = self.answer(body)
        except Exception as exc:  # noqa: BLE001 - a broken answer function is a 500, as a broken server's would be
            return 500, _error(f"answer function failed: {exc}", "server_error", None), {}
        prompt_chars = sum(len(str(m.get("content", ""))) for m in body["messages"])
        usage = {"prompt_tokens": prompt_chars // 4, "completion_tokens": len(text) // 4}
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        return 200, {
            "id": f"chatcmpl-fake-{next(self._ids)}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": body.get("model", ""),
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text},
                         "logprobs": None, "finish_reason": "stop"}],
            "usage": usage,
        }, {}


def _error(message: str, kind: str, code: str | None) -> dict:
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}
