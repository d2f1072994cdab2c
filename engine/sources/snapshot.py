"""Record and replay: everything a forecast needs, as plain JSON files in a directory.

`RecordingSources` wraps live sources and remembers every answer; `write_snapshot` saves them; `SnapshotSource`
serves them back with no network, and says exactly what is missing when asked for something it never recorded.

Layout (one folder per symbol; all JSON, our own record shapes, never a vendor's raw payload):

    DIR/manifest.json                     what was recorded, when, from which sources
    DIR/AXP/profile.json                  CompanyProfile
    DIR/AXP/financials.json               [BasicFinancials, ...] newest first
    DIR/AXP/prices.json                   {"start", "end", "closes": [DailyClose, ...]}
    DIR/AXP/news/<start>_<end>.json       {"start", "end", "items": [NewsItem, ...]}, one per weekly window
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from pydantic import TypeAdapter

from engine.exceptions import NoPriceData, SnapshotMissing
from engine.records import BasicFinancials, CompanyProfile, DailyClose, NewsItem
from engine.sources.base import FundamentalsSource, NewsSource, PriceSource, in_window

FORMAT = "forecaster-snapshot/1"
_NEWS = TypeAdapter(list[NewsItem])
_CLOSES = TypeAdapter(list[DailyClose])
_REPORTS = TypeAdapter(list[BasicFinancials])

RECORD_HINT = "record it with `forecaster data snapshot {symbol} --date YYYY-MM-DD --weeks N --out {dir}`"


@dataclass
class _Recorded:
    profiles: dict[str, CompanyProfile] = field(default_factory=dict)
    financials: dict[str, list[BasicFinancials]] = field(default_factory=dict)
    closes: dict[str, tuple[dt.date, dt.date, list[DailyClose]]] = field(default_factory=dict)
    news: dict[str, list[tuple[dt.datetime, dt.datetime, list[NewsItem]]]] = field(default_factory=dict)


class RecordingSources:
    """Passes every call through to the live sources and keeps what came back."""

    def __init__(self, *, news: NewsSource, fundamentals: FundamentalsSource, prices: PriceSource) -> None:
        self._news, self._fundamentals, self._prices = news, fundamentals, prices
        self.name = news.name
        self.recorded = _Recorded()
        self.source_names = {"news": news.name, "fundamentals": fundamentals.name, "prices": prices.name}

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        items = self._news.company_news(symbol, start, end)
        self.recorded.news.setdefault(symbol, []).append((start, end, items))
        return items

    def profile(self, symbol: str) -> CompanyProfile:
        self.recorded.profiles[symbol] = profile = self._fundamentals.profile(symbol)
        return profile

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        self.recorded.financials[symbol] = reports = self._fundamentals.quarterly_financials(symbol)
        return reports

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        result = self._prices.daily_closes(symbols, start, end)
        for symbol, closes in result.items():
            self.recorded.closes[symbol] = (start, end, closes)
        return result


def _window_filename(start: dt.datetime, end: dt.datetime) -> str:
    def stamp(moment: dt.datetime) -> str:
        return moment.astimezone(dt.UTC).strftime("%Y%m%dT%H%M%SZ")

    return f"{stamp(start)}_{stamp(end)}.json"


def write_snapshot(recording: RecordingSources, out: Path, *, description: dict) -> list[Path]:
    """Write what `recording` saw into `out`. Returns the files written."""
    out.mkdir(parents=True, exist_ok=True)
    rec = recording.recorded
    written: list[Path] = []

    def put(path: Path, text: str) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text + "\n", encoding="utf-8")
        written.append(path)

    for symbol, profile in rec.profiles.items():
        put(out / symbol / "profile.json", profile.model_dump_json(indent=2))
    for symbol, reports in rec.financials.items():
        put(out / symbol / "financials.json", _REPORTS.dump_json(reports, indent=2).decode())
    for symbol, (start, end, closes) in rec.closes.items():
        payload = {"start": start.isoformat(), "end": end.isoformat(),
                   "closes": _CLOSES.dump_python(closes, mode="json")}
        put(out / symbol / "prices.json", json.dumps(payload, indent=2))
    for symbol, windows in rec.news.items():
        for start, end, items in windows:
            payload = {"start": start.isoformat(), "end": end.isoformat(),
                       "items": _NEWS.dump_python(items, mode="json")}
            put(out / symbol / "news" / _window_filename(start, end), json.dumps(payload, indent=2))
    manifest = {
        "format": FORMAT,
        "created": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "sources": recording.source_names,
        "symbols": sorted(set(rec.profiles) | set(rec.closes) | set(rec.news)),
        **description,
    }
    put(out / "manifest.json", json.dumps(manifest, indent=2))
    return written


class SnapshotSource:
    """NewsSource, FundamentalsSource and PriceSource that read a snapshot directory, never the network."""

    def __init__(self, root: Path) -> None:
        if not (root / "manifest.json").is_file():
            raise SnapshotMissing(
                f"{root} is not a snapshot (no manifest.json); record one with "
                "`forecaster data snapshot TICKER --date YYYY-MM-DD --out DIR`"
            )
        self.root = root
        self.manifest = json.loads((root / "manifest.json").read_text(encoding="utf-8"))
        self.name = f"snapshot:{root.name}"

    def _missing(self, symbol: str, what: str) -> SnapshotMissing:
        hint = RECORD_HINT.format(symbol=symbol, dir=self.root)
        return SnapshotMissing(f"snapshot {self.root} has no {what} for {symbol}; {hint}")

    def _read(self, symbol: str, name: str, what: str) -> str:
        path = self.root / symbol / name
        if not path.is_file():
            raise self._missing(symbol, what)
        return path.read_text(encoding="utf-8")

    def profile(self, symbol: str) -> CompanyProfile:
        return CompanyProfile.model_validate_json(self._read(symbol, "profile.json", "company profile"))

    def quarterly_financials(self, symbol: str) -> list[BasicFinancials]:
        return _REPORTS.validate_json(self._read(symbol, "financials.json", "basic financials"))

    def daily_closes(self, symbols: Sequence[str], start: dt.date, end: dt.date) -> dict[str, list[DailyClose]]:
        result = {}
        for symbol in symbols:
            payload = json.loads(self._read(symbol, "prices.json", "prices"))
            have_start, have_end = dt.date.fromisoformat(payload["start"]), dt.date.fromisoformat(payload["end"])
            if start < have_start or end > have_end:
                raise self._missing(symbol, f"prices from {start} to {end} (it holds {have_start} to {have_end})")
            closes = [c for c in _CLOSES.validate_python(payload["closes"]) if start <= c.date <= end]
            if not closes:
                raise NoPriceData(f"no prices for {symbol} between {start} and {end} in snapshot {self.root}")
            result[symbol] = closes
        return result

    def company_news(self, symbol: str, start: dt.datetime, end: dt.datetime) -> list[NewsItem]:
        folder = self.root / symbol / "news"
        windows = []
        for path in sorted(folder.glob("*.json")) if folder.is_dir() else []:
            payload = json.loads(path.read_text(encoding="utf-8"))
            windows.append((dt.datetime.fromisoformat(payload["start"]), dt.datetime.fromisoformat(payload["end"]),
                            _NEWS.validate_python(payload["items"])))
        if not _covered(start, end, [(s, e) for s, e, _ in windows]):
            raise self._missing(symbol, f"news from {start.isoformat()} to {end.isoformat()}")
        items = {(i.published, i.headline): i for _, _, window_items in windows for i in window_items}
        return in_window(list(items.values()), start, end)


def _covered(start: dt.datetime, end: dt.datetime, windows: list[tuple[dt.datetime, dt.datetime]]) -> bool:
    """Whether the recorded windows, merged, cover [start, end]."""
    reach = start
    for w_start, w_end in sorted(windows):
        if w_start > reach:
            break
        reach = max(reach, w_end)
        if reach >= end:
            return True
    return reach >= end and any(w_start <= start for w_start, _ in windows)


def recorded_clock(root: Path) -> tuple[dt.datetime, dt.datetime]:
    """(cutoff, now) of the moment a snapshot was recorded: a "live" forecast replayed from it is as of then."""
    manifest = json.loads((Path(root) / "manifest.json").read_text(encoding="utf-8"))
    return dt.datetime.fromisoformat(manifest["cutoff"]), dt.datetime.fromisoformat(manifest["recorded_now"])
