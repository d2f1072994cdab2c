"""The Slack app in HTTP mode, as deployed: waitress serving the Bolt app on 127.0.0.1, signed form-encoded
slash commands posted to it over real HTTP, a real Redis, Web API calls going to a fake Slack, and a real RQ
worker (burst mode, the tiny Qwen2, an in-memory market) answering what was queued."""

from __future__ import annotations

import datetime as dt
import http.client
import json
import socket
import time

import pytest

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.generation.model import Analyst
from engine.market.weeks import NEW_YORK
from forecaster.settings import Settings
from jobs import ledger, runtime, worker
from jobs.client import queue
from jobs.keys import on_demand_digest_key
from jobs.ledger import writes
from jobs.queues import BATCH, INTERACTIVE, TRAINING
from jobs.track_record import refresh_outcomes
from tests.fakes.forecasts import canned_forecast, stepped_market
from tests.fakes.slack_commands import command_body, signed_headers
from tests.redis_stall import busy
from tests.scenarios.bot_harness import ADMIN, bot_settings, request, serve_bot, slash
from tests.scenarios.market_fixture import memory_market


@pytest.fixture
def settings(slack, redis, redis_server) -> Settings:
    return bot_settings(slack, redis_server["url"])


@pytest.fixture
def server(settings):
    with serve_bot(settings) as running:
        yield running


@pytest.fixture
def worker_context(redis, slack, tiny_model_dir):
    mem = memory_market()
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None, model_max_new_tokens=24), conn=redis, sources=Sources(mem, mem, mem),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: Analyst.load(str(tiny_model_dir), device="cpu"),
    )
    yield ctx
    runtime.install(None)


def depth(redis, spec) -> int:
    return queue(redis, spec).count


# -- /forecast end to end ------------------------------------------------------------------------------------------


def test_forecast_axp_is_acked_at_once_then_answered_in_the_channel_by_a_real_worker(server, slack, redis,
                                                                                      worker_context):
    reply = slash(server, "/forecast", "AXP 2024-03-15 weeks=2", response_url=slack.hook_url())
    assert reply.status == 200
    ack = reply.json()
    assert ack["response_type"] == "ephemeral"
    assert ack["text"].startswith(":hourglass_flowing_sand: Queued *AXP* for the week 2024-03-17 to 2024-03-24 "
                                  "(as of 2024-03-15): next in line.")
    assert "No worker is running right now" in ack["text"]  # honest: none has started yet
    assert slack.posted() == []  # nothing slow before the ack: the bot itself posts nothing

    worker.run(worker_context, burst=True)

    hooks = [c.body for c in slack.calls if c.method.startswith("hooks/")]
    assert all(h["response_type"] == "ephemeral" for h in hooks)  # progress edits the user's own note...
    assert "fetching news" in hooks[0]["text"]
    # ...and the answer is one bot message in the channel (posted as a placeholder, then edited: exactly once)
    [answer] = slack.messages("C123")
    assert answer["blocks"][0] == {"type": "header", "text": {"type": "plain_text", "text": "AXP weekly forecast"}}
    assert "Not financial advice" in answer["blocks"][-1]["elements"][0]["text"]


def test_when_slack_refuses_the_response_url_the_answer_goes_through_chat_post_message(server, slack, redis,
                                                                                        worker_context):
    slack.fail_next("hooks/T1/B1/x", 404, times=10)  # expired_url
    assert slash(server, "/forecast", "axp 2024-03-15 weeks=2", response_url=slack.hook_url()).status == 200
    worker.run(worker_context, burst=True)

    posted = slack.posted()  # the Sources reply in the answer's thread aside
    assert [p["channel"] for p in posted] == ["C123"]
    [message] = slack.messages("C123")  # the progress message, edited into the answer: one final state
    assert message["blocks"][0]["text"]["text"] == "AXP weekly forecast"
    assert "Not financial advice" in message["blocks"][-1]["elements"][0]["text"]


# -- the admin gate ------------------------------------------------------------------------------------------------


def test_retrain_by_a_non_admin_is_refused_and_queues_nothing(server, redis):
    reply = slash(server, "/retrain", "epochs=2", user="U111")
    assert reply.status == 200
    assert reply.json() == {"response_type": "ephemeral", "text": ":lock: Only admins can retrain (the users listed "
                                                                  "in SLACK_ADMIN_USERS). Ask one of them."}
    assert depth(redis, TRAINING) == 0


