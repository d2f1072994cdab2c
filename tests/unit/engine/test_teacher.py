"""Building a FinGPT-format training set with a teacher LLM: in-memory sources, a fake OpenAI endpoint on
127.0.0.1 and the real `openai` client."""

from __future__ import annotations

import datetime as dt
import json
import logging
import math
import random
import re
import traceback
from pathlib import Path

import pytest

from engine.data.inputs import Sources
from engine.data.prompts import SYSTEM_PROMPT
from engine.market.weeks import NEW_YORK, Week
from engine.parsing import parse_answer
from engine.records import DailyClose, NewsItem
from engine.training.teacher import build_dataset, week_complete
from engine.training.teacher_client import Teacher, TeacherAuthError, TeacherConfigError, TeacherUnavailable
from engine.training.teacher_prompts import TEACHER_SYSTEM_PROMPT, finish_answer
from tests.fakes.openai_server import FakeOpenAI, fingpt_answer
from tests.fakes.sources import MemorySources, synthetic_profile

KEY = "sk-test-secret-0123456789"
NOW = dt.datetime(2024, 3, 21, 9, 0, tzinfo=NEW_YORK)  # Thursday: the week of 2024-03-17 is still trading
START, END = dt.date(2024, 1, 21), dt.date(2024, 3, 17)
SYMBOLS = ("AXP", "KO")
HOLIDAYS = (dt.date(2024, 2, 19), dt.date(2024, 3, 8))  # a Monday, and a Friday (the week ends on Thursday)
# Complete target weeks: the eight starting 2024-01-21 ... 2024-03-10. The week starting 2024-03-17 has closes up
# to Wednesday 2024-03-20 only, so it is not over and must be left out.
SUNDAYS = [START + dt.timedelta(weeks=i) for i in range(8)]
HINDSIGHT = "let's assume your prediction"


def walk(symbol: str, first: dt.date, last: dt.date) -> list[DailyClose]:
    """A seeded random walk with moves big enough to reach most bins."""
    rng, price, out, day = random.Random(symbol), 100.0, [], first
    while day <= last:
        if day.weekday() < 5 and day not in HOLIDAYS:
            price *= 1 + rng.gauss(0, 0.02)
            out.append(DailyClose(date=day, close=round(price, 2)))
        day += dt.timedelta(days=1)
    return out


def expected_label(closes: list[DailyClose], sunday: dt.date) -> str:
    """The realized bin, computed here from FINGPT_FORMAT.md §3 without the engine's helpers."""
    previous = [c.close for c in closes if c.date <= sunday][-1]
    current = [c.close for c in closes if sunday < c.date <= sunday + dt.timedelta(days=7)][-1]
    r = current / previous - 1
    k = max(1, math.ceil(round(abs(100 * r), 9)))
    return f"{'up' if r >= 0 else 'down'} by {'more than 5%' if k > 5 else f'{k - 1}-{k}%'}"


def ny(day: dt.date, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime.combine(day, dt.time(hour, minute), tzinfo=NEW_YORK)


@pytest.fixture
def mem() -> MemorySources:
    src = MemorySources()
    for symbol in SYMBOLS:
        src.profiles[symbol] = synthetic_profile(symbol)
        src.closes[symbol] = walk(symbol, dt.date(2023, 12, 18), dt.date(2024, 3, 20))
        day, items = dt.date(2023, 12, 18), []
        while day <= dt.date(2024, 3, 20):
            # The headline carries its timestamp, so a test can see when each item shown was published.
            for hour, minute in ((8, 0), (9, 30), (12, 0)):
                at = ny(day, hour, minute)
                items.append(NewsItem(published=at, headline=f"{symbol} story at {at.isoformat()}",
                                      summary="Synthetic summary."))
            day += dt.timedelta(days=1)
        src.news[symbol] = items
    return src


def sources(mem: MemorySources) -> Sources:
    return Sources(news=mem, fundamentals=mem, prices=mem)


@pytest.fixture
def fake():
    with FakeOpenAI(api_key=KEY) as server:
        yield server


@pytest.fixture
def sleeps() -> list[float]:
    return []


def make_teacher(fake: FakeOpenAI, sleeps: list[float], **kwargs) -> Teacher:
    args = dict(base_url=fake.base_url, model="teacher-model", api_key=KEY, sleep=sleeps.append,
                attempts=3, base_delay_s=1.0, max_delay_s=30.0) | kwargs
    return Teacher(**args)


def build(mem: MemorySources, teacher, out: Path, symbols=SYMBOLS, **kwargs):
    args = dict(start=START, end=END, out=out, sources=sources(mem), teacher=teacher, weeks=2, now=NOW) | kwargs
    return build_dataset(symbols, **args)


def read_rows(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "rows.jsonl").read_text().splitlines()]


