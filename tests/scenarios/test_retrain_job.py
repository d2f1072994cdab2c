"""`/retrain` as a job: real Redis, a real SimpleWorker, real TRL training steps and real generation on the tiny
Qwen2, the fake Slack recording what the channel sees. The gate's decision lands in the registry and the next
forecast job serves the promoted adapter without a restart.

The tiny model's weights are random, so what it writes cannot show the gate judging a good or a bad adapter. Where
a test needs one, `ScriptedAnswers` keeps the real model (loading, adapter switching, generation) and replaces only
the answer text on the evaluation rows, per served adapter: a fake at the weights, the outermost edge."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.dataset import prepare_dataset
from engine.data.fingpt_rows import EvalRow, label_bin, load_eval_rows
from engine.data.inputs import Sources
from engine.evaluation.baselines import baseline_answer
from engine.generation.model import Analyst
from engine.market.weeks import MoveBin
from engine.provenance import base_model_name
from engine.training.registry import Registry
from forecaster.settings import Settings
from jobs import ledger, runtime, worker
from jobs.client import ForecastRequest, JobsClient
from jobs.keys import served_model_key
from jobs.queues import TRAINING
from tests.scenarios.market_fixture import memory_market

EVAL_ROWS = 3  # AXP's first test weeks: up, up, down (then up, up, down), so "always up" scores 2/3


def right(row: EvalRow, _index: int) -> str:
    return baseline_answer(label_bin(row.label).prediction_text)


def wrong(row: EvalRow, _index: int) -> str:
    truth = label_bin(row.label)
    return baseline_answer(MoveBin("down" if truth.direction == "up" else "up", truth.k).prediction_text)


def unreadable(_row: EvalRow, _index: int) -> str:
    return "I would rather not say where this stock goes."


def right_but_the_first_unreadable(row: EvalRow, index: int) -> str:
    return unreadable(row, index) if index == 0 else right(row, index)


class ScriptedAnswers:
    """The real Analyst, with its answers on the evaluation rows written by `script[served adapter's name or None]`;
    any other prompt (a forecast) keeps the model's own text."""

    def __init__(self, analyst: Analyst, script: dict[str | None, Callable[[EvalRow, int], str]],
                 rows: list[EvalRow]) -> None:
        self._analyst = analyst
        self._script = script
        self._rows = {row.user_prompt: (row, i) for i, row in enumerate(rows)}

    def __getattr__(self, name: str):
        return getattr(self._analyst, name)

    def generate(self, conversations, **options):
        results = self._analyst.generate(conversations, **options)
        served = self._analyst.adapter.name if self._analyst.adapter else None
        answers = []
        for conversation, result in zip(conversations, results, strict=True):
            found = self._rows.get(conversation[-1]["content"])
            write = self._script.get(served)
            answers.append(dataclasses.replace(result, text=write(*found)) if found and write else result)
        return answers


@pytest.fixture
def prepared(tmp_path, tiny_model_dir, fingpt_test_rows):
    source = tmp_path / "rows.jsonl"
    source.write_text("".join(json.dumps(r) + "\n" for r in fingpt_test_rows[:4]))
    prepare_dataset(str(source), tmp_path / "prepared", tokenizer_path=str(tiny_model_dir), max_length=3072)
    return tmp_path / "prepared"


def make_context(redis, slack, base: Path, *, script=None, eval_dataset: str | None = None, serves: bool = False,
                 **settings) -> runtime.WorkerContext:
    """A trainer's context by default (`forecaster trainer`); `serves=True`: a serving worker's."""
    values = {"model_base": str(base), "model_device": "cpu", "model_max_new_tokens": 16,
              "train_max_steps": 2, "train_grad_accum": 1, "eval_limit": EVAL_ROWS, "eval_dataset": eval_dataset}
    s = Settings(_env_file=None, **(values | settings))
    registry = Registry(s.model_dir)
    mem = memory_market()

    def load_model():
        analyst = Analyst.load(s.model_base, adapter=registry.current_path(), device="cpu")
        if script is None:
            return analyst
        return ScriptedAnswers(analyst, script, load_eval_rows(eval_dataset, limit=s.eval_limit))

    return runtime.WorkerContext(
        settings=s, conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=load_model, adapter_for=registry.current_path if serves else None, serves=serves,
    )


def train_queued(context: runtime.WorkerContext) -> None:
    """What `forecaster trainer` runs: the training queue only, until it is empty."""
    worker.run(context, queue_names=[TRAINING.name], burst=True)


@pytest.fixture
def weights(tmp_path, tiny_model_dir) -> Path:
    """The base where the Docker image mounts it: a folder called `weights`, which names nothing."""
    return Path(shutil.copytree(tiny_model_dir, tmp_path / "weights"))


