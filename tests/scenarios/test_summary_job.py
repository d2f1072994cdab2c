"""The weekly evaluation summary through the queue: forecasts in the ledger for three closed weeks, a real RQ
SimpleWorker in burst mode on a real Redis, in-memory prices, and a fake Slack Web API on 127.0.0.1 that records
the summary message and the chart's files_upload_v2 upload.

The expected numbers are worked out by hand from `tests.fakes.forecasts.WEEK_LEVELS`: the weeks of Mar 3, 10 and
17 (2024) went down 1%, up 3% and down 5% (bins down by 0-1%, up by 2-3%, down by 4-5%), after +2% the week of
Feb 25. AXP's forecasts were all right; KO's were all wrong (one of them unparsed).
"""

from __future__ import annotations

import datetime as dt
import json

import pytest
from rq.job import Job
from rq.serializers import JSONSerializer

import jobs.summary
from bot.outbox import SlackOutbox
from bot.slack_ops import build_client
from engine.data.inputs import Sources
from engine.market.weeks import NEW_YORK
from forecaster.settings import Settings
from jobs import ledger, runtime, worker
from jobs.client import JobsClient
from jobs.keys import last_run_key
from jobs.ledger import writes
from jobs.results import SummaryJobResult
from tests.fakes.forecasts import canned_forecast, stepped_market

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
SATURDAY = dt.date(2024, 3, 23)  # the week of Mar 17 closed on Friday the 22nd

# (ticker, requested on (March, 18:00 New York), prediction), each for the week after that Friday.
FORECASTS = [
    ("AXP", 1, "Down by 0-1%"), ("KO", 1, "Up by 1-2%"),  # week of Mar 3: down by 0-1%
    ("AXP", 7, "Down by 3-4%"),  # superseded by the next day's AXP forecast for the same week
    ("AXP", 8, "Up by 2-3%"), ("KO", 8, None),  # week of Mar 10: up by 2-3%
    ("AXP", 15, "Down by 4-5%"), ("KO", 15, "Up by 0-1%"),  # week of Mar 17: down by 4-5%
    ("AXP", 22, "Up by 0-1%"),  # week of Mar 24: not closed by the 23rd, pending
]


@pytest.fixture
def market():
    return stepped_market()


@pytest.fixture
def context(redis, slack, market):
    ctx = runtime.WorkerContext(
        settings=Settings(_env_file=None), conn=redis, sources=Sources(market, market, market),
        slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
        load_model=lambda: object(),  # the summary needs no model; the worker still loads "it" once at start
    )
    yield ctx
    runtime.install(None)


def record(redis, sources, forecasts=FORECASTS) -> None:
    for ticker, day, prediction in forecasts:
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        data = canned_forecast(sources, ticker, at=at, prediction=prediction)
        writes.record_forecast(ledger.open_ledger(Settings(_env_file=None)), data, job_id=f"forecast_{ticker}_{day}",
                               user="U1", channel="C1", requested_at=at, latency_s=20.0, source="forecast")


def shown(blocks: list[dict]) -> str:
    """Every text a reader sees in `blocks`, one per line."""
    texts = [b["text"]["text"] for b in blocks if "text" in b]
    texts += [e["text"] for b in blocks for e in b.get("elements", [])]
    return "\n".join(texts)


def table_row(blocks: list[dict], name: str) -> list[str]:
    """The cells of the code-block table row that starts with `name`, split on runs of spaces."""
    for block in blocks:
        text = block.get("text", {}).get("text", "")
        for line in text.strip("`").splitlines():
            if line.startswith(name):
                return line[len(name):].split()
    raise AssertionError(f"no row {name!r} in {json.dumps(blocks)[:2000]}")


