"""A /forecast through the queue with MODEL_BACKEND=vllm: real Redis, a real RQ SimpleWorker in burst mode, the model
from `load_analyst(settings)` (the worker's own hook) answering through a fake vLLM server on 127.0.0.1, and a fake
Slack Web API recording what the user sees."""

from __future__ import annotations

import datetime as dt

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.generation.grammar import ANALYSIS_REGEX, BIN_TEXT, LISTS_REGEX
from engine.generation.remote_model import RemoteAnalyst
from engine.training.registry import Registry
from forecaster.cli.common import load_analyst
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import ForecastRequest, JobsClient
from jobs.queues import INTERACTIVE
from tests.fakes.vllm_server import FakeVllm
from tests.scenarios.market_fixture import memory_market


@pytest.fixture
def vllm(tiny_model_dir):
    with FakeVllm(tiny_model_dir, served_model_name="qwen-test") as fake:
        yield fake


@pytest.fixture
def registry(tmp_path):
    return Registry(tmp_path / "models")


@pytest.fixture
def context(redis, slack, vllm, tiny_model_dir, registry):
    mem = memory_market()
    settings = Settings(_env_file=None, model_backend="vllm", vllm_base_url=vllm.base_url, vllm_wait_s=0,
                        model_base=str(tiny_model_dir), model_dir=registry.root, model_max_new_tokens=300)
    ctx = runtime.WorkerContext(
        settings=settings, conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: load_analyst(settings), adapter_for=registry.current_path,
    )
    yield ctx
    runtime.install(None)


def request(**changes) -> ForecastRequest:
    values = {"ticker": "AXP", "channel": "C123", "user": "U1", "as_of": dt.date(2024, 3, 15), "weeks": 2}
    return ForecastRequest(**(values | changes))


def test_a_queued_forecast_is_answered_by_the_vllm_server_and_posted_parsed(context, redis, slack, vllm):
    JobsClient(redis).forecast(request())
    worker.run(context, burst=True)

    assert isinstance(context.model(), RemoteAnalyst) and context.model_loads == 1
    # Constrained by default (MODEL_CONSTRAINED): the lists up to "Prediction:", the 12 bins scored there, then the
    # analysis after the call chosen from those probabilities.
    lists, analysis = vllm.completions()
    assert lists.body["model"] == "qwen-test" and "potential concerns for AXP." in lists.body["prompt"]
    assert lists.body["structured_outputs"]["regex"] == LISTS_REGEX
    [scoring] = vllm.scorings()
    assert len(scoring.body["prompt"]) == 12 and scoring.body["model"] == "qwen-test"
    assert analysis.body["structured_outputs"]["regex"] == ANALYSIS_REGEX
    assert analysis.body["prompt"].startswith(lists.body["prompt"])
    written = analysis.body["prompt"].rsplit("Prediction:", 1)[1]  # " Up by 3-4%\nAnalysis:"
    label = written.removesuffix("\nAnalysis:").strip().lower()
    assert label in {text.lower() for text in BIN_TEXT.values()}
    [message] = slack.messages("C123")
    assert message["text"].startswith((f"AXP: {label}", f"AXP: no clear signal (leans {label})"))
    assert "for the week 2024-03-17 to 2024-03-24" in message["text"]
    footer = message["blocks"][-1]["elements"][0]["text"]
    assert footer.startswith(context.model().version) and context.model().version.endswith("(no adapter)")


def test_a_promoted_adapter_is_loaded_into_vllm_and_answers_the_next_job(context, redis, slack, vllm, registry,
                                                                        tiny_adapter_dirs):
    JobsClient(redis).forecast(request(as_of=dt.date(2024, 3, 8)))
    worker.run(context, burst=True)
    version = registry.add(tiny_adapter_dirs[0])
    registry.promote(version, reason="test")
    JobsClient(redis).forecast(request(as_of=dt.date(2024, 3, 15)))
    worker.run(context, burst=True)

    assert [r.body for r in vllm.loads()] == [{"lora_name": version,
                                               "lora_path": str(registry.path(version).resolve())}]
    assert [r.body["model"] for r in vllm.completions()] == ["qwen-test"] * 2 + [version] * 2  # two phases each
    assert context.model_loads == 1
    last = slack.messages("C123")[-1]
    assert f"(answered by {version})" in str(last["blocks"]) and last["text"].startswith("AXP: ")


def test_a_vllm_server_gone_mid_shift_ends_in_a_plain_message_and_a_retry(context, redis, slack, vllm):
    context.model()  # connected at start-up
    vllm.go_down()  # then the server stops
    queued = JobsClient(redis).forecast(request())
    worker.run(context, burst=True)
    # A server outage is worth retrying (RQ does, after INTERACTIVE's backoff); meanwhile the user is told why.
    [message] = slack.messages("C123")
    assert "trying again shortly" in message["text"] and "the model server did not answer" in message["text"]
    assert vllm.base_url not in str(message)  # the server's address is the operator's (the worker log has it)
    job = Job.fetch(queued.job_id, connection=redis, serializer=JSONSerializer)
    assert job.get_status() == "scheduled" and job.retries_left == INTERACTIVE.retries - 1


def test_the_backend_is_chosen_from_the_environment(monkeypatch, tiny_model_dir, tiny_adapter_dirs):
    from forecaster.cli.common import load_settings

    with FakeVllm(tiny_model_dir, api_key="sk-local-vllm") as fake:
        for name, value in {"MODEL_BACKEND": "vllm", "VLLM_BASE_URL": fake.root_url, "VLLM_API_KEY": "sk-local-vllm",
                            "MODEL_BASE": str(tiny_model_dir), "MODEL_ADAPTER": str(tiny_adapter_dirs[1]),
                            "MODEL_BATCH_SIZE": "3", "VLLM_TIMEOUT_S": "7.5"}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings()
        assert "sk-local-vllm" not in repr(settings)
        analyst = load_analyst(settings)
    assert isinstance(analyst, RemoteAnalyst)
    assert analyst.concurrency == 3 and analyst.served_name == tiny_adapter_dirs[1].name
    assert analyst.server.timeout_s == 7.5 and analyst.server._client.timeout == 7.5