def read_failures(out: Path) -> list[dict]:
    return [json.loads(line) for line in (out / "failures.jsonl").read_text().splitlines()]


def user_of(row: dict) -> str:
    return row["prompt"][1]["content"]


# ---- the rows ----------------------------------------------------------------------------------------------------


def test_every_complete_week_becomes_a_row_with_its_realized_label(mem, fake, sleeps, tmp_path):
    calls = []
    summary = build(mem, make_teacher(fake, sleeps), tmp_path, progress=lambda d, t: calls.append((d, t)))

    rows = read_rows(tmp_path)
    expected = {f"{s}|{sun} to {sun + dt.timedelta(days=7)}": expected_label(mem.closes[s], sun)
                for s in SYMBOLS for sun in SUNDAYS}
    assert {r["key"]: r["label"] for r in rows} == expected
    assert len(set(expected.values())) >= 5, "the synthetic walk should exercise several bins"
    assert (summary.total, summary.written, summary.skipped, summary.failed) == (16, 16, 0, 0)
    assert calls == [(i, 16) for i in range(1, 17)]
    assert mem.calls["prices"] == len(SYMBOLS)  # one fetch per symbol; prompts read the same series

    for row in rows:
        start = dt.date.fromisoformat(row["period"][:10])
        cutoff = dt.datetime.fromisoformat(row["cutoff"])
        # The week's first open, EST or EDT (2024-03-10): Monday's, Tuesday's after Presidents' Day (2024-02-19).
        first_day = start + dt.timedelta(days=2 if start == dt.date(2024, 2, 18) else 1)
        assert cutoff == ny(first_day, 9, 30)
        assert cutoff.utcoffset() == ny(first_day, 9, 30).utcoffset()
        assert row["key"] == f"{row['symbol']}|{row['period']}"
        assert row["prompt"][0] == {"role": "system", "content": SYSTEM_PROMPT}
        assert row["teacher_model"] == "teacher-model"
        assert "stock price movement for next week" in user_of(row)
        assert HINDSIGHT not in user_of(row) and row["label"] not in user_of(row)
        answer = row["completion"][0]
        assert answer["role"] == "assistant" and answer["content"].strip()
        assert f"Prediction: {row['label'].capitalize()}\nAnalysis: " in answer["content"]
        forecast = parse_answer(answer["content"])
        assert forecast.parsed and forecast.move_bin.label == row["label"]


def test_the_teacher_is_told_the_realized_label_in_upstreams_words(mem, fake, sleeps, tmp_path):
    build(mem, make_teacher(fake, sleeps), tmp_path)

    rows = {r["period"]: r for r in read_rows(tmp_path) if r["symbol"] == "AXP"}
    requests = [r for r in fake.chat_requests if "potential concerns for AXP." in r.body["messages"][1]["content"]]
    assert len(requests) == len(rows) == 8
    for request in requests:
        assert request.headers["authorization"] == f"Bearer {KEY}"
        assert request.body["model"] == "teacher-model"
        system, user = request.body["messages"]
        assert system == {"role": "system", "content": TEACHER_SYSTEM_PROMPT}
        period = re.search(r"for next week \((.*?)\)", user["content"])[1]
        row = rows[period]
        start, end = period.split(" to ")
        normal_end = (f"Then make your prediction of the AXP stock price movement for next week ({period}). "
                      "Provide a summary analysis to support your prediction.")
        hindsight_end = (f"Then let's assume your prediction for next week ({start} to {end}) is {row['label']}. "
                         "Provide a summary analysis to support your prediction. The prediction result need to be "
                         "inferred from your analysis at the end, and thus not appearing as a foundational factor "
                         "of your analysis.")
        assert user["content"].endswith(hindsight_end)
        assert user_of(row).endswith(normal_end)
        # Everything before the closing instruction is the same prompt.
        assert user["content"][: -len(hindsight_end)] == user_of(row)[: -len(normal_end)]


