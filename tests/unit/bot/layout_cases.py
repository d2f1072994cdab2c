"""What the layout tests feed in and look at: real forecast dicts from any model answer, hostile text, and every
text Slack would read in a payload.

Forecasts go through the production path (`engine.forecast.run_forecasts` with a canned analyst, then
`forecast_record`), so a parsed answer is one the real parser read, and an unparsed one is one it could not.
"""

from __future__ import annotations

import datetime as dt
import re
from functools import cache

from hypothesis import strategies as st

from engine.data.inputs import Sources, gather
from engine.evaluation.track import TrackEntry, score_track
from engine.evaluation.track_report import TrackReport
from engine.forecast import forecast_record, run_forecasts
from engine.forecast_record import ForecastRecord
from engine.market.weeks import NEW_YORK, Week
from engine.probabilities import BinDistribution
from jobs.ledger.views import Feedback, LastCall, RecentForecast, TrackView
from tests.fakes.forecasts import CannedAnalyst, stepped_market

AT = dt.datetime(2024, 3, 8, 18, 0, tzinfo=NEW_YORK)  # a Friday evening: forecasts the week of Mar 10
LATEST = Week(dt.date(2024, 3, 10), dt.date(2024, 3, 17))
UNREADABLE_ANSWER = "I would rather not say where this stock goes."  # no parser reads a forecast in it

# What third-party text may hold that Slack would act on, or that would break our own formatting.
HOSTILE = ["<!channel>", "<!here>", "<!everyone>", "<@U0BADBAD>", "<#C0BADBAD>", "<!subteam^S123>",
           "<https://evil.example|bank.com>", "<mailto:x@evil.example|support>", "<!date^1392734382^{date}|x>",
           "P/E < 15", "a > b", "AT&T", "&amp;", "&lt;!channel&gt;", "```", "`", "*", "_", "~", ">", "\n", "\n\n",
           "&", "<", "<<", ">>", "<!", "<@", "<#", "<http", ":x:", "\u200b", "é", "株", "😀", "\\", '"']

hostile_text = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(max_size=12)), max_size=12).map("".join)
hostile_name = st.lists(st.one_of(st.sampled_from(HOSTILE), st.text(min_size=1, max_size=6)), min_size=1,
                        max_size=4).map("".join)


@cache
def _inputs(symbol: str):
    mem = stepped_market((symbol,))
    return gather([symbol], sources=Sources(mem, mem, mem), cutoff=AT, now=AT, weeks=2)[symbol]


def forecast(answer: str, *, symbol: str = "AXP", model: str | None = None,
             distribution: BinDistribution | None = None, signal_band: float = 0.0) -> ForecastRecord:
    """The forecast record a job would post for the model's `answer` (with `distribution` as its bin probabilities,
    judged against `signal_band`); `symbol` and `model` then replaced as given (a ticker or a model name Slack must
    not read as markup)."""
    data = forecast_record(run_forecasts([_inputs("AXP")], CannedAnalyst(answer, distribution),
                                         signal_band=signal_band)[0])
    return data.model_copy(update={"symbol": symbol} | ({"model": model} if model is not None else {}))


def stored_as(data: ForecastRecord, **fields) -> ForecastRecord:
    """`data` as a stored record would read back with `fields` of its JSON replaced (None: the key removed, a record
    written before that field existed): through the record's own JSON round trip, as the jobs read what they kept."""
    stored = data.to_json() | fields
    return ForecastRecord.from_json({k: v for k, v in stored.items() if v is not None or k not in fields})


def fingpt_answer(positives: list[str], concerns: list[str], analysis: str, prediction: str = "Up by 1-2%") -> str:
    """An answer in the FinGPT format, which the parser reads when the items and the analysis stay in line."""
    def numbered(items: list[str]) -> str:
        return "\n".join(f"{n}. {item}" for n, item in enumerate(items, 1))
    return (f"[Positive Developments]:\n{numbered(positives)}\n\n[Potential Concerns]:\n{numbered(concerns)}\n\n"
            f"[Prediction & Analysis]:\nPrediction: {prediction}\nAnalysis: {analysis}")


