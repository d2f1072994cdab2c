"""The requester's private note always ends saying how it ended (issue 20, item 9): Slack takes 5 posts to a
response_url, and a try that crashed has spent some of them, so the last one is kept for the final note, and once
the response_url is spent or expired the note goes by chat.postEphemeral.

As deployed: signed slash commands over HTTP to the Bolt app, a real Redis, real RQ workers (two worker processes
serving the tiny Qwen2 through the product's Analyst, one of them killed mid-generation; or a burst worker with a
canned analyst), the fake Slack, which takes 5 posts per response_url as Slack does.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq import Worker
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.sources.notices import notify
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.replies import ANSWER_POSTED_STATUS
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.scenarios.bot_harness import bot_settings, serve_bot, slash
from tests.scenarios.market_fixture import memory_market

REPO_ROOT = Path(__file__).resolve().parents[2]
HOOK = "hooks/T1/B1/x"
MAX_NEW_TOKENS = 700  # about 10 s of paced generation (tests.scenarios.crash_worker): long enough to be killed in


def is_answer(body: dict) -> bool:
    blocks = body.get("blocks") or []
    return bool(blocks) and blocks[0].get("type") == "header" and "weekly forecast" in blocks[0]["text"]["text"]


def answers(slack) -> list[dict]:
    return [m for m in slack.messages("C123") if is_answer(m)]


def private_notes(slack, user: str = "U1") -> list[str]:
    """What the requester alone saw, oldest first: their note's versions (response_url) and ephemeral messages."""
    return [c.body["text"] for c in slack.calls
            if c.method == HOOK or (c.method == "chat.postEphemeral" and c.body.get("user") == user)]


def start_worker(redis_server, slack, model_dir: Path, log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "tests.scenarios.crash_worker", redis_server["url"], slack.api_url, str(model_dir),
         str(MAX_NEW_TOKENS)], cwd=REPO_ROOT, stdout=log.open("wb"), stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONPATH": str(REPO_ROOT), "TOKENIZERS_PARALLELISM": "false"},
        start_new_session=True)  # its own process group: RQ forks a scheduler beside it


def wait_for(predicate, what: str, timeout_s: float, logs: list[Path]):
    deadline = time.monotonic() + timeout_s
    while not (found := predicate()):
        if time.monotonic() > deadline:
            said = "\n".join(f"--- {log.name}:\n{log.read_text()[-3000:]}" for log in logs)
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}; the workers said:\n{said}")
        time.sleep(0.1)
    return found


def test_after_a_crash_and_its_retry_the_requesters_note_says_done(redis, redis_server, slack, tiny_model_dir,
                                                                    tmp_path):
    logs = [tmp_path / "worker-0.log", tmp_path / "worker-1.log"]
    children = [start_worker(redis_server, slack, tiny_model_dir, log) for log in logs]
    try:
        pids = {child.pid for child in children}
        wait_for(lambda: {w.pid for w in Worker.all(connection=redis, serializer=JSONSerializer)
                          if w.get_state() == "idle"} >= pids, "both workers to wait for work", 120, logs)
        with serve_bot(bot_settings(slack, redis_server["url"])) as bot:
            ack = slash(bot, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", channel="C123",
                        response_url=slack.hook_url())
        assert ack.text.startswith(":hourglass_flowing_sand: Queued *AXP*"), ack.text
        wait_for(lambda: any("writing the analysis" in text for text in private_notes(slack)),
                 "the forecast to reach generation", 60, logs)
        time.sleep(1)  # into generate(): ~10 s of tokens
        job = Job.fetch("forecast_AXP_2024-03-15_2wf_C123", connection=redis, serializer=JSONSerializer)
        assert job.get_status() == "started" and not answers(slack), "the forecast ended before it could be killed"
        [victim] = [w for w in Worker.all(connection=redis, serializer=JSONSerializer) if w.name == job.worker_name]
        [dead] = [child for child in children if child.pid == victim.pid]
        os.killpg(dead.pid, signal.SIGKILL)  # mid-generation, as an OOM kill would; its scheduler child goes too
        dead.wait(timeout=10)

        wait_for(lambda: answers(slack), "the retried forecast's answer", 240, logs)
        wait_for(lambda: ANSWER_POSTED_STATUS in private_notes(slack), "the requester's final note", 10, logs)
    finally:
        for child in children:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait(timeout=10)

    notes = private_notes(slack)
    assert any("stopped unexpectedly" in text for text in notes)  # they were told it is being retried
    assert notes[-1] == ANSWER_POSTED_STATUS, notes  # ... and, last, that the answer is out
    assert notes.count(ANSWER_POSTED_STATUS) == 1
    assert len([c for c in slack.calls if c.method == HOOK]) <= 5  # within Slack's budget: nothing was refused
    assert not [c for c in slack.refused if c.method == HOOK]
    assert len(answers(slack)) == 1


@pytest.fixture
def context(redis, slack):
    market = memory_market()
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: CannedAnalyst(answer("Up by 1-2%")),
    )
    yield ctx
    runtime.install(None)


def test_with_the_response_url_expired_the_final_note_is_an_ephemeral_message(redis_server, slack, context):
    slack.fail_next(HOOK, 404, times=20)  # Slack: expired_url (the job waited past the response_url's 30 minutes)
    with serve_bot(bot_settings(slack, redis_server["url"])) as bot:
        slash(bot, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", channel="C123", response_url=slack.hook_url())
    worker.run(context, burst=True)

    [message] = answers(slack)  # progress went to a channel message, edited into the answer
    [done] = slack.ephemerals(user="U1")
    assert done["text"] == ANSWER_POSTED_STATUS and done["channel"] == "C123"


class RateLimitedNews:
    """The memory market's news, each call first waiting out a rate limit and saying so, as Finnhub's client does
    (engine.sources.notices): a forecast with more steps to show than its response_url has uses."""

    name = "rate-limited news"

    def __init__(self, market) -> None:
        self.market, self.calls = market, 0

    def company_news(self, symbol, start, end):
        self.calls += 1
        notify(f"rate-limited by the news source, retrying ({self.calls})")
        return self.market.company_news(symbol, start, end)


def test_progress_notes_never_take_the_final_notes_use(redis_server, slack, context):
    market = memory_market()
    context.sources = Sources(RateLimitedNews(market), market, market)
    with serve_bot(bot_settings(slack, redis_server["url"])) as bot:
        slash(bot, "/forecast", "AXP 2024-03-15 weeks=3", user="U1", channel="C123", response_url=slack.hook_url())
    worker.run(context, burst=True)

    notes = private_notes(slack)  # fetching, three rate-limit notes, the final note: "writing…" was not shown
    assert context.sources.news.calls == 3 and len(notes) == 5 and notes[-1] == ANSWER_POSTED_STATUS, notes
    assert "fetching news" in notes[0] and "retrying (1)" in notes[1] and "retrying (3)" in notes[3]
    assert not slack.refused and len(answers(slack)) == 1
