"""Every message the product posts or edits, built at its ordinary size and at its extremes, is one Slack would
take: `tests.slack_limits.slack_problems` (slack_sdk's Block Kit classes plus Slack's message limits) finds
nothing in it."""

from __future__ import annotations

import datetime as dt
import inspect

import pytest

from bot import messages
from bot.blocks import digest_message, failure_message, forecast_message, progress_message, sources_message
from bot.retrain_blocks import evaluation_status, retrain_result_message, training_status
from bot.track_blocks import summary_message, track_message
from engine.forecast_record import ForecastRecord
from jobs.ledger.views import RecentForecast
from tests.fakes.forecasts import distribution
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import (
    LATEST,
    UNREADABLE_ANSWER,
    as_payload,
    fingpt_answer,
    forecast,
    recent_forecast,
    stored_as,
    track_report,
    track_view,
)

WEEK = "2024-03-10 to 2024-03-17"
LONG = "word " * 2_000  # 10,000 characters
DOW30 = ["AAPL", "AMGN", "AMZN", "AXP", "BA", "CAT", "CRM", "CSCO", "CVX", "DIS", "GS", "HD", "HON", "IBM", "JNJ",
         "JPM", "KO", "MCD", "MMM", "MRK", "MSFT", "NKE", "NVDA", "PG", "SHW", "TRV", "UNH", "V", "VZ", "WMT"]


def assert_slack_takes(text: str, blocks: list[dict]) -> None:
    problems = slack_problems(as_payload(text, blocks))
    assert problems == [], problems


def parsed(symbol: str = "AXP", *, items: int = 3, width: int = 80,
           analysis: str = "Steady demand. More.") -> ForecastRecord:
    return forecast(fingpt_answer([f"Good news {k}: " + "x" * width for k in range(items)],
                                  [f"Risk {k}: " + "y" * width for k in range(items)], analysis), symbol=symbol)


def no_clear_signal(symbol: str = "AXP", **kwargs) -> ForecastRecord:
    """A parsed call whose P(up) (52%) lies within the 5-point band: shown as "no clear signal", without an arrow."""
    data = forecast(fingpt_answer(["Good news"], ["Risk"], "Mixed. More."), symbol=symbol,
                    distribution=distribution(0.52, top="U2", p_top=0.23), signal_band=0.05, **kwargs)
    assert data.parsed and data.probabilities.clear_signal is False
    return data


def with_sources(data: ForecastRecord, per_item: int, width: int, read: int = 0) -> ForecastRecord:
    """`data` with `per_item` matched news items of `width`-character headlines and URLs under each item, and
    `read` news items read."""
    item = {"headline": "<Headline> & " + "h" * width, "source": "Wire " * 20, "date": "2024-03-05",
            "url": "https://news.example/a?b=1&c=" + "u" * width, "score": 0.5}
    read_items = [{"week": WEEK, **{k: v for k, v in item.items() if k != "score"}}] * read
    return stored_as(data, evidence={"method": "word-cover-v1", "threshold": 0.35, "read": read_items,
                                     **{key: [[item] * per_item for _ in data.claims(key)]
                                        for key in ("positive_developments", "potential_concerns")}})


FORECASTS = {
    "parsed": lambda: parsed(),
    "parsed, no clear signal": lambda: no_clear_signal(),
    "parsed, no clear signal, long model name": lambda: no_clear_signal(model="m" * 5_000),
    "parsed, 60 long items and a long analysis": lambda: parsed(items=60, width=400, analysis=LONG),
    "parsed, 60 long items, each with 3 long sources": lambda: with_sources(parsed(items=60, width=400), 3, 400),
    "parsed, every item not found in the news": lambda: with_sources(parsed(), 0, 0),
    "unparsed": lambda: forecast(UNREADABLE_ANSWER),
    "unparsed, empty": lambda: forecast(""),
    "unparsed, 200,000 characters": lambda: forecast("The outlook is unclear. " * 8_400),
    "unparsed, one 50,000-character line": lambda: forecast("z" * 50_000),
    "unparsed, 20,000 characters to escape": lambda: forecast("<&>" * 7_000),
    "unparsed, 30,000 non-Latin characters": lambda: forecast("株価は上がる。" * 4_300),
    "unparsed, long model name": lambda: forecast(UNREADABLE_ANSWER, model="m" * 5_000),
}


@pytest.mark.parametrize("case", list(FORECASTS))
def test_every_forecast_is_one_slack_takes(case):
    assert_slack_takes(*forecast_message(FORECASTS[case]()))


@pytest.mark.parametrize("read", [0, 1, 400])
def test_every_sources_reply_is_one_slack_takes(read):
    assert_slack_takes(*sources_message(with_sources(parsed(), 0, 400, read=read)))


