"""A fake Slack Web API (and response_url hooks) on 127.0.0.1 that records every call.

Point `WebClient(token=..., base_url=fake.api_url)` at it. Every method answers `{"ok": true, ...}` with a fresh
`ts`, unless told to fail: `fail_next("chat.postMessage", 429, headers={"Retry-After": "1"})`.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.loopback import reply_json, start_server, stop_server


@dataclass(frozen=True)
class SlackCall:
    method: str  # "chat.postMessage", or "hooks/<path>" for response_url posts
    body: dict[str, Any]
    token: str | None
    at: float  # time.monotonic() on arrival
    ts: str | None = None  # the ts the fake answered with


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self._failures: list[list] = []
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        self._server = None

    @property
    def api_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def hook_url(self, name: str = "T1/B1/x") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/{name}"

    def fail_next(self, method: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None) -> None:
        with self._lock:
            self._failures.append([method, status, times, headers or {}])

    def posted(self, method: str = "chat.postMessage") -> list[dict[str, Any]]:
        with self._lock:
            return [c.body for c in self.calls if c.method == method]

    def messages(self, channel: str | None = None) -> list[dict[str, Any]]:
        """What a channel shows now: each message posted (chat.postMessage) in its latest state after any
        chat.update, oldest first, with its `ts`."""
        with self._lock:
            shown: dict[str, dict[str, Any]] = {}
            for call in self.calls:
                if call.method == "chat.postMessage":
                    shown[call.ts] = {**call.body, "ts": call.ts}
                elif call.method == "chat.update" and call.body.get("ts") in shown:
                    shown[call.body["ts"]] = {**shown[call.body["ts"]], **call.body}
        return [m for m in shown.values() if channel is None or m.get("channel") == channel]

    def __enter__(self) -> FakeSlack:
        self._server = start_server(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_server(self._server)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        raw = req.rfile.read(length).decode() if length else ""
        if "json" in (req.headers.get("Content-Type") or ""):
            body = json.loads(raw or "{}")
        else:
            body = {k: v[0] for k, v in parse_qs(raw).items()}
            for key in ("blocks", "attachments"):
                if isinstance(body.get(key), str):
                    body[key] = json.loads(body[key])
        path = req.path.split("?")[0]
        method = path.removeprefix("/api/") if path.startswith("/api/") else path.lstrip("/")
        auth = req.headers.get("Authorization", "")
        status, headers, answer = 200, {}, None
        with self._lock:
            for failure in self._failures:
                if failure[0] == method and failure[2] > 0:
                    failure[2] -= 1
                    status, headers = failure[1], failure[3]
                    answer = {"ok": False, "error": "ratelimited" if status == 429 else "fatal_error"}
                    break
            else:
                self._ts += 1
                # chat.update answers with the edited message's own ts, like Slack.
                ts = body["ts"] if method == "chat.update" and body.get("ts") else f"{self._ts}.000100"
                self.calls.append(SlackCall(method, body, auth.removeprefix("Bearer ") or None, time.monotonic(),
                                            ts))
                answer = {"ok": True, "channel": body.get("channel"), "ts": ts}
        reply_json(req, status, answer, headers)
