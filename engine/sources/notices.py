"""What the person waiting on market data is told: a source's notes while it waits ("rate-limited by Finnhub,
retrying in 7 s"), and, when the data fails, what happened and what to do (`told`).

The sources are built once per worker and shared by every job it runs, while the person to tell changes with each
job, so the listener is scoped to the running request in a context variable rather than held by the source.
`engine.data.inputs.gather` installs the job's listener around its fetching; with none installed a note goes nowhere.

A `DataError`'s own message is for the operator: it names the provider's error, a URL, a snapshot's path, a
setting or a CLI command (`forecaster data snapshot …`), and goes to the log. A Slack user is told `told(exc)`
instead: plain words chosen by the kind of failure, never the exception's text.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import NamedTuple

from engine.exceptions import (
    BadDate,
    DataError,
    MissingApiKey,
    NoPriceData,
    SnapshotMissing,
    SourceAuthError,
    SourceUnavailable,
    UnknownTicker,
)

log = logging.getLogger(__name__)


class Told(NamedTuple):
    """A data failure in words for the person who asked: `what` happened, and what they can `do` about it."""

    what: str
    do: str


# Most specific first: the first class the failure is an instance of decides.
_TOLD: tuple[tuple[type[DataError], Told], ...] = (
    (SnapshotMissing, Told("this bot answers from recorded market data, and the recording has nothing for this "
                           "ticker and date", "Try a date the recording covers, or ask an admin to record this one.")),
    (SourceAuthError, Told("the market data provider refused the bot's access",
                           "Trying again will not help until an admin fixes it; please tell one.")),
    (MissingApiKey, Told("this needs a market data provider the bot is not set up to use",
                         "Please tell an admin.")),
    (SourceUnavailable, Told("the market data provider is not answering right now (busy, rate-limited or down)",
                             "Try again in a few minutes.")),
    (UnknownTicker, Told("no company is listed under this ticker",
                         "Check the symbol (e.g. KO for Coca-Cola): it may be mistyped, or delisted.")),
    (NoPriceData, Told("no prices were found for this ticker in that period",
                       "Check the ticker and the date: it may be mistyped or delisted, or not trading yet then.")),
    (BadDate, Told("that date cannot be used", "Give a past date as YYYY-MM-DD.")),
    (DataError, Told("the market data for it came back unusable",
                     "Try again later; if it keeps failing, tell an admin.")),
)


def told(exc: DataError) -> Told:
    """What the person who asked is told about `exc` (a `DataError`): by its kind, never its own text."""
    for kind, words in _TOLD:
        if isinstance(exc, kind):
            return words
    return _TOLD[-1][1]

Listener = Callable[[str], None]

_listener: ContextVar[Listener | None] = ContextVar("source_notices", default=None)


@contextmanager
def notices_to(listener: Listener | None) -> Iterator[None]:
    """Send the notes of sources called inside this block to `listener` (None: to nobody)."""
    token = _listener.set(listener)
    try:
        yield
    finally:
        _listener.reset(token)


def notify(text: str) -> None:
    """Tell whoever waits on the current request. Best effort: a listener that fails never fails the data call."""
    listener = _listener.get()
    if listener is None:
        return
    try:
        listener(text)
    except Exception as exc:  # noqa: BLE001
        log.warning("could not pass on a source note (%s): %s", text, exc)