DIGESTS = {
    "30 members parsed": lambda: ([parsed(s) for s in DOW30], {}),
    "30 members unparsed": lambda: ([forecast(UNREADABLE_ANSWER, symbol=s) for s in DOW30], {}),
    "30 members, half without a clear signal": lambda: ([no_clear_signal(s) if k % 2 else parsed(s)
                                                         for k, s in enumerate(DOW30)], {}),
    "30 members, long analyses": lambda: ([parsed(s, analysis=LONG) for s in DOW30], {}),
    "20 members and 10 failures with long reasons": lambda: ([parsed(s) for s in DOW30[:20]],
                                                              {s: "no prices: " + LONG for s in DOW30[20:]}),
    "every member failed": lambda: ([], {s: f"Finnhub answered 500 for {s}" for s in DOW30}),
    "nothing at all": lambda: ([], {}),
}


@pytest.mark.parametrize("case", list(DIGESTS))
def test_every_digest_and_its_thread_are_ones_slack_takes(case):
    forecasts, failures = DIGESTS[case]()
    assert_slack_takes(*digest_message(WEEK, forecasts, failures))
    for data in forecasts:  # the thread: one forecast message per member
        assert_slack_takes(*forecast_message(data))


SUMMARIES = {
    "a few tickers": lambda: summary_message(track_report(["AXP", "KO"])),
    "150 tickers": lambda: summary_message(track_report([f"T{k:03d}" for k in range(150)])),
    "400 tickers": lambda: summary_message(track_report([f"T{k:03d}" for k in range(400)])),
    "many unparsed and failures": lambda: summary_message(
        track_report(["AXP", "KO"], unparsed=60), failures={f"T{k:03d}": "no prices " + "q" * 300 for k in range(80)}),
    "nothing to score yet": lambda: summary_message(track_report([])),
}


@pytest.mark.parametrize("case", list(SUMMARIES))
def test_every_weekly_summary_is_one_slack_takes(case):
    assert_slack_takes(*SUMMARIES[case]())


def recent_row(k: int, *, long: bool = False, **changes) -> RecentForecast:
    return recent_forecast(**{"id": f"e{k}", "ticker": "AXP", "target_week": WEEK, "parsed": k % 2 == 0,
                              "direction": "up", "label": "up by 1-2%",
                              "actual_label": None if k % 3 == 0 else "down by 0-1%", "realized_return": -0.004,
                              "hit": False, "counted": k % 4 != 0,
                              "why_not_counted": ("superseded " * (200 if long else 1)).strip()} | changes)


TRACKS = {
    "one ticker": track_view([recent_row(0)], ticker="AXP", recorded=2, report=track_report(["AXP"])),
    "every ticker, many recent": track_view([recent_row(k, long=True) for k in range(60)], recorded=900,
                                            report=track_report(DOW30)),
    "nothing scored": track_view(ticker="KO", recorded=0),
    "many recent without a clear signal": track_view([recent_row(k, long=True, clear_signal=False)
                                                      for k in range(60)], recorded=900, report=track_report(DOW30)),
}


@pytest.mark.parametrize("case", list(TRACKS))
def test_every_track_answer_is_one_slack_takes(case):
    assert_slack_takes(*track_message(TRACKS[case]))


NEW = {"parse_rate": 0.97, "binary_accuracy_all": 0.55, "binary_accuracy": 0.567, "mse": 6.5, "mcc": 0.1,
       "ci95_binary_accuracy_all": [0.5, 0.6]}


@pytest.mark.parametrize("promoted", [True, False])
@pytest.mark.parametrize("baselines", [0, 40])
def test_every_retrain_verdict_and_progress_line_is_one_slack_takes(promoted, baselines):
    new = NEW | {"baselines": {f"baseline-{k}-" + "b" * 60: {"binary_accuracy_all": 0.5} for k in range(baselines)}}
    assert_slack_takes(*retrain_result_message(
        version="v0004", promoted=promoted, reason="binary_accuracy_all 0.5500 is not worse than 0.5400 " * 60,
        new=new, current=None if promoted else NEW, current_version=None if promoted else "v0003",
        training={"steps": 120, "wall_s": 3725.0, "loss_last": 1.2}))
    for line in (training_status(requested_by="U111", step=3, max_steps=120, epoch=0.1, loss=None, eta_s=None),
                 evaluation_status(requested_by="U111", done=10, total=200)):
        assert_slack_takes(*progress_message(line))


@pytest.mark.parametrize("reason", ["no news for AXP", "Finnhub: " + LONG * 3, "", "\n"])
def test_every_failure_and_progress_note_is_one_slack_takes(reason):
    assert_slack_takes(*failure_message("No forecast for AXP", reason, hint="Check the ticker. " * 400))
    assert_slack_takes(*failure_message("The retrain failed", reason))
    assert_slack_takes(*progress_message(reason or " "))


# -- acks (bot.messages): every public function, each argument through its values one at a time ----------------

