"""`/track` and the ledger's database (issue 20, item 6): a database that does not answer never holds up the ack,
and the bot never migrates it.

As deployed: signed slash commands over HTTP to the Bolt app (waitress on 127.0.0.1), a real Redis, the ledger on
a real PostgreSQL or SQLite file. The faults are the network's, made with real sockets (`tests/fakes/tcp.py`): a
server that accepts and never answers, and a proxy that goes silent in front of the real PostgreSQL.
"""

from __future__ import annotations

import sqlite3
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy.engine import make_url

from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from forecaster.settings import Settings
from jobs import runtime, worker
from tests.fakes.slack_commands import command_body, signed_headers
from tests.fakes.tcp import BlackHole, SilencingProxy
from tests.scenarios.bot_harness import Reply, bot_settings, request, serve_bot
from tests.scenarios.market_fixture import memory_market

ACK_S = 3.0  # Slack shows the user an error when the ack takes longer
UNAVAILABLE = (":x: The track record is unavailable right now: its database is not answering. Try again in a minute; "
               "if it keeps failing, tell the operator.")


def slash(server, command: str, text: str = "", *, timeout: float) -> Reply:
    """A signed slash command, as Slack posts it, given up on after `timeout` (the code before this test hung)."""
    body = command_body(command, text)
    return request(server, "POST", "/slack/events", body, signed_headers(body), timeout=timeout)


def timed_track(server, text: str = "KO", timeout: float = 6.0) -> tuple[float, str]:
    started = time.perf_counter()
    reply = slash(server, "/track", text, timeout=timeout)
    assert reply.status == 200 and reply.json()["response_type"] == "ephemeral"
    return time.perf_counter() - started, reply.text


def test_a_database_that_accepts_and_never_answers_does_not_hold_up_the_ack(slack, redis_server, caplog):
    with BlackHole() as hole:
        settings = bot_settings(slack, redis_server["url"],
                                database_url=f"postgresql+psycopg://forecaster@127.0.0.1:{hole.port}/ledger")
        with serve_bot(settings, threads=8) as server:
            # As many at once as the bot has threads: none waits behind another's stuck read.
            with ThreadPoolExecutor(8) as pool:
                answered = list(pool.map(lambda _: timed_track(server), range(8)))
            status = slash(server, "/forecast-status", timeout=2)  # the bot still serves everything else

    assert [text for _, text in answered] == [UNAVAILABLE] * 8
    slowest = max(took for took, _ in answered)
    assert slowest < ACK_S, f"slowest /track ack {slowest:.2f} s"
    assert status.status == 200 and "Queues" in status.body
    assert hole.connections >= 1  # it really tried the database
    assert "the ledger's database is unavailable" in caplog.text  # the operator's log says why


def test_a_database_gone_silent_mid_read_does_not_hold_up_the_ack_and_track_recovers(slack, redis_server,
                                                                                    postgres_ledger):
    real = make_url(postgres_ledger.url)  # migrated by the fixture, as a worker's start does
    with SilencingProxy((real.host or "127.0.0.1", real.port or 5432)) as proxy:
        settings = bot_settings(slack, redis_server["url"],
                                database_url=real.set(host="127.0.0.1", port=proxy.port).render_as_string(False))
        with serve_bot(settings) as server:
            took, first = timed_track(server)
            assert first == "Track record for KO: nothing scored yet", first  # connected, pooled, working

            proxy.silence()  # the pooled connection goes quiet: no error, no answer
            took, silent = timed_track(server)
            assert silent == UNAVAILABLE and took < ACK_S, (took, silent)

            proxy.resume()
            deadline = time.monotonic() + 10
            while (again := timed_track(server))[1] != first and time.monotonic() < deadline:
                time.sleep(0.2)
    assert again[1] == first and again[0] < ACK_S


@pytest.fixture
def worker_context(redis, slack):
    market = memory_market()
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)), load_model=lambda: object(),
    )
    yield ctx
    runtime.install(None)


def tables(path) -> set[str]:
    if not path.exists():
        return set()
    with sqlite3.connect(path) as conn:
        return {name for (name,) in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}


def test_track_never_migrates_the_ledger_it_says_who_can_and_answers_once_a_worker_has(slack, redis_server,
                                                                                     worker_context, tmp_path):
    database = tmp_path / ".forecaster" / "ledger.sqlite3"  # DATA_DIR's, as `forecaster up` has it
    with serve_bot(bot_settings(slack, redis_server["url"])) as server:
        took, before = timed_track(server)
        assert before.startswith(":hourglass_flowing_sand: The track record is not set up yet"), before
        assert "`forecaster ledger migrate`" in before and took < ACK_S
        assert tables(database) == set()  # no Alembic inside the ack

        worker.run(worker_context, burst=True)  # a worker's start migrates
        assert {"forecasts", "alembic_version"} <= tables(database)
        took, after = timed_track(server)
    assert after == "Track record for KO: nothing scored yet" and took < ACK_S