def test_the_summary_posts_the_track_record_and_a_chart_in_its_thread(context, redis, slack, market):
    record(redis, context.sources)
    client = JobsClient(redis)
    first = client.summary(channel="C555", week_ending=SATURDAY)

    worker.run(context, burst=True)

    [message] = slack.messages()  # in its final state: the placeholder, edited into the summary
    assert message["channel"] == "C555"
    assert message["text"] == ("Track record to 2024-03-17 to 2024-03-24: model hit rate 50% (3/6) vs "
                               "Always Down 0-1% 67%, Always Up 0-1% 33%, Last-week momentum 0%")
    blocks = message["blocks"]
    assert blocks[0]["text"]["text"] == "Track record: 2024-03-17 to 2024-03-24"
    # Columns: this week's hit rate (%, hits/n) and MSE; cumulative hit rate, 95% CI and MSE.
    # Model: week 1/2, error (0.5 - -4.5)² = 25 on KO; cumulative 3/6, MSE (0 + 4 + 0 + 0 + 25) / 5 parsed.
    # Every week is 1 of 2 right, so every resample of weeks gives 50%: the interval is [50%, 50%]. For the
    # constant baselines one week in three is the odd one out; three draws all of that week (1/27 = 3.7% > 2.5%)
    # or none of it (8/27) both fall inside the 95% band, so their intervals span 0-100%.
    assert table_row(blocks, "Model") == ["50%", "1/2", "12.50", "50%", "3/6", "50–50%", "5.80"]
    # Down by 0-1% (-0.5): right in the two down weeks; errors 0, 0 | 9, 9 | 16, 16.
    assert table_row(blocks, "Always Down 0-1%") == ["100%", "2/2", "16.00", "67%", "4/6", "0–100%", "8.33"]
    # Up by 0-1% (+0.5): right in the up week only; errors 1, 1 | 4, 4 | 25, 25.
    assert table_row(blocks, "Always Up 0-1%") == ["0%", "0/2", "25.00", "33%", "2/6", "0–100%", "10.00"]
    # Momentum repeats the week before: up by 1-2%, down by 0-1%, up by 2-3% — wrong every week;
    # errors 4, 4 | 9, 9 | 49, 49.
    assert table_row(blocks, "Last-week momentum") == ["0%", "0/2", "49.00", "0%", "0/6", "0–0%", "20.67"]
    # By ticker: n, hit rate, MSE, then the baselines' hit rates (Down, Up, Momentum).
    assert table_row(blocks, "AXP") == ["3", "100%", "0.00", "67%", "33%", "0%"]
    assert table_row(blocks, "KO") == ["3", "0%", "14.50", "67%", "33%", "0%"]
    counts = shown(blocks)
    assert "6 scored · 1 pending" in counts and "1 unparsed (counted as misses)" in counts
    assert "1 not counted (1 superseded by a later forecast, 0 made after the week opened)" in counts
    assert "Unparsed answers, counted as misses: KO (2024-03-10)" in counts
    assert all(len(b.get("text", {}).get("text", "")) <= 3000 for b in blocks) and len(blocks) <= 50

    [upload] = slack.uploads()
    assert upload.content.startswith(PNG_SIGNATURE) and upload.length == len(upload.content) > 5000
    assert upload.filename == "track-record.png" and upload.channel == "C555"
    summary_ts = next(c.ts for c in slack.calls if c.method == "chat.postMessage")
    assert upload.thread_ts == summary_ts  # in the summary's thread
    steps = [c.method.split("/")[0] for c in slack.calls if c.method not in ("chat.postMessage", "chat.update")]
    assert steps == ["files.getUploadURLExternal", "upload", "files.completeUploadExternal"]

    # Outcomes are stored on the entries; the forecast for the week still open is not.
    assert ledger.get_entry(ledger.open_ledger(Settings(_env_file=None)), "forecast_AXP_15:AXP")["hit"] is True
    assert ledger.get_entry(ledger.open_ledger(Settings(_env_file=None)), "forecast_KO_8:KO")["actual_label"] == \
        "up by 2-3%"
    assert ledger.get_entry(ledger.open_ledger(Settings(_env_file=None)), "forecast_AXP_22:AXP")["scored_at"] is None
    assert redis.get(last_run_key("summary")) is not None
    done = Job.fetch(first.job_id, connection=redis, serializer=JSONSerializer)
    assert done.get_status() == "finished"
    result = SummaryJobResult.from_json(done.return_value())
    assert result.newly_scored == 7  # the superseded one too
    assert result.week == "2024-03-17 to 2024-03-24" and result.counts.scored > 0

    again = client.summary(channel="C555", week_ending=SATURDAY)  # a second scheduler, or a second click
    assert again.status == "duplicate" and again.job_id == first.job_id
    calls = len(slack.calls)
    worker.run(context, burst=True)
    assert len(slack.calls) == calls


