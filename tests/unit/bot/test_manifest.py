"""bot/manifest.json is the one place declaring the slash commands and scopes: it must match what the app wires."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from slack_bolt.request import BoltRequest

from bot.app import build_app
from bot.listeners import Commands
from bot.messages import USAGE
from forecaster.settings import Settings
from jobs.client import fast_connection
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_commands import SECRET, command_body, signed_headers

MANIFEST = json.loads((Path(__file__).resolve().parents[3] / "bot" / "manifest.json").read_text(encoding="utf-8"))
DECLARED = {c["command"] for c in MANIFEST["features"]["slash_commands"]}


@pytest.fixture
def app(redis, redis_server):
    with FakeSlack() as slack:
        settings = Settings(_env_file=None, slack_bot_token="xoxb-test", slack_signing_secret=SECRET,
                            slack_api_url=slack.api_url, redis_url=redis_server["url"])
        yield build_app(settings, conn=fast_connection(redis_server["url"]))


def dispatch(app, command: str, text: str = "help") -> int:
    body = command_body(command, text)
    return app.dispatch(BoltRequest(body=body, headers=signed_headers(body))).status


def test_the_manifest_declares_exactly_the_commands_the_app_wires(app, redis):
    wired = set(Commands(conn=redis, settings=Settings(_env_file=None)).table())
    assert DECLARED == wired == set(USAGE)
    assert all(dispatch(app, command) == 200 for command in DECLARED)  # each one really is registered
    assert dispatch(app, "/undeclared") == 404


def test_the_manifest_asks_for_the_scopes_the_product_uses_and_nothing_more():
    assert sorted(MANIFEST["oauth_config"]["scopes"]["bot"]) == ["app_mentions:read", "chat:write",
                                                                  "chat:write.public", "commands", "files:write",
                                                                  "im:history"]
    for command in MANIFEST["features"]["slash_commands"]:
        assert command["url"].endswith("/slack/events") and command["should_escape"] is False
        assert len(command["description"]) <= 100 and len(command["usage_hint"]) <= 100  # Slack's limits
    assert MANIFEST["settings"]["socket_mode_enabled"] is False  # HTTP mode, the production default


def test_the_manifest_subscribes_to_the_home_tab_the_app_publishes(app):
    """app_home_opened on the same signed endpoint (no scope needed for it, nor for views.publish)."""
    from tests.fakes.slack_events import event_body, signed_event_headers

    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    events = MANIFEST["settings"]["event_subscriptions"]
    assert events["request_url"].endswith("/slack/events") and "app_home_opened" in events["bot_events"]
    body = event_body({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"})
    assert app.dispatch(BoltRequest(body=body, headers=signed_event_headers(body))).status == 200


def test_the_manifest_sends_mentions_direct_messages_and_button_clicks_to_what_the_app_wires(app):
    """Issue 22: `@forecaster AXP` (app_mention, scope app_mentions:read), a direct message (message.im, scope
    im:history; the Messages tab open for it) and the 👍/👎 buttons (interactivity), all on the same signed endpoint."""
    from urllib.parse import urlencode

    from tests.fakes.slack_events import event_body, signed_event_headers

    settings = MANIFEST["settings"]
    assert {"app_mention", "message.im"} <= set(settings["event_subscriptions"]["bot_events"])
    assert settings["interactivity"] == {"is_enabled": True, "request_url": "https://bot.example.com/slack/events"}
    assert MANIFEST["features"]["app_home"]["messages_tab_enabled"] is True
    assert MANIFEST["features"]["app_home"]["messages_tab_read_only_enabled"] is False
    for event in ({"type": "app_mention", "user": "U1", "channel": "C1", "ts": "1.1", "text": "<@U0BOT> help"},
                  {"type": "message", "channel_type": "im", "user": "U1", "channel": "D1", "ts": "1.2",
                   "text": "help"}):
        body = event_body(event)
        assert app.dispatch(BoltRequest(body=body, headers=signed_event_headers(body))).status == 200
    click = {"type": "block_actions", "user": {"id": "U1"}, "team": {"id": "T1"}, "api_app_id": "A1",
             "channel": {"id": "C1"}, "container": {"type": "message", "message_ts": "1.3", "channel_id": "C1"},
             "actions": [{"type": "button", "action_id": "vote_up", "block_id": "forecast_votes", "value": "x:AXP"}]}
    body = urlencode({"payload": json.dumps(click)})
    assert app.dispatch(BoltRequest(body=body, headers=signed_headers(body))).status == 200
