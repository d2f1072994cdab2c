"""Each channel's watchlist (issue 22): `/watch add` checks names with the data sources and refuses unknown ones with
the reason, the cap holds, the weekly digest and `/digest` of a channel with a watchlist cover its names only, and
the App Home tab is published within Slack's limits.

As deployed: signed slash commands and events over HTTP to the Bolt app (waitress on 127.0.0.1), a real Redis, a
real RQ worker in burst mode with a canned analyst and an in-memory market, the ledger in a real SQLite file and a
real PostgreSQL, the fake Slack recording what users see.
"""

from __future__ import annotations

import datetime as dt
import json
import time

import pytest
from slack_sdk.models.views import View

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.market.dow30 import members
from engine.market.weeks import NEW_YORK
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import queue
from jobs.keys import home_chart_key
from jobs.ledger import open_ledger, watchlists
from jobs.queues import BATCH, INTERACTIVE
from jobs.scheduler import Plan, fire
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.fakes.slack_events import event_body, signed_event_headers
from tests.fakes.sources import synthetic_profile, weekday_closes
from tests.scenarios.bot_harness import bot_settings, request, serve_bot, slash
from tests.scenarios.market_fixture import memory_market

KNOWN = ("NVDA", "AMD", "BRK.B")
MONDAY_8AM = dt.datetime(2024, 3, 18, 8, 0, 1, tzinfo=NEW_YORK)  # the digest slot: the week of Mar 17


@pytest.fixture(params=["sqlite", "postgres"])
def database(request, monkeypatch):
    """The ledger the bot and the worker share (DATABASE_URL as deployed), migrated as a worker's start does."""
    if request.param == "postgres":
        from sqlalchemy import delete

        from jobs.ledger.models import Forecast, TrackReport, TrackWeek, WatchlistEntry

        monkeypatch.setenv("DATABASE_URL", request.getfixturevalue("postgres_database"))
        with open_ledger(Settings(_env_file=None)).begin() as conn:
            for model in (TrackWeek, Forecast, TrackReport, WatchlistEntry):
                conn.execute(delete(model))
    ledger = open_ledger(Settings(_env_file=None))
    ledger.migrate()
    return ledger


@pytest.fixture
def market():
    mem = memory_market()
    for symbol in (*KNOWN, "TSLA"):  # trading now (the add's check) and in March 2024; of the Dow30, AXP alone
        mem.profiles[symbol] = synthetic_profile(symbol)
        mem.closes[symbol] = weekday_closes(dt.date(2024, 1, 1), dt.date.today())
    return mem


@pytest.fixture
def context(redis, slack, market, database):
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None, watchlist_max=3), conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: CannedAnalyst(answer("Up by 1-2%")),
    )
    yield ctx
    runtime.install(None)


@pytest.fixture
def server(slack, redis, redis_server, database):
    with serve_bot(bot_settings(slack, redis_server["url"], watchlist_max=3, bot_digest_cooldown_s=0)) as running:
        yield running


def told_privately(slack) -> str:
    """Everything the requester was shown on the response_url, joined (the ack's note is replaced in place)."""
    return "\n".join(json.dumps(hook) for hook in slack.hooks())


def test_an_unknown_ticker_is_refused_at_add_with_the_reason_and_the_known_ones_are_added(server, slack, context,
                                                                                        database):
    asked = slash(server, "/watch", "add NVDA ZZZZQ brk-b", user="U1", channel="C1", response_url=slack.hook_url())
    assert asked.text.startswith(":mag: Checking *NVDA*, *ZZZZQ*, *BRK.B*"), asked.text  # BRK-B is BRK.B
    assert "No worker is running right now: the job waits until one starts" in asked.text  # none yet: said so
    assert watchlists.tickers_of(database, "C1") == []  # nothing added before the check
    worker.run(context, burst=True)

    [note] = slack.hooks()
    assert note["response_type"] == "ephemeral" and note["replace_original"] is True
    assert "Added to <#C1>'s watchlist: *NVDA*, *BRK.B*" in note["text"]
    assert "*ZZZZQ* not added: no company is listed under this ticker" in note["text"]
    assert slack.messages() == []  # the channel saw nothing of it
    assert watchlists.tickers_of(database, "C1") == ["NVDA", "BRK.B"]

    listed = json.dumps(slash(server, "/watch", "", user="U2", channel="C1").json()["blocks"], ensure_ascii=False)
    assert "*NVDA* · _no call yet_" in listed
    assert "this channel gets no weekly digest (an admin can add it to `DIGEST_CHANNELS`)" in listed
    assert slash(server, "/watch", "", channel="C2").text.startswith("This channel has no watchlist")
    removed = slash(server, "/watch", "remove NVDA TSLA", channel="C1").text
    assert removed.startswith(":wastebasket: Removed *NVDA*") and "not on it: *TSLA*" in removed
    assert watchlists.tickers_of(database, "C1") == ["BRK.B"]


