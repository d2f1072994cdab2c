"""A worker's exit is not held up by RQ's command subscription (redis-py 8 waits for its poll to end)."""

from __future__ import annotations

import time

from forecaster.settings import Settings
from jobs import runtime, worker


def test_a_burst_worker_with_nothing_to_do_is_gone_in_seconds(redis):
    context = runtime.WorkerContext(settings=Settings(_env_file=None), conn=redis, sources=None, slack=None,
                                    load_model=lambda: object())
    started = time.monotonic()
    try:
        for _ in range(3):  # RQ's 60 s poll held each exit for up to a minute (most of them: it races the exit)
            worker.run(context, burst=True)
    finally:
        runtime.install(None)
    assert time.monotonic() - started < 15
