"""What a worker process holds while it runs jobs: settings, Redis, sources, Slack, and the model, loaded once.

RQ's SimpleWorker runs each job in this process (CUDA does not survive a fork), so tasks reach the loaded model
through the context installed at start-up instead of loading it per job. Between jobs the context follows the
adapter registry: when an admin promotes (or rolls back) an adapter, the next job switches to it in place, with
no restart and no reload of the base weights. The switch attaches the new adapter beside the old and then deletes
the old (engine.generation.model), so the base weights stay bit-identical however often the registry moves; a switch
that fails (an adapter for another base) leaves the previous adapter serving and is tried again at the next job.

What the worker says it serves is what the model says it loaded (`model.adapter`), never a second read of the
registry: the loader reads the registry once and loads that version, and a promotion that lands while the base
loads (seconds to minutes) is only a registry that moved since. It is followed the way every promotion is: by the
switch, in the same `model()` call, before the first job is answered.

A trainer (`forecaster trainer`) holds the same context with `serves=False`: it loads a model only to evaluate a
new adapter, releases it after each retrain, and never claims to be what `/forecast` is served by.
"""

from __future__ import annotations

import datetime as dt
import gc
import logging
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import redis

from engine.exceptions import ModelError
from jobs.keys import served_model_key
from jobs.slack_port import SlackPort

log = logging.getLogger(__name__)

_CONTEXT: WorkerContext | None = None
_UNSET = object()


@dataclass
class WorkerContext:
    settings: Any  # the composed settings (forecaster.settings.Settings): this layer and the engine read theirs
    conn: redis.Redis
    sources: Any  # engine.data.inputs.Sources
    slack: SlackPort  # bot.outbox.SlackOutbox, installed by the composition root (jobs never import bot)
    load_model: Callable[[], Any]
    # The adapter that should be served now (MODEL_ADAPTER, else the registry's current version); None: the base.
    # Unset: this worker never switches adapters.
    adapter_for: Callable[[], Path | None] | None = None
    # False: a trainer's context. Its model only evaluates, so it publishes nothing as the served model.
    serves: bool = True
    _model: Any = field(default=None, repr=False)
    _applied: Any = field(default=_UNSET, repr=False)
    model_loads: int = 0  # how many times the model was loaded in this process (once, by design)
    last_load_s: float = 0.0  # seconds the last model() call spent loading (0 when it was already loaded)

    def model(self) -> Any:
        """The loaded model, serving the adapter that should be served now."""
        started = time.perf_counter()
        if self._model is None:
            self._model = self.load_model()
            self.model_loads += 1
            # What it loaded, as the model says: the loader read the registry once, and the registry may have moved
            # since (a promotion during the load). Followed just below, like any promotion.
            self._applied = getattr(self._model, "adapter", None)
            self._publish()
        if self.adapter_for is not None:
            self._follow_registry()
        self.last_load_s = time.perf_counter() - started
        return self._model

    def _follow_registry(self) -> None:
        """Switch in place to the adapter that should be served now, when it is not the one served."""
        wanted = self.adapter_for()
        if wanted == self._applied:
            return
        log.info("switching adapter: %s → %s", _name(self._applied), _name(wanted))
        try:
            self._model.use_adapter(wanted)
        except ModelError as exc:
            # The model still serves the previous adapter, unchanged: answer with it, say so in the log (and in the
            # footers' version), and try the switch again at the next job.
            log.error("cannot switch to adapter %s, still serving %s: %s", _name(wanted), _name(self._applied), exc)
        else:
            self._applied = wanted
            self._publish()

    def forget_adapter(self) -> None:
        """Something (an evaluation) switched the model's adapter behind our back: re-apply on the next job."""
        self._applied = _UNSET

    def release_model(self) -> None:
        """Drop the model to free memory (a trainer, after a retrain); the next `model()` loads it again."""
        self._model = None
        self._applied = _UNSET
        gc.collect()
        try:
            import torch

            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        except ImportError:  # a worker without torch (remote backend) has nothing to free
            pass

    def _publish(self) -> None:
        """What this worker serves, for `/forecast-status`; best effort."""
        if not self.serves:
            return
        try:
            self.conn.hset(served_model_key(), mapping={
                "model": str(getattr(self._model, "version", "unknown")),
                "adapter": _name(self._applied),
                "since": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
                "worker": socket.gethostname(),
            })
        except redis.RedisError as exc:
            log.warning("could not publish the served model: %s", exc)


def _name(adapter: Any) -> str:
    if adapter is _UNSET:
        return "unknown"
    return "none (base model)" if adapter is None else Path(adapter).name


def install(context: WorkerContext | None) -> None:
    global _CONTEXT
    _CONTEXT = context


def current() -> WorkerContext:
    if _CONTEXT is None:
        raise RuntimeError("no worker context: jobs run inside `forecaster worker`, which installs one at start-up")
    return _CONTEXT
