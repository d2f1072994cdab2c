"""Build a FinGPT-Forecaster-format training set on fresh data, with a teacher LLM writing the answers.

This is FinGPT's data pipeline (`data.py` → GPT-4 → `gpt4_to_llama`) run on our sources:
- For every symbol and every Sunday-to-Sunday target week that has fully traded, the prompt is built exactly as
  for inference (`gather` + `build_user_prompt`), with the cutoff at the target week's Monday 09:30 New York open,
  so nothing from the target week reaches the prompt.
- The label is the week's realized move bin (FINGPT_FORMAT.md §3), from the same price series as the prompt.
- **The teacher is told the answer.** As upstream did, the closing instruction it sees says "let's assume your
  prediction ... is {label}" and asks it to justify that. The answers are therefore rationalizations of a known
  outcome: a model tuned on them learns FinGPT's *style*, and scores against them (ROUGE) measure imitation of the
  teacher, not forecasting skill (FINGPT_FORMAT.md §6, "Hindsight answers").
- The stored row pairs the *normal* prompt ("stock price movement", no hint) with the teacher's answer rewritten
  by upstream's exact `re.sub`, which inserts `Prediction: {Label}` and `Analysis:` (`engine.training.teacher_prompts`).
  An answer that does not parse is asked for again and, if still bad, recorded in `failures.jsonl`; it never
  becomes a row, and no row is ever written with an empty answer (upstream's "silent empty answers").
- The teacher itself, its retries and its errors: `engine.training.teacher_client`.

Output (`out/`), crash-safe and resumable:
- `rows.jsonl`: one complete JSON line per finished example, flushed and fsynced as it is written, keyed
  `symbol|period`. A rerun reads the keys already there and skips them; a half-written last line left by a crash
  is cut off.
- `failures.jsonl`: what failed in the latest run and why (a rerun tries those examples again).
- `manifest.json`: what was asked, the teacher (model and URL, never the key) and the counts.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import os
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from engine.data.inputs import Sources, gather
from engine.data.prompts import SYSTEM_PROMPT, TEMPLATE_ID, build_user_prompt
from engine.exceptions import DataError, EngineError, NoPriceData
from engine.market.weeks import NEW_YORK, Week, close_time, move_bin, week_close, weekly_return
from engine.records import DailyClose
from engine.training.teacher_client import (
    ChatTeacher,
    TeacherAuthError,
    TeacherConfigError,
    TeacherError,
    TeacherUnavailable,
)
from engine.training.teacher_prompts import TEACHER_SYSTEM_PROMPT, finish_answer, hindsight_prompt

log = logging.getLogger(__name__)

ROWS_FILE = "rows.jsonl"
FAILURES_FILE = "failures.jsonl"
MANIFEST_FILE = "manifest.json"


# ---- Weeks and labels ------------------------------------------------------------------------------------------


def target_weeks(start: dt.date, end: dt.date) -> list[Week]:
    """Sunday-to-Sunday weeks whose start Sunday lies in [start, end]."""
    first = start + dt.timedelta(days=(6 - start.weekday()) % 7)
    count = 0 if first > end else (end - first).days // 7 + 1
    return [Week(first + dt.timedelta(weeks=i), first + dt.timedelta(weeks=i + 1)) for i in range(count)]


def week_complete(closes: Sequence[DailyClose], week: Week, *, now: dt.datetime) -> bool:
    """Whether `week` has fully traded in `closes` (ascending) as known at `now`: it has a close, and either that
    close is a Friday's (the last possible trading day) or the series already goes on past the week."""
    known = [c for c in closes if close_time(c.date) <= now]
    in_week = [c for c in known if week.start < c.date <= week.end]
    return bool(in_week) and (in_week[-1].date.weekday() == 4 or known[-1].date > week.end)


def realized_label(closes: Sequence[DailyClose], week: Week, *, symbol: str) -> str:
    """The week's move bin, lower case: its close over the previous week's close (FINGPT_FORMAT.md §3)."""
    previous = week_close(closes, week.previous(), symbol=symbol)
    current = week_close(closes, week, symbol=symbol)
    try:
        return move_bin(weekly_return(previous.close, current.close)).label
    except ValueError as exc:
        raise NoPriceData(f"{symbol} {week.period}: {exc}") from None


