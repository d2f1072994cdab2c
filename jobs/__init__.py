"""The queue side: the jobs (forecast, digest, watch, summary, retrain) queued in Redis through RQ, the worker and
the trainer that run them, the scheduler that enqueues the weekly ones, and the forecast ledger (SQL, `jobs.ledger`).

Imports only `engine`; posts to Slack through the port in `jobs.slack_port`, which the bot implements, so it never
imports `bot`. The `forecaster` command line is not here: it is the composition root, `forecaster.cli`.
"""
