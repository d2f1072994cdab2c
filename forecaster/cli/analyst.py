"""The analyst in the terminal: `forecast` and `evaluate`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.cli.common import (
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


def _write_reliability_plot(path: Path, report: dict, *, model_name: str) -> None:
    """The reliability diagram of the model's P(up); a clear error when the answers carry no probabilities."""
    model = (report.get("calibration") or {}).get("model")
    if model is None:
        fail("--plot needs probabilities: the answers carry none (saved predictions need a p_up or "
             "bin_probabilities column; --fingpt-compat scores none).")
    from engine.evaluation.track_report import ReliabilityBin
    from jobs.charts import reliability_chart

    summary = f"Brier {model['brier']:.3f} · log loss {model['log_loss']:.3f} · ECE {model['ece']:.3f} · n {model['n']}"
    bins = [ReliabilityBin(**b) for b in model["reliability"]]  # the evaluator's report is JSON-shaped dicts
    path.write_bytes(reliability_chart(bins, title=f"Reliability of P(up): {model_name}", summary=summary))
    err.print(f"reliability diagram written to {path}")


def _store_calibration(report: dict, analyst, settings) -> None:
    """Write the calibration the evaluation chose beside the served model (its adapter folder, or MODEL_DIR/base
    for the bare base, named by its base so another base never applies it)."""
    from engine.generation.bin_calibration import BinCalibration, base_calibration_dir, write_calibration
    from engine.provenance import base_model_name

    fit = report.get("calibration_fit")
    if not fit:
        fail("--fit-calibration needs bin probabilities from at least two weeks of rows; this evaluation had none.")
    if analyst.adapter is not None:
        folder, model = analyst.adapter, analyst.version
    else:
        folder, model = base_calibration_dir(settings.model_dir), base_model_name(analyst.base)
    chosen = BinCalibration.from_json({**fit["calibration"], "model": model})
    path = write_calibration(folder, chosen, chosen=fit["chosen"], evidence=report.get("evidence"),
                             variants=fit["variants"], bands=fit["bands"])
    err.print(f"calibration ({chosen.describe()}) written to {path}")


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
    from engine.forecast import forecast_record, run_forecasts

    settings = load_settings()
    inputs = gather_inputs(settings, ticker, date=date, weeks=weeks, financials=financials)
    symbol = inputs.symbol
    try:
        with err.status(f"loading {settings.model_base}…"):
            analyst = load_analyst(settings)
        with err.status(f"{symbol}: generating…"):
            result = run_forecasts([inputs], analyst, context_tokens=settings.model_context_tokens,
                                   max_new_tokens=settings.model_max_new_tokens,
                                   signal_band=settings.signal_band)[0]
    except EngineError as exc:
        fail(str(exc))
    if as_json:
        out.print_json(json.dumps(forecast_record(result).to_json()))
        return
    from forecaster.terminal import forecast_panel

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
    train_split: Annotated[str | None, typer.Option(
        help="A split of --dataset (e.g. 'train') to take the baselines' base rates of up weeks from.")] = None,
    train_dataset: Annotated[str | None, typer.Option(
        help="The training data (same formats as --dataset) to take those base rates from; its --train-split "
             "(default 'train') when it has several.")] = None,
    train_up_rate: Annotated[float | None, typer.Option(
        min=0.0, max=1.0, help="The training data's share of up weeks, for the constant baselines' P(up) "
                               "(when no --train-split is at hand; momentum then gets no probability).")] = None,
    plot: Annotated[Path | None, typer.Option(help="Write the reliability diagram of the model's P(up) to this PNG.")]
        = None,
    save_predictions: Annotated[Path | None, typer.Option(
        help="Write the answers and their probabilities as JSONL, readable by --predictions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print one JSON object.")] = False,
    mode: Annotated[str, typer.Option(
        help="full: generate every answer as /forecast does (the reference). scaffold: score the 12 bins after a "
             "fixed placeholder answer, one prefill per row and nothing generated: cheap enough for every row on a "
             "CPU, an approximation of the full path.")] = "full",
    fit_calibration: Annotated[bool, typer.Option(
        "--fit-calibration", help="Store the calibration this evaluation chose (contextual bias and/or "
        "temperature, fitted on these rows) with the served model: in its adapter folder, or MODEL_DIR/base for "
        "the bare base. Workers apply it from their next adapter switch or restart.")] = False,
) -> None:
    """Score forecasts against a FinGPT-format dataset, next to naive baselines; with probabilities, their
    Brier score, log loss, calibration error and abstention table, the out-of-sample comparison of bin
    calibrations, and whether every stated call followed the serving rule."""
    from engine.data.fingpt_rows import load_eval_rows
    from engine.evaluation.baselines import BaseRates
    from engine.evaluation.eval_report import render_report
    from engine.evaluation.evaluate import evaluate as run_evaluation
    from engine.evaluation.evaluate import training_rates
    from engine.evaluation.predictions import load_predictions, load_probabilities
    from engine.evaluation.predictions import save_predictions as write_predictions
    from engine.exceptions import EngineError
    from engine.generation.bin_calibration import IDENTITY
    from engine.generation.scaffold import SCAFFOLD, content_free_conversation

    if (train_split is not None or train_dataset is not None) and train_up_rate is not None:
        fail("Give either the training data (--train-split / --train-dataset) or --train-up-rate, not both.")
    if mode not in ("full", "scaffold"):
        fail(f"--mode is full or scaffold, not {mode!r}.")
    if predictions is not None and (mode == "scaffold" or fit_calibration):
        fail("--mode scaffold and --fit-calibration score with the model; they cannot read --predictions.")
    if plot is not None and plot.suffix.lower() != ".png":
        fail(f"--plot writes a PNG: give a file name ending in .png, not {plot.name!r}.")
    settings = load_settings()
    try:
        rows = load_eval_rows(dataset, split=split, limit=limit)
        rates = None
        if train_split is not None or train_dataset is not None:
            rates = training_rates(train_dataset or dataset, train_split or "train", evaluated=(dataset, split))
        elif train_up_rate is not None:
            rates = BaseRates(up=train_up_rate, after_up=None, after_down=None, source="--train-up-rate")
        saved = saved_probabilities = None
        generate = score_bins = None
        content_free = None
        analyst = None
        model_name = "predictions"
        if predictions is not None:
            saved = load_predictions(predictions, column=column, expected=len(rows), allow_more=limit is not None)
            saved_probabilities = load_probabilities(predictions, expected=len(rows))
            model_name = predictions.stem
        else:
            with err.status(f"loading {settings.model_base}…"):
                analyst = load_analyst(settings)
            model_name = analyst.version

            def generate(conversations):
                return analyst.generate(conversations, max_new_tokens=settings.model_max_new_tokens)

            def score_bins(conversations):
                return analyst.score_after(conversations, SCAFFOLD)

            [content_free] = analyst.score_after([content_free_conversation()], SCAFFOLD)

        with progress_bar(len(rows), enabled=saved is None and not as_json) as progress:
            report = run_evaluation(rows, predictions=saved, probabilities=saved_probabilities, generate=generate,
                                    fingpt_compat=fingpt_compat, batch_size=settings.model_batch_size,
                                    progress=progress, train_majority=train_majority, rates=rates, mode=mode,
                                    score_bins=score_bins, content_free=content_free, model=model_name,
                                    calibration=analyst.calibration if analyst is not None else IDENTITY)
    except EngineError as exc:
        fail(str(exc))
    report["model"] = model_name
    if fit_calibration:
        _store_calibration(report, analyst, settings)
    if save_predictions is not None:
        write_predictions(save_predictions, rows, report)
        err.print(f"answers and probabilities written to {save_predictions}")
    if plot is not None:
        _write_reliability_plot(plot, report, model_name=model_name)
    if as_json:
        typer.echo(json.dumps({k: v for k, v in report.items() if k not in ("predictions", "probabilities")}))
        return
    typer.echo("\n".join(render_report(report, model_name=model_name)))
