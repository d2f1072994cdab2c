"""Slash-command requests as Slack sends them: form-encoded, signed with the app's signing secret
(`v0=` + HMAC-SHA256 of `v0:{timestamp}:{body}`), through slack_sdk's own SignatureVerifier."""

from __future__ import annotations

import itertools
import time
from urllib.parse import urlencode

from slack_sdk.signature import SignatureVerifier

SECRET = "test-signing-secret"
_trigger_ids = itertools.count(1)


def command_body(command: str, text: str = "", *, user: str = "U111", channel: str = "C123",
                 response_url: str | None = None, trigger_id: str | None = None) -> str:
    fields = {
        "token": "legacy-verification-token", "team_id": "T1", "team_domain": "acme", "channel_id": channel,
        "channel_name": "markets", "user_id": user, "user_name": "analyst", "command": command, "text": text,
        "api_app_id": "A1", "is_enterprise_install": "false",
        "response_url": response_url or "https://hooks.slack.invalid/commands/T1/1/x",
        "trigger_id": trigger_id or f"{next(_trigger_ids)}.{time.time_ns()}.abcdef",
    }
    return urlencode(fields)


def signed_headers(body: str, *, secret: str = SECRET, timestamp: int | None = None) -> dict[str, str]:
    ts = str(int(time.time()) if timestamp is None else timestamp)
    return {
        "content-type": "application/x-www-form-urlencoded",
        "x-slack-request-timestamp": ts,
        "x-slack-signature": SignatureVerifier(secret).generate_signature(timestamp=ts, body=body),
    }
