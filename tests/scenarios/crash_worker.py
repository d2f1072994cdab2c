"""A worker process for the crash test: real RQ worker, real Redis, a model that hangs while generating.

    python -m tests.scenarios.crash_worker REDIS_URL SLACK_API_URL
"""

from __future__ import annotations

import sys
import time

import redis

from bot.slack_ops import build_client
from engine.inputs import Sources
from engine.settings import Settings
from jobs import runtime, worker
from tests.scenarios.market_fixture import memory_market


class HangingModel:
    version = "hanging (no adapter)"

    def render(self, conversation):
        return "".join(m["content"] for m in conversation)

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, conversations, *, max_new_tokens):
        time.sleep(600)  # killed long before this returns


if __name__ == "__main__":
    redis_url, slack_url = sys.argv[1], sys.argv[2]
    mem = memory_market()
    context = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis.Redis.from_url(redis_url), sources=Sources(mem, mem, mem),
        slack=build_client("xoxb-test", base_url=slack_url), load_model=HangingModel,
    )
    worker.run(context)
