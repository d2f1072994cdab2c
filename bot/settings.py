"""The Slack surface's settings: the app's tokens and secrets, its admins, and how the bot serves and paces
requests.

Composed with the other layers' by the entry point (`forecaster.settings.Settings`); see `engine.settings`.
"""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

from engine.settings import SETTINGS_CONFIG
from jobs.settings import slack_ids


class BotSettings(BaseSettings):
    """Slack app and bot server."""

    model_config = SETTINGS_CONFIG

    slack_bot_token: SecretStr | None = Field(default=None, description="The bot's xoxb- token (chat:write).")
    slack_api_url: str | None = Field(
        default=None, description="Override of Slack's Web API base URL (a proxy, or a fake server in tests)."
    )
    slack_signing_secret: SecretStr | None = Field(
        default=None,
        description="The app's Signing Secret (Basic Information page): the bot verifies every HTTP request with "
        "it. Required in HTTP mode; unused in Socket Mode.",
    )
    slack_app_token: SecretStr | None = Field(
        default=None,
        description="An app-level xapp- token with connections:write. Set: the bot runs in Socket Mode (no public "
        "URL; development, firewalled installs). Unset: HTTP mode on BOT_HOST:BOT_PORT.",
    )
    slack_admin_users: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Slack user ids (U0123ABCD) allowed to run /retrain. Empty: nobody can.",
    )
    bot_host: str = Field(default="0.0.0.0", description="HTTP mode: the address the bot listens on.")
    bot_port: int = Field(default=3000, ge=0, le=65535, description="HTTP mode: the port (/slack/events, /healthz).")
    bot_threads: int = Field(
        default=8, ge=1, le=256, description="HTTP mode: requests served at once (an ack takes about a "
        "millisecond of CPU; more threads only help while Redis is slow)."
    )
    bot_queue_max_depth: int = Field(
        default=200, ge=1,
        description="A /forecast is refused (\"queue full, try later\") when this many jobs already wait in its "
        "queue.",
    )
    bot_user_max_pending: int = Field(
        default=5, ge=1,
        description="A /forecast is refused (\"you already have N waiting\") when its requester already has this "
        "many forecasts queued or running, so one person cannot fill the queue everyone shares. The same request "
        "asked again is never refused.",
    )
    bot_digest_cooldown_s: int = Field(
        default=3600, ge=0, description="On-demand digests (/digest, /forecast dow30): at most one per channel "
        "per this many seconds.",
    )

    @field_validator("slack_admin_users", mode="before")
    @classmethod
    def _user_ids(cls, value: object) -> object:
        return slack_ids(value, pattern=r"[UW][A-Z0-9]{2,}", what="user ids", example="U0123ABCD",
                         where="a person's profile, ⋮ More, Copy member ID")
