"""A worker process for the scale-out test: the real `jobs.worker.run` (SimpleWorker, JSON, priorities) over a
real Redis, with a canned analyst that takes a moment per answer, posting to the fake Slack.

    python -m tests.scenarios.stub_worker REDIS_URL SLACK_API_URL
"""

from __future__ import annotations

import sys
import time

import redis

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from forecaster.settings import Settings
from jobs import runtime, worker
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.scenarios.market_fixture import memory_market


class SlowCannedAnalyst(CannedAnalyst):
    def generate(self, conversations, *, max_new_tokens, on_text=None):
        time.sleep(0.05)  # long enough for the other worker to want the same job
        return super().generate(conversations, max_new_tokens=max_new_tokens, on_text=on_text)


if __name__ == "__main__":
    redis_url, slack_url = sys.argv[1], sys.argv[2]
    mem = memory_market()
    context = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis.Redis.from_url(redis_url), sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack_url)),
        load_model=lambda: SlowCannedAnalyst(answer("Up by 1-2%")),
    )
    worker.run(context, burst=True)
