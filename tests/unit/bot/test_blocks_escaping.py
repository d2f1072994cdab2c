"""For any model answer and any ticker, headline, reason or name from the data, no text we post (a block's text or
the fallback `text`) holds a `<` that Slack would parse (`<!channel>`, `<@U…>`, `<#C…>`, `<http…|…>`) unless we
put it there, and Slack would take the message. Over every layout: forecast (parsed and unparsed), digest table
and thread, weekly summary, track, retrain verdict and progress, failures, the status ack."""

from __future__ import annotations

import datetime as dt

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from bot import messages
from bot.blocks import digest_message, failure_message, forecast_message, progress_message
from bot.mrkdwn import prose
from bot.retrain_blocks import evaluation_status, retrain_result_message, training_status
from bot.track_blocks import summary_message, track_message
from tests.slack_limits import slack_problems
from tests.unit.bot.layout_cases import (
    as_payload,
    fingpt_answer,
    forecast,
    hostile_name,
    hostile_text,
    markup_not_ours,
    recent_forecast,
    texts,
    track_report,
    track_view,
)

FAST = settings(max_examples=60, deadline=None, database=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
WEEK = "2024-03-10 to 2024-03-17"


def check(text: str, blocks: list[dict], ours: tuple[str, ...] = ()) -> None:
    payload = as_payload(text, blocks)
    assert markup_not_ours(payload, ours) == []
    assert slack_problems(payload) == []


@FAST
@given(positives=st.lists(hostile_text, min_size=1, max_size=4), concerns=st.lists(hostile_text, max_size=4),
       analysis=hostile_text, symbol=hostile_name, model=hostile_name)
def test_a_parsed_forecast_of_any_words_posts_no_markup_of_theirs(positives, concerns, analysis, symbol, model):
    data = forecast(fingpt_answer(positives, concerns, analysis), symbol=symbol, model=model)
    text, blocks = forecast_message(data)
    check(text, blocks)
    if data.parsed and len(data.analysis) < 500:
        assert prose(data.analysis) in "\n".join(texts({"blocks": blocks}))  # shown as written, escaped


@FAST
@given(answer=hostile_text, symbol=hostile_name)
def test_any_raw_answer_posts_no_markup_of_its_own(answer, symbol):
    data = forecast(answer, symbol=symbol)
    check(*forecast_message(data))


@FAST
@given(members=st.lists(st.tuples(hostile_name, hostile_text, st.booleans()), max_size=6),
       failures=st.dictionaries(hostile_name, hostile_text, max_size=4), week=hostile_name)
def test_a_digest_of_any_answers_and_failures_posts_no_markup_of_theirs(members, failures, week):
    forecasts = [forecast(fingpt_answer(["a"], ["b"], words) if readable else words, symbol=symbol)
                 for symbol, words, readable in members]
    check(*digest_message(week, forecasts, failures))
    for data in forecasts:
        check(*forecast_message(data))


@FAST
@given(tickers=st.lists(hostile_name, min_size=1, max_size=4, unique=True),
       failures=st.dictionaries(hostile_name, hostile_text, max_size=4), unparsed=st.integers(0, 3))
def test_a_weekly_summary_of_any_tickers_posts_no_markup_of_theirs(tickers, failures, unparsed):
    check(*summary_message(track_report(tickers, unparsed=unparsed), failures=failures))


@FAST
@given(ticker=hostile_name, rows=st.lists(st.tuples(hostile_name, hostile_name, hostile_name, hostile_text,
                                                     st.booleans()), max_size=4))
def test_a_track_answer_about_any_ticker_posts_no_markup_of_theirs(ticker, rows):
    recent = [recent_forecast(id="e", ticker=name, target_week=week, parsed=readable, direction="up", label=label,
                              actual_label=label, realized_return=0.01, hit=readable, counted=not readable,
                              why_not_counted=why) for name, week, label, why, readable in rows]
    check(*track_message(track_view(recent, ticker=ticker, recorded=len(rows), report=track_report([ticker]))))


@FAST
@given(version=hostile_name, current=st.none() | hostile_name, reason=hostile_text,
       baselines=st.lists(hostile_name, max_size=3), user=st.sampled_from(["U111", "W2X3Y4"]) | hostile_name)
def test_a_retrain_verdict_and_its_progress_post_no_markup_but_the_requesters_mention(version, current, reason,
                                                                                     baselines, user):
    new = {"binary_accuracy_all": 0.5, "baselines": {name: {"binary_accuracy_all": 0.4} for name in baselines}}
    check(*retrain_result_message(version=version, promoted=current is None, reason=reason, new=new,
                                  current=None if current is None else new, current_version=current,
                                  training={"steps": 3, "wall_s": 9.0, "loss_last": 1.0}))
    mention = (f"<@{user}>",) if user in ("U111", "W2X3Y4") else ()
    for line in (training_status(requested_by=user, step=1, max_steps=3, epoch=0.5, loss=1.0, eta_s=5.0),
                 evaluation_status(requested_by=user, done=1, total=3)):
        check(*progress_message(line), ours=mention)
        if mention:
            assert mention[0] in line


@FAST
@given(reason=hostile_text)
def test_a_failure_quoting_any_data_posts_no_markup_of_it(reason):
    check(*failure_message("No forecast for AXP", reason, hint="Check the ticker and date, then run `/forecast`."))


@FAST
@given(names=st.lists(hostile_name, min_size=1, max_size=3), what=hostile_text, heartbeat=hostile_name)
def test_the_status_ack_of_any_worker_job_or_model_names_posts_no_markup_of_theirs(names, what, heartbeat):
    status = {
        "queues": [{"name": "interactive", "queued": 1, "running": 0, "failed": 0}],
        "workers": [{"name": n, "state": "busy", "current_job": n, "last_heartbeat": heartbeat} for n in names],
        "served": {"model": names[0], "adapter": names[-1], "since": heartbeat},
        "last_digest": heartbeat, "last_summary": None,
        "mine": [{"job_id": "j", "what": what, "status": "queued", "position": 0}], "scanned_everything": True,
    }
    answer = messages.status_report(status, now=dt.datetime(2026, 1, 1, tzinfo=dt.UTC))
    assert markup_not_ours(answer) == [] and slack_problems(answer) == []


def test_the_checks_above_can_fail():
    """The detector finds data that was not escaped, so a layout that forgot would fail the tests above."""
    unescaped = {"text": "ok", "blocks": [{"type": "section", "text": {"type": "mrkdwn", "text": "hi <!channel>"}}]}
    assert markup_not_ours(unescaped) == ["hi <!channel>"]
    assert markup_not_ours({"text": "ping <@U1>", "blocks": []}, ours=("<@U1>",)) == []
    assert markup_not_ours({"text": "x", "blocks": [{"type": "header", "text": {"type": "plain_text",
                                                                                 "text": "<#C1>"}}]}) == ["<#C1>"]
