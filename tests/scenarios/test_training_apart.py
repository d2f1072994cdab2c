"""Training apart from serving, with real processes: `forecaster worker` (tiny Qwen2 loaded, adapter v0001 served)
and `forecaster trainer` on one real Redis, the bot over signed HTTP, the fake Slack recording every call.

A `/retrain` runs real TRL training steps on the tiny model (TRAIN_MAX_STEPS sized to last tens of seconds on
this machine; nothing is slowed artificially) while ten `/forecast` requests arrive: all ten are answered before the
retrain ends, each latency printed, and `/forecast-status` shows the retrain's step, loss and ETA meanwhile. Then
the same with the trainer SIGKILLed mid-training: the forecasts are still all answered, the retrain still ends in a
final message its requester sees (RQ's abandoned-job handling, run by the trainer restarted as `forecaster up` or
compose would restart it), and the served adapter is unchanged."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from engine.data.dataset import prepare_dataset
from engine.training.registry import Registry
from jobs.keys import served_model_key
from jobs.queues import TRAINING
from jobs.retrain_progress import read_progress
from jobs.status import workers_alive
from tests.fakes.slack import FakeSlack
from tests.scenarios.bot_harness import ADMIN, bot_settings, serve_bot, slash
from tests.scenarios.market_fixture import record_snapshot

REPO_ROOT = Path(__file__).resolve().parents[2]
TRAIN_STEPS = 60  # ~0.4 s a step for the tiny model on one core here: about half a minute of real training
FORECASTS = 10
ADMIN_CHANNEL = "CADMIN"


def wait_for(predicate, what: str, timeout_s: float, logs: dict[str, Path]) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() > deadline:
            said = "\n".join(f"--- {name}:\n{path.read_text()[-3000:]}" for name, path in logs.items())
            raise AssertionError(f"timed out waiting for {what}\n{said}")
        time.sleep(0.05)


@pytest.fixture
def stack(tmp_path, slack, redis, redis_server, tiny_model_dir, tiny_adapter_dirs, fingpt_test_rows,
          fingpt_test_split_dir):
    """The environment both processes read, with v0001 promoted in the registry; `start(kind)` starts one."""
    rows = tmp_path / "rows.jsonl"
    rows.write_text("".join(json.dumps(r) + "\n" for r in fingpt_test_rows[:4]))
    prepared = tmp_path / "prepared"
    prepare_dataset(str(rows), prepared, tokenizer_path=str(tiny_model_dir), max_length=3072)
    registry = Registry(tmp_path / "models")
    registry.promote(registry.add(tiny_adapter_dirs[0], note="served before the retrain"), reason="test set-up")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("SLACK_", "REDIS_", "BOT_", "MODEL_", "DATA_", "TRAIN_", "EVAL_", "DIGEST_"))}
    env |= {"SLACK_BOT_TOKEN": "xoxb-test", "SLACK_API_URL": slack.api_url, "REDIS_URL": redis_server["url"],
            "DATA_DIR": str(tmp_path / "data"), "DATA_SNAPSHOT_DIR": str(record_snapshot(tmp_path / "snapshot")),
            "MODEL_BASE": str(tiny_model_dir), "MODEL_DEVICE": "cpu", "MODEL_MAX_NEW_TOKENS": "16",
            "MODEL_DIR": str(registry.root), "TRAIN_DATASET_DIR": str(prepared), "TRAIN_MAX_STEPS": str(TRAIN_STEPS),
            "TRAIN_GRAD_ACCUM": "1", "EVAL_DATASET": str(fingpt_test_split_dir), "EVAL_LIMIT": "2",
            "OMP_NUM_THREADS": "1",  # each process one core, as on a shared 2-core machine
            "PYTHONPATH": str(REPO_ROOT)}
    children: list[subprocess.Popen] = []
    logs: dict[str, Path] = {}

    def start(kind: str) -> subprocess.Popen:
        log = tmp_path / f"{kind}-{len(children)}.log"
        logs[f"{kind} #{len(children)}"] = log
        with open(log, "wb") as sink:
            child = subprocess.Popen([sys.executable, "-m", "forecaster.cli", kind], cwd=tmp_path, env=env, stdout=sink,
                                     stderr=subprocess.STDOUT, start_new_session=True)  # RQ forks a scheduler
        children.append(child)
        return child

    start.logs = logs
    start.registry = registry
    yield start
    for child in children:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
    for child in children:
        try:
            child.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
        try:
            os.killpg(child.pid, signal.SIGKILL)  # RQ's forked scheduler, if it outlived its parent
        except ProcessLookupError:
            pass


def is_answer(message: dict) -> bool:
    blocks = message.get("blocks") or [{}]
    return blocks[0].get("text", {}).get("text") == "AXP weekly forecast"


def answers(slack: FakeSlack, channel: str) -> list[dict]:
    """The forecast answers the channel shows: its messages in their latest state, and anything posted in_channel
    through the request's response_url (jobs.replies chooses the route)."""
    hook = f"hooks/T1/{channel}/x"
    shown = [m for m in slack.messages(channel) if is_answer(m)]
    return shown + [c.body for c in slack.calls if c.method == hook and c.body.get("response_type") == "in_channel"
                    and is_answer(c.body)]


