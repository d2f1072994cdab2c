from __future__ import annotations

import datetime as dt

from engine.market.dow30 import members, was_member

CURRENT = ("AAPL AMGN AMZN AXP BA CAT CRM CSCO CVX DIS GOOGL GS HD HON IBM JNJ JPM KO MCD MMM MRK MSFT NKE NVDA "
           "PG SHW TRV UNH V WMT").split()


def test_current_members_since_2026_06_29():
    assert members(dt.date(2026, 11, 25)) == sorted(CURRENT)
    assert members(dt.date(2026, 6, 29)) == sorted(CURRENT)


def test_every_change_date_keeps_thirty_members():
    for day in ["2020-08-31", "2024-02-23", "2024-02-26", "2024-11-07", "2024-11-08", "2026-06-26", "2026-06-29"]:
        assert len(members(dt.date.fromisoformat(day))) == 30, day


def test_membership_changes_are_dated():
    assert was_member("VZ", dt.date(2026, 6, 26)) and not was_member("VZ", dt.date(2026, 6, 29))
    assert was_member("INTC", dt.date(2024, 11, 7)) and not was_member("INTC", dt.date(2024, 11, 8))
    assert was_member("WBA", dt.date(2024, 2, 23)) and not was_member("WBA", dt.date(2024, 2, 26))
    assert not was_member("GOOGL", dt.date(2026, 6, 26))


def test_fingpt_test_split_symbols_were_the_members_of_2024_02_23(fingpt_test_rows):
    # FinGPT's list was right on the Friday before its first test week, and four names stale by now.
    symbols = sorted({row["symbol"] for row in fingpt_test_rows})
    assert symbols == members(dt.date(2024, 2, 23))
    assert len(set(symbols) - set(CURRENT)) == 4
