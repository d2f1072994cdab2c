"""/forecast through the production sources: the real finnhub client and the real yfinance against fake Finnhub and
Yahoo servers on 127.0.0.1, behind the Redis cache and limiters `build_sources` puts in front of them; a real
SimpleWorker, the tiny Qwen2, the fake Slack recording what the requester sees."""

from __future__ import annotations

import datetime as dt

import pytest

from bot.commands import parse_forecast
from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.generation.model import Analyst
from engine.market.weeks import NEW_YORK
from engine.sources.factory import build_sources
from forecaster.settings import Settings
from jobs import ledger, runtime, worker
from jobs.client import ForecastRequest, JobsClient
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.yahoo import FakeYahoo

pytestmark = pytest.mark.usefixtures("fresh_yfinance")


@pytest.fixture
def finnhub():
    with FakeFinnhub() as fake:
        # Finnhub spells Berkshire's class B shares BRK.B.
        fake.add_profile("BRK.B", name="Berkshire Hathaway Inc", finnhubIndustry="Insurance")
        fake.add_news("BRK.B", *({"headline": f"Berkshire synthetic headline {d}",
                                  "published": dt.datetime(2024, 3, d, 10, tzinfo=NEW_YORK)} for d in (5, 12)))
        fake.add_financials("BRK.B", {"eps": [("2023-12-31", 4.2)]})
        yield fake


@pytest.fixture
def yahoo():
    with FakeYahoo() as fake:
        # Yahoo spells them BRK-B and has nothing under BRK.B.
        day, closes = dt.date(2024, 1, 2), {}
        while day <= dt.date(2024, 3, 29):
            if day.weekday() < 5:
                closes[day] = 400.0 + len(closes)
            day += dt.timedelta(days=1)
        fake.add_prices("BRK-B", closes)
        yield fake


def make_context(redis, slack, finnhub, yahoo, tiny_model_dir) -> runtime.WorkerContext:
    settings = Settings(_env_file=None, model_max_new_tokens=16, finnhub_api_key="test-key-5f3a9c",
                        finnhub_api_url=finnhub.api_url)
    return runtime.WorkerContext(
        settings=settings, conn=redis, sources=build_sources(settings, conn=redis, yahoo_session=yahoo.session()),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: Analyst.load(str(tiny_model_dir), device="cpu"),
    )


def test_forecast_brk_b_asks_each_source_in_its_own_spelling_and_tells_the_user_about_a_rate_limit(
        redis, slack, finnhub, yahoo, tiny_model_dir):
    finnhub.fail_next("profile2", 429)  # no rate-limit headers: a short backoff, and a word to the requester
    args = parse_forecast("BRK.B 2024-03-15 weeks=2", today=dt.date(2024, 3, 20))  # the help's own example
    assert args.ticker == "BRK.B"
    JobsClient(redis).forecast(ForecastRequest(ticker=args.ticker, channel="C9", user="U1", as_of=args.as_of,
                                               weeks=args.weeks))
    context = make_context(redis, slack, finnhub, yahoo, tiny_model_dir)
    try:
        worker.run(context, burst=True)
    finally:
        runtime.install(None)

    [message] = slack.messages("C9")
    assert message["blocks"][0]["text"]["text"] == "BRK.B weekly forecast"
    steps = [c.body["text"] for c in slack.calls if c.method in ("chat.postMessage", "chat.update")]
    [note] = [t for t in steps if "rate-limited by Finnhub" in t]
    assert "*BRK.B*: rate-limited by Finnhub, retrying in" in note
    assert {c.params["symbol"] for c in finnhub.calls} == {"BRK.B"}
    charts = [path for _m, host, path in yahoo.requests if "/v8/finance/chart/" in path]
    assert charts and all("/chart/BRK-B" in path for path in charts)
    [entry] = ledger.entries(ledger.open_ledger(Settings(_env_file=None)))
    assert entry["ticker"] == "BRK.B"
