"""Layouts for watchlists: `/watch`'s answers, and the App Home tab (each channel's watchlist with its names' last
calls, then the track record). Pure functions of what the ledger holds; tickers and labels are data, escaped by
`bot.mrkdwn`. Channel ids are shown as Slack's own channel mentions (`<#C0123ABCD>`), which each viewer sees as the
channel's name (or "private channel" where they are not a member).
"""

from __future__ import annotations

import re

from bot.blocks import DISCLAIMER, NO_SIGNAL_GLYPH, context, fit, header, sections
from bot.mrkdwn import clip, code, inline
from bot.track_blocks import track_message
from jobs.ledger.views import LastCall, TrackView

HOME_MAX_BLOCKS = 100  # Slack's limit for a Home tab view (a message: 50)
HOME_MAX_CHANNELS = 20  # watchlists shown in Home; the rest are counted
CHANNEL_ID = r"[CGD][A-Z0-9]{1,20}"


def _channel(channel: str) -> str:
    """A channel mention when `channel` is an id Slack would render; the id as text otherwise (never markup)."""
    return f"<#{channel}>" if re.fullmatch(CHANNEL_ID, channel) else code(channel)


def _names(tickers: list[str]) -> str:
    return ", ".join(f"*{inline(t)}*" for t in tickers)


def call_line(ticker: str, call: LastCall | None) -> str:
    """`*NVDA* ▲ Up by 1-2% · P(up) 61% (week 2024-03-10 to 2024-03-17) → pending`, or "no call yet"."""
    if call is None:
        return f"*{inline(ticker)}* · _no call yet_ (the next digest makes one)"
    arrow = {"up": "▲", "down": "▼"}.get(call.direction, "·")
    label = inline(call.label.capitalize()) if call.parsed and call.label else "unparsed answer"
    if call.parsed and call.clear_signal is False:
        arrow, label = NO_SIGNAL_GLYPH, f"no clear signal ({label})"
    p_up = f" · P(up) {100 * call.p_up:.0f}%" if call.p_up is not None else ""
    if call.actual_label is None:
        outcome = "_pending_"
    else:
        outcome = f"{inline(call.actual_label)} {':white_check_mark:' if call.hit else ':x:'}"
    return f"*{inline(ticker)}* {arrow} {label}{p_up} ({code(call.target_week)}) → {outcome}"


def watch_list_message(channel: str, tickers: list[str], calls: dict[str, LastCall], *, cap: int,
                       scheduled: bool = True) -> tuple[str, list]:
    """`/watch`: this channel's watchlist, each name with its last call; or how to start one. `scheduled`: the
    channel gets the weekly digest (it is in DIGEST_CHANNELS)."""
    if not tickers:
        text = ("This channel has no watchlist: its digest covers the Dow30. Start one with `/watch add NVDA AMD` "
                f"(up to {cap} names); `/watch help` explains.")
        return text, sections(text)
    text = f"This channel's watchlist ({len(tickers)} of {cap} names): {_names(tickers)}"
    lines = "\n".join(f"• {call_line(t, calls.get(t))}" for t in tickers)
    blocks = [header(f"Watchlist: {len(tickers)} of {cap} names"),
              *sections(f"*Each name's last call*\n{lines}"),
              context(("The weekly digest and `/digest` here cover these names." if scheduled else
                       "`/digest` here runs these names; this channel gets no weekly digest (an admin can add it to "
                       "`DIGEST_CHANNELS`).") + " `/watch add TICKER…`, `/watch remove TICKER…` change the list.")]
    return clip(text, 3000), fit(blocks)


def watch_checking(tickers: list[str]) -> str:
    return (f":mag: Checking {_names(tickers)} with the market data sources; I'll tell you here which were added "
            "to this channel's watchlist.")


def watch_over_cap(*, size: int, new: list[str], cap: int) -> str:
    return (f":no_entry: This channel's watchlist has {size} of {cap} names; adding {_names(new)} "
            f"({len(new)}) would pass the cap of {cap} (`WATCHLIST_MAX`). Remove some first with "
            "`/watch remove TICKER…`. Nothing was added.")