def test_no_news_from_the_target_week_reaches_the_prompt(mem, fake, sleeps, tmp_path):
    build(mem, make_teacher(fake, sleeps), tmp_path)

    for row in read_rows(tmp_path):
        opens = dt.datetime.fromisoformat(row["cutoff"])
        shown = [dt.datetime.fromisoformat(t) for t in re.findall(r"story at (\S+)", user_of(row))]
        assert shown, row["key"]
        assert max(shown) < opens, f"{row['key']} shows news from {max(shown)}"
        assert max(shown) > opens - dt.timedelta(days=8)  # the last past week is there


def test_a_week_is_complete_once_its_last_trading_day_has_closed():
    week = Week(dt.date(2024, 3, 24), dt.date(2024, 3, 31))  # Good Friday 2024-03-29: the week ends Thursday
    closes = [DailyClose(date=dt.date(2024, 3, d), close=100.0) for d in (22, 25, 26, 27, 28)]
    late = ny(dt.date(2024, 4, 3), 12)
    assert not week_complete(closes[:4], week, now=late)  # Wednesday's is the latest close: not over yet
    assert not week_complete(closes, week, now=late)  # Thursday's might be the last, or Friday's is missing
    assert week_complete(closes + [DailyClose(date=dt.date(2024, 4, 1), close=1.0)], week, now=late)

    friday = Week(dt.date(2024, 3, 17), dt.date(2024, 3, 24))
    with_friday = [DailyClose(date=dt.date(2024, 3, d), close=100.0) for d in (18, 19, 20, 21, 22)]
    assert week_complete(with_friday, friday, now=ny(dt.date(2024, 3, 22), 16))  # Friday's close is struck
    assert not week_complete(with_friday, friday, now=ny(dt.date(2024, 3, 22), 15, 59))  # not yet


def test_a_folder_built_with_other_settings_is_refused(mem, fake, sleeps, tmp_path):
    build(mem, make_teacher(fake, sleeps), tmp_path, symbols=["AXP"], end=START)
    with pytest.raises(TeacherConfigError, match="weeks=2"):
        build(mem, make_teacher(fake, sleeps), tmp_path, weeks=3)


# ---- resuming --------------------------------------------------------------------------------------------------


class CrashingTeacher:
    """Answers `n` times, then dies the way a killed process would leave things."""

    def __init__(self, inner: Teacher, n: int) -> None:
        self.inner, self.n = inner, n
        self.model, self.base_url = inner.model, inner.base_url

    def complete(self, system: str, user: str) -> str:
        if self.n == 0:
            raise KeyboardInterrupt
        self.n -= 1
        return self.inner.complete(system, user)


def test_a_crashed_build_resumes_without_duplicates_or_losses(mem, fake, sleeps, tmp_path):
    with pytest.raises(KeyboardInterrupt):
        build(mem, CrashingTeacher(make_teacher(fake, sleeps), 5), tmp_path)
    assert len(read_rows(tmp_path)) == 5  # each finished row was on disk before the crash
    assert json.loads((tmp_path / "manifest.json").read_text())["status"] == "aborted: KeyboardInterrupt"
    # The crash also tore a sixth line in half.
    with open(tmp_path / "rows.jsonl", "ab") as f:
        f.write(b'{"key": "KO|2024-03-10 to 2024-03-17", "prompt": [{"role": "sys')
    before = len(fake.chat_requests)

    summary = build(mem, make_teacher(fake, sleeps), tmp_path)

    rows = read_rows(tmp_path)  # every line parses: the torn one is gone
    keys = [r["key"] for r in rows]
    assert len(keys) == len(set(keys)) == 16
    assert (summary.skipped, summary.written, summary.rows_total) == (5, 11, 16)
    assert len(fake.chat_requests) - before == 11
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["status"] == "complete"
    assert manifest["counts"] == {"total": 16, "written": 11, "skipped": 5, "failed": 0, "retries": 0,
                                 "request_retries": 0, "rows_total": 16}


