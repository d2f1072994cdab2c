"""The queues, by priority, and what each job kind is allowed: one table.

A serving worker listens to `SERVING` in this order, so a `/forecast` never waits behind a digest. Training is
another process's queue (`forecaster trainer`): a retrain never holds up, or frees the model of, a serving worker.
"""

from __future__ import annotations

from dataclasses import dataclass

from jobs.keys import FAILURE_TTL_S, RESULT_TTL_S


@dataclass(frozen=True)
class QueueSpec:
    name: str
    timeout_s: int  # a job running longer is stopped and its user told so
    retries: int  # bounded retries of a failed job...
    retry_intervals_s: tuple[int, ...]  # ...with backoff between them
    result_ttl_s: int = RESULT_TTL_S
    failure_ttl_s: int = FAILURE_TTL_S


INTERACTIVE = QueueSpec("interactive", timeout_s=15 * 60, retries=2, retry_intervals_s=(10, 60))
BATCH = QueueSpec("batch", timeout_s=2 * 3600, retries=1, retry_intervals_s=(300,))
TRAINING = QueueSpec("training", timeout_s=12 * 3600, retries=0, retry_intervals_s=())

BY_PRIORITY = (INTERACTIVE, BATCH, TRAINING)
SERVING = (INTERACTIVE, BATCH)  # what `forecaster worker` consumes; TRAINING is `forecaster trainer`'s alone
