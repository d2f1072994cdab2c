"""engine.retry, the one retry loop of the Finnhub, Yahoo, teacher and vLLM clients: what is retried, how long each
wait is (backoff, Retry-After, Finnhub's reset), the caps on one wait and on all of them, and what surfaces.

Waits go through an injected `sleep` that only records them; the clock that server dates are read against is
injected where a test needs an exact number. Two tests at the end go through real clients and loopback servers."""

from __future__ import annotations

import email.utils
import time

import pytest

from engine.retry import (
    Backoff,
    RetriesExhausted,
    Retryable,
    RetryNote,
    RetryPolicy,
    call_with_retries,
    rate_limit_reset_s,
    retry_after_s,
)
from engine.sources.finnhub import FinnhubSource, build_client
from engine.sources.finnhub import RetryPolicy as FinnhubPolicy
from engine.sources.ratelimit import LocalRateLimiter, finnhub_limits
from engine.training.teacher_client import Teacher
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.openai_server import FakeOpenAI

NOW = 1_700_000_000.0


class Flaky:
    """Fails with the given exceptions in turn, then answers "ok"; counts its calls."""

    def __init__(self, *failures: BaseException) -> None:
        self.failures = list(failures)
        self.calls = 0

    def __call__(self) -> str:
        self.calls += 1
        if self.failures:
            raise self.failures.pop(0)
        return "ok"


def transient(reason: str = "HTTP 503", **kwargs) -> Retryable:
    return Retryable(reason, **kwargs)


def run(attempt, policy: RetryPolicy, **kwargs) -> tuple[object, list[float]]:
    sleeps: list[float] = []
    return call_with_retries(attempt, policy, sleep=sleeps.append, **kwargs), sleeps


# -- the backoff --------------------------------------------------------------------------------------------------


def test_backoff_doubles_from_its_base_and_stops_at_its_cap():
    backoff = Backoff(base_s=1.0, cap_s=5.0)
    assert [backoff.step(n) for n in range(5)] == [1.0, 2.0, 4.0, 5.0, 5.0]
    assert backoff.step(1, jitter=0.9) == 2.0  # not a jittered schedule: the jitter is ignored


def test_a_jittered_backoff_lies_between_the_step_and_twice_the_step_still_capped():
    backoff = Backoff(base_s=1.0, cap_s=8.0, jitter=True)
    assert backoff.step(0, 0.0) == 1.0 and backoff.step(0, 0.999) < 2.0
    assert backoff.step(1, 0.5) == 3.0 and backoff.step(10, 0.9) == 8.0


def test_transient_failures_are_retried_on_the_capped_exponential_schedule():
    flaky = Flaky(transient(), transient(), transient())
    result, sleeps = run(flaky, RetryPolicy(attempts=5, backoff=Backoff(1.0, 3.0)))
    assert result == "ok" and flaky.calls == 4
    assert sleeps == [1.0, 2.0, 3.0]


def test_a_jittered_policy_takes_its_jitter_from_the_injected_source():
    flaky = Flaky(transient(), transient())
    _, sleeps = run(flaky, RetryPolicy(attempts=3, backoff=Backoff(1.0, 8.0, jitter=True)), jitter=lambda: 0.5)
    assert sleeps == [1.5, 3.0]


# -- what surfaces ------------------------------------------------------------------------------------------------


def test_a_non_retryable_error_surfaces_at_once_untouched():
    refused = PermissionError("HTTP 403: check the key")
    flaky = Flaky(transient(), refused, transient())
    notes: list[RetryNote] = []
    sleeps: list[float] = []
    with pytest.raises(PermissionError) as caught:
        call_with_retries(flaky, RetryPolicy(attempts=5), sleep=sleeps.append, on_retry=notes.append)
    assert caught.value is refused
    assert flaky.calls == 2 and sleeps == [1.0] and len(notes) == 1  # the 403 was not retried


