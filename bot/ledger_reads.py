"""/track's reads of the ledger, bounded so that a database that does not answer never holds up an ack.

The bot opens the ledger without migrating (`jobs.ledger.database`: a schema that is missing or behind raises
`LedgerNotReady`; the worker, `forecaster up` and `forecaster ledger migrate` migrate), with short timeouts: 2 s to
connect, 2 s per statement. Those bound what the database can be asked to bound; a server that accepted the
connection and then went silent (a hung host, a network that drops packets) is bounded only here: each read runs
on a thread of its own, and the ack is answered when the deadline passes, whether or not the read returned. At
most `MAX_WAITING` reads may be left waiting on a silent database; past that, /track answers at once without
trying, so a database outage costs no bot thread more than the deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import exc as sa_exc

from jobs.ledger import Ledger, open_ledger, watchlists
from jobs.ledger.views import LastCall, TrackView
from jobs.track_reads import track_record

log = logging.getLogger(__name__)

T = TypeVar("T")
DEADLINE_S = 2.0  # Slack shows an error after 3 s; the rest is for the network and Bolt
MAX_WAITING = 4  # reads left waiting on a silent database before /track stops trying


class LedgerUnavailable(Exception):
    """The ledger's database did not answer within the deadline, or refused (a timeout, a dropped connection).
    The message is for the operator's log."""


class LedgerReads:
    """The bot's reads of the ledger. Thread-safe; opens the database on the first read."""

    def __init__(self, settings: Any, *, deadline_s: float = DEADLINE_S, max_waiting: int = MAX_WAITING) -> None:
        self.settings = settings
        self.deadline_s = deadline_s
        self._slots = threading.BoundedSemaphore(max_waiting)

    def ledger(self) -> Ledger:
        """The bot's Ledger: never migrates; connect and statement timeouts no longer than the deadline."""
        settings = self.settings
        limit = max(2, int(self.deadline_s))
        return open_ledger(settings, migrate=False,
                           connect_timeout_s=min(getattr(settings, "database_connect_timeout_s", limit), limit),
                           statement_timeout_s=min(getattr(settings, "database_statement_timeout_s", limit),
                                                   self.deadline_s))

    def track_record(self, ticker: str | None, *, recent: int = 5) -> TrackView:
        """`jobs.track_reads.track_record`, within the deadline. Raises `LedgerNotReady` (no schema yet) or
        `LedgerUnavailable`."""
        return self._within_deadline(lambda: track_record(self.ledger(), ticker=ticker, recent=recent))

    def within_deadline(self, work: Callable[[Ledger], T]) -> T:
        """`work(ledger)` (a read, or a small write such as a vote), within the deadline, on the bot's Ledger.
        Raises `LedgerNotReady` or `LedgerUnavailable` like the reads."""
        return self._within_deadline(lambda: work(self.ledger()))

    def watchlist(self, channel: str) -> tuple[list[str], dict[str, LastCall]]:
        """`channel`'s watchlist and each name's last call, within the deadline (raises as `track_record`)."""
        def read() -> tuple[list[str], dict[str, LastCall]]:
            tickers = watchlists.tickers_of(self.ledger(), channel)
            return tickers, watchlists.last_calls(self.ledger(), tickers)

        return self._within_deadline(read)

    def watchlist_names(self, channel: str) -> list[str]:
        """`channel`'s watchlist alone (what `/digest` runs), within the deadline."""
        return self._within_deadline(lambda: watchlists.tickers_of(self.ledger(), channel))

    def unwatch(self, channel: str, tickers: list[str]) -> tuple[list[str], list[str], int]:
        """Take `tickers` off `channel`'s list: (removed, not on it, names left), within the deadline. A
        `LedgerUnavailable` here may come after the database did it: the caller says it could not confirm."""
        def write() -> tuple[list[str], list[str], int]:
            removed, missing = watchlists.remove(self.ledger(), channel, tickers)
            return removed, missing, len(watchlists.tickers_of(self.ledger(), channel))

        return self._within_deadline(write)

    def home(self, *, recent: int = 10) -> tuple[dict[str, list[str]], dict[str, LastCall], TrackView]:
        """What the Home tab shows: every channel's watchlist, their names' last calls, the track record."""
        def read() -> tuple[dict[str, list[str]], dict[str, LastCall], TrackView]:
            lists = watchlists.all_watchlists(self.ledger())
            names = list(dict.fromkeys(t for tickers in lists.values() for t in tickers))
            return lists, watchlists.last_calls(self.ledger(), names), track_record(self.ledger(), recent=recent)

        return self._within_deadline(read)

    def _within_deadline(self, read: Callable[[], T]) -> T:
        if not self._slots.acquire(blocking=False):
            raise LedgerUnavailable("every ledger read slot is still waiting on the database; not trying")
        outcome: dict[str, Any] = {}
        done = threading.Event()

        def run() -> None:
            try:
                outcome["value"] = read()
            except BaseException as exc:  # noqa: BLE001 — handed to the waiting thread
                outcome["error"] = exc
            finally:
                self._slots.release()
                done.set()

        # A daemon: a read stuck on a silent socket must not keep the bot from exiting.
        threading.Thread(target=run, name="ledger-read", daemon=True).start()
        if not done.wait(self.deadline_s):
            raise LedgerUnavailable(f"no answer from the ledger's database within {self.deadline_s:g} s")
        error = outcome.get("error")
        if error is None:
            return outcome["value"]
        if isinstance(error, sa_exc.OperationalError | sa_exc.InterfaceError | sa_exc.TimeoutError):
            # Connect timeout, statement timeout (QueryCanceled), a dropped connection, a locked SQLite file.
            raise LedgerUnavailable(_describe(error)) from error
        raise error


def _describe(error: BaseException) -> str:
    """For the log: the driver's first line (psycopg's and sqlite3's name the host or the file, never a
    password: SQLAlchemy's message does not carry the URL)."""
    orig = getattr(error, "orig", None) or error
    first = str(orig).strip().splitlines()[0] if str(orig).strip() else ""
    return f"{type(orig).__name__}: {first}"
