"""Notes a source has for the person waiting on it ("rate-limited by Finnhub, retrying in 7 s").

The sources are built once per worker and shared by every job it runs, while the person to tell changes with each
job, so the listener is scoped to the running request in a context variable rather than held by the source.
`engine.inputs.gather` installs the job's listener around its fetching; with none installed a note goes nowhere.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar

log = logging.getLogger(__name__)

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