def start_both_and_a_retrain(stack, slack, redis, bot):
    worker, trainer = stack("worker"), stack("trainer")
    wait_for(lambda: workers_alive(redis) == 1, "the serving worker to load the model and listen", 120, stack.logs)
    wait_for(lambda: workers_alive(redis, queue_name=TRAINING.name) == 1, "the trainer to listen", 60, stack.logs)
    ack = slash(bot, "/retrain", "", user=ADMIN, channel=ADMIN_CHANNEL)
    assert ack.text.startswith(":gear: Retrain queued") and "No trainer" not in ack.text, ack.body
    job_id = ack.text.split("`")[1]

    def training() -> bool:
        progress = read_progress(redis)
        return bool(progress and progress.get("phase") == "training" and int(progress.get("step", 0)) >= 2)

    wait_for(training, "the retrain to be training", 120, stack.logs)
    return worker, trainer, job_id


def ask_forecasts(bot, slack: FakeSlack) -> dict[str, float]:
    """Ten `/forecast AXP`, each by its own person in its own channel (its own job) with its own response_url:
    channel → when asked."""
    asked = {}
    for n in range(FORECASTS):
        channel = f"CF{n}"
        ack = slash(bot, "/forecast", "AXP", channel=channel, user=f"UF{n}",
                    response_url=slack.hook_url(f"T1/{channel}/x"))
        assert ack.status == 200 and ack.text.startswith(":hourglass_flowing_sand: Queued *AXP*"), ack.body
        asked[channel] = time.monotonic()
    return asked


def collect_answers(slack, asked: dict[str, float], stack, timeout_s: float) -> dict[str, float]:
    latency: dict[str, float] = {}

    def all_answered() -> bool:
        for channel, at in asked.items():
            if channel not in latency and answers(slack, channel):
                latency[channel] = time.monotonic() - at
        return len(latency) == len(asked)

    wait_for(all_answered, "every forecast's answer", timeout_s, stack.logs)
    return latency


def retrain_job(redis, job_id: str) -> Job:
    return Job.fetch(job_id, connection=redis, serializer=JSONSerializer)