def test_with_nothing_to_score_yet_it_says_so_and_draws_nothing(context, redis, slack):
    record(redis, context.sources, [("AXP", 22, "Up by 0-1%")])  # its week closes after the 23rd
    JobsClient(redis).summary(channel="C555", week_ending=SATURDAY)
    worker.run(context, burst=True)
    [message] = slack.messages()
    assert message["text"] == "Track record to 2024-03-17 to 2024-03-24: nothing to score yet"
    assert "Nothing to score yet" in shown(message["blocks"]) and "1 pending" in shown(message["blocks"])
    assert slack.uploads() == []
    assert redis.get(last_run_key("summary")) is not None


def test_a_ticker_without_prices_stays_pending_and_is_listed(context, redis, slack, market):
    record(redis, context.sources)
    del market.closes["KO"]  # the provider lost KO (delisted, renamed): AXP is still scored
    JobsClient(redis).summary(channel="C555", week_ending=SATURDAY)
    worker.run(context, burst=True)
    [message] = slack.messages()
    assert "model hit rate 100% (3/3)" in message["text"]
    assert "No outcome yet for:*\n• KO: no prices were found for this ticker in that period" in shown(message["blocks"])
    assert "3 scored · 4 pending" in shown(message["blocks"])
    assert ledger.get_entry(ledger.open_ledger(Settings(_env_file=None)), "forecast_KO_15:KO")["scored_at"] is None


def test_a_retried_summary_posts_and_uploads_nothing_twice(context, redis, slack, monkeypatch):
    record(redis, context.sources)
    runtime.install(context)

    class SameJob:
        id = "summary_2024-W12_C555"
        enqueued_at = None

    monkeypatch.setattr(jobs.summary, "get_current_job", SameJob)
    jobs.summary.summary_job("C555", SATURDAY.isoformat())
    jobs.summary.summary_job("C555", SATURDAY.isoformat())  # RQ's retry, or a worker that died after posting
    assert len(slack.posted()) == 1 and len(slack.uploads()) == 1


def test_a_chart_slack_refuses_is_explained_under_the_summary(context, redis, slack):
    record(redis, context.sources)
    slack.fail_next("files.getUploadURLExternal", 200, error="missing_scope", needed="files:write")
    outcome = JobsClient(redis).summary(channel="C555", week_ending=SATURDAY)
    worker.run(context, burst=True)
    summary, note = slack.messages()
    assert summary["text"].startswith("Track record to 2024-03-17 to 2024-03-24: model hit rate 50%")
    assert note["thread_ts"] == next(c.ts for c in slack.calls if c.method == "chat.postMessage")
    assert "could not be attached" in note["text"] and "lacks a permission" in note["text"]
    assert slack.uploads() == []
    assert Job.fetch(outcome.job_id, connection=redis, serializer=JSONSerializer).get_status() == "finished"


CALIBRATION_TICKERS = ("AXP", "KO", "MSFT", "IBM", "JPM", "DIS", "CAT")


