"""A worker process for the crashed-worker status test: the real `jobs.worker.run` over a real Redis, a model that
hangs while generating (so the worker is busy when it is killed), and a heartbeat shortened to a test's scale.

    python -m tests.scenarios.beating_worker REDIS_URL SLACK_API_URL HEARTBEAT_EVERY_S HEARTBEAT_TTL_S
"""

from __future__ import annotations

import sys

import redis

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from forecaster.settings import Settings
from jobs import runtime, worker
from tests.scenarios.crash_worker import HangingModel
from tests.scenarios.market_fixture import memory_market

if __name__ == "__main__":
    redis_url, slack_url, every_s, ttl_s = sys.argv[1], sys.argv[2], float(sys.argv[3]), float(sys.argv[4])
    mem = memory_market()
    context = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis.Redis.from_url(redis_url), sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack_url)), load_model=HangingModel,
    )
    worker.run(context, heartbeat_every_s=every_s, heartbeat_ttl_s=ttl_s)
