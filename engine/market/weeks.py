"""Weekly windows, weekly returns and FinGPT's move bins. Pure functions over dates and closes.

Conventions (see shared/reference/MARKET_DATA.md §3 and FINGPT_FORMAT.md §3):
- A week is written the way the training data writes it: Sunday to the next Sunday ("2024-02-25 to 2024-03-03").
  Its close is the last daily close on or before the end Sunday (normally Friday's; Thursday's in a Good-Friday
  week), exactly what FinGPT's `resample('W').last()` gave.
- Which days trade, and when, is the NYSE's calendar (`engine.market.sessions`: holidays, closures, early closes).
  A week opens with its first session (Tuesday's, when Monday is Memorial Day) and the week to forecast is the
  first one whose first session is still ahead. One function (`request_week`) names it for a request, so the bot's
  acknowledgement and the worker's answer name the same week.
- A week's return is its close over the previous week's close, minus one.
- News for a past week is everything published after the previous week's last close and up to this week's last
  close (the close of the last trading day present in the prices: 16:00 New York, 13:00 on an early-close day such
  as the day after Thanksgiving), so every article lands in exactly
  one week and matches the close-to-close return. Articles after the latest close and before the cutoff join the
  most recent week.
"""

from __future__ import annotations

import datetime as dt
import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal
from zoneinfo import ZoneInfo

from engine.exceptions import BadDate, NoPriceData
from engine.market.sessions import REGULAR_CLOSE, Session, session, sessions
from engine.records import DailyClose

NEW_YORK = ZoneInfo("America/New_York")
ONE_WEEK = dt.timedelta(days=7)


@dataclass(frozen=True, order=True)
class Week:
    """A Sunday-to-Sunday week, as FinGPT's `period` column writes it."""

    start: dt.date  # a Sunday
    end: dt.date  # the next Sunday

    def __post_init__(self) -> None:
        if self.start.weekday() != 6 or self.end - self.start != ONE_WEEK:
            raise ValueError(f"a week runs Sunday to Sunday, got {self.start} to {self.end}")

    @classmethod
    def ending(cls, sunday: dt.date) -> Week:
        return cls(sunday - ONE_WEEK, sunday)

    @classmethod
    def containing(cls, day: dt.date) -> Week:
        """The week whose trading days (Mon-Fri) include `day`; a Sunday starts a week, a Saturday ends one."""
        start = day - dt.timedelta(days=(day.weekday() + 1) % 7)
        return cls(start, start + ONE_WEEK)

    @property
    def period(self) -> str:
        return f"{self.start.isoformat()} to {self.end.isoformat()}"

    @property
    def sessions(self) -> list[Session]:
        """Its trading sessions, Monday to Saturday (none on Sunday), in order; four in a holiday week."""
        return sessions(self.start + dt.timedelta(days=1), self.end - dt.timedelta(days=1))

    @property
    def opens(self) -> dt.datetime | None:
        """When trading in this week begins: its first session's open (Monday 09:30 New York; Tuesday's when
        Monday is a holiday). None for a week in which the exchange never opened."""
        found = self.sessions
        return found[0].opens if found else None

    @property
    def closes(self) -> dt.datetime | None:
        """When its last session closes (Friday 16:00; Thursday's in a Good-Friday week, 13:00 on the day after
        Thanksgiving). None for a week in which the exchange never opened."""
        found = self.sessions
        return found[-1].closes if found else None

    def previous(self, n: int = 1) -> Week:
        return Week(self.start - n * ONE_WEEK, self.end - n * ONE_WEEK)


def forecast_week(cutoff: dt.datetime) -> Week:
    """The week to predict given everything known at `cutoff` (aware): the first week whose first session is
    still ahead. Saturday, Sunday or Monday 08:00 → the week starting that weekend; Tuesday → next week; Memorial
    Day (or any Monday holiday), all day → the week starting that weekend, whose first session is Tuesday's."""
    if cutoff.tzinfo is None:
        raise ValueError("cutoff must be timezone-aware")
    week = Week.containing(cutoff.astimezone(NEW_YORK).date())
    while (opens := week.opens) is None or opens <= cutoff:  # opened already, or never opens (no session at all)
        week = week.previous(-1)
    return week


def cutoff_for_date(day: dt.date) -> dt.datetime:
    """A date given by a user means "as of the end of that day" in New York."""
    return dt.datetime.combine(day, dt.time(23, 59, 59), tzinfo=NEW_YORK)


def request_cutoff(as_of: dt.date | None, asked_at: dt.datetime) -> dt.datetime:
    """What a request may know: a live one everything up to the moment it was asked; a dated one everything up
    to the end of that New York day, and never more than was known when it was asked (asked for today, the rest of
    today is still ahead)."""
    if asked_at.tzinfo is None:
        raise ValueError("asked_at must be timezone-aware")
    return asked_at if as_of is None else min(cutoff_for_date(as_of), asked_at)


