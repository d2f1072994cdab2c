"""Slash-command text → typed arguments. Pure: no Slack, no Redis, no clock (the caller passes `today`).

Every refusal is a `UsageError` whose message names the problem in one line; the caller adds the command's usage.
Tickers are checked offline: Dow30 symbols (any date in the membership table) are known, anything else must look
like a ticker (1-5 letters, optionally a share-class suffix such as BRK.B); whether the data sources know it is
the worker's to find out, and it says so in the channel.

Keywords never shadow a ticker. The first word of `/forecast` and `/track` is a ticker unless it is one of the few
words no listed symbol can be mistaken for: `dow30` and `digest` (a digit, six letters) and the help spellings.
`DOW` is Dow Inc. and `DJIA` an ETF, so both are tickers. `help` is the one ticker-shaped keyword; `$HELP` (a `$`
before any symbol) always means the ticker.
"""

from __future__ import annotations

import datetime as dt
import math
import re
from dataclasses import dataclass
from functools import cache

from bot.mrkdwn import escape
from engine.exceptions import BadDate
from engine.market.dow30 import memberships
from engine.market.weeks import parse_day
from engine.sources.symbols import finnhub_symbol

TICKER_RE = re.compile(r"^[A-Z]{1,5}(?:[.-][A-Z]{1,2})?$")
HELP_WORDS = frozenset({"help", "-h", "--help", "?"})  # case-insensitive; `$HELP` is the ticker
DIGEST_WORDS = frozenset({"dow30", "digest"})  # no ticker looks like these (a digit; six letters)
# Tickers someone may type meaning the index: the forecast ack points them at the digest.
INDEX_LOOKALIKES = frozenset({"DOW", "DJIA"})
MAX_EPOCHS = 20.0  # the same bound as TRAIN_EPOCHS
ECHO_WIDTH = 24  # how much of a user's bad token is quoted back


class UsageError(ValueError):
    """A command the bot cannot run as typed; `str(e)` says what to change."""


@dataclass(frozen=True)
class Help:
    """The user asked for the command's help."""


@dataclass(frozen=True)
class ForecastArgs:
    ticker: str
    as_of: dt.date | None = None  # None: live, as of now
    weeks: int = 3
    financials: bool = True
    dow30: bool = True  # the ticker is (or was) a Dow30 member: known to exist


@dataclass(frozen=True)
class DigestArgs:
    as_of: dt.date | None = None  # None: today (New York)


@dataclass(frozen=True)
class RetrainArgs:
    epochs: float | None = None  # None: TRAIN_EPOCHS
    force: bool = False


@dataclass(frozen=True)
class TrackArgs:
    ticker: str | None = None  # None: every ticker


WATCH_ACTIONS = ("add", "remove")


@dataclass(frozen=True)
class WatchArgs:
    action: str = "list"  # "list", "add" or "remove"
    tickers: tuple[str, ...] = ()  # canonical (BRK.B), in the order typed, each once


def quote(token: str, width: int = ECHO_WIDTH) -> str:
    """A user's token, safe to echo in mrkdwn: short, no markup, no mentions."""
    text = token if len(token) <= width else token[: width - 1] + "…"
    text = escape(text).replace("`", "'")
    return f"'{text}'"


@cache
def dow30_symbols() -> frozenset[str]:
    """Every symbol the membership table knows, past or present."""
    return frozenset(m.ticker for m in memberships())


def _tokens(text: str | None) -> list[str]:
    return (text or "").split()


def _is_help(tokens: list[str]) -> bool:
    return bool(tokens) and tokens[0].lower() in HELP_WORDS


def parse_ticker(token: str) -> str:
    symbol = token.strip().lstrip("$").upper()
    if symbol in dow30_symbols() or TICKER_RE.match(symbol):
        return symbol
    raise UsageError(f"{quote(token)} is not a ticker: use 1-5 letters, with an optional class suffix "
                     "(AXP, MSFT, BRK.B)")


def _date(token: str, today: dt.date, seen: dict) -> dt.date:
    if "date" in seen:
        raise UsageError(f"two dates given ({seen['date']} and {quote(token)}); give one YYYY-MM-DD")
    try:
        dt.date.fromisoformat(token)
    except ValueError:
        raise UsageError(f"{quote(token)} is not a date; write it as YYYY-MM-DD, e.g. {today.isoformat()}") from None
    try:
        day = parse_day(token, today=today)  # the date is well formed: what is left to refuse is the future
    except BadDate as exc:
        raise UsageError(str(exc)) from None
    seen["date"] = day
    return day


def _number(key: str, value: str, kind: type[int] | type[float]) -> int | float:
    try:
        number = kind(value)
    except ValueError:
        whole = "a whole number" if kind is int else "a number"
        raise UsageError(f"{quote(key + '=' + value)} is not valid: {key} takes {whole}") from None
    if not math.isfinite(number):
        raise UsageError(f"{key} must be a finite number")
    return number


VALUED = frozenset({"weeks", "epochs"})  # options written key=value; the others are single words


