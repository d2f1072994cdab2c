"""The week a request is for, on the NYSE's calendar (issue 20, item 8): the acknowledgement names the week the answer
is written for, before a Monday open, on Sunday, on Memorial Day, on Good Friday and on the day after Thanksgiving.

As deployed: signed slash commands over HTTP to the Bolt app, asked at a given New York moment (the bot's clock),
a real Redis, a real RQ worker in burst mode (running now, long after the request: the request carries when it was
asked), a canned analyst and an in-memory market with 2024's trading days.
"""

from __future__ import annotations

import datetime as dt
import re

import pytest

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.market.weeks import NEW_YORK
from forecaster.settings import Settings
from jobs import ledger, runtime, worker
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.fakes.sources import MemorySources, synthetic_profile, weekday_closes
from tests.scenarios.bot_harness import bot_settings, serve_bot, slash

# The exchange's full-day closures in 2024, written out here rather than read from the product's calendar.
HOLIDAYS_2024 = [dt.date(2024, m, d) for m, d in ((1, 1), (1, 15), (2, 19), (3, 29), (5, 27), (6, 19), (7, 4),
                                                  (9, 2), (11, 28), (12, 25))]
WEEK = re.compile(r"the week (\d{4}-\d{2}-\d{2} to \d{4}-\d{2}-\d{2})")


def footer(message: dict) -> str:
    """The answer's footer: its context block naming the model and the data date."""
    [text] = [e["text"] for b in message["blocks"] if b["type"] == "context" for e in b["elements"]
              if "prices as of" in e.get("text", "")]
    return text


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


@pytest.fixture
def context(redis, slack):
    market = MemorySources()
    market.profiles["AXP"] = synthetic_profile("AXP")
    market.closes["AXP"] = weekday_closes(dt.date(2023, 12, 1), dt.date(2024, 12, 31), holidays=HOLIDAYS_2024)
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: CannedAnalyst(answer("Up by 1-2%")),
    )
    yield ctx
    runtime.install(None)


def ask(slack, redis_server, moment: dt.datetime, command: str, text: str) -> str:
    """The ack's text for `command text` asked at `moment` (New York)."""
    settings = bot_settings(slack, redis_server["url"], bot_digest_cooldown_s=0)
    with serve_bot(settings, now=lambda: moment.astimezone(dt.UTC)) as server:
        return slash(server, command, text, user="U1", channel="C123", response_url=slack.hook_url()).text


@pytest.mark.parametrize(("moment", "text", "week", "prices_as_of"), [
    # `/forecast AXP <today>` on a Monday before the open: this week (the old ack named the next one).
    (ny(2024, 3, 4, 8), "AXP 2024-03-04 weeks=2", "2024-03-03 to 2024-03-10", "2024-03-01"),
    # The Sunday before: the week about to open.
    (ny(2024, 3, 3, 20), "AXP 2024-03-03 weeks=2", "2024-03-03 to 2024-03-10", "2024-03-01"),
    # Memorial Day at noon, live: the market opens on Tuesday, so this week is still ahead.
    (ny(2024, 5, 27, 12), "AXP weeks=2", "2024-05-26 to 2024-06-02", "2024-05-24"),
    # Good Friday: the week's sessions ended on Thursday; the next week, from Thursday's close.
    (ny(2024, 3, 29, 11), "AXP weeks=2", "2024-03-31 to 2024-04-07", "2024-03-28"),
    # The day after Thanksgiving, 14:00: the session closed at 13:00, and its close is known.
    (ny(2024, 11, 29, 14), "AXP weeks=2", "2024-12-01 to 2024-12-08", "2024-11-29"),
])
def test_the_forecast_answers_for_the_week_its_acknowledgement_named(slack, redis_server, context, moment, text,
                                                                    week, prices_as_of):
    ack = ask(slack, redis_server, moment, "/forecast", text)
    assert ack.startswith(":hourglass_flowing_sand: Queued *AXP*"), ack
    assert WEEK.search(ack)[1] == week, ack

    worker.run(context, burst=True)

    [message] = slack.messages("C123")
    assert WEEK.search(message["text"].replace("`", ""))[1] == week, message["text"]
    assert f"prices as of {prices_as_of}" in footer(message)
    [entry] = ledger.entries(ledger.open_ledger(Settings(_env_file=None)))
    assert entry["target_week"] == week


def test_the_digest_answers_for_the_week_its_acknowledgement_named(slack, redis_server, context):
    ack = ask(slack, redis_server, ny(2024, 5, 27, 12), "/digest", "2024-05-27")  # Memorial Day, at noon
    assert WEEK.search(ack)[1] == "2024-05-26 to 2024-06-02", ack

    worker.run(context, burst=True)

    [summary] = [m for m in slack.messages("C123") if not m.get("thread_ts")]
    assert "2024-05-26 to 2024-06-02" in str(summary["blocks"]), summary["text"]
