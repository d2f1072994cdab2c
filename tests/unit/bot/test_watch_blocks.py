"""`/watch`'s parsing and layouts, and the App Home view: within Slack's limits (slack_sdk's own validation for the
Home view: 100 blocks), no markup of the data's, whatever the lists hold."""

from __future__ import annotations

import re

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from slack_sdk.models.views import View

from bot.commands import Help, UsageError, WatchArgs, parse_watch
from bot.watch_blocks import (
    CHANNEL_ID,
    HOME_MAX_BLOCKS,
    call_line,
    home_view,
    watch_added_message,
    watch_list_message,
    watch_over_cap,
    watch_removed,
)
from jobs.ledger.views import LastCall, RecentForecast, TrackView
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import (
    as_payload,
    hostile_name,
    hostile_text,
    last_call,
    markup_not_ours,
    recent_forecast,
    track_report,
    track_view,
)

FAST = settings(max_examples=40, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WEEK = "2024-03-10 to 2024-03-17"


def call(ticker: str, **changes) -> LastCall:
    return last_call(ticker, **{"target_week": WEEK} | changes)


def record(recent: list[RecentForecast] | None = None) -> TrackView:
    return track_view(recent, recorded=900, report=track_report(["AXP", "KO"]))


# -- parsing ---------------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "expected"), [
    ("", WatchArgs()), ("list", WatchArgs()), ("help", Help()),
    ("add NVDA, amd $brk-b BRK.B nvda", WatchArgs("add", ("NVDA", "AMD", "BRK.B"))),  # one spelling, each once
    ("rm nvda", WatchArgs("remove", ("NVDA",))), ("REMOVE BF/B", None),
])
def test_watch_arguments(text, expected):
    if expected is None:
        with pytest.raises(UsageError):
            parse_watch(text, max_names=50)
    else:
        assert parse_watch(text, max_names=50) == expected


@pytest.mark.parametrize(("text", "says"), [
    ("follow NVDA", "'follow' is not a /watch action"), ("add", "which tickers?"),
    ("add A B C", "3 tickers in one command; a watchlist holds at most 2"),
    ("add <@U1>", "'&lt;@U1&gt;' is not a ticker"),
])
def test_watch_mistakes_say_what_to_change(text, says):
    with pytest.raises(UsageError, match=says):
        parse_watch(text, max_names=2)


# -- layouts ---------------------------------------------------------------------------------------------------------


def test_a_call_line_shows_the_call_its_probability_and_its_outcome():
    assert call_line("NVDA", call("NVDA")) == f"*NVDA* ▲ Up by 1-2% · P(up) 61% (`{WEEK}`) → _pending_"
    unclear = call_line("NVDA", call("NVDA", clear_signal=False, p_up=0.52, actual_label="down by 0-1%", hit=False))
    assert unclear == f"*NVDA* ◆ no clear signal (Up by 1-2%) · P(up) 52% (`{WEEK}`) → down by 0-1% :x:"
    assert call_line("NVDA", None) == "*NVDA* · _no call yet_ (the next digest makes one)"


@FAST
@given(names=st.lists(hostile_name, max_size=60), reason=hostile_text, channel=hostile_name)
def test_watch_answers_of_any_names_post_no_markup_of_theirs(names, reason, channel):
    calls = {n: call(n, label=reason[:40] or None, target_week=reason[:20]) for n in names[::2]}
    mentions = (f"<#{channel}>",) if re.fullmatch(CHANNEL_ID, channel) else ()
    for text, blocks in (
        watch_list_message(channel, names, calls, cap=60),
        watch_added_message(channel=channel, added=names[:5], already=names[5:10],
                            refused={n: (reason, reason) for n in names[10:40]}, over_cap=names[40:],
                            size=len(names), cap=50),
    ):
        payload = as_payload(text, blocks)
        assert markup_not_ours(payload, mentions) == [] and slack_problems(payload) == []
    for text in (watch_over_cap(size=49, new=names, cap=50), watch_removed(names, names, 3)):
        assert markup_not_ours({"text": text}) == []


def test_a_channel_id_is_shown_as_slacks_channel_mention_and_anything_else_as_text():
    text, _ = watch_added_message(channel="C0123ABCD", added=["NVDA"], already=[], refused={}, over_cap=[],
                                  size=1, cap=50)
    assert "<#C0123ABCD>" in text
    text, _ = watch_added_message(channel="<!channel>", added=["NVDA"], already=[], refused={}, over_cap=[],
                                  size=1, cap=50)
    assert "<" not in text.replace("&lt;", "")


# -- App Home --------------------------------------------------------------------------------------------------------


def validate(view: dict) -> None:
    View(**view).validate_json()  # slack_sdk: the view type, at most 100 blocks, each block's own limits
    assert len(view["blocks"]) <= HOME_MAX_BLOCKS


def test_home_with_every_list_full_stays_within_slacks_limits_and_counts_what_it_left_out(monkeypatch):
    monkeypatch.setattr("bot.watch_blocks.HOME_MAX_CHANNELS", 10_000)  # the block budget alone holds the line
    names = [f"T{k:03d}.B"[:6] for k in range(50)]
    lists = {f"C{n:08d}": names for n in range(300)}
    calls = {t: call(t, label="up by more than 5%") for t in names}
    rows = [recent_forecast(id=f"e{k}", ticker="AXP", target_week=WEEK, parsed=True, direction="up",
                            label="up by 1-2%", clear_signal=True, actual_label=None, realized_return=None, hit=None,
                            counted=True, why_not_counted=None) for k in range(10)]
    view = home_view(lists, calls, record(rows), cap=50)
    validate(view)
    shown = "\n".join(b["text"]["text"] for b in view["blocks"] if "text" in b) + "\n".join(
        e["text"] for b in view["blocks"] for e in b.get("elements", []))
    assert "<#C00000000> · 50 of 50 names" in shown and "more channel(s) with a watchlist" in shown
    assert "Track record: all tickers" in shown and "Latest 10 forecast(s)" in shown  # the record always fits


def test_home_without_watchlists_or_a_readable_ledger_says_so():
    view = home_view({}, {}, None, cap=50)
    validate(view)
    shown = " ".join(b["text"]["text"] for b in view["blocks"] if "text" in b)
    assert "No channel has a watchlist yet" in shown and "track record is unavailable right now" in shown


@FAST
@given(lists=st.dictionaries(hostile_name, st.lists(hostile_name, max_size=8), max_size=12), label=hostile_text)
def test_home_of_any_lists_is_valid_and_posts_no_markup_of_theirs(lists, label):
    calls = {t: call(t, label=label[:60] or None) for names in lists.values() for t in names}
    view = home_view(lists, calls, record(), cap=50)
    validate(view)
    mentions = tuple(f"<#{c}>" for c in lists if re.fullmatch(CHANNEL_ID, c))  # ours: the channel's own mention
    assert markup_not_ours({"blocks": view["blocks"]}, mentions) == []
