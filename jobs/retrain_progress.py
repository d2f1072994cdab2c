"""A running retrain's progress in Redis (phase, step, loss, ETA), so `/forecast-status` can show it: the trainer
is another process, often on another host, and the bot reads only Redis.

The trainer writes one hash, at most every PUBLISH_EVERY_S and always on a phase change; the status shows it only
while its job is in the training queue's started registry, so a record left by a killed trainer is never shown
as a retrain in progress. It lapses on its own after the longest a retrain may run.
"""

from __future__ import annotations

import datetime as dt
import logging
import socket
import time

import redis

from jobs.keys import retrain_progress_key
from jobs.queues import TRAINING

log = logging.getLogger(__name__)

PUBLISH_EVERY_S = 2.0  # a Redis write per training step would be cheap, but a stalled Redis must not slow training
PROGRESS_TTL_S = TRAINING.timeout_s + 3600

FIELDS = ("job_id", "requested_by", "phase", "step", "max_steps", "epoch", "loss", "eta_s", "done", "total",
          "updated", "trainer")


class ProgressPublisher:
    """Writes one job's progress; best effort (a Redis hiccup costs a status line, never the retrain)."""

    def __init__(self, conn: redis.Redis, job_id: str, *, requested_by: str, every_s: float = PUBLISH_EVERY_S) -> None:
        self.conn, self.job_id, self.requested_by, self.every_s = conn, job_id, requested_by, every_s
        self._last_at, self._last_phase = 0.0, None

    def __call__(self, phase: str, *, final: bool = False, **fields: float | int | None) -> None:
        """`final`: the phase's last update (written however soon after the previous one)."""
        now = time.monotonic()
        if phase == self._last_phase and now - self._last_at < self.every_s and not final:
            return
        self._last_at, self._last_phase = now, phase
        mapping = {"job_id": self.job_id, "requested_by": self.requested_by, "phase": phase,
                   "updated": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "trainer": socket.gethostname()}
        mapping |= {k: str(v) for k, v in fields.items() if v is not None}
        try:
            with self.conn.pipeline() as pipe:
                pipe.delete(retrain_progress_key())  # one phase's fields never linger into the next
                pipe.hset(retrain_progress_key(), mapping=mapping)
                pipe.expire(retrain_progress_key(), PROGRESS_TTL_S)
                pipe.execute()
        except redis.RedisError as exc:
            log.warning("retrain progress not published: %s", exc)

    def clear(self) -> None:
        """The retrain ended (its verdict or failure is in Slack): nothing to show any more."""
        try:
            if _text(self.conn.hget(retrain_progress_key(), "job_id")) == self.job_id:
                self.conn.delete(retrain_progress_key())
        except redis.RedisError as exc:
            log.warning("retrain progress not cleared (it lapses, and the status hides it): %s", exc)


def read_progress(conn: redis.Redis) -> dict[str, str] | None:
    """The last published progress, as strings (see FIELDS); None when no retrain published any."""
    raw = conn.hgetall(retrain_progress_key())
    return {k.decode(): v.decode() for k, v in raw.items()} or None


def _text(raw: bytes | None) -> str | None:
    return raw.decode() if raw is not None else None