def track_report(tickers: list[str], *, unparsed: int = 0) -> TrackReport:
    """`score_track`'s report over `tickers`, two closed weeks each, and `unparsed` unreadable answers."""
    entries = []
    for k, ticker in enumerate(tickers):
        for week, realized in ((LATEST.previous(), 0.012), (LATEST, -0.004)):
            entries.append(TrackEntry(f"e{k}-{week.start}", ticker, week,
                                      dt.datetime.combine(week.start, dt.time(12), tzinfo=NEW_YORK), True, "up",
                                      "1-2%", "Up by 1-2%", realized_return=realized, previous_return=0.02))
    for k in range(unparsed):
        ticker = tickers[k % len(tickers)]
        entries.append(TrackEntry(f"u{k}", ticker, LATEST, dt.datetime.combine(LATEST.start, dt.time(12),
                                  tzinfo=NEW_YORK) - dt.timedelta(days=k + 1), False, "none", None, "",
                                  realized_return=0.01, previous_return=0.0))
    return score_track(entries, latest=LATEST, bootstrap=50)


NO_FEEDBACK = Feedback(up=0, down=0, voters=0, forecasts=0, up_scored=0, up_hits=0, down_scored=0, down_hits=0)


def recent_forecast(**fields) -> RecentForecast:
    """One of `/track`'s newest forecasts: a parsed, counted "up by 1-2%" on AXP for the week LATEST, pending and
    without votes, with `fields` replaced."""
    return RecentForecast(**{
        "id": "e0", "ticker": "AXP", "target_week": LATEST.period, "requested_at": "2024-03-08T23:00:00+00:00",
        "source": "forecast", "parsed": True, "direction": "up", "label": "up by 1-2%", "as_written": "Up by 1-2%",
        "clear_signal": None, "actual_label": None, "realized_return": None, "hit": None, "counted": True,
        "why_not_counted": None, "votes_up": 0, "votes_down": 0} | fields)


def track_view(recent: list[RecentForecast] | None = None, *, ticker: str | None = None, recorded: int = 0,
               report: TrackReport | None = None, feedback: Feedback = NO_FEEDBACK) -> TrackView:
    """What `/track` reads (`jobs.track_reads.track_record`), without votes unless `feedback` is given."""
    return TrackView(ticker=ticker, recorded=recorded, report=report, recent=tuple(recent or ()), feedback=feedback)


def last_call(ticker: str, **fields) -> LastCall:
    """A name's last call as `/watch` and the App Home read it: a parsed "up by 1-2%" with P(up) 61% for the week
    LATEST, pending, with `fields` replaced."""
    return LastCall(**{
        "ticker": ticker, "requested_at": "2024-03-08T23:00:00+00:00", "target_week": LATEST.period,
        "direction": "up", "label": "up by 1-2%", "parsed": True, "p_up": 0.61, "clear_signal": True,
        "actual_label": None, "hit": None} | fields)


def texts(payload: dict) -> list[str]:
    """Every string Slack reads as text in a payload: the fallback `text`, and the `text` of every text object in
    its blocks, however deep."""
    found = [payload["text"]] if isinstance(payload.get("text"), str) else []

    def walk(node) -> None:
        if isinstance(node, dict):
            if node.get("type") in ("mrkdwn", "plain_text") and isinstance(node.get("text"), str):
                found.append(node["text"])
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(payload.get("blocks", []))
    return found


def markup_not_ours(payload: dict, ours: tuple[str, ...] = ()) -> list[str]:
    """Every `<` Slack would start parsing at (a mention, a link, a date) that is not one of `ours`, with its
    surroundings. Our layouts put none there except the mentions they are given, so any other is data that
    escaped escaping."""
    found = []
    for text in texts(payload):
        for token in ours:
            text = text.replace(token, "")
        found += [text[max(0, m.start() - 20): m.start() + 20] for m in re.finditer("<", text)]
    return found


def as_payload(text: str, blocks: list[dict]) -> dict:
    return {"text": text, "blocks": blocks}
