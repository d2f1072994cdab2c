"""Writes engine/market/xnys.csv, the table `engine.market.sessions` reads, from exchange_calendars' XNYS calendar.

    python -m engine.market.sessions_table

Apart from `engine.market.sessions` because exchange_calendars is built on pandas, which the bot never imports.
"""

from __future__ import annotations

import datetime as dt

from engine.market.sessions import NEW_YORK, REGULAR_CLOSE, REGULAR_OPEN, TABLE, TABLE_FIRST, TABLE_LAST


def build_table(first: dt.date = TABLE_FIRST, last: dt.date = TABLE_LAST) -> str:
    """The table's text, from the installed exchange_calendars' XNYS calendar."""
    import exchange_calendars

    calendar = exchange_calendars.get_calendar("XNYS", start=first.isoformat(), end=last.isoformat())
    schedule = calendar.schedule
    traded = {
        label.date(): (row.open.tz_convert(NEW_YORK).time(), row.close.tz_convert(NEW_YORK).time())
        for label, row in zip(schedule.index, schedule.itertuples(), strict=True)
    }
    lines = [
        f"# covers {first} to {last}: the NYSE (XNYS) sessions of exchange_calendars {exchange_calendars.__version__}",
        "# Every weekday not listed trades 09:30-16:00 New York; a listed day is closed (no times) or trades at the",
        "# times given. Written by `python -m engine.market.sessions_table`; read by engine/market/sessions.py.",
        "date,open,close",
    ]
    day = first
    while day <= last:
        times = traded.get(day)
        regular = day.weekday() < 5
        if times is None and regular:
            lines.append(f"{day},,")
        elif times is not None and (not regular or times != (REGULAR_OPEN, REGULAR_CLOSE)):
            lines.append(f"{day},{times[0]:%H:%M},{times[1]:%H:%M}")
        day += dt.timedelta(days=1)
    return "\n".join(lines) + "\n"


def main() -> None:
    TABLE.write_text(build_table(), encoding="utf-8")
    print(f"wrote {TABLE} ({TABLE_FIRST} to {TABLE_LAST})")


if __name__ == "__main__":
    main()
