"""Feedback on forecasts: each user's 👍 ("up": useful) or 👎 ("down": wrong) on one recorded forecast, from the
buttons under every answer (`bot.votes`). Kept in the ledger's `votes` table (migration 0005), one row per user and
forecast.

A click sets the user's vote; clicking the other button replaces it; clicking the one already set takes it back
(the user's row goes). Plain SQL, no numpy: the bot writes votes and reads the counts inside Slack's deadline.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import case, delete, func, select

from jobs.ledger.database import Ledger, dialect_insert
from jobs.ledger.models import Forecast, Vote
from jobs.ledger.views import Feedback

UP, DOWN = "up", "down"
VOTES = (UP, DOWN)
_CHUNK = 400  # ids per IN list


class UnknownForecast(LookupError):
    """No forecast with this id in the ledger (its recording failed, or the id was not one of ours)."""


@dataclass(frozen=True)
class Cast:
    """What one click did: the user's vote before and after it (None: none), and the forecast's counts after."""

    forecast_id: str
    ticker: str
    before: str | None
    after: str | None
    up: int
    down: int


def cast(ledger: Ledger, forecast_id: str, user: str, vote: str, *, channel: str | None = None,
         now: dt.datetime | None = None) -> Cast:
    """Record `user`'s click of `vote` on the forecast: set, replace or (the same vote again) take back their vote.
    Raises `UnknownForecast` when the ledger has no such forecast, ValueError for a vote other than up or down."""
    if vote not in VOTES:
        raise ValueError(f"a vote is {' or '.join(VOTES)}, not {vote!r}")
    when = (now or dt.datetime.now(dt.UTC)).isoformat(timespec="seconds")
    with ledger.begin() as conn:
        ticker = conn.scalar(select(Forecast.ticker).where(Forecast.id == forecast_id))
        if ticker is None:
            raise UnknownForecast(forecast_id)
        mine = (Vote.forecast_id == forecast_id, Vote.user == user)
        before = conn.scalar(select(Vote.vote).where(*mine).with_for_update())
        if before == vote:
            conn.execute(delete(Vote).where(*mine))
            after = None
        else:
            statement = dialect_insert(conn, Vote).values(forecast_id=forecast_id, user=user, vote=vote,
                                                          channel=channel, voted_at=when)
            conn.execute(statement.on_conflict_do_update(
                index_elements=["forecast_id", "user"],
                set_={"vote": vote, "channel": channel, "voted_at": when}))
            after = vote
        up, down = _counts(conn, [forecast_id]).get(forecast_id, (0, 0))
    return Cast(forecast_id, ticker, before, after, up, down)


def _sums():
    return (func.sum(case((Vote.vote == UP, 1), else_=0)), func.sum(case((Vote.vote == DOWN, 1), else_=0)))


def _counts(conn, ids: list[str] | None) -> dict[str, tuple[int, int]]:
    query = select(Vote.forecast_id, *_sums()).group_by(Vote.forecast_id)
    found: dict[str, tuple[int, int]] = {}
    chunks = [None] if ids is None else [ids[i:i + _CHUNK] for i in range(0, len(ids), _CHUNK)]
    for chunk in chunks:
        rows = conn.execute(query if chunk is None else query.where(Vote.forecast_id.in_(chunk)))
        found.update({row[0]: (int(row[1] or 0), int(row[2] or 0)) for row in rows})
    return found


def counts(ledger: Ledger, ids: Iterable[str] | None = None) -> dict[str, tuple[int, int]]:
    """(👍, 👎) of each forecast in `ids` that has any vote (all such forecasts when None)."""
    wanted = None if ids is None else list(dict.fromkeys(ids))
    if wanted == []:
        return {}
    with ledger.connect() as conn:
        return _counts(conn, wanted)


def tally(ledger: Ledger, *, ticker: str | None = None) -> Feedback:
    """The feedback on every forecast (of `ticker`): 👍 and 👎 in all, how many people and forecasts they came
    from, and, per kind of vote, how many of the forecasts voted on are scored and how many of those hit."""
    scored = Forecast.scored_at.is_not(None)
    query = (select(Vote.vote, func.count(), func.count(func.distinct(Vote.forecast_id)),
                    func.sum(case((scored, 1), else_=0)),
                    func.sum(case((scored & Forecast.hit.is_(True), 1), else_=0)))
             .join(Forecast, Forecast.id == Vote.forecast_id).group_by(Vote.vote))
    people = select(func.count(func.distinct(Vote.user)), func.count(func.distinct(Vote.forecast_id))) \
        .join(Forecast, Forecast.id == Vote.forecast_id)
    if ticker:
        query = query.where(Forecast.ticker == ticker.upper())
        people = people.where(Forecast.ticker == ticker.upper())
    result = {"up": 0, "down": 0, "up_scored": 0, "up_hits": 0, "down_scored": 0, "down_hits": 0}
    with ledger.connect() as conn:
        for vote, n, _forecasts, n_scored, hits in conn.execute(query):
            if vote in VOTES:
                result |= {vote: int(n), f"{vote}_scored": int(n_scored or 0), f"{vote}_hits": int(hits or 0)}
        voters, forecasts = conn.execute(people).one()
    return Feedback(**result, voters=int(voters or 0), forecasts=int(forecasts or 0))