class _PrefetchedPrices:
    """A PriceSource over closes fetched once per symbol, so prompts and labels read one and the same series."""

    def __init__(self, name: str, closes: dict[str, list[DailyClose]]) -> None:
        self.name = name
        self._closes = closes

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        result = {s: [c for c in self._closes.get(s, []) if start <= c.date <= end] for s in symbols}
        empty = [s for s, v in result.items() if not v]
        if empty:
            raise NoPriceData(f"no prices for {', '.join(empty)} between {start} and {end}")
        return result


# ---- Output files ----------------------------------------------------------------------------------------------


def read_done_keys(path: Path) -> set[str]:
    """Keys of the complete rows in `path`. A torn last line (a crash mid-write) is cut off the file; a bad line
    anywhere else means the file was edited or damaged, and raises rather than guess."""
    if not path.exists():
        return set()
    data = path.read_bytes()
    lines = data.split(b"\n")  # json.dumps never writes a raw newline, so one line is one row
    complete, tail = lines[:-1], lines[-1]  # `tail` is b"" when the file ends with a newline
    keys: set[str] = set()
    keep = 0
    for number, line in enumerate(complete, 1):
        try:
            key = json.loads(line)["key"]
        except (ValueError, KeyError, TypeError):
            if number == len(complete) and not tail:
                # The last line ends in a newline but is not a row: a crash can leave zeros before the newline.
                tail = line
                break
            raise TeacherConfigError(f"{path} line {number} is not a complete row; fix or remove the file.") from None
        keys.add(key)
        keep += len(line) + 1
    if tail:
        log.warning("%s: dropping a half-written last line (%d bytes) left by an interrupted run", path, len(tail))
        with open(path, "r+b") as f:
            f.truncate(keep)
            f.flush()
            os.fsync(f.fileno())
    return keys


def _append_line(f: Any, record: dict) -> None:
    f.write((json.dumps(record, ensure_ascii=False) + "\n").encode("utf-8"))
    f.flush()
    os.fsync(f.fileno())


def _write_json_atomic(path: Path, data: dict) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)


# ---- The build -------------------------------------------------------------------------------------------------


@dataclass
class BuildSummary:
    """What one `build_dataset` run did. `failed` counts lines written to failures.jsonl this run."""

    out: Path
    total: int = 0  # examples in the request (complete weeks × symbols with data), done ones included
    written: int = 0  # rows written this run
    skipped: int = 0  # rows already in rows.jsonl from an earlier run
    failed: int = 0
    retries: int = 0  # re-asks because an answer did not parse
    request_retries: int = 0  # transport retries (429/5xx/timeouts) inside the teacher
    rows_total: int = 0  # rows in rows.jsonl at the end
    failed_symbols: dict[str, str] = field(default_factory=dict)  # symbol → why it has no examples at all
    status: str = "running"  # "complete" or "aborted: <error>" at the end

    @property
    def rows_path(self) -> Path:
        return self.out / ROWS_FILE

    @property
    def failures_path(self) -> Path:
        return self.out / FAILURES_FILE


@dataclass(frozen=True)
class _Example:
    symbol: str
    week: Week
    label: str

    @property
    def key(self) -> str:
        return f"{self.symbol}|{self.week.period}"


