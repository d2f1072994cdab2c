"""The real finnhub.Client against a fake Finnhub on 127.0.0.1, through our adapter, limiter and cache."""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import re
import time

import pytest

from engine.data.inputs import Sources, gather
from engine.exceptions import DataError, SourceAuthError, SourceUnavailable, UnknownTicker
from engine.market.weeks import NEW_YORK
from engine.sources.finnhub import FinnhubSource, RetryPolicy, build_client, pivot_quarterly
from engine.sources.notices import notices_to
from engine.sources.ratelimit import LocalRateLimiter, finnhub_limits
from tests.fakes.finnhub import FakeFinnhub
from tests.fakes.sources import MemorySources, weekday_closes

KEY = "test-key-5f3a9c"


def ny(*args: int) -> dt.datetime:
    return dt.datetime(*args, tzinfo=NEW_YORK)


class Sleeps(list):
    def __call__(self, seconds: float) -> None:
        self.append(seconds)


@pytest.fixture
def fake():
    with FakeFinnhub() as server:
        yield server


def make_source(fake: FakeFinnhub, *, sleeps: Sleeps | None = None, timeout_s: float = 5.0,
                jitter=random.random, **policy: float) -> FinnhubSource:
    client = build_client(KEY, api_url=fake.api_url, timeout_s=timeout_s)
    limiter = LocalRateLimiter(limits=finnhub_limits(60, 30))
    sleep = sleeps if sleeps is not None else Sleeps()
    return FinnhubSource(client, limiter=limiter, policy=RetryPolicy(**policy), sleep=sleep, clock=time.time,
                         jitter=jitter)


def test_news_are_mapped_sorted_and_kept_to_the_exact_window(fake):
    fake.add_news(
        "AXP",
        {"headline": "Before the window", "published": ny(2024, 3, 1, 15, 59)},
        {"headline": "Friday after the close", "published": ny(2024, 3, 1, 19, 30)},  # a Saturday in UTC
        {"headline": "Monday morning", "published": ny(2024, 3, 4, 8, 0), "summary": "  Synthetic text.  "},
        {"headline": "Promotion", "published": ny(2024, 3, 5, 9, 0),
         "summary": "Looking for stock market analysis and research with proves results? Zacks.com offers"},
        {"headline": "After the window", "published": ny(2024, 3, 8, 16, 1)},
    )
    items = make_source(fake).company_news("AXP", ny(2024, 3, 1, 16, 0, 1), ny(2024, 3, 8, 16, 0))

    assert [i.headline for i in items] == ["Friday after the close", "Monday morning"]
    assert items[1].summary == "Synthetic text."
    assert items[0].published == ny(2024, 3, 1, 19, 30)
    # Queried a day wider than the window on each side, in New York dates.
    call = fake.calls[-1]
    assert (call.params["from"], call.params["to"]) == ("2024-02-29", "2024-03-09")
    assert call.params["token"] == KEY


def test_weekend_news_lands_in_exactly_one_of_two_adjacent_weeks(fake):
    fake.add_news("AXP", {"headline": "Sunday item", "published": ny(2024, 3, 3, 12, 0)})
    source = make_source(fake)
    first = source.company_news("AXP", ny(2024, 2, 23, 16, 0, 1), ny(2024, 3, 1, 16, 0))
    second = source.company_news("AXP", ny(2024, 3, 1, 16, 0, 1), ny(2024, 3, 8, 16, 0))
    assert [i.headline for i in first + second] == ["Sunday item"]


def test_empty_news_is_an_empty_list_not_an_error(fake):
    assert make_source(fake).company_news("AXP", ny(2024, 3, 1), ny(2024, 3, 8)) == []


def test_429_waits_until_the_reset_header_then_succeeds(fake):
    fake.add_news("AXP", {"headline": "Hello", "published": ny(2024, 3, 4, 10, 0)})
    fake.fail_next("company-news", 429, headers={"X-RateLimit-Reset": str(int(time.time()) + 7)},
                   message="API limit reached. Please try again later.")
    sleeps = Sleeps()
    items = make_source(fake, sleeps=sleeps).company_news("AXP", ny(2024, 3, 1), ny(2024, 3, 8))

    assert [i.headline for i in items] == ["Hello"]
    assert fake.count("company-news") == 2
    assert len(sleeps) == 1 and 5 <= sleeps[0] <= 7.5


def test_429_without_headers_backs_off_briefly_growing_and_capped(fake):
    fake.add_profile("AXP")
    fake.fail_next("profile2", 429, times=3)
    sleeps = Sleeps()
    # Jitter 0.5: the middle of each step's [step, 2 * step) range.
    source = make_source(fake, sleeps=sleeps, jitter=lambda: 0.5, rate_limit_base_s=1.0, rate_limit_cap_s=3.0)
    assert source.profile("AXP").ticker == "AXP"
    assert sleeps == [1.5, 3.0, 3.0]


