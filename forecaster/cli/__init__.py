"""`forecaster`: the single command-line entry point (`forecaster.cli:main`).

It sits at the top of the import graph (forecaster → bot → jobs → engine; pyproject.toml's import-linter contracts).
Importing it registers every command and imports nothing heavy: each command imports what it needs when it runs.
"""

# Each module registers its commands on `app`.
from forecaster.cli import analyst, bot_app, data, doctor, ledger, schedule, service, training, up  # noqa: F401
from forecaster.cli.common import app, main

__all__ = ["app", "main"]
