"""A fake Slack Web API (and response_url hooks) on 127.0.0.1 that records every call.

Point `WebClient(token=..., base_url=fake.api_url)` at it. Every method answers `{"ok": true, ...}` with a fresh
`ts`, unless told to fail: `fail_next("chat.postMessage", 429, headers={"Retry-After": "1"})`.

`files_upload_v2` works as against Slack: files.getUploadURLExternal hands out an upload URL on this server, the
client POSTs the bytes there, files.completeUploadExternal shares the file; `uploads()` lists the completed files
with their bytes.
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


@dataclass
class UploadedFile:
    """One files_upload_v2 upload, filled in step by step."""

    file_id: str
    filename: str | None
    length: int  # as announced in files.getUploadURLExternal
    content: bytes | None = None  # the bytes POSTed to the upload URL
    title: str | None = None
    channel: str | None = None
    thread_ts: str | None = None
    completed: bool = False  # files.completeUploadExternal named it


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self._failures: list[list] = []
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        self._server = None
        self.scopes: str | None = "commands,chat:write"  # sent as x-oauth-scopes on every answer, as Slack does
        self.invalid_tokens: set[str] = set()  # calls with these tokens get invalid_auth
        self._uploads: dict[str, UploadedFile] = {}

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

    def uploads(self) -> list[UploadedFile]:
        """Files whose upload was completed (all three steps), in order."""
        with self._lock:
            return [u for u in self._uploads.values() if u.completed]

    def _file_answer(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        """The extra fields of files_upload_v2's two API steps; called with the lock held."""
        if method == "files.getUploadURLExternal":
            file_id = f"F{len(self._uploads) + 1:08d}"
            self._uploads[file_id] = UploadedFile(file_id, body.get("filename"), int(body.get("length") or 0))
            host, port = self._server.server_address[:2]
            return {"file_id": file_id, "upload_url": f"http://{host}:{port}/upload/{file_id}"}
        if method == "files.completeUploadExternal":
            named = json.loads(body.get("files") or "[]")
            unknown = [f["id"] for f in named if f["id"] not in self._uploads or self._uploads[f["id"]].content is None]
            if unknown or not named:
                return {"ok": False, "error": "file_not_found"}
            for f in named:
                upload = self._uploads[f["id"]]
                upload.title, upload.channel, upload.completed = f.get("title"), body.get("channel_id"), True
                upload.thread_ts = body.get("thread_ts")
            return {"files": [{"id": f["id"], "title": f.get("title"), "name": self._uploads[f["id"]].filename}
                              for f in named]}
        return {}

    def _receive_upload(self, req: BaseHTTPRequestHandler, file_id: str, data: bytes) -> None:
        """Step 2 of files_upload_v2: the raw bytes, POSTed to the URL step 1 handed out."""
        with self._lock:
            upload = self._uploads.get(file_id)
            if upload is not None:
                upload.content = data
                self.calls.append(SlackCall(f"upload/{file_id}", {"size": len(data)}, None, time.monotonic()))
        if upload is None:
            reply_json(req, 404, {"ok": False, "error": "unknown upload url"})
        else:
            reply_json(req, 200, f"OK - {len(data)}")

    def __enter__(self) -> FakeSlack:
        self._server = start_server(self._handle)
        return self

    def __exit__(self, *exc: object) -> None:
        stop_server(self._server)

    def _handle(self, req: BaseHTTPRequestHandler) -> None:
        length = int(req.headers.get("Content-Length") or 0)
        data = req.rfile.read(length) if length else b""
        if req.path.startswith("/upload/"):  # file bytes, not an API call
            self._receive_upload(req, req.path.removeprefix("/upload/"), data)
            return
        raw = data.decode()
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
                answer.update(self._file_answer(method, body))
        if auth.removeprefix("Bearer ") in self.invalid_tokens:
            answer = {"ok": False, "error": "invalid_auth"}
        elif method == "auth.test" and answer.get("ok"):
            answer.update(user="forecaster", user_id="U0BOT", team="Fake Workspace", team_id="T0FAKE")
        if self.scopes is not None:
            headers = {**headers, "x-oauth-scopes": self.scopes}
        reply_json(req, status, answer, headers)
