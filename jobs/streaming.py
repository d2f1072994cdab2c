"""The requester's progress message shows the answer as it is written, one section at a time.

The model tells the job each answer as far as it is written (engine.generation.model's `on_text`, about every second);
`SectionProgress` turns that into at most one progress edit per completed section (the Positive Developments, then
the Potential Concerns, then the call), never closer together than `min_interval_s`, so a forecast costs three
edits more, well within chat.update's limits. The final answer replaces the message as before: this only changes
what the requester reads while waiting, never what is delivered or how often.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from engine.generation.streaming import WrittenSoFar, written_so_far

MIN_EDIT_INTERVAL_S = 3.0
ITEMS_SHOWN = 4  # FinGPT writes two to four per list


class SectionProgress:
    """`on_text` for one answer: calls `show(written)` each time one more section is complete (at most every
    `min_interval_s`; a section finished sooner waits for the next report). Thread-safe: the vLLM backend reports
    from its request threads."""

    def __init__(self, show: Callable[[WrittenSoFar], None], *, min_interval_s: float = MIN_EDIT_INTERVAL_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._show, self._min_interval_s, self._clock = show, min_interval_s, clock
        self._shown = 0
        self._last: float | None = None
        self._lock = threading.Lock()

    @property
    def sections_shown(self) -> int:
        return self._shown

    def __call__(self, row: int, text: str) -> None:
        written = written_so_far(text)
        with self._lock:
            if written.sections <= self._shown:
                return
            now = self._clock()
            if self._last is not None and now - self._last < self._min_interval_s:
                return
            self._shown, self._last = written.sections, now
        self._show(written)


def written_status(head: str, written: WrittenSoFar, *, escape: Callable[[str], str]) -> str:
    """The progress note with the sections written so far: `head` (ours, mrkdwn) then each complete section, its
    items escaped with `escape` (model text is data)."""
    lines = [head]
    for title, items in (("Positive Developments", written.positives), ("Potential Concerns", written.concerns)):
        if items:
            lines.append(f"*{title}*")
            lines += [f"• {escape(item)}" for item in items[:ITEMS_SHOWN]]
    if written.call is not None:
        lines.append(f"*Prediction:* {escape(written.call)} — writing the analysis…")
    return "\n".join(lines)
