"""How each provider spells a ticker. Users write class shares the exchange way (`BRK.B`, also `BRK-B`); Yahoo wants
`BRK-B` and Finnhub `BRK.B` (MARKET_DATA.md: the Dow30 itself has no dots, so only other tickers meet this).

A one-letter suffix is a share class (BRK.B, BF.B, HEI.A). A longer one is left alone: on Yahoo and Finnhub alike
`.TO`, `.DE` or `.PA` name a foreign exchange, which is not a share class. One-letter exchange suffixes (London's
`.L`) read as classes here: the product forecasts US listings.
"""

from __future__ import annotations

import re

_CLASS_SHARE = re.compile(r"^([A-Z]{1,5})[.\-/]([A-Z])$")


def _split_class(symbol: str) -> tuple[str, str] | None:
    match = _CLASS_SHARE.match(symbol.strip().upper())
    return (match.group(1), match.group(2)) if match else None


def yahoo_symbol(symbol: str) -> str:
    """`BRK.B` → `BRK-B`; everything else unchanged."""
    parts = _split_class(symbol)
    return f"{parts[0]}-{parts[1]}" if parts else symbol


def finnhub_symbol(symbol: str) -> str:
    """`BRK-B` → `BRK.B`; everything else unchanged."""
    parts = _split_class(symbol)
    return f"{parts[0]}.{parts[1]}" if parts else symbol
