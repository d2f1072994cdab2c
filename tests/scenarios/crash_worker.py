"""A worker process for the crash tests: the real `jobs.worker.run` (RQ worker, real Redis, fake Slack's URL).

    python -m tests.scenarios.crash_worker REDIS_URL SLACK_API_URL [MODEL_DIR MAX_NEW_TOKENS]

With MODEL_DIR it serves that tiny Qwen2 through the product's Analyst, generating MAX_NEW_TOKENS real tokens
(MODEL_MAX_NEW_TOKENS), each step slowed to a real model's pace (STEP_DELAY_S), so a forecast spends seconds in
generation and can be killed there. Without it, the model
hangs in generation (`HangingModel`).
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
from tests.scenarios.market_fixture import memory_market


class HangingModel:
    version = "hanging (no adapter)"

    def render(self, conversation):
        return "".join(m["content"] for m in conversation)

    def count_tokens(self, text):
        return len(text.split())

    def generate(self, conversations, *, max_new_tokens, on_text=None):
        time.sleep(600)  # killed long before this returns


# A tiny model writes 700 tokens in about half a second; a real one takes minutes. Each decoding step here waits this
# long first, so a forecast spends about ten seconds in generation (real tokens through the product's Analyst) and a
# test can kill its worker there, however fast or loaded the machine is.
STEP_DELAY_S = 0.015


def tiny_analyst(model_dir: str):
    from engine.generation.model import Analyst

    analyst = Analyst.load(model_dir, device="cpu")
    forward = analyst.model.forward

    def slowed_forward(*args, **kwargs):
        time.sleep(STEP_DELAY_S)
        return forward(*args, **kwargs)

    analyst.model.forward = slowed_forward
    return analyst


if __name__ == "__main__":
    redis_url, slack_url = sys.argv[1], sys.argv[2]
    model_dir, max_new_tokens = (sys.argv[3], int(sys.argv[4])) if len(sys.argv) > 4 else (None, 700)
    mem = memory_market()
    context = runtime.WorkerContext(
        settings=Settings(_env_file=None, model_max_new_tokens=max_new_tokens), conn=redis.Redis.from_url(redis_url),
        sources=Sources(mem, mem, mem), slack=SlackOutbox(build_client("xoxb-test", base_url=slack_url)),
        load_model=(lambda: tiny_analyst(model_dir)) if model_dir else HangingModel,
    )
    worker.run(context)
