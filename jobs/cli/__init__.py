"""`forecaster`: the single command-line entry point (`jobs.cli:main`).

It sits at the top of the import graph (jobs → engine). Importing it registers every command and imports nothing
heavy: each command imports what it needs when it runs.
"""

from jobs.cli import analyst, data, schedule, service, training  # noqa: F401  (each registers its commands on `app`)
from jobs.cli.common import app, main

__all__ = ["app", "main"]
