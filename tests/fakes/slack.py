"""A fake Slack Web API (and response_url hooks) on 127.0.0.1 that records every call.

Point `WebClient(token=..., base_url=fake.api_url)` at it. Every method answers `{"ok": true, ...}` with a fresh
`ts`, unless told to fail: `fail_next("chat.postMessage", 429, headers={"Retry-After": "1"})`.

It refuses what Slack would refuse, the way Slack does:
- a Web API call answers HTTP 200 with `{"ok": false, "error": ...}` (slack_sdk raises `SlackApiError`):
  `invalid_blocks`, `msg_too_long`, `msg_blocks_too_long`, `no_text` for a message payload that
  `tests.slack_limits.slack_problems` finds fault with (chat.postMessage, chat.update, chat.postEphemeral);
  `not_in_channel`, `channel_not_found`, `is_archived`... for a channel told to refuse (`refuse_channel`);
  `invalid_auth`, `token_revoked`, `account_inactive`... for a token told to (`refuse_token`, `invalid_tokens`);
- a response_url post answers HTTP 400 with the error as plain text (`invalid_blocks`), as Slack's hooks do. A
  response_url is not bound by channel membership, so `refuse_channel` leaves it alone. It takes HOOK_MAX_USES
  posts, as Slack's do (5): later ones answer HTTP 404 `used_url`.
Refused calls are kept in `refused` (with their `error`), apart from `calls`, which Slack accepted.

`delete(ts)` is a person deleting a message in Slack: it leaves `messages()`, and chat.update or chat.delete of it
answer `message_not_found`, as Slack's do (so does a message the bot deleted itself).

`lose_answer_after_accepting(method, when=..., kill_pgid=...)` opens the window between Slack taking a message and
the sender learning it did: the call is accepted (in `calls`, shown in `messages()`), then the sender never gets
the answer: its process group is SIGKILLed first (a worker dying right there), or it gets HTTP 500.

`files_upload_v2` works as against Slack: files.getUploadURLExternal hands out an upload URL on this server, the
client POSTs the bytes there, files.completeUploadExternal shares the file; `uploads()` lists the completed files
with their bytes.
"""

from __future__ import annotations

import json
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import parse_qs

from tests.fakes.loopback import reply_json, start_server, stop_server
from tests.slack_limits import slack_problems

# The methods whose body is a message Slack validates, and the keys of theirs that are not part of the message.
MESSAGE_METHODS = {"chat.postMessage": (), "chat.update": (), "chat.postEphemeral": ("user",)}
# The methods that act on a channel, so a channel told to refuse refuses them (with the argument naming it).
CHANNEL_METHODS = {"chat.postMessage": "channel", "chat.update": "channel", "chat.postEphemeral": "channel",
                   "chat.delete": "channel", "files.completeUploadExternal": "channel_id"}
# How many posts a response_url takes (Slack: 5 within 30 minutes).
HOOK_MAX_USES = 5


@dataclass(frozen=True)
class SlackCall:
    method: str  # "chat.postMessage", or "hooks/<path>" for response_url posts
    body: dict[str, Any]
    token: str | None
    at: float  # time.monotonic() on arrival
    ts: str | None = None  # the ts the fake answered with
    error: str | None = None  # why the fake refused or failed it (calls in `FakeSlack.refused` and `.failed` only)


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


def is_sources_reply(message: dict[str, Any]) -> bool:
    """Whether a posted message is a forecast's "Sources" reply (in a thread, its text "Sources: the N news…")."""
    return bool(message.get("thread_ts")) and str(message.get("text", "")).startswith("Sources: ")