def test_markup_in_a_ticker_is_refused_as_text(server):
    refused = slash(server, "/watch", "add <!channel>", channel="C1").text
    assert refused.startswith(":warning: '&lt;!channel&gt;' is not a ticker")


def test_the_cap_refuses_at_once_with_a_clear_message_and_queues_nothing(server, slack, context, redis, database):
    slash(server, "/watch", "add NVDA AMD", channel="C1", response_url=slack.hook_url())
    worker.run(context, burst=True)
    assert watchlists.tickers_of(database, "C1") == ["NVDA", "AMD"]

    refused = slash(server, "/watch", "add BRK.B AXP", channel="C1").text  # 2 + 2 > WATCHLIST_MAX=3
    assert refused.startswith(":no_entry: This channel's watchlist has 2 of 3 names; adding *BRK.B*, *AXP* (2) "
                              "would pass the cap of 3 (`WATCHLIST_MAX`)"), refused
    assert queue(redis, INTERACTIVE).count == 0
    assert slash(server, "/watch", "add NVDA", channel="C1").text.startswith(":information_source: Already on")


def test_the_cap_holds_when_two_adds_race_past_the_bots_check(server, slack, context, database):
    """Both acks saw room (2 names, cap 3); the worker adds what fits and says what did not."""
    slash(server, "/watch", "add NVDA AMD", channel="C1", response_url=slack.hook_url("T1/B1/a"))
    worker.run(context, burst=True)
    slash(server, "/watch", "add BRK.B", channel="C1", user="U1", response_url=slack.hook_url("T1/B1/b"))
    slash(server, "/watch", "add TSLA", channel="C1", user="U2", response_url=slack.hook_url("T1/B1/c"))
    worker.run(context, burst=True)
    assert watchlists.tickers_of(database, "C1") == ["NVDA", "AMD", "BRK.B"]
    [full] = [h for h in slack.hooks() if "TSLA" in h["text"]]
    assert "Not added, the list is full (3 names, `WATCHLIST_MAX`): *TSLA*" in full["text"]


def test_the_scheduled_digest_covers_each_channels_watchlist_and_the_dow30_elsewhere(context, redis, slack,
                                                                                      database):
    watchlists.add(database, "C0WATCH", ["BRK.B", "NVDA"], user="U1", cap=3)
    plan = Plan.from_settings(Settings(_env_file=None, digest_channels="C0WATCH,C0DOW30"))
    outcomes = fire(redis, "digest", plan=plan, now=lambda: MONDAY_8AM)
    assert {c: o.status for c, o in outcomes.items()} == {"C0WATCH": "queued", "C0DOW30": "queued"}
    [c1_job] = [j for j in queue(redis, BATCH).get_jobs() if j.kwargs["channel"] == "C0WATCH"]
    assert c1_job.kwargs["symbols"] == ["BRK.B", "NVDA"]  # the list travels in the job
    worker.run(context, burst=True)

    summary, *thread = slack.messages("C0WATCH")
    assert summary["blocks"][0]["text"]["text"] == "Watchlist digest: 2024-03-17 to 2024-03-24"
    assert summary["text"].startswith("Watchlist digest for 2024-03-17 to 2024-03-24: 2 up")
    table = summary["blocks"][2]["text"]["text"]
    assert [line.split("`")[1].strip() for line in table.splitlines()] == ["BRK.B", "NVDA"]  # its names only
    assert sorted(t["blocks"][0]["text"]["text"] for t in thread) == ["BRK.B weekly forecast", "NVDA weekly forecast"]
    dow, *dow_thread = slack.messages("C0DOW30")  # no watchlist: the Dow30 (AXP has data, the others are listed)
    assert dow["blocks"][0]["text"]["text"] == "Dow30 digest: 2024-03-17 to 2024-03-24"
    assert [t["blocks"][0]["text"]["text"] for t in dow_thread] == ["AXP weekly forecast"]
    assert all(f"{symbol}: no" in json.dumps(dow["blocks"]) for symbol in members(MONDAY_8AM.date()) if symbol != "AXP")


