"""Market data commands: `prompt`, `data snapshot`, `data dow30`."""

from __future__ import annotations

import datetime as dt
import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.cli import common
from forecaster.cli.common import (
    app,
    data_app,
    err,
    fail,
    gather_inputs,
    load_settings,
    ny_date,
    out,
    parse_tickers,
    resolve_cutoff,
)

if TYPE_CHECKING:
    from engine.data.inputs import ForecastInputs


@app.command()
def prompt(
    ticker: Annotated[str, typer.Argument(help="Symbol, e.g. AXP.")],
    date: Annotated[str | None, typer.Option(help="Forecast as of the end of this day (YYYY-MM-DD). "
                                                  "Default: now (or the snapshot's moment).")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks in the prompt.")] = 3,
    financials: Annotated[bool, typer.Option(help="Include the latest quarterly basic financials.")] = True,
    original_wording: Annotated[bool, typer.Option(
        help="Reproduce the dataset's 'cryptocurrency price movement' bug, for comparisons.")] = False,
    seed: Annotated[int, typer.Option(help="News sampling seed.")] = 0,
    as_json: Annotated[bool, typer.Option("--json", help="Print chat messages and metadata as JSON.")] = False,
) -> None:
    """Print the FinGPT prompt the analyst would read for TICKER, built from fresh data."""
    from engine.data.prompts import build_messages

    result = gather_inputs(load_settings(), ticker, date=date, weeks=weeks, financials=financials,
                           wording="cryptocurrency" if original_wording else "stock", seed=seed)
    messages = build_messages(result.parts)
    if as_json:
        out.print_json(json.dumps({"messages": messages, **describe(result)}))
        return
    from forecaster.terminal import inputs_summary

    sys.stdout.write(messages[1]["content"] + "\n\n")
    sys.stdout.flush()
    err.print(inputs_summary(result))


def describe(result: ForecastInputs) -> dict:
    return {
        "symbol": result.symbol,
        "target_week": result.target.period,
        "cutoff": result.cutoff.isoformat(),
        "data_as_of": result.data_as_of.isoformat(),
        "news": [{"week": w.week.period, "available": w.available, "used": w.used} for w in result.news],
        "empty_weeks": result.empty_weeks,
        "financials_period": result.parts.financials.period if result.parts.financials else None,
        "notes": list(result.notes),
    }


@data_app.command("snapshot")
def snapshot(
    tickers: Annotated[list[str], typer.Argument(help="Symbols to record, e.g. AXP MSFT (or 'dow30').")],
    out_dir: Annotated[Path, typer.Option("--out", help="Directory to write (created if needed).")],
    date: Annotated[str | None, typer.Option(help="Record as of the end of this day (YYYY-MM-DD). "
                                                  "Default: now.")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks per forecast.")] = 4,
    financials: Annotated[bool, typer.Option(help="Record quarterly basic financials.")] = True,
) -> None:
    """Record everything forecasts for TICKERS need into plain JSON files, for offline runs with
    DATA_SNAPSHOT_DIR."""
    from engine.data.inputs import Sources, gather
    from engine.exceptions import EngineError
    from engine.market.dow30 import members
    from engine.sources.snapshot import RecordingSources, write_snapshot

    settings = load_settings()
    now = dt.datetime.now(dt.UTC)
    cutoff = resolve_cutoff(date, now)
    symbols = members(ny_date(cutoff)) if [t.lower() for t in tickers] == ["dow30"] else parse_tickers(tickers)
    try:
        live = common.build_live_sources(settings)
        recording = RecordingSources(news=live.news, fundamentals=live.fundamentals, prices=live.prices)
        results = gather(symbols, sources=Sources(recording, recording, recording), cutoff=cutoff, now=now,
                         weeks=weeks, with_financials=financials, financials_lag_days=settings.financials_lag_days)
    except EngineError as exc:
        fail(str(exc))
    written = write_snapshot(recording, out_dir, description={
        "cutoff": min(cutoff, now).isoformat(), "recorded_now": now.isoformat(), "weeks": weeks,
        "with_financials": financials, "requested": symbols,
    })
    failed = {s: r for s, r in results.items() if isinstance(r, EngineError)}
    err.print(f"wrote {len(written)} files for {len(symbols) - len(failed)} of {len(symbols)} symbols to {out_dir}")
    for symbol, error in failed.items():
        err.print(f"[red]{symbol}:[/] {error}", highlight=False)
    if failed:
        raise typer.Exit(1)


@data_app.command("dow30")
def dow30(date: Annotated[str | None, typer.Option(help="Members on this day (YYYY-MM-DD). Default: today.")]
          = None) -> None:
    """List the Dow Jones Industrial Average members on a date."""
    from engine.market.dow30 import members

    day = ny_date(resolve_cutoff(date, dt.datetime.now(dt.UTC)))
    typer.echo(" ".join(members(day)))