def test_with_no_admins_configured_nobody_may_retrain_and_the_operator_is_told_what_to_set(slack, redis,
                                                                                          redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"], slack_admin_users="")) as server:
        reply = slash(server, "/retrain", "", user=ADMIN)
    assert reply.text.startswith(":lock: Nobody may retrain yet: the operator must set SLACK_ADMIN_USERS")
    assert depth(redis, TRAINING) == 0


def test_retrain_by_an_admin_is_queued_once(server, redis):
    first = slash(server, "/retrain", "epochs=2 force", user=ADMIN)
    again = slash(server, "/retrain", "", user=ADMIN)
    assert first.text.startswith(":gear: Retrain queued (job `retrain_") and "epochs=2, force" in first.text
    assert again.text.startswith(":gear: A retrain is already queued")
    assert depth(redis, TRAINING) == 1


# -- signatures and redeliveries -----------------------------------------------------------------------------------


def test_bad_signatures_stale_timestamps_and_unsigned_requests_get_401(server, redis):
    body = command_body("/forecast", "AXP")
    stale = int(time.time()) - 301  # Slack's window is 5 minutes
    for headers in (signed_headers(body, secret="not-the-secret"), signed_headers(body, timestamp=stale),
                    {"content-type": "application/x-www-form-urlencoded"}):
        reply = request(server, "POST", "/slack/events", body, headers)
        assert reply.status == 401, headers
    assert depth(redis, INTERACTIVE) == 0


def test_a_redelivered_command_is_answered_from_its_job_and_enqueues_nothing_more(settings, redis):
    clock = [dt.datetime(2026, 11, 25, 15, 9, 50, tzinfo=dt.UTC)]
    with serve_bot(settings, now=lambda: clock[0]) as server:
        body = command_body("/forecast", "MSFT", trigger_id="1337.42.abc")
        first = request(server, "POST", "/slack/events", body, signed_headers(body))
        clock[0] += dt.timedelta(seconds=20)  # past the live forecast's 10-minute dedupe bucket
        retry = request(server, "POST", "/slack/events", body,
                        {**signed_headers(body), "x-slack-retry-num": "1", "x-slack-retry-reason": "http_timeout"})
    assert first.status == retry.status == 200
    assert first.text.startswith(":hourglass_flowing_sand: Queued *MSFT*")
    assert retry.text == ":hourglass_flowing_sand: This command was already received; its job is queued, next in line."
    assert depth(redis, INTERACTIVE) == 1


# -- errors a user can act on --------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "says"), [
    ("", "Which stock? Give a ticker"),
    ("$$$", "'$$$' is not a ticker"),
    ("AXP 2024-13-01", "'2024-13-01' is not a date; write it as YYYY-MM-DD"),
    ("AXP 2099-01-02", "2099-01-02 is in the future"),
    ("AXP weeks=9", "weeks must be between 1 and 4"),
    ("AXP weeks=two", "weeks takes a whole number"),
    ("AXP sideways", "'sideways' is not an option of /forecast"),
    ("AXP 2024-03-15 2024-03-08", "Two dates given"),
])
def test_errors_a_user_can_act_on_are_one_ephemeral_line_with_the_usage(server, redis, text, says):
    reply = slash(server, "/forecast", text)
    answer = reply.json()
    assert reply.status == 200 and answer["response_type"] == "ephemeral" and "blocks" not in answer
    assert says in answer["text"] and "\n" not in answer["text"]
    assert "Usage: `/forecast TICKER [YYYY-MM-DD] [weeks=1-4] [no-financials]" in answer["text"]
    assert depth(redis, INTERACTIVE) == 0


