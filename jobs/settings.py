"""The jobs layer's settings: Redis (queue, cache, limiter), the ledger's database, and the weekly schedule.

Composed with the other layers' by the entry point (`forecaster.settings.Settings`); see `engine.settings`.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Annotated

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, NoDecode

from engine.market.weekly_time import parse_weekly_time
from engine.settings import SETTINGS_CONFIG


class JobsSettings(BaseSettings):
    """Queue, ledger and schedule."""

    model_config = SETTINGS_CONFIG

    redis_url: str | None = Field(
        default=None,
        description="Redis for the job queue, the market data cache and the shared rate limiter, e.g. "
        "redis://localhost:6379/0. Unset: `forecaster up` starts an embedded one; a lone CLI command caches in "
        "its own memory.",
    )
    data_dir: Path = Field(
        default=Path(".forecaster"),
        description="Where `forecaster up` keeps the embedded Redis (append-only file) when REDIS_URL is unset, "
        "and the forecast ledger's SQLite file (ledger.sqlite3) when DATABASE_URL is unset.",
    )
    database_url: SecretStr | None = Field(
        default=None,
        description="The forecast ledger's database (SQLAlchemy URL; it may hold a password), e.g. "
        "postgresql+psycopg://forecaster:secret@postgres:5432/forecaster. Unset: a SQLite file under DATA_DIR.",
    )
    database_connect_timeout_s: int = Field(
        default=5, ge=2, le=300,
        description="Seconds to wait for the ledger's database to accept a connection (also for a free connection "
        "in the pool). The bot's /track waits at most 2 s whatever this says: it answers inside Slack's 3 s.",
    )
    database_statement_timeout_s: float = Field(
        default=60.0, gt=0, le=3600,
        description="A statement on the ledger's database running longer is cancelled (PostgreSQL's "
        "statement_timeout; on SQLite, the wait for another process's write lock, at most 10 s). Migrations are "
        "not bound by it. The bot's /track reads: at most 2 s.",
    )
    digest_schedule: str = Field(
        default="mon 08:00",
        description="When the weekly digest (a channel's watchlist, else the Dow30) is posted: a day name and a "
        '24-hour New York time, e.g. "mon 08:00". '
        "It forecasts the week that opens next, from data up to the end of the day before.",
    )
    summary_schedule: str = Field(
        default="sat 10:00",
        description='When the weekly evaluation summary is posted, e.g. "sat 10:00" (after the week has closed).',
    )
    digest_channels: Annotated[list[str], NoDecode] = Field(
        default_factory=list,
        description="Comma-separated Slack channel ids (C0123ABCD) that get the digest and the summary. A channel "
        "with a watchlist (/watch) gets a digest of its names, the others the Dow30.",
    )
    watchlist_max: int = Field(
        default=50, ge=1, le=500,
        description="The most tickers one channel's watchlist (/watch) may hold; its digest runs them in one batch.",
    )
    scheduler_misfire_grace_s: int = Field(
        default=3 * 3600, ge=60, le=24 * 3600,
        description="A scheduled post missed while the scheduler was down still goes out if it restarts within "
        "this many seconds (one post however many were missed); later than that, it is skipped.",
    )

    @field_validator("digest_schedule", "summary_schedule")
    @classmethod
    def _weekly_time(cls, value: str) -> str:
        return str(parse_weekly_time(value))

    @field_validator("digest_channels", mode="before")
    @classmethod
    def _channel_ids(cls, value: object) -> object:
        return slack_ids(value, pattern=r"[CGD][A-Z0-9]{2,}", what="channel ids", example="C0123ABCD",
                         where="open the channel's details, the id is at the bottom of About")


def slack_ids(value: object, *, pattern: str, what: str, example: str, where: str) -> object:
    """A comma-separated list (or a list) of Slack ids, checked, without duplicates, in the order given."""
    if isinstance(value, str):
        value = value.split(",")
    if not isinstance(value, list | tuple):
        return value  # pydantic reports the wrong type
    ids = [str(part).strip() for part in value if str(part).strip()]
    bad = [i for i in ids if not re.fullmatch(pattern, i)]
    if bad:
        raise ValueError(f"{', '.join(bad)}: not Slack {what}; give ids like {example}, comma-separated (in Slack: "
                         f"{where})")
    return list(dict.fromkeys(ids))