def test_when_the_tries_run_out_the_last_failure_and_its_cause_surface():
    def attempt() -> None:
        try:
            raise ConnectionError("refused by 127.0.0.1:9")
        except ConnectionError as exc:
            raise Retryable("connection failed") from exc

    with pytest.raises(RetriesExhausted) as caught:
        run(attempt, RetryPolicy(attempts=3))
    gave_up = caught.value
    assert (gave_up.attempts, gave_up.last.reason, gave_up.out_of_budget) == (3, "connection failed", False)
    assert isinstance(gave_up.cause, ConnectionError) and gave_up.__cause__ is gave_up.cause
    assert gave_up.waited_s == 3.0  # 1 + 2


def test_one_attempt_means_no_retry():
    flaky = Flaky(transient())
    with pytest.raises(RetriesExhausted) as caught:
        run(flaky, RetryPolicy(attempts=1))
    assert flaky.calls == 1 and caught.value.attempts == 1


def test_attempts_below_one_are_refused():
    with pytest.raises(ValueError, match="at least 1"):
        RetryPolicy(attempts=0)


def test_on_retry_hears_each_failure_its_number_and_the_wait_before_it_is_slept():
    flaky = Flaky(transient("HTTP 502"), transient("timed out"))
    notes: list[RetryNote] = []
    run(flaky, RetryPolicy(attempts=4, backoff=Backoff(1.0, 30.0)), on_retry=notes.append)
    assert [(n.failure.reason, n.attempt, n.attempts, n.wait_s) for n in notes] == [
        ("HTTP 502", 1, 4, 1.0), ("timed out", 2, 4, 2.0)]


# -- waits the server named ---------------------------------------------------------------------------------------


def test_a_servers_retry_after_is_a_floor_under_the_backoff_and_capped():
    flaky = Flaky(transient(server_wait_s=7.0), transient(server_wait_s=0.5), transient(server_wait_s=600.0))
    _, sleeps = run(flaky, RetryPolicy(attempts=4, backoff=Backoff(1.0, 30.0), max_wait_s=30.0))
    # 7 s asked > 1 s backoff; 0.5 s asked < 2 s backoff; 600 s asked, capped at max_wait_s.
    assert sleeps == [7.0, 2.0, 30.0]


def test_a_trusted_server_wait_replaces_the_backoff():
    flaky = Flaky(transient(server_wait_s=0.7), transient(), transient(server_wait_s=500.0))
    policy = RetryPolicy(attempts=4, backoff=Backoff(4.0, 30.0), max_wait_s=120.0, server_wait_replaces_backoff=True)
    _, sleeps = run(flaky, policy)
    assert sleeps == [0.7, 8.0, 120.0]


def test_a_server_wait_of_zero_leaves_the_backoff():
    _, sleeps = run(Flaky(transient(server_wait_s=0.0)),
                    RetryPolicy(attempts=2, backoff=Backoff(3.0, 30.0), server_wait_replaces_backoff=True))
    assert sleeps == [3.0]


def test_a_failures_own_schedule_steps_only_on_failures_of_its_kind():
    # Finnhub's shape: 5xx step on every try of the call, 429s on a short schedule of their own.
    rate = Backoff(1.0, 8.0)
    flaky = Flaky(transient("HTTP 429", backoff=rate), transient("HTTP 502"), transient("HTTP 429", backoff=rate))
    _, sleeps = run(flaky, RetryPolicy(attempts=4, backoff=Backoff(1.0, 30.0)))
    assert sleeps == [1.0, 2.0, 2.0]  # 429 step 0; 502 on try 2 (step 1); 429 step 1


# -- the cap on all the waits -------------------------------------------------------------------------------------


def test_a_retry_whose_wait_would_pass_the_total_budget_is_not_made():
    flaky = Flaky(*(transient(server_wait_s=10.0) for _ in range(5)))
    with pytest.raises(RetriesExhausted) as caught:
        run(flaky, RetryPolicy(attempts=6, max_wait_s=60.0, max_total_wait_s=25.0))
    gave_up = caught.value
    assert flaky.calls == 3 and gave_up.attempts == 3 and gave_up.out_of_budget
    assert gave_up.waited_s == 20.0  # 10 + 10; a third 10 s wait would pass 25 s


