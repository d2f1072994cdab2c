"""The composition root: the `forecaster` command and everything that assembles a running process from the
layers below it (settings composed once, the bot, a worker or trainer, the scheduler, `up`, the supervisor, the
doctor). It imports every layer; no layer imports it (the import-linter contract in pyproject.toml).
"""