class FakeSlack:
    def __init__(self) -> None:
        self.calls: list[SlackCall] = []
        self._failures: list[list] = []
        self._lock = threading.Lock()
        self._ts = 1_700_000_000
        self._server = None
        self.scopes: str | None = "commands,chat:write"  # sent as x-oauth-scopes on every answer, as Slack does
        self.invalid_tokens: set[str] = set()  # calls with these tokens get invalid_auth
        self.token_errors: dict[str, str] = {}  # token → the error every call with it gets (refuse_token)
        self.channel_errors: dict[str, str] = {}  # channel → the error calls on it get (refuse_channel)
        self.refused: list[SlackCall] = []
        self.failed: list[SlackCall] = []  # calls answered with a failure armed by `fail_next`
        self._uploads: dict[str, UploadedFile] = {}
        self._lost_answers: list[tuple[str, Callable[[dict[str, Any]], bool], int | None]] = []
        self.deleted: set[str] = set()  # ts of messages gone from Slack (`delete`, or chat.delete)
        self._delays: list[tuple[str, Callable[[dict[str, Any]], bool], float]] = []

    def delete(self, ts: str) -> None:
        """A person deletes the message `ts` in Slack's own UI (no API call of ours): from now on it is gone."""
        with self._lock:
            self.deleted.add(ts)

    def lose_answer_after_accepting(self, method: str, *, when: Callable[[dict[str, Any]], bool] = lambda body: True,
                                    kill_pgid: int | None = None) -> None:
        """The next accepted `method` call (`hooks/<path>` for a response_url) whose body satisfies `when` is
        recorded as Slack accepting it, and then its answer is lost: with `kill_pgid`, that process group is
        SIGKILLed before a byte of the answer is written; without, the answer is HTTP 500."""
        with self._lock:
            self._lost_answers.append((method, when, kill_pgid))

    def delay_next(self, method: str, seconds: float, *,
                   when: Callable[[dict[str, Any]], bool] = lambda body: True) -> None:
        """The next `method` call whose body satisfies `when` reaches Slack `seconds` late: it is applied (and
        answered) only then, so calls sent after it can be applied before it, as on a slow network."""
        with self._lock:
            self._delays.append((method, when, seconds))

    def _delay_of(self, method: str, body: dict[str, Any]) -> float:
        with self._lock:
            for k, (delayed, when, seconds) in enumerate(self._delays):
                if delayed == method and when(body):
                    del self._delays[k]
                    return seconds
        return 0.0

    def refuse_channel(self, channel: str, error: str = "not_in_channel") -> None:
        """From now on, chat.* calls on `channel` get `error` (not_in_channel, channel_not_found, is_archived)."""
        with self._lock:
            self.channel_errors[channel] = error

    def refuse_token(self, token: str, error: str = "invalid_auth") -> None:
        """From now on, every Web API call with `token` gets `error` (invalid_auth, token_revoked,
        account_inactive...)."""
        with self._lock:
            self.token_errors[token] = error

    def ephemerals(self, user: str | None = None) -> list[dict[str, Any]]:
        """What chat.postEphemeral showed (to `user`, or to anyone), oldest first."""
        return [b for b in self.posted("chat.postEphemeral") if user is None or b.get("user") == user]

    def hooks(self) -> list[dict[str, Any]]:
        """Every body a response_url accepted, oldest first."""
        with self._lock:
            return [c.body for c in self.calls if c.method.startswith("hooks/")]

    @property
    def api_url(self) -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/api/"

    def hook_url(self, name: str = "T1/B1/x") -> str:
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/hooks/{name}"

    def fail_next(self, method: str, status: int, *, times: int = 1, headers: dict[str, str] | None = None,
                  error: str | None = None, when: Callable[[dict[str, Any]], bool] = lambda body: True,
                  **fields: str) -> None:
        """The next `times` calls of `method` (those whose body satisfies `when`) answer HTTP `status` with `error`
        (by default `ratelimited` for a 429, else `fatal_error`) and any other `fields` (Slack's `needed` and
        `provided` for a missing_scope)."""
        with self._lock:
            self._failures.append([method, status, times, headers or {}, error, fields, when])

    def posted(self, method: str = "chat.postMessage", *, sources: bool = False) -> list[dict[str, Any]]:
        """The bodies of the accepted `method` calls; a forecast's "Sources" reply left out unless `sources`."""
        with self._lock:
            return [c.body for c in self.calls if c.method == method and (sources or not is_sources_reply(c.body))]

    def messages(self, channel: str | None = None, *, sources: bool = False) -> list[dict[str, Any]]:
        """What a channel shows now: each message posted (chat.postMessage) in its latest state after any
        chat.update, oldest first, with its `ts`. A forecast's "Sources" reply in its thread (the news it read,
        `bot.blocks.sources_message`) is left out unless `sources`: most scenarios are about the answer."""
        with self._lock:
            shown: dict[str, dict[str, Any]] = {}
            for call in self.calls:
                if call.method == "chat.postMessage":
                    shown[call.ts] = {**call.body, "ts": call.ts}
                elif call.method == "chat.update" and call.body.get("ts") in shown:
                    shown[call.body["ts"]] = {**shown[call.body["ts"]], **call.body}
                elif call.method == "chat.delete":
                    shown.pop(call.body.get("ts"), None)
            return [m for ts, m in shown.items()
                    if ts not in self.deleted and (channel is None or m.get("channel") == channel)
                    and (sources or not is_sources_reply(m))]

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
        token = req.headers.get("Authorization", "").removeprefix("Bearer ") or None
        time.sleep(self._delay_of(method, body))
        status, headers, answer, lost = 200, {}, None, None
        with self._lock:
            for failure in self._failures:
                if failure[0] == method and failure[2] > 0 and failure[6](body):
                    failure[2] -= 1
                    status, headers = failure[1], failure[3]
                    answer = {"ok": False, "error": failure[4] or ("ratelimited" if status == 429 else "fatal_error"),
                              **failure[5]}
                    self.failed.append(SlackCall(method, body, token, time.monotonic(), error=answer["error"]))
                    break
            else:
                error = self._refusal(method, body, token)
                if error is not None:
                    self.refused.append(SlackCall(method, body, token, time.monotonic(), error=error))
                    answer = {"ok": False, "error": error}
                    if error in ("invalid_blocks", "msg_blocks_too_long"):  # Slack says which block, as here
                        answer["errors"] = self._problems(method, body)
                    if method.startswith("hooks/"):
                        # Slack's hooks answer an HTTP error with the code as plain text
                        status = 404 if error == "used_url" else 400
                else:
                    self._ts += 1
                    # chat.update answers with the edited message's own ts, like Slack.
                    ts = body["ts"] if method in ("chat.update", "chat.delete") and body.get("ts") \
                        else f"{self._ts}.000100"
                    self.calls.append(SlackCall(method, body, token, time.monotonic(), ts))
                    if method == "chat.delete":
                        self.deleted.add(ts)
                    lost = self._take_lost_answer(method, body)
                    answer = {"ok": True, "channel": body.get("channel"), "ts": ts}
                    if method == "chat.postEphemeral":
                        answer = {"ok": True, "message_ts": ts}
                    answer.update(self._file_answer(method, body))
        if answer.get("ok") and lost is not None:
            self._lose_answer(req, lost)
            return
        if method == "auth.test" and answer.get("ok"):
            answer.update(user="forecaster", user_id="U0BOT", team="Fake Workspace", team_id="T0FAKE")
        if self.scopes is not None:
            headers = {**headers, "x-oauth-scopes": self.scopes}
        if method.startswith("hooks/") and (status == 400 or answer.get("error") == "used_url"):
            _reply_text(req, status, answer["error"], headers)
        else:
            reply_json(req, status, answer, headers)

    def _take_lost_answer(self, method: str, body: dict[str, Any]) -> tuple | None:
        """The fault armed for this accepted call, if any (removed: it fires once). Called with the lock held."""
        for fault in self._lost_answers:
            if fault[0] == method and fault[1](body):
                self._lost_answers.remove(fault)
                return fault
        return None

    def _lose_answer(self, req: BaseHTTPRequestHandler, fault: tuple) -> None:
        kill_pgid = fault[2]
        if kill_pgid is not None:
            os.killpg(kill_pgid, signal.SIGKILL)
            req.close_connection = True
            return
        if fault[0].startswith("hooks/"):
            _reply_text(req, 500, "internal_error", {})
        else:
            reply_json(req, 500, {"ok": False, "error": "internal_error"})

    def _problems(self, method: str, body: dict[str, Any]) -> list[str]:
        """What Slack would find wrong with the message in this call (none for other calls)."""
        if method.startswith("hooks/"):
            return slack_problems(body)
        if method not in MESSAGE_METHODS:
            return []
        return slack_problems({k: v for k, v in body.items() if k not in MESSAGE_METHODS[method]})

    def _refusal(self, method: str, body: dict[str, Any], token: str | None) -> str | None:
        """The error Slack would answer this call with, in Slack's order: the token, the channel, the payload.
        Called with the lock held."""
        if method.startswith("hooks/") and sum(c.method == method for c in self.calls) >= HOOK_MAX_USES:
            return "used_url"
        if not method.startswith(("hooks/", "upload/")):
            if token in self.invalid_tokens:
                return "invalid_auth"
            if token in self.token_errors:
                return self.token_errors[token]
        channel_arg = CHANNEL_METHODS.get(method)
        if channel_arg and body.get(channel_arg) in self.channel_errors:
            return self.channel_errors[body[channel_arg]]
        if method in ("chat.update", "chat.delete") and body.get("ts") in self.deleted:
            return "message_not_found"
        problems = self._problems(method, body)
        return problems[0].split(": ", 1)[0] if problems else None


def _reply_text(req: BaseHTTPRequestHandler, status: int, text: str, headers: dict[str, str]) -> None:
    payload = text.encode()
    try:
        req.send_response(status)
        req.send_header("Content-Type", "text/plain; charset=utf-8")
        req.send_header("Content-Length", str(len(payload)))
        for name, value in headers.items():
            req.send_header(name, value)
        req.end_headers()
        req.wfile.write(payload)
    except (BrokenPipeError, ConnectionResetError):
        pass
