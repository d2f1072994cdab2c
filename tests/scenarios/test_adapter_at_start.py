"""A promotion while a worker loads its model (issue 20, item 7): the worker records the adapter it loaded, not the
one the registry names by the time the load ends, and then follows the registry to the promoted one, in place.

The product's own loader (`forecaster.cli.common.load_analyst`, what `forecaster worker` runs) on the tiny Qwen2, a
real adapter registry on disk, a real RQ SimpleWorker in burst mode on a real Redis, the fake Slack.
"""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.training.registry import Registry
from forecaster.cli.common import load_analyst, served_adapter
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import ForecastRequest, JobsClient
from jobs.keys import served_model_key
from tests.scenarios.market_fixture import memory_market


@pytest.fixture
def registry(tmp_path, tiny_adapter_dirs):
    registry = Registry(tmp_path / "models")
    first = registry.add(tiny_adapter_dirs[0])
    registry.promote(first, reason="served before the worker starts")
    registry.add(tiny_adapter_dirs[1])
    return registry


def worker_context(redis, slack, settings, load_model) -> runtime.WorkerContext:
    """As `forecaster worker` wires it (forecaster/cli/service.py), with an in-memory market."""
    market = memory_market()
    return runtime.WorkerContext(
        settings=settings, conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)), load_model=load_model,
        adapter_for=lambda: served_adapter(settings),
    )


def footer(message: dict) -> str:
    """The answer's footer: its context block naming the model and the data date."""
    [text] = [e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]
              if "prices as of" in e.get("text", "")]
    return text


def test_a_promotion_during_the_load_is_recorded_as_it_is_served_then_followed(redis, slack, registry,
                                                                              tiny_model_dir, caplog):
    settings = Settings(_env_file=None, model_base=str(tiny_model_dir), model_device="cpu",
                        model_dir=registry.root, model_max_new_tokens=16)
    [first, second] = registry.versions()
    seen: list[tuple[str | None, str | None]] = []

    def load_while_an_admin_promotes():
        model = load_analyst(settings)  # read the registry (v0001), loaded it: seconds to minutes on real weights
        registry.promote(second, reason="promoted while the worker was loading")
        return model

    def publish_and_watch(self, _publish=runtime.WorkerContext._publish):
        _publish(self)  # every record the worker writes, with the adapter its model held at that moment
        seen.append((redis.hget(served_model_key(), "adapter").decode(), self._model.adapter.name))

    context = worker_context(redis, slack, settings, load_while_an_admin_promotes)
    context._publish = publish_and_watch.__get__(context)
    JobsClient(redis).forecast(ForecastRequest(ticker="AXP", channel="C123", user="U1",
                                               as_of=dt.date(2024, 3, 15), weeks=2))
    with caplog.at_level(logging.INFO, logger="jobs.runtime"):
        worker.run(context, burst=True)
    runtime.install(None)

    # Each record named what the model served when it was written: first what it loaded, then the promoted one.
    assert seen == [(first, first), (second, second)]
    model = context.model()
    assert model.adapter == registry.path(second) and context.model_loads == 1  # switched in place, no reload
    assert f"switching adapter: {first} → {second}" in caplog.text
    [answer] = [m for m in slack.messages("C123") if "weekly forecast" in str(m.get("blocks", [{}])[0])]
    assert second in footer(answer)  # the answer names the adapter that wrote it


def test_without_a_promotion_the_loaded_adapter_is_recorded_and_kept(redis, slack, registry, tiny_model_dir,
                                                                     caplog):
    settings = Settings(_env_file=None, model_base=str(tiny_model_dir), model_device="cpu",
                        model_dir=registry.root)
    context = worker_context(redis, slack, settings, lambda: load_analyst(settings))
    with caplog.at_level(logging.INFO, logger="jobs.runtime"):
        model = context.model()
        assert context.model() is model
    assert model.adapter == registry.path("v0001")
    assert redis.hget(served_model_key(), "adapter") == b"v0001"
    assert "switching adapter" not in caplog.text  # what was loaded is what should be served: nothing to do
