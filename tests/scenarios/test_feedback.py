"""Feedback and asking in words (issue 22): the 👍/👎 buttons under an answer, clicked as Slack sends block actions
(signed, form-encoded `payload`), recorded once per person in the ledger, changed, taken back, shown on the message
and counted in /track; `@forecaster AXP` (an app_mention event, signed JSON) and a direct message answered like
`/forecast AXP`, where they were asked.

As deployed: the Bolt app served by waitress on 127.0.0.1, a real Redis, a real RQ worker in burst mode (a canned
analyst, or the tiny Qwen2 through the product's Analyst), an in-memory market, the fake Slack recording what users
see, the ledger a SQLite file both share.
"""

from __future__ import annotations

import copy
import json
import time
from collections.abc import Callable
from urllib.parse import urlencode

import pytest
from sqlalchemy import select

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.generation.model import Analyst
from forecaster.settings import Settings
from jobs import runtime, worker
from jobs.client import queue
from jobs.ledger import get_entry, open_ledger
from jobs.ledger.models import Vote
from jobs.queues import INTERACTIVE
from tests.fakes.forecasts import CannedAnalyst, answer
from tests.fakes.slack_commands import signed_headers
from tests.scenarios.bot_harness import Reply, bot_settings, request, serve_bot, slash
from tests.scenarios.market_fixture import memory_market

BOT_USER = "U0BOT"  # what the fake Slack's auth.test names the bot


@pytest.fixture
def server(slack, redis, redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"])) as running:
        yield running


def _context(redis, slack, load_model, **settings) -> runtime.WorkerContext:
    mem = memory_market()
    return runtime.WorkerContext(settings=Settings(_env_file=None, **settings), conn=redis,
                                 sources=Sources(mem, mem, mem),
                                 slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
                                 load_model=load_model)


@pytest.fixture
def canned(redis, slack):
    yield _context(redis, slack, lambda: CannedAnalyst(answer("Up by 1-2%")))
    runtime.install(None)


@pytest.fixture
def tiny(redis, slack, tiny_model_dir):
    yield _context(redis, slack, lambda: Analyst.load(str(tiny_model_dir), device="cpu"), model_max_new_tokens=24)
    runtime.install(None)


def wait_for(check: Callable[[], object], *, timeout_s: float = 5.0) -> object:
    """`check()`'s first truthy value, polled: what the bot does after its ack runs on a thread of its own."""
    deadline = time.monotonic() + timeout_s
    while not (found := check()):
        if time.monotonic() > deadline:
            raise AssertionError("not seen in time")
        time.sleep(0.02)
    return found


def is_answer(message: dict) -> bool:
    blocks = message.get("blocks") or []
    return bool(blocks) and blocks[0].get("type") == "header" and "weekly forecast" in blocks[0]["text"]["text"]


def buttons(message: dict) -> dict:
    [block] = [b for b in message["blocks"] if b["type"] == "actions" and b.get("block_id") == "forecast_votes"]
    return block


def labels(message: dict) -> list[str]:
    return [e["text"]["text"] for e in buttons(message)["elements"]]


def click(server, message: dict, action: str, *, user: str, channel: str = "C123", response_url: str) -> Reply:
    """A signed block action, as Slack posts it when `user` clicks the button `action` on `message`."""
    element = next(e for e in buttons(message)["elements"] if e["action_id"] == action)
    payload = {
        "type": "block_actions", "user": {"id": user, "username": "analyst", "team_id": "T1"},
        "api_app_id": "A1", "token": "legacy-verification-token", "team": {"id": "T1", "domain": "acme"},
        "container": {"type": "message", "message_ts": message["ts"], "channel_id": channel, "is_ephemeral": False},
        "trigger_id": f"{time.time_ns()}.1.abc", "channel": {"id": channel, "name": "markets"},
        "message": {"type": "message", "user": BOT_USER, "ts": message["ts"], "text": message["text"],
                    "blocks": message["blocks"]},
        "response_url": response_url,
        "actions": [{"type": "button", "action_id": action, "block_id": "forecast_votes", "value": element["value"],
                     "text": element["text"], "action_ts": f"{time.time():.6f}"}],
    }
    body = urlencode({"payload": json.dumps(payload)})
    return request(server, "POST", "/slack/events", body, signed_headers(body))


def event(server, inner: dict, *, headers: dict | None = None) -> Reply:
    """A signed Events API callback carrying `inner`, as Slack posts it."""
    body = json.dumps({"token": "legacy-verification-token", "team_id": "T1", "api_app_id": "A1",
                       "type": "event_callback", "event_id": f"Ev{time.time_ns()}", "event_time": int(time.time()),
                       "authorizations": [{"team_id": "T1", "user_id": BOT_USER, "is_bot": True}],
                       "event": inner})
    return request(server, "POST", "/slack/events", body,
                   {**signed_headers(body), "content-type": "application/json", **(headers or {})})


def mention(text: str, *, user: str = "U1", channel: str = "C123", ts: str = "1710500000.000200",
            thread_ts: str | None = None) -> dict:
    inner = {"type": "app_mention", "user": user, "text": text, "ts": ts, "channel": channel, "event_ts": ts}
    return inner | ({"thread_ts": thread_ts} if thread_ts else {})


def votes_in_ledger() -> dict[str, str]:
    with open_ledger(Settings(_env_file=None)).connect() as conn:
        return {row.user: row.vote for row in conn.execute(select(Vote.user, Vote.vote))}


# -- 👍 / 👎 -----------------------------------------------------------------------------------------------------


def test_a_vote_is_recorded_once_changed_taken_back_shown_and_counted_in_track(server, slack, canned):
    slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url())
    worker.run(canned, burst=True)
    [message] = [m for m in slack.messages("C123") if is_answer(m)]
    assert labels(message) == [":+1: 0", ":-1: 0"]  # under the answer, before anyone voted
    forecast_id = buttons(message)["elements"][0]["value"]
    assert get_entry(open_ledger(Settings(_env_file=None)), forecast_id)["ticker"] == "AXP"  # the ledger's id

    def shown(expected: list[str]) -> dict | None:
        [now] = [m for m in slack.messages("C123") if m["ts"] == message["ts"]]
        return now if labels(now) == expected else None

    hook = slack.hook_url("T1/B1/votes")
    started = time.perf_counter()
    assert click(server, message, "vote_up", user="U1", response_url=hook).status == 200
    assert time.perf_counter() - started < 1.0  # acknowledged at once; the work runs after the ack
    message = wait_for(lambda: shown([":+1: 1", ":-1: 0"]))
    assert votes_in_ledger() == {"U1": "up"}

    assert click(server, message, "vote_down", user="U1", response_url=hook).status == 200  # changed: replaced
    message = wait_for(lambda: shown([":+1: 0", ":-1: 1"]))
    assert votes_in_ledger() == {"U1": "down"}
    assert click(server, message, "vote_up", user="U2", response_url=hook).status == 200
    message = wait_for(lambda: shown([":+1: 1", ":-1: 1"]))
    assert votes_in_ledger() == {"U1": "down", "U2": "up"}  # one row per person

    track = slash(server, "/track", "AXP", user="U3").json()
    text = json.dumps(track["blocks"], ensure_ascii=False)
    assert "*Feedback:* :+1: 1 · :-1: 1 from 2 people on 1 forecast(s)" in text
    assert "· :+1: 1 :-1: 1" in text  # on the forecast's own line

    assert click(server, message, "vote_down", user="U1", response_url=hook).status == 200  # the same again
    wait_for(lambda: shown([":+1: 1", ":-1: 0"]))
    assert votes_in_ledger() == {"U2": "up"}  # taken back
    assert slack.hooks() == [h for h in slack.hooks() if "votes" not in str(h)]  # nobody needed telling
    assert [c for c in slack.calls if c.method == "hooks/T1/B1/votes"] == []