def test_jitter_spreads_the_backoff_between_one_and_two_steps():
    policy = RetryPolicy()
    assert policy.rate_limit_backoff(0, 0.0) == 1.0 and policy.rate_limit_backoff(0, 0.999) < 2.0
    assert policy.rate_limit_backoff(1, 0.0) == 2.0 and policy.rate_limit_backoff(10, 0.9) == policy.rate_limit_cap_s


def test_429_with_calls_remaining_is_the_per_second_cap_so_the_wait_is_short(fake):
    # Calls remain in the minute: the 30 calls/s cap (or an endpoint's weight) refused us, not the minute's budget.
    fake.add_profile("AXP")
    fake.fail_next("profile2", 429, headers={"X-Ratelimit-Remaining": "12",
                                             "X-Ratelimit-Reset": str(int(time.time()) + 50)})
    sleeps = Sleeps()
    make_source(fake, sleeps=sleeps).profile("AXP")
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] < 2.0


def test_429_whose_reset_is_already_past_backs_off_briefly(fake):
    fake.add_profile("AXP")
    fake.fail_next("profile2", 429, headers={"X-Ratelimit-Remaining": "0",
                                             "X-Ratelimit-Reset": str(int(time.time()) - 5)})
    sleeps = Sleeps()
    make_source(fake, sleeps=sleeps).profile("AXP")
    assert len(sleeps) == 1 and 1.0 <= sleeps[0] < 2.0


class RealSleeps(Sleeps):
    """Sleeps for real and remembers how long each wait was asked to be."""

    def __call__(self, seconds: float) -> None:
        super().__call__(seconds)
        time.sleep(seconds)


def test_a_429_without_headers_costs_seconds_not_a_minute_in_real_time(fake):
    fake.add_profile("AXP")
    fake.fail_next("profile2", 429)
    source = make_source(fake, sleeps=RealSleeps())
    started = time.monotonic()
    assert source.profile("AXP").ticker == "AXP"
    elapsed = time.monotonic() - started
    print(f"one 429 without rate-limit headers cost {elapsed:.2f} s")
    assert 1.0 <= elapsed < 5.0


def test_the_wait_follows_finnhubs_reset_header_in_real_time():
    # A 2-call budget over a 3 s window: the third call is refused with Remaining 0 and the window's reset time.
    with FakeFinnhub(per_minute_limit=2, window_s=3.0) as fake:
        fake.add_profile("AXP")
        sleeps = RealSleeps()
        source = make_source(fake, sleeps=sleeps)
        source.profile("AXP")
        source.profile("AXP")
        started = time.time()
        assert source.profile("AXP").ticker == "AXP"
        elapsed = time.time() - started
        refused = [c for c in fake.calls if c.status == 429]
        reset = math.ceil(fake.calls[0].epoch + 3.0)
    print(f"waited {elapsed:.2f} s for a reset {reset - started:.2f} s away")
    assert [c.status for c in fake.calls] == [200, 200, 429, 200] and len(refused) == 1
    assert len(sleeps) == 1
    assert reset - started - 0.1 <= elapsed <= reset - started + 1.5  # the header's time, plus the small margin


def test_the_rate_limit_note_reaches_whoever_waits_on_the_forecast(fake):
    fake.add_profile("AXP")
    fake.fail_next("profile2", 429)
    finnhub = make_source(fake, sleeps=RealSleeps())
    prices = MemorySources()
    prices.closes["AXP"] = weekday_closes(dt.date(2024, 2, 1), dt.date(2024, 3, 8))
    notes: list[str] = []
    at = ny(2024, 3, 8, 17, 0)
    gathered = gather(["AXP"], sources=Sources(news=finnhub, fundamentals=finnhub, prices=prices), cutoff=at,
                      now=at, weeks=2, with_financials=False, progress=notes.append)
    assert not isinstance(gathered["AXP"], Exception)
    [note] = notes
    assert re.fullmatch(r"rate-limited by Finnhub, retrying in [12] s", note)


def test_without_a_listener_the_note_goes_nowhere_and_a_failing_listener_never_fails_the_call(fake):
    fake.add_profile("AXP")
    fake.fail_next("profile2", 429, times=2)
    source = make_source(fake)
    assert source.profile("AXP").ticker == "AXP"

    def broken(_note: str) -> None:
        raise RuntimeError("slack is down")

    with notices_to(broken):
        assert source.profile("AXP").ticker == "AXP"