def test_a_good_adapter_is_promoted_and_the_next_job_serves_it_named_by_its_base(
        redis, slack, tmp_path, weights, prepared, fingpt_test_split_dir):
    context = make_context(redis, slack, weights, script={None: unreadable, "v0001": right},
                           model_dir=tmp_path / "models", train_dataset_dir=prepared,
                           eval_dataset=str(fingpt_test_split_dir))
    client = JobsClient(redis)
    queued = client.retrain(channel="C42", user="UADMIN")
    assert client.retrain(channel="C42", user="UOTHER").job_id == queued.job_id  # one retrain at a time

    train_queued(context)

    assert context._model is None and context.model_loads == 1  # loaded to evaluate, then given back
    assert redis.hgetall(served_model_key()) == {}  # a trainer never claims to serve
    [head, verdict] = slack.messages("C42")
    assert "finished: *v0001 promoted*" in head["text"] and "<@UADMIN>" in head["text"]
    assert verdict["thread_ts"] == head["ts"]
    assert verdict["blocks"][0]["text"]["text"] == "Retrain: promoted v0001"
    shown = json.dumps(verdict["blocks"])
    assert "decided by parse rate, the bare base, best naive baseline" in shown
    assert "beats the best naive baseline (constant Up by 0-1%: 0.6667)" in shown
    edits = [c.body["text"] for c in slack.calls if c.method == "chat.update"]
    assert any("training step" in t and "loss" in t for t in edits)
    assert any("evaluating on the test split, 3/3 answers" in t for t in edits)
    registry = Registry(tmp_path / "models")
    assert registry.current_version() == "v0001"
    evaluation = registry.read("v0001", "evaluation.json")
    assert evaluation["compared_with"]["label"] == "the bare base"
    assert evaluation["compared_with"]["scores"]["parse_rate"] == 0.0  # the base was scored on the same rows
    assert evaluation["scores"]["binary_accuracy_all"] == 1.0

    base = base_model_name(str(weights))
    assert base.startswith("qwen2 ") and "weights" not in base
    assert registry.base_model("v0001") == base
    assert any(f"loading {base} for training" in c.body["text"] for c in slack.calls)

    # A serving worker started before the retrain would switch between jobs; one started now loads it.
    serving = make_context(redis, slack, weights, model_dir=tmp_path / "models", serves=True)
    client.forecast(ForecastRequest(ticker="AXP", channel="C43", user="U1", as_of=dt.date(2024, 3, 15), weeks=2))
    worker.run(serving, burst=True)
    assert serving.model().adapter == registry.path("v0001")
    assert redis.hget(served_model_key(), "adapter") == b"v0001"
    [answer] = slack.messages("C43")
    footer = answer["blocks"][-1]["elements"][0]["text"]
    assert f"{base} + v0001" in footer and "weights" not in footer
    [row] = ledger.entries(ledger.open_ledger(Settings(_env_file=None)))
    assert row["model"] == f"{base} + v0001"


def test_an_adapter_that_parses_less_often_than_the_base_is_refused(
        redis, slack, tmp_path, weights, prepared, fingpt_test_split_dir):
    # Five of six right beats the base (all wrong) and "always up" (4/6), but one answer no longer reads at all.
    context = make_context(redis, slack, weights, script={None: wrong, "v0001": right_but_the_first_unreadable},
                           model_dir=tmp_path / "models", train_dataset_dir=prepared,
                           eval_dataset=str(fingpt_test_split_dir), eval_limit=6)
    JobsClient(redis).retrain(channel="C42", user="UADMIN")
    train_queued(context)

    [head, verdict] = slack.messages("C42")
    assert "v0001 *not promoted* (decided by parse rate); the base model stays served" in head["text"]
    assert verdict["blocks"][0]["text"]["text"] == "Retrain: kept base model"
    assert "parse rate 0.833 is below the bare base's 1.000" in json.dumps(verdict["blocks"])
    registry = Registry(tmp_path / "models")
    assert registry.current_version() is None
    assert registry.read("v0001", "decision.json")["decided_by"] == "parse rate"


def test_retrain_without_training_data_tells_the_admin_what_to_set(redis, slack, tmp_path, tiny_model_dir):
    context = make_context(redis, slack, tiny_model_dir, model_dir=tmp_path / "models")
    JobsClient(redis).retrain(channel="C42", user="UADMIN")
    train_queued(context)
    [message] = slack.messages("C42")
    assert message["text"].startswith(":x: Retrain not started: TRAIN_DATASET_DIR is not set")
    assert Registry(tmp_path / "models").versions() == []
