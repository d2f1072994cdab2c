"""Property-based fuzzing of slash-command text (hypothesis, 1,200 examples): whatever a user types, the bot
answers 200 with an ephemeral message within Slack's limits, and no exception escapes a handler.

Requests are signed and go through the app's own dispatch (signature check, middleware, listener, ack) with a
real Redis behind it; the same serving code over real HTTP is covered by test_bot_http.py.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_bolt.request import BoltRequest

from bot.app import build_app
from jobs.client import fast_connection
from tests.fakes.slack import FakeSlack
from tests.fakes.slack_commands import command_body, signed_headers
from tests.scenarios.bot_harness import ADMIN, bot_settings
from tests.slack_limits import within_slack_limits

COMMANDS = ["/forecast", "/digest", "/retrain", "/forecast-status", "/track"]
WORDS = ["AXP", "axp", "$KO", "BRK.B", "brk-b", "dow30", "DJIA", "help", "?", "weeks=2", "weeks=0", "weeks=x",
         "weeks=", "=", "weeks=99999999999999999999", "financials", "no-financials", "force", "epochs=2",
         "epochs=-1", "epochs=nan", "epochs=1e308", "epochs=0.0001", "2024-03-15", "2099-01-01", "2024-02-30",
         "20240315", "2024-W10-1", "1" * 60, "<!channel>", "<@U123>", "`", "&amp;", "*bold*", "_x_", "\u200b",
         "ＡＸＰ", "٣", "weeks=٣", "\x00", "$", "."]
TOKENS = st.one_of(
    st.sampled_from(WORDS),
    st.from_regex(r"[A-Za-z$.\-]{1,8}", fullmatch=True),
    st.from_regex(r"[0-9]{1,4}-[0-9]{1,2}-[0-9]{1,3}", fullmatch=True),
    st.from_regex(r"(weeks|epochs|financials|force)=[-\w.]{0,8}", fullmatch=True),
    st.text(min_size=1, max_size=30),
)
WELL_FORMED = st.tuples(
    st.sampled_from(["AXP", "ko", "$MSFT", "brk.b", "ZZZZ", "dow30", ""]),
    st.lists(st.sampled_from(["weeks=2", "weeks=4", "2024-03-15", "2023-01-06", "no-financials", "epochs=1.5",
                              "force"]), max_size=3, unique=True),
).map(lambda parts: " ".join([parts[0], *parts[1]]))
TEXTS = st.one_of(
    WELL_FORMED,
    st.lists(TOKENS, max_size=8).map(" ".join),
    st.lists(TOKENS, max_size=8).map("\t\n ".join),
    st.text(max_size=4000),  # Slack caps command text at about 4,000 characters
)


# What a leaked server path would look like (the repository, the venv, a temp dir, a traceback).
SERVER_PATH = re.compile(r"/(?:home|tmp|usr|var|work|root|srv)/|site-packages|\.py\b|Traceback")


class Errors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(level=logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def app(redis, redis_server):
    with FakeSlack() as slack:
        yield build_app(bot_settings(slack, redis_server["url"]), conn=fast_connection(redis_server["url"]))


def test_any_command_text_gets_a_200_within_slack_limits_and_no_exception_escapes(app, redis):
    errors = Errors()
    watched = [logging.getLogger(name) for name in ("bot", "slack_bolt", "jobs")]
    for logger in watched:
        logger.addHandler(errors)
    seen: Counter[str] = Counter()

    @settings(max_examples=1200, deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
    @given(command=st.sampled_from(COMMANDS), text=TEXTS, user=st.sampled_from([ADMIN, "U111"]),
           channel=st.sampled_from(["C123", "C456", "D789"]))
    def answer(command: str, text: str, user: str, channel: str) -> None:
        body = command_body(command, text, user=user, channel=channel)
        response = app.dispatch(BoltRequest(body=body, headers=signed_headers(body)))
        assert response.status == 200, (command, text, response.status, response.body)
        reply = json.loads(response.body)
        within_slack_limits(reply)
        assert reply["response_type"] == "ephemeral", (command, text)  # errors included: never in the channel
        if not SERVER_PATH.search(text):  # (the user's own words may be quoted back)
            assert not SERVER_PATH.search(response.body), (command, text, response.body)
        assert not reply["text"].startswith(":x: Something went wrong"), (command, text)
        seen[reply["text"].split()[0] if reply["text"].startswith(":") else "help, status or track"] += 1

    try:
        answer()
    finally:
        for logger in watched:
            logger.removeHandler(errors)
    assert errors.records == []
    print(dict(seen))
    assert sum(seen.values()) >= 1000
    # The grammar reaches the queue (queued, duplicate, full, cooldown, admin gate) as well as the refusals.
    reached_the_queue = sum(n for kind, n in seen.items() if kind in (":hourglass_flowing_sand:", ":gear:", ":brain:",
                                                                     ":no_entry:", ":white_check_mark:", ":lock:"))
    assert reached_the_queue > 50 and seen[":warning:"] > 300