def test_digest_on_demand_in_a_channel_with_a_watchlist_runs_that_list(server, context, slack, database):
    watchlists.add(database, "C1", ["AMD"], user="U1", cap=3)
    asked = slash(server, "/digest", "2024-03-15", channel="C1").text
    assert asked.startswith(":hourglass_flowing_sand: Queued the watchlist digest (1 name) for the week "
                            "2024-03-17 to 2024-03-24"), asked
    worker.run(context, burst=True)
    summary, item = slack.messages("C1")
    assert summary["blocks"][0]["text"]["text"].startswith("Watchlist digest")
    assert item["blocks"][0]["text"]["text"] == "AMD weekly forecast"
    dow30 = slash(server, "/forecast", "dow30 2024-03-15", channel="C1").text  # named: the Dow30 all the same
    assert dow30.startswith(":hourglass_flowing_sand: Queued the Dow30 digest for the week"), dow30
    assert slash(server, "/forecast", "digest 2024-03-15", channel="C1").text.startswith(
        ":white_check_mark: This channel already got the watchlist digest (1 name)")


def test_app_home_is_published_within_slacks_limits(server, context, slack, database):
    for n in range(30):  # more than the tab can show: it says how many more
        watchlists.add(database, f"C{n:03d}", [*KNOWN], user="U1", cap=3)
    slash(server, "/digest", "2024-03-15", channel="C000")
    worker.run(context, burst=True)  # so the names have calls and the track record has entries

    # The weekly summary's newest chart, as jobs.summary records it after its upload (tests/scenarios/test_summary_job).
    context.conn.set(home_chart_key(), json.dumps({"file_id": "F00000042", "title": "Reliability <of> P(up)"}))
    body = event_body({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "home"})
    opened = request(server, "POST", "/slack/events", body, signed_event_headers(body))
    assert opened.status == 200
    deadline = time.monotonic() + 10  # published after the ack (a lazy listener)
    while not slack.posted("views.publish") and time.monotonic() < deadline:
        time.sleep(0.05)
    [published] = slack.posted("views.publish")
    assert published["user_id"] == "U1"
    view = published["view"] if isinstance(published["view"], dict) else json.loads(published["view"])
    View(**view).validate_json()  # slack_sdk: at most 100 blocks, each block's own limits
    text = json.dumps(view, ensure_ascii=False)
    assert view["type"] == "home" and len(view["blocks"]) <= 100
    assert "<#C000>" in text and "*NVDA* ▲ Up by 1-2%" in text and "more channel(s) with a watchlist" in text
    assert "Track record: all tickers" in text and "Latest" in text
    [image] = [b for b in view["blocks"] if b["type"] == "image"]
    assert image["slack_file"] == {"id": "F00000042"} and image["title"]["text"] == "Reliability <of> P(up)"

    messages_tab = event_body({"type": "app_home_opened", "user": "U1", "channel": "D1", "tab": "messages"})
    assert request(server, "POST", "/slack/events", messages_tab, signed_event_headers(messages_tab)).status == 200
    time.sleep(0.3)
    assert len(slack.posted("views.publish")) == 1  # the Messages tab publishes nothing


@pytest.mark.usefixtures("fresh_yfinance")
def test_class_shares_are_checked_in_each_sources_spelling_through_the_production_sources(server, slack, redis,
                                                                                           database):
    """The real finnhub client and yfinance against fake Finnhub and Yahoo servers, behind `build_sources`' cache
    and limiters: BRK-B as typed is BRK.B at Finnhub and BRK-B at Yahoo; a name Finnhub has no profile for is
    refused with the reason."""
    from engine.sources.factory import build_sources
    from tests.fakes.finnhub import FakeFinnhub
    from tests.fakes.yahoo import FakeYahoo

    with FakeFinnhub() as finnhub, FakeYahoo() as yahoo:
        finnhub.add_profile("BRK.B", name="Berkshire Hathaway Inc", finnhubIndustry="Insurance")
        today = dt.date.today()
        yahoo.add_prices("BRK-B", {today - dt.timedelta(days=d): 400.0 + d for d in range(1, 15)
                                   if (today - dt.timedelta(days=d)).weekday() < 5})
        settings = Settings(_env_file=None, finnhub_api_key="test-key-5f3a9c", finnhub_api_url=finnhub.api_url)
        ctx = runtime.WorkerContext(
            settings=settings, conn=redis, sources=build_sources(settings, conn=redis, yahoo_session=yahoo.session()),
            slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
            load_model=lambda: CannedAnalyst(answer("Up by 1-2%")))
        asked = slash(server, "/watch", "add brk-b ZZZZQ", channel="C1", response_url=slack.hook_url())
        assert asked.text.startswith(":mag: Checking *BRK.B*, *ZZZZQ*")
        try:
            worker.run(ctx, burst=True)
        finally:
            runtime.install(None)
        [note] = slack.hooks()
        assert "Added to <#C1>'s watchlist: *BRK.B*" in note["text"]
        assert "*ZZZZQ* not added: no company is listed under this ticker" in note["text"]
        assert watchlists.tickers_of(database, "C1") == ["BRK.B"]
        assert {c.params["symbol"] for c in finnhub.calls} == {"BRK.B", "ZZZZQ"}
        charts = [path for _m, _host, path in yahoo.requests if "/v8/finance/chart/" in path]
        assert charts and all("/chart/BRK-B" in path for path in charts)