def test_class_shares_are_asked_for_in_finnhubs_spelling(fake):
    fake.add_profile("BRK.B", name="Berkshire Hathaway Inc")
    fake.add_news("BRK.B", {"headline": "Berkshire item", "published": ny(2024, 3, 4, 10, 0)})
    fake.add_financials("BRK.B", {"eps": [("2023-12-31", 4.2)]})
    source = make_source(fake)
    for spelling in ("BRK.B", "BRK-B", "brk.b"):
        assert source.profile(spelling).name == "Berkshire Hathaway Inc"
    assert [i.headline for i in source.company_news("BRK-B", ny(2024, 3, 1), ny(2024, 3, 8))] == ["Berkshire item"]
    assert source.quarterly_financials("BRK-B")[0].metrics == {"eps": 4.2}
    assert {c.params["symbol"] for c in fake.calls} == {"BRK.B"}


def test_5xx_retries_with_capped_exponential_backoff_then_gives_up(fake):
    fake.fail_next("profile2", 502, times=10)
    sleeps = Sleeps()
    source = make_source(fake, sleeps=sleeps, attempts=5, base_delay_s=1, max_delay_s=3)
    with pytest.raises(SourceUnavailable, match=r"after 5 attempts .*HTTP 502"):
        source.profile("AXP")
    assert sleeps == [1, 2, 3, 3]
    assert fake.count("profile2") == 5


def test_5xx_once_then_success(fake):
    fake.add_profile("AXP")
    fake.fail_next("profile2", 503)
    assert make_source(fake).profile("AXP").ticker == "AXP"
    assert fake.count("profile2") == 2


def test_timeout_is_retried(fake):
    fake.add_profile("AXP")
    fake.stall_next("profile2", 1.0)
    sleeps = Sleeps()
    profile = make_source(fake, sleeps=sleeps, timeout_s=0.2).profile("AXP")
    assert profile.name == "AXP Synthetic Corp"
    assert sleeps == [1.0]


def test_403_is_fatal_at_once_and_names_the_fix(fake):
    fake.fail_next("stock/metric", 403, message="You don't have access to this resource.")
    sleeps = Sleeps()
    with pytest.raises(SourceAuthError, match="FINNHUB_API_KEY") as info:
        make_source(fake, sleeps=sleeps).quarterly_financials("AXP")
    assert sleeps == [] and fake.count("stock/metric") == 1
    assert KEY not in str(info.value)


def test_errors_and_logs_never_show_the_api_key(fake, caplog):
    # A connection error's message quotes the URL, token included; ours must not.
    client = build_client(KEY, api_url="http://127.0.0.1:9/api/v1", timeout_s=0.5)  # port 9: nothing listens
    source = FinnhubSource(client, limiter=LocalRateLimiter(limits=finnhub_limits(60, 30)),
                           policy=RetryPolicy(attempts=2), sleep=Sleeps())
    with caplog.at_level(logging.DEBUG), pytest.raises(SourceUnavailable) as info:
        source.profile("AXP")
    assert "ConnectionError" in str(info.value)
    assert KEY not in str(info.value)
    assert KEY not in caplog.text


def test_unknown_ticker_profile_is_a_clear_error(fake):
    with pytest.raises(UnknownTicker, match="ZZZZ"):
        make_source(fake).profile("ZZZZ")


def test_bad_request_is_not_retried(fake):
    fake.fail_next("company-news", 422, message="Wrong date format")
    sleeps = Sleeps()
    with pytest.raises(DataError, match="422"):
        make_source(fake, sleeps=sleeps).company_news("AXP", ny(2024, 3, 1), ny(2024, 3, 8))
    assert sleeps == []


def test_profile_maps_finnhub_fields(fake):
    fake.add_profile("AXP", marketCapitalization=123456.789, shareOutstanding=731.2)
    profile = make_source(fake).profile("AXP")
    assert (profile.marketCapitalization, profile.shareOutstanding) == (123456.789, 731.2)
    assert profile.exchange == "NEW YORK STOCK EXCHANGE, INC."


def test_quarterly_financials_pivot_newest_first_with_sorted_metrics(fake):
    fake.add_financials("AXP", {
        "roeTTM": [("2023-12-31", 0.31), ("2023-09-30", 0.3)],
        "eps": [("2023-12-31", 2.62), ("2023-09-30", 3.3)],
        "bookValue": [("2023-12-31", 28000.0)],
    })
    reports = make_source(fake).quarterly_financials("AXP")
    assert [r.period for r in reports] == ["2023-12-31", "2023-09-30"]
    assert list(reports[0].metrics) == ["bookValue", "eps", "roeTTM"]
    assert reports[1].metrics == {"eps": 3.3, "roeTTM": 0.3}


def test_no_financials_is_an_empty_list(fake):
    assert make_source(fake).quarterly_financials("AXP") == []


def test_pivot_skips_missing_values():
    assert pivot_quarterly({"eps": [{"period": "2024-03-31", "v": None}]}) == []