def test_a_full_queue_refuses_new_work_but_still_answers_a_duplicate(slack, redis, redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"], bot_queue_max_depth=2)) as server:
        assert "Queued *AXP*" in slash(server, "/forecast", "AXP").text
        assert "Queued *KO*" in slash(server, "/forecast", "KO").text
        full = slash(server, "/forecast", "MSFT").text
        duplicate = slash(server, "/forecast", "AXP").text
    assert full.startswith(":no_entry: The forecast queue is full (2 jobs waiting), so nothing was queued.")
    assert "is already queued in this channel" in duplicate
    assert depth(redis, INTERACTIVE) == 2


def test_with_redis_down_the_user_hears_could_not_queue_within_a_second_or_so(slack, tmp_path):
    gone = bot_settings(slack, f"unix://{tmp_path}/no-redis.sock")  # nothing listens there
    hung = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    hung.bind(("127.0.0.1", 0))
    hung.listen(8)
    stuck = bot_settings(slack, f"redis://127.0.0.1:{hung.getsockname()[1]}/0")
    try:
        for settings, limit_s in ((gone, 0.5), (stuck, 2.5)):
            with serve_bot(settings) as server:
                started = time.perf_counter()
                reply = slash(server, "/forecast", "AXP")
                took = time.perf_counter() - started
                health = request(server, "GET", "/healthz")
            assert reply.status == 200 and reply.text.startswith(":x: Could not queue your request: the job "
                                                                 "queue (Redis) is not answering. Nothing was "
                                                                 "queued: try again in a minute")
            assert took < limit_s, f"{settings.redis_url}: {took:.2f}s"
            assert health.status == 503 and health.json() == {"ok": False, "redis": "unreachable"}
    finally:
        hung.close()


def test_with_redis_gone_every_command_answers_the_user_alone_and_names_no_server_path(slack, tmp_path, caplog):
    socket_path = f"{tmp_path}/no-redis.sock"  # redis-py's error names it: the log may, the user must not
    ledger.open_ledger(Settings(_env_file=None)).migrate()  # as a worker's start does: the bot never migrates
    with serve_bot(bot_settings(slack, f"unix://{socket_path}")) as server:
        replies = {text: slash(server, command, text, user=ADMIN)
                   for command, text in [("/forecast", "AXP"), ("/forecast", "dow30"), ("/digest", ""),
                                         ("/retrain", ""), ("/forecast-status", ""), ("/track", "KO")]}
    for text, reply in replies.items():
        answer = reply.json()
        assert reply.status == 200 and answer["response_type"] == "ephemeral", text
        assert str(tmp_path) not in reply.body and "/tmp" not in reply.body and ".sock" not in reply.body, text
        if text == "KO":  # /track reads the ledger (SQL), not Redis: it still answers
            assert answer["text"].startswith("Track record for KO"), answer["text"]
            continue
        assert answer["text"].startswith(":x: ") and "nothing was queued" in answer["text"].lower(), text
    assert any(socket_path in r.getMessage() for r in caplog.records)  # the operator's log has the detail


def test_a_redis_stall_longer_than_the_bots_timeout_is_acked_as_unconfirmed_and_a_retry_is_answered_from_the_job(
        server, redis, redis_server):
    slash(server, "/forecast", "KO")  # the bot has served a command: its Redis connection is open
    with busy(redis_server["url"], seconds=2.5):  # the bot gives up after 1 s; Redis runs the enqueue at 2.5 s
        started = time.perf_counter()
        # Dated: the enqueue is the first write (a live request's dedupe window comes first: tests/unit/jobs).
        first = slash(server, "/forecast", "AXP 2024-03-15")
        took = time.perf_counter() - started
    assert first.status == 200 and first.json()["response_type"] == "ephemeral"
    assert first.text.startswith(":grey_question: I could not confirm that *AXP* for the week ")
    assert "It may still run and be posted here. Check `/forecast-status`" in first.text
    assert "Could not queue" not in first.text
    assert took < 2.0, f"ack after {took:.2f}s"
    axp = [job_id for job_id in queue(redis, INTERACTIVE).get_job_ids() if job_id.startswith("forecast_AXP_")]
    assert len(axp) == 1  # it was queued after all, once the stall ended

    retry = slash(server, "/forecast", "AXP 2024-03-15")
    assert retry.text.startswith(":hourglass_flowing_sand: *AXP* for the week ")
    assert "is already queued in this channel (1 ahead of you)" in retry.text
    assert [j for j in queue(redis, INTERACTIVE).get_job_ids() if j.startswith("forecast_AXP_")] == axp


# -- on-demand digests ---------------------------------------------------------------------------------------------


def test_forecast_dow_forecasts_dow_inc_and_leaves_the_digest_cooldown_alone(server, redis):
    reply = slash(server, "/forecast", "DOW", channel="C123")
    assert reply.text.startswith(":hourglass_flowing_sand: Queued *DOW* for the week ")
    assert "for all 30 Dow members, `/forecast dow30` or `/digest`" in reply.text
    assert "not a Dow30 stock" not in reply.text  # a member 2019-2024: known
    [job_id] = queue(redis, INTERACTIVE).get_job_ids()
    assert job_id.startswith("forecast_DOW_live")
    job = queue(redis, INTERACTIVE).fetch_job(job_id)
    assert job.func_name == "jobs.tasks.forecast_job" and job.kwargs["request"]["ticker"] == "DOW"
    assert depth(redis, BATCH) == 0 and not redis.exists(on_demand_digest_key("C123"))
    # The channel's on-demand digest is still there to be had.
    assert slash(server, "/digest", "", channel="C123").text.startswith(
        ":hourglass_flowing_sand: Queued the Dow30 digest")


def test_on_demand_digests_are_limited_to_one_per_channel_per_hour(server, redis):
    first = slash(server, "/digest", "", channel="C123").text
    again = slash(server, "/forecast", "dow30", channel="C123").text
    other = slash(server, "/forecast", "dow30", channel="C456").text
    assert first.startswith(":hourglass_flowing_sand: Queued the Dow30 digest for the week")
    assert again.startswith(":no_entry: One on-demand digest per channel every 60 min: the next one is allowed "
                            "in 60 min")
    assert other.startswith(":hourglass_flowing_sand: Queued the Dow30 digest")
    assert depth(redis, BATCH) == 2


def test_a_digest_refused_by_a_full_queue_does_not_use_up_the_channels_hour(slack, redis, redis_server):
    with serve_bot(bot_settings(slack, redis_server["url"], bot_queue_max_depth=1)) as server:
        assert slash(server, "/digest", "", channel="C123").text.startswith(":hourglass_flowing_sand: Queued")
        full = slash(server, "/digest", "", channel="C456").text
        assert full.startswith(":no_entry: The batch queue is full (1 job waiting), so nothing was queued."), full
        assert not redis.exists(on_demand_digest_key("C456"))  # nothing ran: the hour is still the channel's
        queue(redis, BATCH).empty()  # the queue drains
        again = slash(server, "/digest", "", channel="C456").text
    assert again.startswith(":hourglass_flowing_sand: Queued the Dow30 digest"), again


# -- health and routing --------------------------------------------------------------------------------------------


def test_healthz_answers_when_redis_does_and_other_paths_are_404(server):
    health = request(server, "GET", "/healthz")
    assert health.status == 200 and health.json() == {"ok": True, "redis": "ok"}
    assert request(server, "GET", "/").status == 404
    assert request(server, "GET", "/slack/events").status == 404  # Slack only POSTs
    assert slash(server, "/not-ours", "AXP").status == 404  # signed, but no such command


def test_a_body_that_is_not_utf8_is_a_400_not_a_crash(server):
    connection = http.client.HTTPConnection(server.host, server.port, timeout=10)
    try:
        connection.request("POST", "/slack/events", body=b"command=%2Fforecast&text=\xff\xfe",
                           headers={"content-type": "application/x-www-form-urlencoded"})
        assert connection.getresponse().status == 400
    finally:
        connection.close()


# -- /track --------------------------------------------------------------------------------------------------------


def test_track_answers_from_the_ledger_for_one_ticker_or_all(server, redis):
    market = stepped_market(("AXP", "KO"))
    sources = Sources(market, market, market)
    for ticker, day, prediction in [("AXP", 1, "Down by 0-1%"), ("AXP", 8, "Down by 1-2%"), ("KO", 8, "Up by 0-1%")]:
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        writes.record_forecast(ledger.open_ledger(Settings(_env_file=None)),
                               canned_forecast(sources, ticker, at=at, prediction=prediction),
                               job_id=f"job{day}", user="U1", channel="C1", requested_at=at, latency_s=1.0,
                               source="forecast")
    closed = dt.datetime(2024, 3, 24, 0, tzinfo=NEW_YORK)
    refresh_outcomes(ledger.open_ledger(Settings(_env_file=None)), market, closed_by=closed, scored_at=closed)
    market.calls.clear()

    axp = slash(server, "/track", "axp").json()
    everyone = slash(server, "/track", "").json()

    assert sum(market.calls.values()) == 0  # stored outcomes only: no market data inside the ack
    assert axp["response_type"] == "ephemeral" and axp["blocks"][0]["text"]["text"] == "Track record: AXP"
    assert axp["text"] == "Track record for AXP: hit rate 50% (1/2) to 2024-03-10 to 2024-03-17"
    assert everyone["blocks"][0]["text"]["text"] == "Track record: all tickers"
    assert "Latest 3 forecast(s)" in json.dumps(everyone["blocks"])


def test_track_before_anything_was_scored_says_so(server):
    ledger.open_ledger(Settings(_env_file=None)).migrate()  # as a worker's start does: the bot never migrates
    answer = slash(server, "/track", "KO").json()
    assert answer["text"] == "Track record for KO: nothing scored yet"