def test_a_vote_the_ledger_cannot_take_is_told_to_the_voter_alone(server, slack, canned):
    slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url())
    worker.run(canned, burst=True)
    [shown] = [m for m in slack.messages("C123") if is_answer(m)]
    message = copy.deepcopy(shown)
    for element in buttons(message)["elements"]:  # a button naming a forecast the ledger never held
        element["value"] = "forecast_NOPE_2024-03-15_2wf_C123:NOPE"
    edits = len(slack.posted("chat.update"))
    assert click(server, message, "vote_up", user="U1", response_url=slack.hook_url("T1/B1/votes")).status == 200

    [told] = wait_for(lambda: [c.body for c in slack.calls if c.method == "hooks/T1/B1/votes"])
    assert told["response_type"] == "ephemeral" and told["replace_original"] is False
    assert "can't record that vote" in told["text"]
    assert votes_in_ledger() == {}
    assert len(slack.posted("chat.update")) == edits  # the message stays as it was
    assert [m for m in slack.messages("C123") if m["ts"] == shown["ts"]] == [shown]



def test_two_clicks_at_once_end_with_both_counted_on_the_message_whichever_edit_lands_last(server, slack, canned):
    slash(server, "/forecast", "AXP 2024-03-15 weeks=2", user="U1", response_url=slack.hook_url())
    worker.run(canned, burst=True)
    [message] = [m for m in slack.messages("C123") if is_answer(m)]
    hook = slack.hook_url("T1/B1/votes")
    # U1's edit (its write saw one 👍) reaches Slack late: U2's edit, with both votes, is applied before it.
    slack.delay_next("chat.update", 1.5, when=lambda body: ":+1: 1" in json.dumps(body.get("blocks")))
    assert click(server, message, "vote_up", user="U1", response_url=hook).status == 200
    wait_for(lambda: votes_in_ledger() == {"U1": "up"})
    assert click(server, message, "vote_up", user="U2", response_url=hook).status == 200
    wait_for(lambda: votes_in_ledger() == {"U1": "up", "U2": "up"})

    def edits_with(label: str) -> list[int]:
        return [k for k, c in enumerate(slack.posted("chat.update")) if label in json.dumps(c.get("blocks"))]

    wait_for(lambda: edits_with(":+1: 1"), timeout_s=10)  # the late one has been applied, after U2's
    assert edits_with(":+1: 2")[0] < edits_with(":+1: 1")[0]  # Slack applied the older counts last...
    final = wait_for(lambda: [m for m in slack.messages("C123") if m["ts"] == message["ts"]
                              and labels(m) == [":+1: 2", ":-1: 0"]], timeout_s=10)
    assert final  # ...and the read after it put both votes back on the message
    assert slack.hooks() == [h for h in slack.hooks() if "votes" not in str(h)]  # nobody needed telling


