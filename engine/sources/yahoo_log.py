"""What yfinance's log says about a failed Yahoo request: the only record of why a ticker came back empty.

How yfinance 1.7 reports trouble:
- `yf.download` never raises for a ticker. It catches every error, logs a summary on the `yfinance` logger
  (`['ZZZZ']: possibly delisted; no timezone found`, `['AAPL']: YFRateLimitError('Too Many Requests. ...')`)
  and returns an empty column for that ticker. 1.7 keeps these errors in a per-call context, so
  `yf.shared._ERRORS` stays empty; the log is the only place that says *why* a ticker came back empty, so
  `YfLog` listens to it (in this thread only) during each call.
- Any HTTP answer >= 400 is retried once by yfinance itself (after refreshing its cookie); a second 429 raises
  `YFRateLimitError`. A 404 is not an exception: the chart JSON carries `{"error": {"code": "Not Found"}}`.
- News and `Ticker.info` swallow HTTP errors and return `[]` / `{}`, which would look like "no news" or an
  unknown ticker; the log tells them apart here too.

`classify` sorts a ticker's lines into the failure kinds below, which decide whether engine.sources.yahoo retries.
"""

from __future__ import annotations

import json
import logging
import re
import threading
from collections.abc import Iterator
from contextlib import contextmanager

# What a failed ticker's log lines can say, from most to least actionable.
RATE_LIMITED = "rate limited"
TRANSIENT = "transient"  # the request failed (5xx, timeout, garbled body): worth another try
NOT_FOUND = "not found"  # Yahoo answered and had nothing: retrying cannot help
UNSURE = "unsure"  # "no price data found" covers an empty window and a swallowed error alike

_RATE_LIMIT_MARKERS = ("YFRateLimitError", "Too Many Requests", "Rate limited")
# Lines that mean the request itself failed: exception reprs in download()'s summary, the timezone probe's
# failure line, news's "faulty response", an HTTPError text for a 5xx.
_TRANSIENT_PATTERN = re.compile(
    r"\w+(Error|Exception|Timeout)\(|Failed to get ticker|Could not get exchangeTimezoneName"
    r"|Failed to retrieve the news|\b5\d\d Server Error|CURRENTLY DOWN"
)
_AMBIGUOUS_MARKER = "no price data found"
# download()'s summary: "['AAPL', 'MSFT']: reason"; history()'s own line: "$AAPL: reason".
_SUMMARY_LINE = re.compile(r"^\[([^\]]*)\]: (.*)$", re.DOTALL)
_TICKER_LINE = re.compile(r"^\$([^:\s]+): (.*)$", re.DOTALL)
_TZ_PROBE_LINE = re.compile(r"ticker '([^']+)'")


class YfLog(logging.Handler):
    """What yfinance logs in the current thread while one call runs (its only record of per-ticker errors).

    If the application raises the `yfinance` logger's level above ERROR, nothing is captured and every empty
    ticker counts as "unsure": retried when nothing came back, then reported as NoPriceData.
    """

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self._thread = threading.get_ident()
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.thread != self._thread:
            return
        try:
            self.messages.append(record.getMessage())
        except Exception:  # a malformed record must not break the data call
            self.messages.append(str(record.msg))

    @classmethod
    @contextmanager
    def capture(cls) -> Iterator[YfLog]:
        handler = cls()
        logger = logging.getLogger("yfinance")
        logger.addHandler(handler)
        try:
            yield handler
        finally:
            logger.removeHandler(handler)

    def messages_for(self, symbol: str) -> list[str]:
        """The lines that name `symbol` (yfinance upper-cases tickers)."""
        wanted = symbol.upper()
        found = []
        for message in self.messages:
            text = message.strip()
            if match := _SUMMARY_LINE.match(text):
                if wanted in re.findall(r"'([^']*)'", match.group(1)):
                    found.append(match.group(2))
            elif match := _TICKER_LINE.match(text):
                if match.group(1).upper() == wanted:
                    found.append(match.group(2))
            elif (match := _TZ_PROBE_LINE.search(text)) and match.group(1).upper() == wanted:
                found.append(text)
        return found

    def trouble(self) -> str:
        """The first line saying a request failed or was rate-limited (yfinance then returned [] or {})."""
        for message in self.messages:
            if any(marker in message for marker in _RATE_LIMIT_MARKERS) and "continuing without crumb" not in message:
                return message.strip()[:200]
            if _TRANSIENT_PATTERN.search(message):
                return message.strip()[:200]
        return ""


def most_telling(messages: list[str]) -> str:
    """The line that best explains a failure: a rate limit or a failed request beats a vague 'delisted?'."""
    for message in messages:
        if classify([message]) in (RATE_LIMITED, TRANSIENT):
            return message
    return messages[-1]


def classify(messages: list[str]) -> str:
    if any(marker in message for message in messages for marker in _RATE_LIMIT_MARKERS):
        return RATE_LIMITED
    if any(_TRANSIENT_PATTERN.search(message) for message in messages):
        return TRANSIENT
    if not messages or any(_AMBIGUOUS_MARKER in message for message in messages):
        return UNSURE
    # "possibly delisted; no timezone found" (the chart probe got Yahoo's 404 JSON) or Yahoo's own reason,
    # e.g. "No data found, symbol may be delisted".
    return NOT_FOUND


def is_rate_limit(exc: BaseException) -> bool:
    return type(exc).__name__ == "YFRateLimitError"


def is_transient(exc: BaseException) -> bool:
    """Network trouble or a garbled answer (e.g. an HTML error page where JSON was expected)."""
    if isinstance(exc, (TimeoutError, ConnectionError, json.JSONDecodeError)):
        return True
    names = {cls.__name__ for cls in type(exc).__mro__}
    return bool(names & {"ConnectionError", "Timeout", "ConnectTimeout", "ReadTimeout", "ChunkedEncodingError",
                         "RemoteDisconnected", "JSONDecodeError"})