def request_week(as_of: dt.date | None, asked_at: dt.datetime) -> Week:
    """The week a request forecasts: what the acknowledgement names (bot) and what the answer is for (jobs), from
    the same two values (the request's date, and when it was asked)."""
    return forecast_week(request_cutoff(as_of, asked_at))


def past_weeks(target: Week, n: int) -> list[Week]:
    """The `n` weeks before `target`, oldest first."""
    if not 1 <= n <= 4:
        raise ValueError(f"past weeks must be between 1 and 4, got {n}")
    return [target.previous(k) for k in range(n, 0, -1)]


def parse_day(text: str, *, today: dt.date) -> dt.date:
    """A user's YYYY-MM-DD, checked. Raises BadDate with the expected format."""
    try:
        day = dt.date.fromisoformat(text.strip())
    except ValueError:
        raise BadDate(f"'{text}' is not a date; write it as YYYY-MM-DD, e.g. {today.isoformat()}") from None
    if day > today:
        raise BadDate(f"{day} is in the future; give today ({today}) or an earlier date")
    return day


def close_on_or_before(closes: Sequence[DailyClose], day: dt.date) -> DailyClose | None:
    """The last close dated on or before `day`; `closes` ascending."""
    found = None
    for close in closes:
        if close.date > day:
            break
        found = close
    return found


def week_close(closes: Sequence[DailyClose], week: Week, *, symbol: str) -> DailyClose:
    """The close that ends `week`. Raises NoPriceData when the series does not reach into that week."""
    close = close_on_or_before(closes, week.end)
    if close is None or close.date <= week.start:  # nothing traded Mon-Fri of that week
        raise NoPriceData(f"no prices for {symbol} in the week {week.period}")
    return close


def close_time(day: dt.date) -> dt.datetime:
    """When `day`'s close is struck: its session's close in New York (16:00; 13:00 on an early-close day). A price
    dated a day the exchange did not trade is taken as struck at 16:00."""
    found = session(day)
    return found.closes if found else dt.datetime.combine(day, REGULAR_CLOSE, tzinfo=NEW_YORK)


@dataclass(frozen=True)
class WeekPrices:
    """One past week's closes and the news window they imply."""

    week: Week
    start_close: DailyClose  # the previous week's last close
    end_close: DailyClose  # this week's last close (or the latest close, for a week still in progress)
    news_from: dt.datetime  # exclusive
    news_to: dt.datetime  # inclusive


def week_prices(
    closes: Sequence[DailyClose], weeks: Sequence[Week], *, symbol: str, cutoff: dt.datetime
) -> list[WeekPrices]:
    """Start/end closes and news windows for consecutive `weeks` (oldest first). The last week's news window
    runs to `cutoff`, so late-breaking news before the forecast is never lost."""
    result = []
    for i, week in enumerate(weeks):
        start = week_close(closes, week.previous(), symbol=symbol)
        end = week_close(closes, week, symbol=symbol)
        news_to = cutoff if i == len(weeks) - 1 else close_time(end.date)
        result.append(WeekPrices(week, start, end, close_time(start.date), max(news_to, close_time(start.date))))
    return result


# --- returns and bins -------------------------------------------------------------------------------------

Direction = Literal["up", "down"]


@dataclass(frozen=True)
class MoveBin:
    """FinGPT's label for a weekly move: direction and k, where bin k covers |r| in ((k-1)%, k%], k=6 is >5%."""

    direction: Direction
    k: int  # 1..5, or 6 for "more than 5%"

    @property
    def magnitude(self) -> str:
        return "more than 5%" if self.k > 5 else f"{self.k - 1}-{self.k}%"

    @property
    def label(self) -> str:
        """Lower case, as the dataset's `label` column: 'up by 2-3%'."""
        return f"{self.direction} by {self.magnitude}"

    @property
    def prediction_text(self) -> str:
        """Capitalised, as the answer line writes it: 'Up by 2-3%'."""
        return self.label.capitalize()

    @property
    def code(self) -> str:
        """'U3', 'D5+'."""
        return ("U" if self.direction == "up" else "D") + ("5+" if self.k > 5 else str(self.k))

    @property
    def midpoint(self) -> float:
        """Signed bin midpoint in percent (±0.5 … ±4.5, ±5.5), the unit of FinGPT's MSE."""
        return (1 if self.direction == "up" else -1) * (min(self.k, 6) - 0.5)


def weekly_return(start_price: float, end_price: float) -> float:
    if start_price <= 0 or not math.isfinite(start_price) or not math.isfinite(end_price):
        raise ValueError(f"cannot compute a return from {start_price} to {end_price}")
    return end_price / start_price - 1


def move_bin(r: float) -> MoveBin:
    """FinGPT's bin for return `r`. A return of exactly 0 is 'up by 0-1%' (upstream wrote 'up by 0' and then
    crashed on it); a move of exactly 1% is '0-1%'."""
    # Round away float noise first, so 1.05/1.0 - 1 (= 0.05000000000000004) is still 4-5%, as FinGPT intends.
    pct = round(abs(100 * r), 9)
    k = max(1, math.ceil(pct))
    return MoveBin("up" if r >= 0 else "down", min(k, 6))