def build_dataset(
    symbols: Sequence[str],
    *,
    start: dt.date,
    end: dt.date,
    out: Path,
    sources: Sources,
    teacher: ChatTeacher,
    weeks: int = 3,
    now: dt.datetime,
    progress: Callable[[int, int], None] | None = None,
    seed: int = 0,
    answer_attempts: int = 2,
    give_up_after: int = 5,
) -> BuildSummary:
    """Write FinGPT-format training rows for `symbols` × the complete weeks starting in [start, end] to `out`.

    Each example: cutoff at the target week's Monday open, inputs from `gather(..., weeks=weeks, seed=seed)`, label
    the realized bin, answer by `teacher` told that label (see the module docstring). An answer that fails the
    checks of `finish_answer` is asked for again up to `answer_attempts` times in all. Data errors and teacher
    failures are recorded in failures.jsonl and the build goes on; bad credentials, an unknown model, or
    `give_up_after` examples in a row lost to an unavailable endpoint stop it (rows written so far are kept).
    `progress(done, total)` is called after every example, skipped ones included.
    """
    if now.tzinfo is None:
        raise ValueError("now must be timezone-aware")
    if answer_attempts < 1:
        raise ValueError(f"answer_attempts must be at least 1, got {answer_attempts}")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    summary = BuildSummary(out=out)
    request = {
        "symbols": list(symbols), "start": start.isoformat(), "end": end.isoformat(), "weeks": weeks, "seed": seed,
        "now": now.isoformat(), "template_id": TEMPLATE_ID, "wording": "stock",
    }
    _check_same_build(out / MANIFEST_FILE, request)
    done = read_done_keys(out / ROWS_FILE)
    retries_before = getattr(teacher, "retries", 0)

    def manifest() -> dict:
        summary.request_retries = getattr(teacher, "retries", 0) - retries_before
        summary.rows_total = len(done)
        counts = {k: v for k, v in asdict(summary).items() if k not in ("out", "status", "failed_symbols")}
        return {
            **request,
            "teacher": {"model": teacher.model, "base_url": teacher.base_url,
                        "temperature": getattr(teacher, "temperature", None)},
            "teacher_system_prompt": TEACHER_SYSTEM_PROMPT,
            "hindsight": "The teacher was told each week's realized move and asked to justify it (FinGPT's method): "
                         "answers are rationalizations, so scores against them measure style, not skill.",
            "status": summary.status, "counts": counts, "failed_symbols": summary.failed_symbols,
            "files": {"rows": ROWS_FILE, "failures": FAILURES_FILE},
        }

    _write_json_atomic(out / MANIFEST_FILE, manifest())
    with open(out / FAILURES_FILE, "wb") as failures, open(out / ROWS_FILE, "ab") as rows:

        def fail(symbol: str, period: str | None, stage: str, reason: str, attempts: int = 0) -> None:
            log.info("no row for %s %s: %s", symbol, period or "(all weeks)", reason)
            _append_line(failures, {
                "key": f"{symbol}|{period}" if period else None, "symbol": symbol, "period": period,
                "stage": stage, "reason": reason, "attempts": attempts,
                "at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            })
            summary.failed += 1

        try:
            examples, closes = _plan(symbols, start, end, weeks=weeks, sources=sources, now=now, summary=summary,
                                     fail=fail)
            prices = _PrefetchedPrices(f"{sources.prices.name} (prefetched)", closes)
            sources = Sources(news=sources.news, fundamentals=sources.fundamentals, prices=prices)
            summary.total = len(examples)
            unavailable_in_a_row = 0
            for index, example in enumerate(examples, 1):
                if example.key in done:
                    summary.skipped += 1
                else:
                    try:
                        row = _build_row(example, sources=sources, teacher=teacher, weeks=weeks, now=now, seed=seed,
                                         answer_attempts=answer_attempts, summary=summary)
                    except _ExampleFailed as exc:
                        fail(example.symbol, example.week.period, exc.stage, exc.reason, exc.attempts)
                        unavailable_in_a_row = unavailable_in_a_row + 1 if exc.unavailable else 0
                        if unavailable_in_a_row >= give_up_after:
                            raise TeacherUnavailable(
                                f"The teacher endpoint {teacher.base_url} failed {unavailable_in_a_row} examples "
                                f"in a row; stopping. Rerun the same command to resume: finished rows are kept."
                            ) from None
                    else:
                        _append_line(rows, row)
                        done.add(example.key)
                        summary.written += 1
                        unavailable_in_a_row = 0
                if progress is not None:
                    progress(index, len(examples))
            summary.status = "complete"
        except BaseException as exc:
            summary.status = f"aborted: {type(exc).__name__}"
            raise
        finally:
            _write_json_atomic(out / MANIFEST_FILE, manifest())
    return summary


def _check_same_build(path: Path, request: dict) -> None:
    """Refuse to add rows to a folder built with other prompt settings: the rows would silently mix."""
    if not path.exists():
        return
    try:
        previous = json.loads(path.read_text(encoding="utf-8"))
    except ValueError:
        return  # a manifest is rewritten whole at the end; the rows carry their own keys
    for name in ("weeks", "seed", "template_id", "wording"):
        if name in previous and previous[name] != request[name]:
            raise TeacherConfigError(
                f"{path.parent} holds rows built with {name}={previous[name]!r}, not {request[name]!r}; "
                "use another output folder, or the same settings to resume.")


def _plan(
    symbols: Sequence[str], start: dt.date, end: dt.date, *, weeks: int, sources: Sources, now: dt.datetime,
    summary: BuildSummary, fail: Callable[..., None],
) -> tuple[list[_Example], dict[str, list[DailyClose]]]:
    """Fetch each symbol's closes once for the whole range and list its complete target weeks with labels."""
    targets = target_weeks(start, end)
    if not targets:
        return [], {}
    first_day = targets[0].previous(weeks + 1).start  # what gather reads for the earliest target
    # A week past the last target, to see that a week ending in a holiday (Good Friday) is over.
    last_day = min(targets[-1].end + dt.timedelta(days=7), now.astimezone(NEW_YORK).date())
    examples: list[_Example] = []
    closes: dict[str, list[DailyClose]] = {}
    for symbol in symbols:
        try:
            series = sources.prices.daily_closes([symbol], first_day, last_day)[symbol]
        except DataError as exc:
            summary.failed_symbols[symbol] = str(exc)
            fail(symbol, None, "data", str(exc))
            continue
        closes[symbol] = series
        for week in targets:
            if not week_complete(series, week, now=now):
                continue
            try:
                examples.append(_Example(symbol, week, realized_label(series, week, symbol=symbol)))
            except DataError as exc:
                fail(symbol, week.period, "data", str(exc))
    return examples, closes


class _ExampleFailed(Exception):
    def __init__(self, stage: str, reason: str, attempts: int = 0, *, unavailable: bool = False) -> None:
        super().__init__(reason)
        self.stage, self.reason, self.attempts, self.unavailable = stage, reason, attempts, unavailable


def _build_row(
    example: _Example, *, sources: Sources, teacher: ChatTeacher, weeks: int, now: dt.datetime, seed: int,
    answer_attempts: int, summary: BuildSummary,
) -> dict:
    week, symbol = example.week, example.symbol
    # gather's cutoff is inclusive (news at or before it): one microsecond before the week's first session opens,
    # so "everything known before Monday 09:30" (Tuesday's, after a Monday holiday) and the target is this week.
    opens = week.opens
    if opens is None:
        raise _ExampleFailed("data", f"the exchange did not trade in the week {week.period}")
    try:
        inputs = gather([symbol], sources=sources, cutoff=opens - dt.timedelta(microseconds=1), now=now,
                        weeks=weeks, seed=seed)[symbol]
        if isinstance(inputs, DataError):
            raise inputs
        if inputs.target != week:
            raise EngineError(f"inputs were gathered for {inputs.target.period}, not {week.period}")
        user = build_user_prompt(inputs.parts)
        teacher_user = hindsight_prompt(inputs.parts, example.label)
    except EngineError as exc:
        raise _ExampleFailed("data", str(exc)) from None

    reason = ""
    for attempt in range(1, answer_attempts + 1):
        if attempt > 1:
            summary.retries += 1
        try:
            raw = teacher.complete(TEACHER_SYSTEM_PROMPT, teacher_user)
        except (TeacherAuthError, TeacherConfigError):
            raise
        except TeacherError as exc:
            raise _ExampleFailed("teacher", str(exc), attempt,
                                 unavailable=isinstance(exc, TeacherUnavailable)) from None
        answer, reason = finish_answer(raw, example.label)
        if reason is None:
            return {
                "key": example.key,
                "prompt": [{"role": "system", "content": SYSTEM_PROMPT}, {"role": "user", "content": user}],
                "completion": [{"role": "assistant", "content": answer}],
                "symbol": symbol,
                "period": week.period,
                "label": example.label,
                "cutoff": opens.isoformat(),
                "teacher_model": teacher.model,
            }
        log.info("%s: unusable teacher answer (attempt %d of %d): %s", example.key, attempt, answer_attempts, reason)
    raise _ExampleFailed("answer", reason, answer_attempts)
