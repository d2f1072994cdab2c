"""The analyst in the terminal: `forecast` and `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from jobs.cli.common import (
    app,
    err,
    fail,
    gather_inputs,
    load_analyst,
    load_settings,
    out,
    progress_bar,
)

if TYPE_CHECKING:
    pass


@app.command()
def forecast(
    ticker: Annotated[str, typer.Argument(help="Symbol, e.g. AXP.")],
    date: Annotated[str | None, typer.Option(help="Forecast as of the end of this day (YYYY-MM-DD). "
                                                  "Default: now (or the snapshot's moment).")] = None,
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks in the prompt.")] = 3,
    financials: Annotated[bool, typer.Option(help="Include the latest quarterly basic financials.")] = True,
    as_json: Annotated[bool, typer.Option("--json", help="Print the structured forecast as JSON.")] = False,
) -> None:
    """Data → prompt → model → parsed forecast for TICKER, in the terminal."""
    from engine.exceptions import EngineError
    from engine.forecast import run_forecasts, to_json

    settings = load_settings()
    inputs = gather_inputs(settings, ticker, date=date, weeks=weeks, financials=financials)
    symbol = inputs.symbol
    try:
        with err.status(f"loading {settings.model_base}…"):
            analyst = load_analyst(settings)
        with err.status(f"{symbol}: generating…"):
            result = run_forecasts([inputs], analyst, context_tokens=settings.model_context_tokens,
                                   max_new_tokens=settings.model_max_new_tokens)[0]
    except EngineError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(to_json(result)))
        return
    from jobs.terminal import forecast_panel

    out.print(forecast_panel(result))


@app.command()
def evaluate(
    dataset: Annotated[str, typer.Option(help="A save_to_disk split folder, DatasetDict folder, parquet or JSONL "
                                              "file, or a Hugging Face dataset id.")],
    split: Annotated[str, typer.Option(help="Split to evaluate.")] = "test",
    predictions: Annotated[Path | None, typer.Option(help="Score saved outputs (CSV or JSONL, rows in dataset "
                                                          "order) instead of generating.")] = None,
    column: Annotated[str, typer.Option(help="Column of --predictions holding the answers.")] = "prediction",
    limit: Annotated[int | None, typer.Option(min=1, help="Only the first N rows.")] = None,
    fingpt_compat: Annotated[bool, typer.Option(
        "--fingpt-compat", help="Reproduce FinGPT's calc_metrics exactly, to compare with published numbers.")]
        = False,
    train_majority: Annotated[str | None, typer.Option(
        help="The training split's majority label (e.g. 'down by 0-1%'), for that baseline.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
) -> None:
    """Score forecasts against a FinGPT-format dataset, next to naive baselines."""
    from engine.evaluate import evaluate as run_evaluation
    from engine.evaluate import load_eval_rows, load_predictions, render_report
    from engine.exceptions import EngineError

    settings = load_settings()
    try:
        rows = load_eval_rows(dataset, split=split, limit=limit)
        saved = None
        generate = None
        model_name = "predictions"
        if predictions is not None:
            saved = load_predictions(predictions, column=column, expected=len(rows), allow_more=limit is not None)
            model_name = predictions.stem
        else:
            with err.status(f"loading {settings.model_base}…"):
                analyst = load_analyst(settings)
            model_name = analyst.version

            def generate(conversations):
                return analyst.generate(conversations, max_new_tokens=settings.model_max_new_tokens)

        with progress_bar(len(rows), enabled=saved is None and not as_json) as progress:
            report = run_evaluation(rows, predictions=saved, generate=generate, fingpt_compat=fingpt_compat,
                                    batch_size=settings.model_batch_size, progress=progress,
                                    train_majority=train_majority)
    except EngineError as exc:
        fail(str(exc))
    report["model"] = model_name
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report.items() if k != "predictions"}))
        return
    typer.echo("\n".join(render_report(report, model_name=model_name)))