def test_each_digest_lines_analysis_in_the_thread_takes_its_own_vote(server, slack, canned):
    assert slash(server, "/digest", "2024-03-15", channel="C777").status == 200
    worker.run(canned, burst=True)
    summary, *thread = slack.messages("C777")
    assert summary["text"].startswith("Dow30 digest for") and not [b for b in summary["blocks"]
                                                                    if b["type"] == "actions"]
    [analysis] = [m for m in thread if is_answer(m)]  # AXP's, the only member the market fixture has data for
    assert analysis["thread_ts"] == summary["ts"] and labels(analysis) == [":+1: 0", ":-1: 0"]
    assert buttons(analysis)["elements"][0]["value"].endswith(":AXP")

    click(server, analysis, "vote_down", user="U9", channel="C777", response_url=slack.hook_url("T1/B1/votes"))
    wait_for(lambda: [m for m in slack.messages("C777") if m["ts"] == analysis["ts"]
                      and labels(m) == [":+1: 0", ":-1: 1"]])
    assert votes_in_ledger() == {"U9": "down"}

# -- @forecaster AXP ------------------------------------------------------------------------------------------------


def test_a_mention_is_answered_with_a_forecast_in_its_thread_by_a_real_worker(server, slack, redis, tiny):
    thread = "1710400000.000100"
    reply = event(server, mention(f"<@{BOT_USER}> AXP 2024-03-15 weeks=2", thread_ts=thread))
    assert reply.status == 200
    [note] = wait_for(lambda: slack.ephemerals("U1"))  # what /forecast's ack says, to the asker alone
    assert note["text"].startswith(":hourglass_flowing_sand: Queued *AXP* for the week 2024-03-17 to 2024-03-24")
    assert note["channel"] == "C123" and note["thread_ts"] == thread
    assert queue(redis, INTERACTIVE).count == 1

    retried = event(server, mention(f"<@{BOT_USER}> AXP 2024-03-15 weeks=2", thread_ts=thread),
                    headers={"x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})
    assert retried.status == 200 and queue(redis, INTERACTIVE).count == 1  # Slack's retry: the same job
    time.sleep(0.3)
    assert len(slack.ephemerals("U1")) == 1  # and nothing more said

    worker.run(tiny, burst=True)
    [answered] = [m for m in slack.messages("C123") if is_answer(m)]
    assert answered["thread_ts"] == thread  # where it was asked
    assert answered["blocks"][0]["text"]["text"] == "AXP weekly forecast"
    assert labels(answered) == [":+1: 0", ":-1: 0"]


def test_a_mention_without_a_ticker_gets_the_help_and_a_bad_one_the_usage(server, slack, redis):
    assert event(server, mention(f"<@{BOT_USER}>", ts="1710500000.000300")).status == 200
    [helped] = wait_for(lambda: slack.ephemerals("U1"))
    assert "Mention me with a ticker" in helped["text"] and "`@forecaster AXP`" in helped["text"]
    assert event(server, mention(f"<@{BOT_USER}> AXP weeks=9", ts="1710500000.000400")).status == 200
    refused = wait_for(lambda: slack.ephemerals("U1")[1:])[0]
    assert "weeks must be between 1 and 4" in refused["text"]
    assert queue(redis, INTERACTIVE).count == 0


def test_a_direct_message_is_asked_like_a_mention_and_the_bots_own_messages_are_not(server, slack, redis, canned):
    dm = {"type": "message", "channel_type": "im", "channel": "D1", "user": "U1", "text": "axp 2024-03-15 weeks=2",
          "ts": "1710500000.000500", "event_ts": "1710500000.000500"}
    assert event(server, dm).status == 200
    assert event(server, dm | {"user": BOT_USER, "bot_id": "B1", "ts": "1710500000.000600"}).status == 200
    assert event(server, dm | {"subtype": "message_changed", "ts": "1710500000.000700"}).status == 200
    assert event(server, dm | {"channel_type": "channel", "channel": "C9", "ts": "1710500000.000800"}).status == 200
    wait_for(lambda: slack.ephemerals("U1"))
    time.sleep(0.3)
    assert [n["channel"] for n in slack.ephemerals()] == ["D1"]
    assert queue(redis, INTERACTIVE).count == 1

    worker.run(canned, burst=True)
    [answered] = [m for m in slack.messages("D1") if is_answer(m)]
    assert answered.get("thread_ts") is None and labels(answered) == [":+1: 0", ":-1: 0"]