NOW = dt.datetime(2026, 11, 25, 18, 30, tzinfo=dt.UTC)
SAMPLES = {  # the first value is the default for the others' turns
    "command": list(messages.USAGE),
    "problem": ["'x' is not a ticker", "p" * 5_000],
    "ticker": ["AXP", "BRK.B", "DOW"],
    "week": [WEEK],
    "as_of": [None, dt.date(2024, 3, 15)],
    "status": ["queued", "exists"],
    "job_status": ["queued", "started", "finished", "failed", "deferred", "scheduled", "unknown", "canceled"],
    "ahead": [0, 3, None],
    "workers": [1, 0, None],
    "dow30": [True, False],
    "index_lookalike": [False, True],
    "wait_s": [30, 7_200],
    "cooldown_s": [3_600, 86_400],
    "now": [NOW],
    "job_id": ["retrain_1"],
    "epochs": [None, 2.5],
    "force": [False, True],
    "admins_configured": [True, False],
    "queue": ["interactive"],
    "limit": [200],
    "pending": [5, 12],
    "what": ["*AXP* for the week " + WEEK, "w" * 3_000],
    "reference": ["d2a6c4ba"],
}
ACKS = [name for name, fn in inspect.getmembers(messages, inspect.isfunction)
        if fn.__module__ == messages.__name__ and not name.startswith("_")
        and name not in {"payload", "status_report", "forecast_what", "digest_what"}]


def calls(name: str):
    """(description, kwargs) for `name`: each parameter through its SAMPLES while the others keep their first."""
    params = inspect.signature(getattr(messages, name)).parameters
    missing = [p for p, spec in params.items() if p not in SAMPLES and spec.default is inspect.Parameter.empty]
    assert not missing, f"add sample values for {name}({', '.join(missing)}) to SAMPLES"
    known = [p for p in params if p in SAMPLES]
    base = {p: SAMPLES[p][0] for p in known}
    yield "defaults", dict(base)
    for p in known:
        for value in SAMPLES[p][1:]:
            yield f"{p}={value!r:.40}", base | {p: value}


@pytest.mark.parametrize("name", ACKS)
def test_every_ack_is_an_ephemeral_reply_slack_takes(name):
    fn = getattr(messages, name)
    for description, kwargs in calls(name):
        positional = [kwargs.pop(p) for p, spec in inspect.signature(fn).parameters.items()
                      if spec.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD and p in kwargs]
        answer = fn(*positional, **kwargs)
        problems = slack_problems(answer)
        assert answer["response_type"] == "ephemeral" and problems == [], (description, problems)


def status(**changes) -> dict:
    base = {
        "queues": [{"name": q, "queued": 2, "running": 1, "failed": 0} for q in ("interactive", "batch", "training")],
        "workers": [{"name": "gpu-0.123", "state": "busy", "current_job": "forecast_AXP",
                     "last_heartbeat": "2026-11-25T18:29:50+00:00"}],
        "served": {"model": "Qwen2.5-1.5B-Instruct", "adapter": "v0003", "since": "2026-11-25T08:00:00+00:00"},
        "last_digest": "2026-11-23T13:00:04+00:00", "last_summary": None,
        "mine": [{"job_id": "forecast_KO", "what": "forecast KO", "status": "queued", "position": 1}],
        "scanned_everything": True,
    }
    return base | changes


@pytest.mark.parametrize("changes", [
    {},
    {"workers": [], "served": None, "mine": []},
    {"workers": [{"name": "<!channel>&" * 60, "state": "busy", "current_job": "`" * 500, "last_heartbeat": "g" * 400}
                 for _ in range(300)],
     "served": {"model": "&" * 5000, "adapter": "<" * 5000, "since": "s" * 5000},
     "mine": [{"job_id": "x", "what": "forecast " + "&" * 5000, "status": "started", "position": None}] * 400,
     "scanned_everything": False},
], ids=["ordinary", "nothing running", "huge and hostile"])
def test_the_status_report_is_one_slack_takes(changes):
    answer = messages.status_report(status(**changes), now=NOW)
    assert slack_problems(answer) == []


def test_the_layouts_checked_here_are_all_the_layouts_there_are():
    """A new build_* function in a layout module must be added to this file's checks."""
    import bot.blocks
    import bot.retrain_blocks
    import bot.track_blocks

    checked = {"forecast_message", "digest_message", "digest_headline", "progress_message", "failure_message",
               "sources_message", "summary_message", "track_message", "retrain_result_message", "training_status",
               "evaluation_status"}
    layouts = {name for module in (bot.blocks, bot.track_blocks, bot.retrain_blocks)
               for name, fn in inspect.getmembers(module, inspect.isfunction)
               if fn.__module__ == module.__name__ and name.endswith(("_message", "_status", "_headline"))}
    assert layouts == checked
    assert LATEST.period == WEEK
