"""Events API requests as Slack sends them to the request URL: a JSON `event_callback`, signed like a command."""

from __future__ import annotations

import itertools
import json
import time

from tests.fakes.slack_commands import SECRET, signed_headers

_event_ids = itertools.count(1)


def event_body(event: dict, *, team: str = "T1", app: str = "A1") -> str:
    return json.dumps({
        "token": "legacy-verification-token", "team_id": team, "api_app_id": app, "type": "event_callback",
        "event": {"event_ts": f"{time.time():.6f}", **event}, "event_id": f"Ev{next(_event_ids):08d}",
        "event_time": int(time.time()), "authorizations": [{"team_id": team, "user_id": "U0BOT", "is_bot": True}],
    })


def signed_event_headers(body: str, *, secret: str = SECRET) -> dict[str, str]:
    return {**signed_headers(body, secret=secret), "content-type": "application/json"}