def test_a_longer_range_adds_only_the_new_weeks(mem, fake, sleeps, tmp_path):
    first = build(mem, make_teacher(fake, sleeps), tmp_path, end=dt.date(2024, 2, 4))
    assert first.written == 6
    second = build(mem, make_teacher(fake, sleeps), tmp_path)
    assert (second.skipped, second.written, second.total) == (6, 10, 16)
    assert len(fake.chat_requests) == 16
    assert len({r["key"] for r in read_rows(tmp_path)}) == len(read_rows(tmp_path)) == 16


def test_a_garbled_last_line_ending_in_a_newline_is_dropped_too(mem, fake, sleeps, tmp_path):
    build(mem, make_teacher(fake, sleeps), tmp_path, symbols=["AXP"], end=START)
    with open(tmp_path / "rows.jsonl", "ab") as f:
        f.write(b"\x00\x00\x00\x00\n")
    summary = build(mem, make_teacher(fake, sleeps), tmp_path, symbols=["AXP"], end=START)
    assert (summary.skipped, summary.written) == (1, 0)
    assert len(read_rows(tmp_path)) == 1


# ---- the teacher's transport -----------------------------------------------------------------------------------


def one_week(mem, teacher, out, **kwargs):
    return build(mem, teacher, out, symbols=["AXP"], end=START, **kwargs)


def test_rate_limits_are_retried_with_capped_exponential_backoff(mem, fake, sleeps, tmp_path):
    fake.fail_next(429, times=2, message="Rate limit reached")
    summary = one_week(mem, make_teacher(fake, sleeps), tmp_path)
    assert summary.written == 1 and summary.request_retries == 2
    assert sleeps == [1.0, 2.0]
    assert [r.status for r in fake.chat_requests] == [429, 429, 200]


def test_retry_after_is_honoured_up_to_the_cap(fake, sleeps):
    fake.fail_next(429, times=1, headers={"retry-after": "7"})
    fake.fail_next(503, times=1, headers={"retry-after": "600"})
    assert "[Positive Developments]" in make_teacher(fake, sleeps).complete("sys", "hello")
    assert sleeps == [7.0, 30.0]


def test_persistent_server_errors_record_the_row_as_failed(mem, fake, sleeps, tmp_path):
    fake.fail_next(500, times=3)
    summary = one_week(mem, make_teacher(fake, sleeps), tmp_path)
    assert (summary.written, summary.failed) == (0, 1)
    assert sleeps == [1.0, 2.0]
    [failure] = read_failures(tmp_path)
    assert failure["key"] == "AXP|2024-01-21 to 2024-01-28" and failure["stage"] == "teacher"
    assert "HTTP 500" in failure["reason"] and "3 attempts" in failure["reason"]
    assert not (tmp_path / "rows.jsonl").read_text()


def test_an_endpoint_that_stays_down_stops_the_build(mem, fake, sleeps, tmp_path):
    fake.fail_next(502, times=1000)
    with pytest.raises(TeacherUnavailable, match="3 examples in a row"):
        build(mem, make_teacher(fake, sleeps, attempts=2), tmp_path, give_up_after=3)
    assert len(read_failures(tmp_path)) == 3
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"]["failed"] == 3


def test_timeouts_are_retried(fake, sleeps):
    fake.latency_s = 0.5
    with pytest.raises(TeacherUnavailable, match="timed out"):
        make_teacher(fake, sleeps, timeout_s=0.1, attempts=2).complete("sys", "hello")
    assert sleeps == [1.0]


def test_a_rejected_key_is_fatal_and_never_shown(mem, fake, sleeps, tmp_path, caplog):
    caplog.set_level(logging.DEBUG)
    wrong = "sk-wrong-key-9876543210"
    with pytest.raises(TeacherAuthError) as info:
        build(mem, make_teacher(fake, sleeps, api_key=wrong), tmp_path)
    message = str(info.value)
    assert "TEACHER_API_KEY" in message and "401" in message
    assert fake.chat_requests[0].headers["authorization"] == f"Bearer {wrong}"
    # The server quoted the key back; none of what we show or store repeats it.
    shown = "".join(traceback.format_exception(info.value)) + caplog.text
    shown += "".join(p.read_text() for p in tmp_path.iterdir() if p.is_file())
    assert wrong not in shown and KEY not in shown
    assert len(fake.chat_requests) == 1 and sleeps == []  # no retries
    assert wrong not in repr(make_teacher(fake, sleeps, api_key=wrong))


