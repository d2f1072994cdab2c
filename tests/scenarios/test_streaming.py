"""A slow model's answer shows up section by section while it is written, then as one final answer: real Redis, a
real RQ worker, the fake Slack on 127.0.0.1, a model that writes a line every 1.55 s (the only fake: its weights)."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import ForecastRequest, JobsClient
from tests.fakes.forecasts import CannedAnalyst
from tests.scenarios.market_fixture import memory_market

ANSWER = """[Positive Developments]:
1. Card spending rose <12%> & fees with it.
2. Travel bookings recovered.

[Potential Concerns]:
1. Credit losses are climbing.

[Prediction & Analysis]:
Prediction: Down by 1-2%
Analysis: Rising losses outweigh the spending. The stock may slip."""
SECONDS_PER_LINE = 1.55  # sections complete 3 and 2 lines apart: 4.65 s and 3.1 s, each past the 3 s edit spacing


@pytest.fixture
def context(redis, slack):
    mem = memory_market()
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: CannedAnalyst(ANSWER, seconds_per_line=SECONDS_PER_LINE),
    )
    yield ctx
    runtime.install(None)


def test_each_section_is_shown_as_it_is_written_then_one_final_answer(context, redis, slack):
    JobsClient(redis).forecast(ForecastRequest(ticker="AXP", channel="C123", user="U1", as_of=dt.date(2024, 3, 15),
                                               weeks=2))
    worker.run(context, burst=True)

    # One message: progress, edited section by section, then the answer (a "Sources" reply goes in its thread).
    [message] = [m for m in slack.messages("C123") if not m.get("thread_ts")]
    steps = [c.body["text"] for c in slack.calls
             if c.method in ("chat.postMessage", "chat.update") and not c.body.get("thread_ts")]
    writing = [i for i, s in enumerate(steps) if "writing the analysis" in s]
    shown = steps[writing[0]:]
    assert "Positive Developments" not in shown[0]
    positives, concerns, call = shown[1], shown[2], shown[3]
    assert "Card spending rose &lt;12%&gt; &amp; fees with it." in positives and "Potential Concerns" not in positives
    assert "Credit losses are climbing." in concerns and "Prediction" not in concerns
    assert "*Prediction:* Down by 1-2%" in call and "Rising losses" not in call
    assert len(shown) == 5 and shown[-1] == message["text"]  # then the answer, once
    assert "Rising losses outweigh the spending." in str(message["blocks"])
