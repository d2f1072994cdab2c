"""Finnhub news, company profile and quarterly basic financials, through the official `finnhub.Client`.

The client has no retries, no backoff and no rate limiting, so this adapter adds all three:
- every call first takes a slot from the shared limiter (all processes together stay within the plan);
- 429 waits until `X-Ratelimit-Reset` when the headers say the minute's budget is spent (else the server's
  Retry-After, if it sends one), otherwise a short jittered backoff (a 429 also comes from the 30 calls/s cap and
  from weighted endpoints, which clear in seconds), and tells the waiting user through `engine.sources.notices`;
- 5xx, timeouts and connection errors retry with capped exponential backoff;
- retries are bounded in number and in total waiting (`engine.retry`, the engine's one retry loop);
- 401/403 stop at once with a message about the key or the plan;
- an error never turns into "no news".
The API key travels in the query string, so every message that might quote a URL is redacted.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, Protocol, TypeVar

import finnhub
import requests

from engine.exceptions import DataError, SourceAuthError, SourceUnavailable, UnknownTicker
from engine.market.weeks import NEW_YORK
from engine.records import BasicFinancials, CompanyProfile, NewsItem
from engine.retry import Backoff, RetriesExhausted, Retryable, RetryNote, call_with_retries, rate_limit_reset_s
from engine.retry import RetryPolicy as Policy
from engine.retry import retry_after_s as server_retry_after_s
from engine.sources.base import in_window
from engine.sources.notices import notify
from engine.sources.symbols import finnhub_symbol

log = logging.getLogger(__name__)
T = TypeVar("T")
RESET_MARGIN_S = 0.5


class Limiter(Protocol):
    def acquire(self) -> None: ...


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 4
    base_delay_s: float = 1.0
    max_delay_s: float = 30.0
    # A 429 without a usable reset time: 1-2 s, then 2-4 s, 4-8 s (capped), jittered so that workers hit by the
    # same burst do not come back in step.
    rate_limit_base_s: float = 1.0
    rate_limit_cap_s: float = 8.0
    max_rate_limit_wait_s: float = 120.0  # a reset time further out than this is not believed
    max_total_wait_s: float = 180.0  # all the waits of one call together (three full-minute resets fit)

    def backoff(self, attempt: int) -> float:
        return self.error_backoff.step(attempt)

    def rate_limit_backoff(self, attempt: int, jitter: float) -> float:
        """`jitter` in [0, 1): the wait lies between the step and twice the step."""
        return self.rate_limit_schedule.step(attempt, jitter)

    @property
    def error_backoff(self) -> Backoff:
        return Backoff(self.base_delay_s, self.max_delay_s)

    @property
    def rate_limit_schedule(self) -> Backoff:
        return Backoff(self.rate_limit_base_s, self.rate_limit_cap_s, jitter=True)

    def retry_policy(self) -> Policy:
        """This policy in `engine.retry`'s terms: 5xx and transport errors step on every try of the call, 429s on
        a jittered schedule of their own; a reset time replaces the backoff, capped at `max_rate_limit_wait_s`."""
        return Policy(attempts=self.attempts, backoff=self.error_backoff,
                      max_wait_s=max(self.max_delay_s, self.max_rate_limit_wait_s),
                      max_total_wait_s=self.max_total_wait_s, server_wait_replaces_backoff=True)


def build_client(api_key: str, *, api_url: str | None = None, timeout_s: float = 10.0) -> finnhub.Client:
    client = finnhub.Client(api_key=api_key)
    if api_url:
        # The client has no base-URL argument; an instance attribute shadows the class constant.
        client.API_URL = api_url.rstrip("/")
    client.DEFAULT_TIMEOUT = timeout_s
    return client


class FinnhubSource:
    """NewsSource and FundamentalsSource backed by Finnhub."""

    name = "finnhub"

    def __init__(
        self,
        client: finnhub.Client,
        *,
        limiter: Limiter,
        policy: RetryPolicy = RetryPolicy(),
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
    ) -> None:
        self._client = client
        self._limiter = limiter
        self._policy = policy
        self._sleep = sleep
        self._clock = clock  # epoch seconds: X-Ratelimit-Reset is an epoch time
        self._jitter = jitter
        self.calls = 0  # HTTP calls made (retries included), for logs and benchmarks

    # -- protocol methods --------------------------------------------------------------------------------------

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        # Finnhub's date semantics are undocumented and a Friday-evening article has a Saturday UTC date, so ask
        # for a day more on each side and keep exactly the window by timestamp.
        first = start.astimezone(NEW_YORK).date() - dt.timedelta(days=1)
        last = end.astimezone(NEW_YORK).date() + dt.timedelta(days=1)
        raw = self._call(f"news for {symbol}", self._client.company_news, finnhub_symbol(symbol),
                         _from=first.isoformat(), to=last.isoformat())
        if not isinstance(raw, list):
            raise DataError(f"Finnhub returned an unexpected news payload for {symbol}: {type(raw).__name__}")
        seen: set[Any] = set()
        items = []
        for entry in raw:
            key = entry.get("id") or (entry.get("headline"), entry.get("datetime"))
            if key in seen or not entry.get("headline") or not entry.get("datetime"):
                continue
            seen.add(key)
            items.append(
                NewsItem(
                    published=dt.datetime.fromtimestamp(int(entry["datetime"]), dt.UTC),
                    headline=entry["headline"].strip(),
                    summary=(entry.get("summary") or "").strip(),
                    source=entry.get("source") or "",
                    url=entry.get("url") or "",
                )
            )
        return in_window(items, start, end)

    def profile(self, symbol: str) -> CompanyProfile:
        raw = self._call(f"the company profile of {symbol}", self._client.company_profile2,
                         symbol=finnhub_symbol(symbol))
        if not raw:
            raise UnknownTicker(f"Finnhub has no company profile for {symbol}; check the ticker (e.g. AXP, MSFT)")
        try:
            return CompanyProfile(
                ticker=raw.get("ticker") or symbol,
                name=raw["name"],
                finnhubIndustry=raw["finnhubIndustry"],
                ipo=raw.get("ipo") or "an unknown date",
                marketCapitalization=float(raw["marketCapitalization"]),
                shareOutstanding=float(raw["shareOutstanding"]),
                currency=raw.get("currency") or "USD",
                country=raw.get("country") or "US",
                exchange=raw["exchange"],
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise DataError(f"Finnhub's profile of {symbol} lacks {exc}; it cannot introduce the company") from None

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        raw = self._call(f"basic financials of {symbol}", self._client.company_basic_financials,
                         finnhub_symbol(symbol), "all")
        quarterly = ((raw or {}).get("series") or {}).get("quarterly") or {}
        return pivot_quarterly(quarterly)

    # -- retries -----------------------------------------------------------------------------------------------

    def _call(self, what: str, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        def attempt() -> T:
            self._limiter.acquire()
            self.calls += 1
            try:
                return fn(*args, **kwargs)
            except finnhub.FinnhubAPIException as exc:
                self._raise_for_status(what, exc)
            except (requests.Timeout, requests.ConnectionError, finnhub.FinnhubRequestException) as exc:
                raise Retryable(self._redact(f"{type(exc).__name__}: {exc}")) from None

        def on_retry(note: RetryNote) -> None:
            log.warning("Finnhub %s failed (%s); retry %d in %.1fs", what, note.failure.reason, note.attempt,
                        note.wait_s)
            if note.failure.backoff is not None:  # refused for the rate
                notify(f"rate-limited by Finnhub, retrying in {math.ceil(note.wait_s)} s")

        try:
            return call_with_retries(attempt, self._policy.retry_policy(), sleep=self._sleep, jitter=self._jitter,
                                     on_retry=on_retry)
        except RetriesExhausted as gave_up:
            raise SourceUnavailable(
                f"Finnhub kept failing for {what} after {gave_up.attempts} attempts (last: {gave_up.last.reason}); "
                "try again in a few minutes"
            ) from None

    def _raise_for_status(self, what: str, exc: finnhub.FinnhubAPIException) -> NoReturn:
        """401/403 and other 4xx at once, as the errors users are told about; 429 and 5xx as `Retryable`."""
        status = exc.status_code
        detail = self._redact(str(exc.message))
        if status in (401, 403):
            raise SourceAuthError(
                f"Finnhub refused {what} (HTTP {status}: {detail}). Check FINNHUB_API_KEY; a 403 can also "
                "mean the endpoint needs a paid plan."
            ) from None
        if status == 429:
            raise Retryable(f"HTTP {status}: {detail}", server_wait_s=self._rate_limit_wait(exc.response),
                            backoff=self._policy.rate_limit_schedule) from None
        if status >= 500:
            raise Retryable(f"HTTP {status}: {detail}") from None
        raise DataError(f"Finnhub rejected the request for {what} (HTTP {status}: {detail})") from None

    def _rate_limit_wait(self, response: requests.Response | None) -> float | None:
        """Until the reset time when the headers say this minute's calls are spent, or the server's Retry-After;
        None otherwise (no headers, a reset already past, or calls remaining: then the per-second cap or an
        endpoint's weight refused us, those clear within seconds, and the short jittered backoff applies)."""
        headers = response.headers if response is not None else None
        reset = rate_limit_reset_s(headers, now=self._clock, margin_s=RESET_MARGIN_S)
        return reset if reset is not None else server_retry_after_s(headers, now=self._clock)

    def _redact(self, text: str) -> str:
        key = self._client.api_key or ""
        return text.replace(key, "***") if len(key) >= 4 else text


def pivot_quarterly(series: dict[str, list[dict]]) -> list[BasicFinancials]:
    """Finnhub's `{metric: [{period, v}, ...]}` into one report per quarter end, newest first, metrics sorted."""
    by_period: dict[str, dict[str, float]] = {}
    for metric, points in series.items():
        for point in points or []:
            period, value = point.get("period"), point.get("v")
            if period and value is not None:
                by_period.setdefault(period, {})[metric] = value
    return [
        BasicFinancials(period=period, metrics=dict(sorted(metrics.items())))
        for period, metrics in sorted(by_period.items(), reverse=True)
    ]
