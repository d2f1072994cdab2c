"""The process's settings, composed once from each layer's own: `engine.settings.EngineSettings` (data, model,
evaluation, training), `jobs.settings.JobsSettings` (Redis, the ledger's database, the schedule) and
`bot.settings.BotSettings` (the Slack app, the bot server).

Every entry point (`forecaster.cli`) builds one `Settings()` and passes it down; a layer's code reads only the
fields of its own layer and the layers below it, and no layer imports this module. Nothing runs at import time;
tests build `Settings(...)` directly with `_env_file=None`.
"""

from __future__ import annotations

from bot.settings import BotSettings
from engine.settings import SETTINGS_CONFIG, EngineSettings
from jobs.settings import JobsSettings

# The layers' classes, top to bottom: the order of the configuration table (README, .env.example).
LAYERS = {"bot": BotSettings, "jobs": JobsSettings, "engine": EngineSettings}


class Settings(BotSettings, JobsSettings, EngineSettings):
    """Every knob of the product: the fields of every layer (env var names are the field names in upper case)."""

    model_config = SETTINGS_CONFIG
