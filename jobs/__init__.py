"""The queue side: RQ jobs in Redis, the worker and trainer that run them, the scheduler, the forecast ledger.

The jobs are forecast, digest, `/watch add`, the weekly summary and `/retrain`; the worker runs the model, the
trainer retrains, the scheduler enqueues the weekly posts, and the ledger (SQL, `jobs.ledger`) keeps every forecast.

Imports only `engine`; posts to Slack through the port in `jobs.slack_port`, which the bot implements, so it never
imports `bot`. The `forecaster` command line is not here: it is the composition root, `forecaster.cli`.
"""