def test_an_exhausted_quota_is_fatal(fake, sleeps):
    fake.fail_next(429, times=5, code="insufficient_quota", message="You exceeded your current quota")
    with pytest.raises(TeacherAuthError, match="no quota left"):
        make_teacher(fake, sleeps).complete("sys", "hello")
    assert sleeps == []


def test_an_empty_key_is_refused_before_any_request(fake):
    with pytest.raises(TeacherConfigError, match="TEACHER_API_KEY"):
        Teacher(base_url=fake.base_url, model="m", api_key=" ")


# ---- the answers -----------------------------------------------------------------------------------------------


def test_an_unparseable_answer_is_retried_then_recorded_never_written(mem, fake, sleeps, tmp_path):
    fake.answer = lambda request: "As an AI, I cannot predict stock prices."
    summary = one_week(mem, make_teacher(fake, sleeps), tmp_path, answer_attempts=3)
    assert (summary.written, summary.failed, summary.retries) == (0, 1, 2)
    assert len(fake.chat_requests) == 3
    [failure] = read_failures(tmp_path)
    assert failure["stage"] == "answer" and failure["attempts"] == 3
    assert "[Prediction & Analysis]:" in failure["reason"]
    assert (tmp_path / "rows.jsonl").read_text() == ""


def test_a_bad_answer_followed_by_a_good_one_gives_a_row(mem, fake, sleeps, tmp_path):
    calls = []

    def answer(request: dict) -> str:
        calls.append(request)
        return "" if len(calls) == 1 else fingpt_answer(request)

    fake.answer = answer
    summary = one_week(mem, make_teacher(fake, sleeps), tmp_path)
    assert (summary.written, summary.failed, summary.retries) == (1, 0, 1)
    assert json.loads((tmp_path / "manifest.json").read_text())["counts"]["retries"] == 1


def test_upstreams_rewrite_is_applied_exactly():
    raw = ("[Positive Developments]:\n1. a\n2. b\n\n[Potential Concerns]:\n1. c\n2. d\n\n"
           "[Prediction & Analysis]:  \n\nThe x.")
    answer, problem = finish_answer(raw, "down by more than 5%")
    assert problem is None
    assert answer == ("[Positive Developments]:\n1. a\n2. b\n\n[Potential Concerns]:\n1. c\n2. d\n\n"
                      "[Prediction & Analysis]:\nPrediction: Down by more than 5%\nAnalysis: The x.")


@pytest.mark.parametrize("raw, why", [
    ("   \n", "empty"),
    ("[Positive Developments]:\n1. a\n\n[Potential Concerns]:\n1. c\n\n[Prediction & Analysis]\nUp a lot.", "headers"),
    ("[Positive Developments]:\n1. a\n\n[Potential Concerns]:\n1. c\n\n[Prediction & Analysis]:\n"
     "Prediction: Up by 1-2%\nAnalysis: fine.", "own 'Prediction:' line"),
    ("<think>hmm</think>[Positive Developments]:\n1. a\n\n[Potential Concerns]:\n1. c\n\n"
     "[Prediction & Analysis]:\nFine.", "upstream's parser"),
    ("[Positive Developments]:\n1. a\n\n[Potential Concerns]:\n1. c\n\n[Prediction & Analysis]:\n", "no analysis"),
])
def test_answers_unfit_for_training_are_rejected(raw, why):
    _, problem = finish_answer(raw, "up by 1-2%")
    assert problem is not None and why in problem


def test_an_unknown_ticker_is_recorded_and_the_others_are_built(mem, fake, sleeps, tmp_path):
    summary = build(mem, make_teacher(fake, sleeps), tmp_path, symbols=["AXP", "ZZZZ", "KO"])
    assert summary.written == 16 and "ZZZZ" in summary.failed_symbols
    [failure] = read_failures(tmp_path)
    assert failure["symbol"] == "ZZZZ" and failure["stage"] == "data" and "ZZZZ" in failure["reason"]
    assert {r["symbol"] for r in read_rows(tmp_path)} == {"AXP", "KO"}
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    assert manifest["failed_symbols"].keys() == {"ZZZZ"} and manifest["teacher"]["model"] == "teacher-model"