def test_waits_that_fit_the_total_budget_exactly_are_made():
    flaky = Flaky(transient(server_wait_s=10.0), transient(server_wait_s=15.0))
    result, sleeps = run(flaky, RetryPolicy(attempts=3, max_wait_s=60.0, max_total_wait_s=25.0))
    assert result == "ok" and sleeps == [10.0, 15.0]


# -- reading the headers ------------------------------------------------------------------------------------------


def http_date(epoch: float) -> str:
    return email.utils.formatdate(epoch, usegmt=True)


@pytest.mark.parametrize(("headers", "expected"), [
    ({"Retry-After": "7"}, 7.0),
    ({"retry-after": "2.5"}, 2.5),
    ({"RETRY-AFTER": "0"}, 0.0),
    ({"Retry-After": http_date(NOW + 30)}, 30.0),
    ({"Retry-After": http_date(NOW - 30)}, 0.0),  # a date already past: no wait
    ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),  # OpenAI's finer header first
    ({"Retry-After": "-3"}, None),
    ({"Retry-After": "soon"}, None),
    ({}, None),
    (None, None),
], ids=["seconds", "fraction", "zero", "http-date", "past-date", "milliseconds", "negative", "garbage", "absent",
        "no-headers"])
def test_retry_after_is_read_as_seconds_or_as_an_http_date(headers, expected):
    assert retry_after_s(headers, now=lambda: NOW) == expected


@pytest.mark.parametrize(("headers", "expected"), [
    ({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(NOW) + 7)}, 7.5),
    ({"x-ratelimit-reset": str(int(NOW) + 7)}, 7.5),  # no Remaining: the reset is believed
    ({"X-Ratelimit-Remaining": "12", "X-Ratelimit-Reset": str(int(NOW) + 50)}, None),  # calls left: not the minute
    ({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": str(int(NOW) - 5)}, None),  # already past
    ({"X-Ratelimit-Remaining": "0"}, None),
    ({"X-Ratelimit-Remaining": "0", "X-Ratelimit-Reset": "later"}, None),
], ids=["spent", "no-remaining", "calls-left", "past", "no-reset", "garbage"])
def test_the_rate_limit_reset_header_is_a_wait_only_when_the_windows_calls_are_spent(headers, expected):
    assert rate_limit_reset_s(headers, now=lambda: NOW, margin_s=0.5) == expected


# -- through real clients and loopback servers --------------------------------------------------------------------


def test_the_teacher_waits_out_a_retry_after_given_as_an_http_date():
    sleeps: list[float] = []
    with FakeOpenAI() as fake:
        fake.fail_next(429, headers={"Retry-After": http_date(time.time() + 20)})
        teacher = Teacher(base_url=fake.base_url, model="teacher-model", api_key="sk-test-key", sleep=sleeps.append,
                          attempts=3, base_delay_s=1.0, max_delay_s=60.0)
        assert teacher.complete("sys", "hello")
    assert len(sleeps) == 1 and 18.0 <= sleeps[0] <= 20.0 and teacher.retries == 1


def test_finnhub_honours_a_retry_after_when_it_sends_no_reset_time():
    sleeps: list[float] = []
    with FakeFinnhub() as fake:
        fake.add_profile("AXP")
        fake.fail_next("profile2", 429, headers={"X-Ratelimit-Remaining": "5", "Retry-After": "4"})
        source = FinnhubSource(build_client("test-key-5f3a9c", api_url=fake.api_url),
                               limiter=LocalRateLimiter(limits=finnhub_limits(60, 30)), policy=FinnhubPolicy(),
                               sleep=sleeps.append, jitter=lambda: 0.0)
        assert source.profile("AXP").ticker == "AXP"
    assert sleeps == [4.0]  # without Retry-After: the 1 s short backoff
