"""The Bolt app: `build_app` wires every listener once; the two ways to run it (HTTP for production, Socket Mode
for development and firewalled installs) share it.

Nothing connects at import. `build_app` makes one Web API call, `auth.test` (Bolt checks the bot token at
construction), through a WebClient configured by `bot.slack_ops.build_client` and pointed at SLACK_API_URL when
set, so tests answer it with a fake Slack on 127.0.0.1.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Literal

import redis
from slack_bolt import App
from slack_sdk import WebClient

from bot.listeners import Commands, register_listeners
from bot.mentions import register_mentions
from bot.slack_ops import build_client
from bot.votes import register_votes
from bot.watch import register_home

if TYPE_CHECKING:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.settings import BotSettings

log = logging.getLogger(__name__)

Mode = Literal["http", "socket"]


def mode_of(settings: BotSettings) -> Mode:
    """Socket Mode when an app-level token is configured, HTTP otherwise."""
    return "socket" if settings.slack_app_token is not None else "http"


def config_problems(settings: BotSettings) -> list[str]:
    """Everything missing in the Slack app's configuration for the bot to start, all at once (empty: ready)."""
    problems = []
    if settings.slack_bot_token is None:
        problems.append("SLACK_BOT_TOKEN is not set: copy the xoxb- token from the app's OAuth & Permissions page")
    if mode_of(settings) == "http" and settings.slack_signing_secret is None:
        problems.append("SLACK_SIGNING_SECRET is not set: HTTP mode verifies every request with it (Basic "
                        "Information page); or set SLACK_APP_TOKEN to run in Socket Mode")
    token = settings.slack_app_token
    if token is not None and not token.get_secret_value().startswith("xapp-"):
        problems.append("SLACK_APP_TOKEN must be an app-level token starting with xapp- (Basic Information → "
                        "App-Level Tokens, scope connections:write)")
    return problems


def build_app(settings: BotSettings, *, conn: redis.Redis, client: WebClient | None = None,
              now: Callable[[], dt.datetime] | None = None) -> App:
    """The app with every command registered. `conn`: a Redis client with a short timeout
    (`jobs.client.fast_connection`); `now`: a clock, for tests."""
    if client is None:
        if settings.slack_bot_token is None:
            raise ValueError("SLACK_BOT_TOKEN is required to build the app")
        client = build_client(settings.slack_bot_token.get_secret_value(), base_url=settings.slack_api_url)
    secret = settings.slack_signing_secret.get_secret_value() if settings.slack_signing_secret else ""
    if mode_of(settings) == "http" and not secret:
        # An empty secret would make any request "verified" by whoever signs with the empty key.
        raise ValueError("SLACK_SIGNING_SECRET is required in HTTP mode")
    app = App(
        client=client,
        signing_secret=secret,
        name="forecaster",
        logger=logging.getLogger("bot.bolt"),
        # Every handler acks before it returns and does nothing after: run it on the request's own thread
        # rather than Bolt's 5-thread pool polled every 10 ms.
        process_before_response=True,
    )
    commands = Commands(conn=conn, settings=settings, **({"now": now} if now else {}))
    register_listeners(app, commands)
    register_votes(app, commands.ledger_reads)  # the 👍/👎 buttons (block actions)
    register_mentions(app, commands)  # @forecaster AXP, and direct messages (events)
    register_home(app, commands)
    return app


def socket_mode_handler(app: App, settings: BotSettings) -> SocketModeHandler:
    """Socket Mode over the app's own WebClient (so SLACK_API_URL applies). Built, not connected: `.start()`
    connects."""
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    if settings.slack_app_token is None:
        raise ValueError("Socket Mode needs SLACK_APP_TOKEN")
    return SocketModeHandler(app, settings.slack_app_token.get_secret_value())