def test_enough_forecasts_with_probabilities_add_a_calibration_line_and_the_reliability_chart(redis, slack,
                                                                                              monkeypatch):
    from tests.fakes.forecasts import distribution, stepped_market

    market = stepped_market(CALIBRATION_TICKERS)
    ctx = runtime.WorkerContext(settings=Settings(_env_file=None), conn=redis, sources=Sources(market, market, market),
                                slack=SlackOutbox(build_client("xoxb-test", base_url=slack.api_url)),
                                load_model=lambda: object())
    bins = distribution(0.7, top="U1", p_top=0.3)
    for ticker in CALIBRATION_TICKERS:  # 7 tickers x the weeks of Mar 3 (down), 10 (up), 17 (down): 21 forecasts
        for day in (1, 8, 15):
            at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
            data = canned_forecast(ctx.sources, ticker, at=at, prediction="Up by 0-1%", distribution=bins)
            writes.record_forecast(ledger.open_ledger(Settings(_env_file=None)), data,
                                   job_id=f"forecast_{ticker}_{day}", user="U1", channel="C1", requested_at=at,
                                   latency_s=20.0, source="forecast")
    runtime.install(ctx)
    try:
        class SameJob:
            id = "summary_2024-W12_C555"
            enqueued_at = None

        monkeypatch.setattr(jobs.summary, "get_current_job", SameJob)
        result = jobs.summary.summary_job("C555", SATURDAY.isoformat())
        jobs.summary.summary_job("C555", SATURDAY.isoformat())  # a retry uploads neither chart again
    finally:
        runtime.install(None)

    [message] = slack.messages()
    # P(up) 0.7 every time; up in 1 week of 3. Brier (2·0.7² + 0.3²) / 3 = (0.98 + 0.09) / 3 = 0.357; all 21 in
    # the bin [0.7, 0.8): ECE |1/3 - 0.7| = 0.367; log loss -(2 ln 0.3 + ln 0.7) / 3 = 0.922.
    assert ("*Calibration of P(up)*, 21 forecasts: Brier 0.357 (0.25 = always saying 50%) · ECE 0.367 · log loss "
            "0.922. The reliability diagram is in the thread.") in shown(message["blocks"])
    track, reliability = slack.uploads()
    assert track.filename == "track-record.png" and reliability.filename == "reliability.png"
    import json

    from jobs.keys import home_chart_key

    home = json.loads(redis.get(home_chart_key()))  # App Home shows the newest chart: the reliability diagram
    assert home["file_id"] == reliability.file_id and home["title"].startswith("Reliability of the model's P(up)")
    assert reliability.content.startswith(PNG_SIGNATURE) and reliability.length > 5000
    assert reliability.thread_ts == track.thread_ts and reliability.channel == "C555"
    assert result["reliability_chart"] is not None


def test_too_few_forecasts_with_probabilities_say_how_many_and_draw_no_reliability_chart(context, redis, slack):
    from tests.fakes.forecasts import distribution

    bins = distribution(0.7, top="U1", p_top=0.3)
    for ticker, day, prediction in FORECASTS[:2]:
        at = dt.datetime(2024, 3, day, 18, tzinfo=NEW_YORK)
        data = canned_forecast(context.sources, ticker, at=at, prediction=prediction, distribution=bins)
        writes.record_forecast(ledger.open_ledger(Settings(_env_file=None)), data, job_id=f"forecast_{ticker}_{day}",
                               user="U1", channel="C1", requested_at=at, latency_s=20.0, source="forecast")
    JobsClient(redis).summary(channel="C555", week_ending=SATURDAY)
    worker.run(context, burst=True)
    [message] = slack.messages()
    assert "Calibration of P(up): 2 scored forecast(s) with a probability so far; shown from 20." in shown(
        message["blocks"])
    assert [u.filename for u in slack.uploads()] == ["track-record.png"]


def test_the_summary_counts_the_votes_and_how_the_voted_calls_did(context, redis, slack):
    """Issue 22: the 👍/👎 people gave, in the weekly summary: AXP's call for the week of Mar 10 was right, KO's for
    the week of Mar 17 wrong."""
    from jobs.ledger import votes

    record(redis, context.sources)
    store = ledger.open_ledger(Settings(_env_file=None))
    votes.cast(store, "forecast_AXP_8:AXP", "U1", "up")
    votes.cast(store, "forecast_AXP_8:AXP", "U2", "up")
    votes.cast(store, "forecast_KO_15:KO", "U1", "down")
    JobsClient(redis).summary(channel="C555", week_ending=SATURDAY)

    worker.run(context, burst=True)

    [message] = slack.messages()
    assert ("*Feedback:* :+1: 2 · :-1: 1 from 2 people on 2 forecast(s); on scored calls, :+1: 2/2 hit, "
            ":-1: 0/1 hit") in shown(message["blocks"])
