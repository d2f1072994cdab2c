"""Which dates a scheduled post belongs to, from the moment it fires. Pure; shared by the scheduler and the bot's
on-demand digest (`/digest` with no date means "the digest that would go out now"), so both name the same week.
"""

from __future__ import annotations

import datetime as dt

from engine.market.weeks import NEW_YORK


def digest_as_of(fire_time: dt.datetime) -> dt.date:
    """The digest's data date: the last New York day already over when it fires (Sunday, for a Monday 08:00
    digest). The digest job reads "as of" a date as the end of that day, and a cutoff past Monday's 09:30 open
    would forecast the *following* week; the day before keeps the target on the week about to open."""
    return fire_time.astimezone(NEW_YORK).date() - dt.timedelta(days=1)


def summary_week_ending(fire_time: dt.datetime) -> dt.date:
    """The summary's date: the New York day it fires (a Saturday normally); its ISO week names the closed week."""
    return fire_time.astimezone(NEW_YORK).date()
