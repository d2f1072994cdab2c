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
  by upstream's exact `re.sub`, which inserts `Prediction: {Label}` and `Analysis:`. An answer that does not parse
  is asked for again and, if still bad, recorded in `failures.jsonl`; it never becomes a row, and no row is ever
  written with an empty answer (upstream's "silent empty answers").

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
import re
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

from engine.exceptions import DataError, EngineError, NoPriceData
from engine.inputs import Sources, gather
from engine.market.weeks import NEW_YORK, Week, close_time, move_bin, week_close, weekly_return
from engine.parsing import parse_answer, upstream_parse
from engine.prompts import PROMPT_END, SYSTEM_PROMPT, TEMPLATE_ID, PromptParts, build_user_prompt
from engine.records import DailyClose

log = logging.getLogger(__name__)

# ---- Upstream's teacher-side strings (exact) -------------------------------------------------------------------

# The system prompt upstream sent to GPT-4. It asks for "[Prediction & Analysis]:" followed by free text; the
# training-side SYSTEM_PROMPT is this string after upstream's `.replace(':\n...', '\nPrediction: ...\nAnalysis: ...')`,
# and the answer rewrite below then supplies the Prediction/Analysis lines. Sending the training prompt instead
# makes teachers write their own "Prediction:" line, which the rewrite would then duplicate.
TEACHER_SYSTEM_PROMPT = "You are a seasoned stock market analyst. Your task is to list the positive developments and potential concerns for companies based on relevant news and basic financials from the past weeks, then provide an analysis and prediction for the companies' stock price movement for the upcoming week. Your answer format should be as follows:\n\n[Positive Developments]:\n1. ...\n\n[Potential Concerns]:\n1. ...\n\n[Prediction & Analysis]:\n...\n"  # noqa: E501
assert TEACHER_SYSTEM_PROMPT.replace(":\n...", "\nPrediction: ...\nAnalysis: ...") == SYSTEM_PROMPT

# Upstream's closing instruction for the teacher (FinGPT_Forecaster/data.py), word for word, "need to" included.
# `prediction` is the lower-case label, e.g. "up by 2-3%".
HINDSIGHT_END = "\n\nBased on all the information before {start}, let's first analyze the positive developments and potential concerns for {symbol}. Come up with 2-4 most important factors respectively and keep them concise. Most factors should be inferred from company related news. Then let's assume your prediction for next week ({start} to {end}) is {prediction}. Provide a summary analysis to support your prediction. The prediction result need to be inferred from your analysis at the end, and thus not appearing as a foundational factor of your analysis."  # noqa: E501

_PNA_HEADER = re.compile(r"\[Prediction & Analysis\]:\s*")  # upstream's pattern, exactly
_OWN_PREDICTION_LINE = re.compile(r"^\W*prediction\s*:", re.IGNORECASE | re.MULTILINE)

ROWS_FILE = "rows.jsonl"
FAILURES_FILE = "failures.jsonl"
MANIFEST_FILE = "manifest.json"

# ---- Errors and messages ---------------------------------------------------------------------------------------


class TeacherError(EngineError):
    """The teacher model could not give an answer."""


class TeacherAuthError(TeacherError):
    """The endpoint rejected the key (401/403) or its quota is gone. Fatal: every request would fail alike."""


class TeacherConfigError(TeacherError):
    """The teacher or the output folder is set up wrong (no key, unknown model or URL, mismatched folder). Fatal."""


class TeacherUnavailable(TeacherError):
    """429/5xx/timeouts/connection errors outlasted the bounded retries."""


class TeacherRequestError(TeacherError):
    """The endpoint refused this one request (another 4xx, e.g. a prompt over its context length)."""


_AUTH_MESSAGE = (
    "The teacher endpoint {url} rejected TEACHER_API_KEY (HTTP {status}). Check that the key is valid for this "
    "endpoint and for model '{model}'; retrying will not help."
)
_QUOTA_MESSAGE = (
    "The account behind TEACHER_API_KEY has no quota left at {url} (HTTP 429 insufficient_quota). Add credit or "
    "use another key; retrying will not help."
)
_NOT_FOUND_MESSAGE = (
    "The teacher endpoint {url} answered HTTP 404 for model '{model}'. Check TEACHER_BASE_URL (it should end in "
    "/v1 for most servers) and TEACHER_MODEL."
)
_NO_KEY_MESSAGE = "TEACHER_API_KEY is empty. Set it (a local server that ignores keys still needs a placeholder)."


# ---- The teacher -----------------------------------------------------------------------------------------------


class ChatTeacher(Protocol):
    """What `build_dataset` needs from a teacher. `Teacher` is the real one; tests may wrap it."""

    model: str
    base_url: str

    def complete(self, system: str, user: str) -> str: ...


class Teacher:
    """A chat model behind an OpenAI-compatible endpoint (OpenAI, vLLM, llama.cpp, ...), with our own retries.

    The official client's retries are off (`max_retries=0`) so that every retry is ours: bounded, with capped
    exponential backoff (or the server's Retry-After, capped), counted in `retries`, and with an injectable
    `sleep` for tests. The API key lives only inside the client: no message, log line or repr contains it.
    """

    def __init__(
        self,
        *,
        base_url: str,
        model: str,
        api_key: str,
        temperature: float = 0.7,
        max_tokens: int | None = None,
        timeout_s: float = 120.0,
        attempts: int = 5,
        base_delay_s: float = 2.0,
        max_delay_s: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        """`attempts` counts the first try; a retry waits min(max_delay_s, base_delay_s * 2**n) seconds."""
        if not api_key or not api_key.strip():
            raise TeacherConfigError(_NO_KEY_MESSAGE)
        if attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {attempts}")
        import openai  # the `model` extra; importing engine.teacher alone must not need it

        self._openai = openai
        self.base_url = base_url
        self.model = model
        self.temperature = temperature
        self.max_tokens = max_tokens
        self.attempts = attempts
        self.base_delay_s = base_delay_s
        self.max_delay_s = max_delay_s
        self.retries = 0  # transport-level retries so far, for the manifest
        self._sleep = sleep
        self._client = openai.OpenAI(base_url=base_url, api_key=api_key, timeout=timeout_s, max_retries=0)

    def __repr__(self) -> str:
        return f"Teacher(model={self.model!r}, base_url={self.base_url!r})"

    def complete(self, system: str, user: str) -> str:
        """The assistant's text for one system + user exchange ("" when the endpoint returns no content).

        Raises TeacherAuthError / TeacherConfigError (fatal), TeacherRequestError (this request only) or
        TeacherUnavailable (transient errors after `attempts` tries).
        """
        openai = self._openai
        extra: dict[str, Any] = {} if self.max_tokens is None else {"max_tokens": self.max_tokens}
        for attempt in range(1, self.attempts + 1):
            try:
                response = self._client.chat.completions.create(
                    model=self.model,
                    messages=[{"role": "system", "content": system}, {"role": "user", "content": user}],
                    temperature=self.temperature,
                    **extra,
                )
            except openai.APIStatusError as exc:
                status = exc.status_code
                # `from None`: the client's exception quotes the server's body, which may echo the key.
                if status in (401, 403):
                    raise TeacherAuthError(
                        _AUTH_MESSAGE.format(url=self.base_url, status=status, model=self.model)) from None
                if status == 429 and exc.code == "insufficient_quota":
                    raise TeacherAuthError(_QUOTA_MESSAGE.format(url=self.base_url)) from None
                if status == 404:
                    raise TeacherConfigError(_NOT_FOUND_MESSAGE.format(url=self.base_url, model=self.model)) from None
                if status != 429 and status < 500:
                    raise TeacherRequestError(
                        f"The teacher endpoint refused the request (HTTP {status}{_error_code(exc)})") from None
                what, retry_after = f"HTTP {status}", _retry_after_s(exc)
            except openai.APITimeoutError:
                what, retry_after = "timed out", None
            except openai.APIConnectionError:
                what, retry_after = "connection failed", None
            else:
                return _content(response)
            if attempt == self.attempts:
                raise TeacherUnavailable(
                    f"The teacher endpoint {self.base_url} kept failing ({what}) after {self.attempts} attempts"
                ) from None
            delay = min(self.max_delay_s, self.base_delay_s * 2 ** (attempt - 1))
            if retry_after is not None:
                delay = min(self.max_delay_s, max(delay, retry_after))
            log.warning("teacher %s: %s; retry %d of %d in %.1fs", self.base_url, what, attempt,
                        self.attempts - 1, delay)
            self.retries += 1
            self._sleep(delay)
        raise AssertionError("unreachable")


def _content(response: Any) -> str:
    choices = getattr(response, "choices", None) or []
    return (choices[0].message.content or "") if choices else ""


def _error_code(exc: Any) -> str:
    return f", {exc.code}" if getattr(exc, "code", None) else ""


def _retry_after_s(exc: Any) -> float | None:
    try:
        value = float(exc.response.headers.get("retry-after", ""))
    except (AttributeError, TypeError, ValueError):
        return None
    return value if value >= 0 else None


# ---- Prompts and answers ---------------------------------------------------------------------------------------


def hindsight_prompt(parts: PromptParts, label: str) -> str:
    """The user prompt the teacher sees: ours, with the closing instruction swapped for upstream's "let's assume
    your prediction ... is {label}" version. Raises EngineError if the prompt does not end as expected."""
    normal = build_user_prompt(parts)
    ending = PROMPT_END.replace("cryptocurrency", parts.wording).format(
        start=parts.target_start, end=parts.target_end, symbol=parts.symbol)
    if not normal.endswith(ending):
        raise EngineError(f"The {parts.symbol} prompt does not end with the standard closing instruction; "
                          "engine.prompts changed and HINDSIGHT_END must follow it.")
    return normal[: -len(ending)] + HINDSIGHT_END.format(
        start=parts.target_start, end=parts.target_end, symbol=parts.symbol, prediction=label)


def finish_answer(raw: str, label: str) -> tuple[str, str | None]:
    """Upstream's rewrite of a teacher answer, then our checks. Returns (answer, None) when it is fit for training,
    or (answer, reason) when it is not. `label` is lower case ("up by 2-3%")."""
    if not raw.strip():
        return raw, "the teacher returned an empty answer"
    # Exactly upstream's re.sub (all occurrences); subn only to count them.
    answer, headers = _PNA_HEADER.subn(
        f"[Prediction & Analysis]:\nPrediction: {label.capitalize()}\nAnalysis: ", raw)
    if headers != 1:
        return answer, f"the answer has {headers} '[Prediction & Analysis]:' headers, expected exactly one"
    forecast = parse_answer(answer)
    if not forecast.parsed:
        return answer, "the answer does not parse: " + "; ".join(forecast.problems)
    if upstream_parse(answer) is None:
        return answer, "upstream's parser drops the answer (it must start with '[Positive Developments]:')"
    if forecast.move_bin is None or forecast.move_bin.label != label:
        return answer, f"the prediction reads {forecast.prediction!r}, expected {label.capitalize()!r}"
    if _OWN_PREDICTION_LINE.search(forecast.analysis):
        return answer, "the teacher wrote its own 'Prediction:' line, which the rewrite duplicated"
    if not forecast.analysis.strip():
        return answer, "the answer has no analysis after the prediction"
    return answer, None


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
    # gather's cutoff is inclusive (news at or before it): one microsecond before the open, so "everything known
    # before Monday 09:30" and the target is this week, not the next.
    try:
        inputs = gather([symbol], sources=sources, cutoff=week.monday_open - dt.timedelta(microseconds=1), now=now,
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
                "cutoff": week.monday_open.isoformat(),
                "teacher_model": teacher.model,
            }
        log.info("%s: unusable teacher answer (attempt %d of %d): %s", example.key, attempt, answer_attempts, reason)
    raise _ExampleFailed("answer", reason, answer_attempts)
