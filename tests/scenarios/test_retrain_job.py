"""`/retrain` as a job: real Redis, a real SimpleWorker, real TRL training steps and real generation on the tiny
Qwen2, the fake Slack recording what the channel sees. The gate's decision lands in the registry and the next
forecast job serves the promoted adapter without a restart."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from bot.slack_ops import build_client
from engine.dataset import prepare_dataset
from engine.inputs import Sources
from engine.model import Analyst
from engine.registry import Registry
from engine.settings import Settings
from jobs import runtime, worker
from jobs.client import ForecastRequest, JobsClient
from tests.fakes.slack import FakeSlack
from tests.scenarios.market_fixture import memory_market


@pytest.fixture
def slack():
    with FakeSlack() as fake:
        yield fake


@pytest.fixture
def prepared(tmp_path, tiny_model_dir, fingpt_test_rows):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in fingpt_test_rows[:4]))
    prepare_dataset(str(source), tmp_path / "prepared", tokenizer_path=str(tiny_model_dir), max_length=3072)
    return tmp_path / "prepared"


def make_context(redis, slack, tiny_model_dir, **settings) -> runtime.WorkerContext:
    values = {"model_base": str(tiny_model_dir), "model_device": "cpu", "model_max_new_tokens": 16,
              "train_max_steps": 2, "train_grad_accum": 1, "eval_limit": 3}
    s = Settings(_env_file=None, **(values | settings))
    registry = Registry(s.model_dir)
    mem = memory_market()
    return runtime.WorkerContext(
        settings=s, conn=redis, sources=Sources(mem, mem, mem),
        slack=build_client("xoxb-test", base_url=slack.api_url),
        load_model=lambda: Analyst.load(s.model_base, adapter=registry.current_path(), device="cpu"),
        adapter_for=registry.current_path,
    )


def test_retrain_reports_progress_posts_the_verdict_and_the_next_job_serves_the_new_adapter(
        redis, slack, tmp_path, tiny_model_dir, prepared, fingpt_test_split_dir):
    context = make_context(redis, slack, tiny_model_dir, model_dir=tmp_path / "models", train_dataset_dir=prepared,
                           eval_dataset=str(fingpt_test_split_dir))
    client = JobsClient(redis)
    queued = client.retrain(channel="C42", user="UADMIN")
    assert client.retrain(channel="C42", user="UOTHER").job_id == queued.job_id  # one retrain at a time

    worker.run(context, burst=True)

    [head, verdict] = slack.messages("C42")
    assert "finished: *v0001 promoted*" in head["text"] and "<@UADMIN>" in head["text"]
    assert verdict["thread_ts"] == head["ts"]
    assert verdict["blocks"][0]["text"]["text"] == "Retrain: promoted v0001"
    assert "no current adapter to beat" in json.dumps(verdict["blocks"])
    edits = [c.body["text"] for c in slack.calls if c.method == "chat.update"]
    assert any("training step" in t and "loss" in t for t in edits)
    assert any("evaluating on the test split, 3/3 answers" in t for t in edits)
    registry = Registry(tmp_path / "models")
    assert registry.current_version() == "v0001"

    client.forecast(ForecastRequest(ticker="AXP", channel="C43", user="U1", as_of=dt.date(2024, 3, 15), weeks=2))
    worker.run(context, burst=True)
    assert context.model().adapter == registry.path("v0001")
    [answer] = slack.messages("C43")
    assert "v0001" in answer["blocks"][-1]["elements"][0]["text"]


def test_retrain_without_training_data_tells_the_admin_what_to_set(redis, slack, tmp_path, tiny_model_dir):
    context = make_context(redis, slack, tiny_model_dir, model_dir=tmp_path / "models")
    JobsClient(redis).retrain(channel="C42", user="UADMIN")
    worker.run(context, burst=True)
    [message] = slack.messages("C42")
    assert message["text"].startswith(":x: Retrain not started: TRAIN_DATASET_DIR is not set")
    assert Registry(tmp_path / "models").versions() == []