def test_any_watch_text_gets_an_ephemeral_answer_within_slacks_limits_and_no_exception_escapes(slack, redis,
                                                                                                redis_server,
                                                                                                database, caplog):
    """Fuzzed `/watch` text through the app's own dispatch (signature, listener, ack), the ledger migrated, so
    list, add (queued or refused) and remove are all reached."""
    import logging

    from hypothesis import HealthCheck, example, given, settings
    from hypothesis import strategies as st
    from slack_bolt.request import BoltRequest

    from bot.app import build_app
    from jobs.client import fast_connection
    from tests.fakes.slack_commands import command_body, signed_headers
    from tests.slack_limits import within_slack_limits

    app = build_app(bot_settings(slack, redis_server["url"], watchlist_max=3),
                    conn=fast_connection(redis_server["url"]))
    words = st.sampled_from(["add", "remove", "rm", "list", "help", "NVDA", "nvda", "brk-b", "BRK.B", "$AMD",
                             "<!channel>", "<#C1|x>", "&amp;", "`", ",", "A,B", "TOOLONGX", "\u200b"])
    seen: set[str] = set()

    @settings(max_examples=150, deadline=None, database=None, suppress_health_check=[HealthCheck.too_slow])
    @example(text="add NVDA", channel="C0FULL")  # each path at least once (examples run first): already there,
    @example(text="add AMD brk-b", channel="C0FUZZ")  # queued,
    @example(text="add AMD", channel="C0FULL")  # over the cap (a list never emptied here),
    @example(text="rm NVDA", channel="C0FUZZ")  # removed
    @example(text="", channel="C0FUZZ")  # and the list
    @given(text=st.lists(st.one_of(words, st.text(min_size=1, max_size=8)), max_size=6).map(" ".join),
           channel=st.sampled_from(["C0FUZZ", "C0FULL"]))
    def answer(text: str, channel: str) -> None:
        body = command_body("/watch", text, channel=channel)
        response = app.dispatch(BoltRequest(body=body, headers=signed_headers(body)))
        assert response.status == 200, (text, response.body)
        reply = json.loads(response.body)
        within_slack_limits(reply)
        assert reply["response_type"] == "ephemeral" and not reply["text"].startswith(":x: Something"), text
        seen.add(reply["text"].split()[0])

    watchlists.add(database, "C0FUZZ", ["NVDA"], user="U1", cap=3)
    watchlists.add(database, "C0FULL", ["NVDA", "BRK.B", "TSLA"], user="U1", cap=3)
    with caplog.at_level(logging.ERROR):
        answer()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
    assert {":warning:", ":mag:", ":no_entry:", ":wastebasket:", ":information_source:", "This"} <= seen, seen


def test_an_add_whose_database_stays_down_ends_in_a_failure_the_requester_sees(server, slack, redis, market,
                                                                               monkeypatch):
    """The worker cannot reach the ledger: RQ's retries (without their backoff here), then the failure, said."""
    import dataclasses

    import jobs.client

    monkeypatch.setattr(jobs.client, "INTERACTIVE", dataclasses.replace(INTERACTIVE, retry_intervals_s=(0, 0)))
    down = Settings(_env_file=None, database_url="postgresql+psycopg://postgres@127.0.0.1:1/none",
                    database_connect_timeout_s=2)
    ctx = runtime.WorkerContext(settings=down, conn=redis, sources=Sources(market, market, market),
                                slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
                                load_model=lambda: CannedAnalyst(answer("Up by 1-2%")))
    slash(server, "/watch", "add NVDA", channel="C1", user="U1", response_url=slack.hook_url())
    try:
        worker.run(ctx, burst=True)
    finally:
        runtime.install(None)
    [failed] = slack.messages("C1")  # retries spent: said where the request was made, as any job's failure is
    assert failed["text"].startswith(":x: Your /watch add failed: an internal error (OperationalError)")
    assert ":repeat: Your /watch add hit a problem" in slack.hooks()[0]["text"]  # its retries were said too
