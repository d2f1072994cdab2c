"""One retry loop for every client that talks to a server: Finnhub, Yahoo, the teacher endpoint and vLLM.

Why it exists: each of those clients used to carry its own hand-written exponential backoff, and they drifted apart
(one read Retry-After, one read Finnhub's reset header, the others neither; none capped its waits in total). This
module is the one loop, on tenacity, so that every client gets the same rules:

- the client decides what is worth another try: its attempt raises `Retryable` (a 429, a 5xx, a timeout, whatever
  that client retries today) and any other exception surfaces at once, untouched;
- the wait before retry n (0-based) is capped exponential backoff, `min(cap_s, base_s * 2**n)`, optionally jittered
  into `[step, 2 * step)`;
- a wait the server named (HTTP Retry-After, in seconds or as an HTTP date; OpenAI's retry-after-ms; Finnhub's
  `X-Ratelimit-Reset`) is honoured: as a floor under the backoff ("not before"), or in place of it where the client
  trusts the server's clock (`RetryPolicy.server_wait_replaces_backoff`);
- no single wait is longer than `max_wait_s`, and the waits together never pass `max_total_wait_s`: a retry whose
  wait would cross that budget is not made, the call gives up at once instead;
- when the tries or the budget run out, `RetriesExhausted` carries the last failure (and its cause), and the client
  turns it into the error its users read (engine.sources.notices and jobs.failures choose words by that type).

Waits go through an injectable `sleep` (tenacity's own hook) so tests need not sleep; a jitter source is injectable
too. This module imports none of the engine's parts: sources, generation and training all use it.
"""

from __future__ import annotations

import datetime as dt
import email.utils
import logging
import random
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

log = logging.getLogger(__name__)
T = TypeVar("T")


@dataclass(frozen=True)
class Backoff:
    """Capped exponential backoff: step n (0-based) waits `min(cap_s, base_s * 2**n)` seconds; with `jitter`, the
    step is spread over `[step, 2 * step)` (still capped) so that clients hit by one burst do not come back in step."""

    base_s: float = 1.0
    cap_s: float = 30.0
    jitter: bool = False

    def step(self, n: int, jitter: float = 0.0) -> float:
        """The wait for step `n`; `jitter` in [0, 1) is used only when the schedule is jittered."""
        spread = (1.0 + jitter) if self.jitter else 1.0
        return min(self.cap_s, self.base_s * 2**n * spread)


@dataclass(frozen=True)
class RetryPolicy:
    """How many tries and how long to wait. `attempts` counts the first try.

    `max_wait_s` caps any single wait (a server's Retry-After included); `max_total_wait_s` caps all the waits of
    one call together. `server_wait_replaces_backoff`: a wait the server named replaces the backoff step instead of
    being a floor under it (Finnhub's reset time is when the minute's budget is back; waiting longer buys nothing).
    """

    attempts: int
    backoff: Backoff = Backoff()
    max_wait_s: float = 60.0
    max_total_wait_s: float = 300.0
    server_wait_replaces_backoff: bool = False

    def __post_init__(self) -> None:
        if self.attempts < 1:
            raise ValueError(f"attempts must be at least 1, got {self.attempts}")


