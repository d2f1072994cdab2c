"""What a worker process holds while it runs jobs: settings, Redis, sources, Slack, and the model, loaded once.

RQ's SimpleWorker runs each job in this process (CUDA does not survive a fork), so tasks reach the loaded model
through the context installed at start-up instead of loading it per job.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import redis

_CONTEXT: WorkerContext | None = None


@dataclass
class WorkerContext:
    settings: Any  # engine.settings.Settings
    conn: redis.Redis
    sources: Any  # engine.inputs.Sources
    slack: Any  # slack_sdk.WebClient
    load_model: Callable[[], Any]
    _model: Any = field(default=None, repr=False)
    model_loads: int = 0  # how many times the model was loaded in this process (once, by design)

    def model(self) -> Any:
        if self._model is None:
            self._model = self.load_model()
            self.model_loads += 1
        return self._model


def install(context: WorkerContext) -> None:
    global _CONTEXT
    _CONTEXT = context


def current() -> WorkerContext:
    if _CONTEXT is None:
        raise RuntimeError("no worker context: jobs run inside `forecaster worker`, which installs one at start-up")
    return _CONTEXT
