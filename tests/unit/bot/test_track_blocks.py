"""bot.track_blocks: the weekly summary and `/track` layouts stay within Block Kit's limits and say what they must."""

from __future__ import annotations

import datetime as dt

from bot.track_blocks import summary_message, track_message
from engine.evaluation.track import TrackEntry, score_track
from engine.evaluation.track_report import TrackReport
from engine.market.weeks import NEW_YORK, Week
from tests.unit.bot.layout_cases import recent_forecast, track_view

LATEST = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))


def many_tickers(n: int) -> TrackReport:
    """A report over `n` tickers and two weeks: every ticker predicted up; the first week went up, the second down."""
    entries = []
    for k in range(n):
        for week, realized in ((LATEST.previous(), 0.012), (LATEST, -0.004)):
            entries.append(TrackEntry(f"e{k}-{week.start}", f"T{k:03d}", week,
                                      dt.datetime.combine(week.start, dt.time(12), tzinfo=NEW_YORK), True, "up",
                                      "1-2%", "Up by 1-2%", realized_return=realized, previous_return=0.02))
    return score_track(entries, latest=LATEST, bootstrap=200)


def texts(blocks: list[dict]) -> list[str]:
    return [b["text"]["text"] for b in blocks if "text" in b] + [
        e["text"] for b in blocks for e in b.get("elements", [])]


def test_a_summary_of_many_tickers_splits_its_table_within_slacks_limits():
    text, blocks = summary_message(many_tickers(150))
    assert len(blocks) <= 50 and len(text) <= 3000
    assert all(len(t) <= 3000 for t in texts(blocks))
    assert blocks[0]["text"]["text"] == f"Track record: {LATEST.period}" and len(blocks[0]["text"]["text"]) <= 150
    ticker_tables = [t for t in texts(blocks) if t.startswith("```ticker")]
    assert len(ticker_tables) > 1  # split, each with its own header row
    shown = "\n".join(ticker_tables)
    assert all(f"T{k:03d} " in shown for k in range(150))
    # Model: 150 right in week one, 150 wrong in week two; the constant Up baseline says the same.
    assert "model hit rate 50% (150/300)" in text and "Always Up 0-1% 50%" in text


def test_nothing_to_score_yet_is_a_plain_note_with_what_is_pending():
    pending = TrackEntry("p", "AXP", LATEST, dt.datetime(2024, 3, 8, tzinfo=NEW_YORK), True, "up", "1-2%", "Up by 1-2%")
    text, blocks = summary_message(score_track([pending], latest=LATEST.previous()))
    assert text == f"Track record to {LATEST.previous().period}: nothing to score yet"
    assert any("Nothing to score yet" in t and "1 forecast(s) are waiting" in t for t in texts(blocks))


def test_prices_missing_for_a_ticker_are_listed():
    _, blocks = summary_message(many_tickers(2), failures={"ZZZZ": "no prices for ZZZZ between x and y"})
    assert any(t == "*No outcome yet for:*\n• ZZZZ: no prices for ZZZZ between x and y" for t in texts(blocks))


def test_track_shows_hit_rates_against_baselines_and_the_latest_forecasts():
    report = many_tickers(1)
    recent = [
        recent_forecast(id="a", ticker="T000", target_week=LATEST.period, parsed=True, direction="up",
                        label="up by 1-2%", actual_label="down by 0-1%", realized_return=-0.004, hit=False,
                        counted=True, why_not_counted=None),
        recent_forecast(id="b", ticker="T000", target_week=LATEST.previous(-1).period, parsed=False,
                        direction="none", label=None, actual_label=None, realized_return=None, hit=None,
                        counted=False, why_not_counted="requested after the week opened"),
    ]
    text, blocks = track_message(track_view(recent, ticker="T000", recorded=3, report=report))
    assert text == f"Track record for T000: hit rate 50% (1/2) to {LATEST.period}"
    body = "\n".join(texts(blocks))
    assert "*Hit rate:* Model 50% (95% CI" in body and "Last-week momentum 50%" in body
    assert f"`{LATEST.period}` *T000* ▲ Up by 1-2% → down by 0-1% (-0.40%) :x:" in body
    assert "· unparsed answer → _pending_ _(not counted: requested after the week opened)_" in body


def test_track_with_nothing_scored_says_when_it_will_be():
    text, blocks = track_message(track_view(recorded=0))
    assert text == "Track record for all tickers: nothing scored yet"
    assert any("once its target week has closed" in t for t in texts(blocks))
