"""A weekly New York time written the way people write it ("mon 08:00"), parsed strictly.

Day names only, never numbers: cron counts Monday as 1 but APScheduler 3 counts it as 0, so "0 8 * * 1" fires on
Tuesday there. A number would mean different days to different readers, so none is accepted.
Times from 01:00 to 02:59 are refused: on the spring-forward Sunday 02:00-02:59 does not exist (a job would not
fire) and on the fall-back Sunday 01:00-01:59 happens twice (it could fire twice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
FORM = '"<day> <HH:MM>", a day name (mon tue wed thu fri sat sun) and a 24-hour New York time, e.g. "mon 08:00"'
_PATTERN = re.compile(r"^([a-z]+) (\d{2}):(\d{2})$")


@dataclass(frozen=True)
class WeeklyTime:
    """A day of the week and a time of day, in New York."""

    day: str  # one of DAYS
    hour: int
    minute: int

    def __str__(self) -> str:
        return f"{self.day} {self.hour:02d}:{self.minute:02d}"


def parse_weekly_time(text: str) -> WeeklyTime:
    """`"mon 08:00"` → WeeklyTime. Raises ValueError naming the accepted form (and why, for refused values)."""
    raw = text.strip().lower()
    match = _PATTERN.match(raw)
    if match is None:
        if re.match(r"^\d", raw):
            raise ValueError(f"{text!r} starts with a number; write the day as a name, as {FORM}. Numbered "
                             "weekdays are ambiguous (cron counts Monday as 1, APScheduler as 0)")
        raise ValueError(f"{text!r} is not a weekly time; write {FORM}")
    day, hour, minute = match.group(1), int(match.group(2)), int(match.group(3))
    if day not in DAYS:
        raise ValueError(f"{text!r}: unknown day {day!r}; write {FORM}")
    if hour > 23 or minute > 59:
        raise ValueError(f"{text!r}: {match.group(2)}:{match.group(3)} is not a time of day; write {FORM}")
    if 1 <= hour < 3:
        raise ValueError(f"{text!r}: times from 01:00 to 02:59 New York time are refused, because on the two "
                         "daylight-saving Sundays they happen never or twice; pick 03:00 or later, or before 01:00")
    return WeeklyTime(day, hour, minute)