def _options(tokens: list[str], command: str, *, allowed: set[str], today: dt.date) -> dict:
    """`YYYY-MM-DD`, `key=value` and flag words, each at most once."""
    seen: dict = {}
    for token in tokens:
        word = token.lower()
        if word[:1].isdigit() and "date" in allowed:
            _date(token, today, seen)
            continue
        key, sep, value = word.partition("=")
        name = key if sep else {"no-financials": "financials", "nofinancials": "financials"}.get(word, word)
        if name not in allowed or bool(sep) != (name in VALUED):
            hint = f" (it takes {', '.join(sorted(_spell(a) for a in allowed))})" if allowed else " (it takes none)"
            raise UsageError(f"{quote(token)} is not an option of {command}{hint}")
        if name in seen:
            raise UsageError(f"{name} given twice")
        if name == "weeks":
            weeks = _number("weeks", value, int)
            if not 1 <= weeks <= 4:
                raise UsageError(f"{quote('weeks=' + value)}: weeks must be between 1 and 4 (past weeks of news "
                                 "in the prompt)")
            seen["weeks"] = int(weeks)
        elif name == "epochs":
            epochs = _number("epochs", value, float)
            if not 0 < epochs <= MAX_EPOCHS:
                raise UsageError(f"epochs={epochs:g}: epochs must be more than 0 and at most {MAX_EPOCHS:g}")
            seen["epochs"] = epochs
        elif name == "financials":
            seen["financials"] = not word.startswith("no")
        else:
            seen[name] = True
    return seen


def _spell(option: str) -> str:
    return {"date": "YYYY-MM-DD", "weeks": "weeks=1-4", "epochs": f"epochs=0-{MAX_EPOCHS:g}",
            "financials": "financials / no-financials"}.get(option, option)


def parse_forecast(text: str | None, *, today: dt.date) -> ForecastArgs | DigestArgs | Help:
    """`TICKER [YYYY-MM-DD] [weeks=1-4] [financials|no-financials]`, or `dow30 [YYYY-MM-DD]` (also `digest`) for
    the digest. `DOW` is the ticker of Dow Inc., not the digest."""
    tokens = _tokens(text)
    if not tokens:
        raise UsageError("which stock? Give a ticker, e.g. `/forecast AXP`")
    if _is_help(tokens):
        return Help()
    if tokens[0].lower() in DIGEST_WORDS:
        return parse_digest(" ".join(tokens[1:]), today=today, command=f"/forecast {tokens[0].lower()}")
    symbol = parse_ticker(tokens[0])
    seen = _options(tokens[1:], "/forecast", allowed={"date", "weeks", "financials"}, today=today)
    return ForecastArgs(ticker=symbol, as_of=seen.get("date"), weeks=seen.get("weeks", 3),
                        financials=seen.get("financials", True), dow30=symbol in dow30_symbols())


def parse_digest(text: str | None, *, today: dt.date, command: str = "/digest") -> DigestArgs | Help:
    tokens = _tokens(text)
    if _is_help(tokens):
        return Help()
    seen = _options(tokens, command, allowed={"date"}, today=today)
    return DigestArgs(as_of=seen.get("date"))


def parse_retrain(text: str | None) -> RetrainArgs | Help:
    tokens = _tokens(text)
    if _is_help(tokens):
        return Help()
    seen = _options(tokens, "/retrain", allowed={"epochs", "force"}, today=dt.date.max)
    return RetrainArgs(epochs=seen.get("epochs"), force=seen.get("force", False))


def parse_status(text: str | None) -> Help | None:
    tokens = _tokens(text)
    if _is_help(tokens):
        return Help()
    _options(tokens, "/forecast-status", allowed=set(), today=dt.date.max)
    return None


def parse_track(text: str | None) -> TrackArgs | Help:
    tokens = _tokens(text)
    if _is_help(tokens):
        return Help()
    if len(tokens) > 1:
        raise UsageError(f"one ticker at most (got {len(tokens)} words)")
    return TrackArgs(ticker=parse_ticker(tokens[0]) if tokens else None)


def canonical_ticker(symbol: str) -> str:
    """One spelling per listing: a share class with a dot, as Finnhub and the ledger write it (BRK-B → BRK.B)."""
    return finnhub_symbol(symbol)


def parse_watch(text: str | None, *, max_names: int) -> WatchArgs | Help:
    """`` (the list), `add TICKER…`, `remove TICKER…` (also `rm`, `del`); tickers separated by spaces or commas.
    `max_names`: the most one command may name (the cap of a whole list)."""
    tokens = (text or "").replace(",", " ").split()
    if not tokens or tokens[0].lower() == "list" and len(tokens) == 1:
        return WatchArgs()
    if _is_help(tokens):
        return Help()
    action = {"add": "add", "remove": "remove", "rm": "remove", "del": "remove"}.get(tokens[0].lower())
    if action is None:
        raise UsageError(f"{quote(tokens[0])} is not a /watch action: use `add`, `remove` or nothing (the list)")
    if len(tokens) == 1:
        raise UsageError(f"which tickers? e.g. `/watch {action} NVDA AMD`")
    if len(tokens) - 1 > max_names:
        raise UsageError(f"{len(tokens) - 1} tickers in one command; a watchlist holds at most {max_names}")
    return WatchArgs(action=action, tickers=tuple(dict.fromkeys(canonical_ticker(parse_ticker(t))
                                                                   for t in tokens[1:])))