def test_forecasts_are_served_while_a_retrain_trains_in_its_own_process(stack, slack, redis, redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"])) as bot:
        _, _, job_id = start_both_and_a_retrain(stack, slack, redis, bot)
        retrain_started = time.monotonic()
        served_before = redis.hgetall(served_model_key())
        assert served_before[b"adapter"] == b"v0001"
        asked = ask_forecasts(bot, slack)
        latency = collect_answers(slack, asked, stack, timeout_s=120)
        answered_at = time.monotonic()
        still = retrain_job(redis, job_id).get_status(refresh=True)
        progress = read_progress(redis)
        status = slash(bot, "/forecast-status", user=ADMIN)
        wait_for(lambda: any("finished:" in m["text"] for m in slack.messages(ADMIN_CHANNEL)), "the retrain's verdict",
                 300, stack.logs)
        retrain_ended = time.monotonic()

    print(f"\n{FORECASTS} /forecast answered during a {TRAIN_STEPS}-step retrain; latency (s): "
          + ", ".join(f"{latency[c]:.2f}" for c in asked)
          + f"; max {max(latency.values()):.2f}; all answered {answered_at - retrain_started:.1f} s into the retrain, "
          f"which ended {retrain_ended - answered_at:.1f} s later (at step {progress and progress.get('step')} then)")
    assert still == "started", "the retrain ended before the forecasts were all answered: raise TRAIN_STEPS"
    assert progress["phase"] in ("training", "evaluating")
    shown = json.dumps(status.json()["blocks"])
    assert "a retrain running" in shown and f"requested by <@{ADMIN}>" in shown, shown
    assert ("training step" in shown and f"/{TRAIN_STEPS} (epoch" in shown and "loss" in shown and "left" in shown) \
        or "evaluating on the test split" in shown, shown
    assert "1 workers (0 busy)" in status.text or "1 workers (1 busy)" in status.text  # the trainer is not one
    # The serving worker kept its model the whole time: it loaded it once and served v0001 throughout.
    for channel in asked:
        [answer] = answers(slack, channel)  # exactly one answer each
        assert "+ v0001" in answer["blocks"][-1]["elements"][0]["text"], answer["blocks"][-1]
    # Loaded once at start-up and never released: a reload or an adapter switch would have republished `since`.
    assert redis.hgetall(served_model_key()) == served_before


def test_a_trainer_killed_mid_retrain_ends_it_in_a_final_message_and_leaves_the_served_adapter(
        stack, slack, redis, redis_server):
    before = (stack.registry.current_version(), stack.registry.versions())
    with serve_bot(bot_settings(slack, redis_server["url"])) as bot:
        _, trainer, job_id = start_both_and_a_retrain(stack, slack, redis, bot)
        asked = ask_forecasts(bot, slack)
        os.killpg(trainer.pid, signal.SIGKILL)  # mid-training, as an OOM kill or a power cut would
        killed_at = time.monotonic()
        trainer.wait(timeout=10)
        latency = collect_answers(slack, asked, stack, timeout_s=120)
        stack("trainer")  # what `forecaster up`'s supervisor (or compose's restart policy) does next
        # RQ finds the job abandoned once its execution booking lapses (jobs.worker.KeptAliveWorker: 30 s after the
        # last beat) at the restarted trainer's next maintenance; generous, real time.
        wait_for(lambda: any("The retrain failed" in m["text"] for m in slack.messages(ADMIN_CHANNEL)),
                 "the retrain's final message", 240, stack.logs)
        ended_s = time.monotonic() - killed_at
        status = slash(bot, "/forecast-status", user=ADMIN)

    print(f"\ntrainer SIGKILLed mid-retrain: {FORECASTS} /forecast answered meanwhile, latency (s): "
          + ", ".join(f"{latency[c]:.2f}" for c in asked)
          + f"; the requester's final message {ended_s:.1f} s after the kill")
    [final] = slack.messages(ADMIN_CHANNEL)  # the progress message, edited into its final state
    assert "stopped unexpectedly" in final["text"], final
    # The final message is posted from RQ's failure handling, which moves the job to failed right after it.
    wait_for(lambda: retrain_job(redis, job_id).get_status(refresh=True) == "failed", "the job marked failed", 30,
             stack.logs)
    assert (stack.registry.current_version(), stack.registry.versions()) == before == ("v0001", ["v0001"])
    assert "a retrain running" not in json.dumps(status.json()["blocks"])  # a dead trainer's record is not shown