class Retryable(Exception):
    """Raised by an attempt for a failure worth another try. Raise it `from` the client's own exception.

    `reason`: a short description for logs and the final message ("HTTP 503", "timed out").
    `server_wait_s`: the wait the server named, if it named one (see `retry_after_s`, `rate_limit_reset_s`).
    `backoff`: a schedule of its own for this kind of failure (Finnhub's short jittered one for 429s); its step
    counts only the earlier failures that carried the same schedule. Without one, the policy's backoff steps on
    every retry of the call.
    """

    def __init__(self, reason: str, *, server_wait_s: float | None = None, backoff: Backoff | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.server_wait_s = server_wait_s
        self.backoff = backoff


class RetriesExhausted(Exception):
    """The tries (or the total wait budget) ran out. `last` is the last `Retryable`; `cause` its own cause (the
    client's exception); `attempts` how many tries were made; `waited_s` the seconds spent waiting between them."""

    def __init__(self, last: Retryable, attempts: int, waited_s: float, *, out_of_budget: bool) -> None:
        why = "the wait budget ran out" if out_of_budget else "no tries left"
        super().__init__(f"{last.reason} after {attempts} attempts ({why})")
        self.last = last
        self.cause: BaseException | None = last.__cause__
        self.attempts = attempts
        self.waited_s = waited_s
        self.out_of_budget = out_of_budget


@dataclass(frozen=True)
class RetryNote:
    """What `on_retry` is told before each wait: the failure, the 1-based number of the try that failed, the
    policy's attempts, and the wait about to be slept."""

    failure: Retryable
    attempt: int
    attempts: int
    wait_s: float


def call_with_retries(
    attempt: Callable[[], T],
    policy: RetryPolicy,
    *,
    sleep: Callable[[float], None] = time.sleep,
    jitter: Callable[[], float] = random.random,
    on_retry: Callable[[RetryNote], None] | None = None,
) -> T:
    """`attempt()` until it returns, retrying only `Retryable` under `policy`. Any other exception propagates at
    once. Raises `RetriesExhausted` (from the last failure's cause) when the tries or the wait budget run out.
    `on_retry` runs before each wait (log lines, counters, a note to the waiting user)."""
    earlier: list[Backoff] = []  # the schedule each earlier failure stepped on

    def wait(state: tenacity.RetryCallState) -> float:
        failure = _failure(state)
        schedule = failure.backoff or policy.backoff
        n = sum(1 for s in earlier if s == schedule) if failure.backoff is not None else state.attempt_number - 1
        earlier.append(schedule)
        step = schedule.step(n, jitter() if schedule.jitter else 0.0)
        told = failure.server_wait_s
        if told is not None and told > 0:
            step = told if policy.server_wait_replaces_backoff else max(step, told)
        return max(0.0, min(policy.max_wait_s, step))

    def stop(state: tenacity.RetryCallState) -> bool:
        return state.attempt_number >= policy.attempts or _over_budget(state)

    def _over_budget(state: tenacity.RetryCallState) -> bool:
        return state.idle_for + state.upcoming_sleep > policy.max_total_wait_s + 1e-9

    def before_sleep(state: tenacity.RetryCallState) -> None:
        if on_retry is not None:
            on_retry(RetryNote(_failure(state), state.attempt_number, policy.attempts, state.upcoming_sleep))

    def give_up(state: tenacity.RetryCallState) -> Any:
        failure = _failure(state)
        out_of_budget = state.attempt_number < policy.attempts
        raise RetriesExhausted(failure, state.attempt_number, state.idle_for,
                               out_of_budget=out_of_budget) from failure.__cause__

    retrying = tenacity.Retrying(
        retry=tenacity.retry_if_exception_type(Retryable),
        wait=wait,
        stop=stop,
        sleep=sleep,
        before_sleep=before_sleep,
        retry_error_callback=give_up,
    )
    return retrying(attempt)


def _failure(state: tenacity.RetryCallState) -> Retryable:
    exc = state.outcome.exception() if state.outcome is not None else None
    assert isinstance(exc, Retryable), exc
    return exc


# -- what the server said -------------------------------------------------------------------------------------------


def header(headers: Mapping[str, str] | None, name: str) -> str | None:
    """`name` from `headers`, case-insensitively (requests' and httpx's headers are; a plain dict is not)."""
    if not headers:
        return None
    value = headers.get(name)
    if value is not None:
        return value
    lowered = name.lower()
    return next((v for k, v in headers.items() if k.lower() == lowered), None)


def retry_after_s(headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time) -> float | None:
    """The wait the server asked for, in seconds: OpenAI's `retry-after-ms`, else HTTP `Retry-After` as seconds or
    as an HTTP date (RFC 9110; a date already past is 0). None when neither header is there or readable."""
    millis = _number(header(headers, "retry-after-ms"))
    if millis is not None and millis >= 0:
        return millis / 1000.0
    value = header(headers, "retry-after")
    if value is None:
        return None
    seconds = _number(value)
    if seconds is not None:
        return seconds if seconds >= 0 else None
    try:
        when = email.utils.parsedate_to_datetime(value.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # RFC 9110 dates are GMT
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, when.timestamp() - now())


def rate_limit_reset_s(
    headers: Mapping[str, str] | None, *, now: Callable[[], float] = time.time, margin_s: float = 0.5
) -> float | None:
    """Seconds until `X-Ratelimit-Reset` (epoch seconds, as Finnhub sends it) plus `margin_s`, when the headers say
    the window's calls are spent (`X-Ratelimit-Remaining` 0 or absent). None when they do not say so, or when the
    reset is already past: then something else refused us (Finnhub's 30 calls/s cap, an endpoint's weight)."""
    reset = _number(header(headers, "X-Ratelimit-Reset"))
    remaining = _number(header(headers, "X-Ratelimit-Remaining"))
    if reset is None or (remaining is not None and remaining > 0):
        return None
    # The header is whole epoch seconds and our clock is not the server's: a little margin past it.
    wait = reset - now() + margin_s
    return wait if wait > margin_s else None


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None