def watch_nothing_new(tickers: list[str]) -> str:
    return f":information_source: Already on this channel's watchlist: {_names(tickers)}. Nothing to add."


def watch_removed(removed: list[str], missing: list[str], left: int) -> str:
    parts = []
    if removed:
        parts.append(f":wastebasket: Removed {_names(removed)} from this channel's watchlist")
    if missing:
        parts.append(f"not on it: {_names(missing)}" if removed else
                     f":information_source: Not on this channel's watchlist: {_names(missing)}")
    tail = f"{left} name(s) left." if left else "It is empty now: the digest here covers the Dow30 again."
    return "; ".join(parts) + ". " + tail


def watch_added_message(*, channel: str, added: list[str], already: list[str], refused: dict[str, tuple[str, str]],
                        over_cap: list[str], size: int, cap: int) -> tuple[str, list[dict]]:
    """What `/watch add` did, for the requester alone: added, already there, refused with the reason, over the cap."""
    lines = []
    if added:
        lines.append(f":white_check_mark: Added to {_channel(channel)}'s watchlist: {_names(added)}")
    if already:
        lines.append(f":information_source: Already on it: {_names(already)}")
    for ticker, (what, do) in refused.items():
        lines.append(f":x: *{inline(ticker)}* not added: {clip(inline(what), 300)}. {clip(inline(do), 300)}")
    if over_cap:
        lines.append(f":no_entry: Not added, the list is full ({cap} names, `WATCHLIST_MAX`): {_names(over_cap)}. "
                     "Remove some with `/watch remove TICKER…`.")
    if not lines:
        lines.append("Nothing to add.")
    text = "\n".join(lines)
    blocks = [*sections(text), context(f"The watchlist has {size} of {cap} names; `/watch` lists them with their "
                                       "last calls. The weekly digest and `/digest` here cover them.")]
    return clip(text, 3000), fit(blocks)


def home_view(watchlists: dict[str, list[str]], calls: dict[str, LastCall], record: TrackView | None, *,
              cap: int, chart: dict | None = None) -> dict:
    """The Home tab: every channel's watchlist with each name's last call, then the track record (as `/track`
    shows it, with the latest calls); at most HOME_MAX_BLOCKS blocks. `record` None: the ledger was not readable.
    `chart`: the weekly summary's newest chart as Slack holds it ({"file_id", "title"}), shown above the record."""
    blocks: list[dict] = [header("Forecaster"),
                          context("Weekly calls on your team's names from a language model reading news and prices. "
                                  + DISCLAIMER)]
    if record is None:
        tail = sections("_The track record is unavailable right now (its database did not answer); open this tab "
                        "again in a minute._")
    else:
        tail = track_message(record)[1]  # its header, the record, the latest calls, the disclaimer (<= 50 blocks)
    if chart and chart.get("file_id"):
        title = clip(str(chart.get("title") or "Track record chart"), 150)  # plain text: shown as written
        tail = [*tail[:1], {"type": "image", "slack_file": {"id": str(chart["file_id"])}, "alt_text": title,
                            "title": {"type": "plain_text", "text": title}}, *tail[1:]]
    blocks.append(header("Watchlists"))
    if not watchlists:
        blocks += sections("No channel has a watchlist yet: digests cover the Dow30. In a channel, "
                           "`/watch add NVDA AMD` starts one.")
    room = HOME_MAX_BLOCKS - len(blocks) - len(tail) - 1  # one left for the "and N more" line
    shown = 0
    for channel, tickers in list(watchlists.items())[:HOME_MAX_CHANNELS]:
        lines = "\n".join(f"• {call_line(t, calls.get(t))}" for t in tickers)
        part = sections(f"{_channel(channel)} · {len(tickers)} of {cap} names\n{lines}")
        if len(part) > room:
            break
        blocks += part
        room -= len(part)
        shown += 1
    if len(watchlists) > shown:
        blocks.append(context(f"and {len(watchlists) - shown} more channel(s) with a watchlist: `/watch` in a "
                              "channel lists its own."))
    blocks += tail
    return {"type": "home", "blocks": blocks}
