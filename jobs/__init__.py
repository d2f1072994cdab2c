"""Redis-queued jobs, the worker, the scheduler and the `forecaster` command line."""
