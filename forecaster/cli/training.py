"""Training commands: `dataset prepare|build`, `train`, `retrain`, `model list|promote|rollback`."""

from __future__ import annotations

import contextlib
import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from forecaster.cli import common
from forecaster.cli.common import (
    app,
    dataset_app,
    err,
    fail,
    load_settings,
    model_app,
    parse_tickers,
    progress_bar,
)

if TYPE_CHECKING:
    from engine.training.train_config import TrainConfig
    from forecaster.settings import Settings


@dataset_app.command("prepare")
def dataset_prepare(
    source: Annotated[str, typer.Option(help="FinGPT rows: save_to_disk folder, DatasetDict folder, parquet, "
                                             "JSONL, or a Hugging Face id.")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder to write (train.jsonl, test.jsonl, manifest).")],
    base: Annotated[str | None, typer.Option(help="Model whose tokenizer and chat template count the tokens. "
                                                  "Default: MODEL_BASE.")] = None,
    split: Annotated[str | None, typer.Option(help="Only this split (default: every split present).")] = None,
    max_length: Annotated[int, typer.Option(help="Prompt + answer tokens per row; longer prompts lose their "
                                                 "oldest news, never the answer.")] = 4096,
    test_weeks: Annotated[int, typer.Option(help="Re-split chronologically: the last N weeks of each ticker "
                                                 "become the test split.")] = 0,
) -> None:
    """Convert FinGPT's Llama-format rows into chat prompt/completion rows for training."""
    from engine.data.dataset import prepare_dataset
    from engine.data.prepared import render_summary
    from engine.exceptions import EngineError

    settings = load_settings()
    try:
        manifest = prepare_dataset(source, out_dir, tokenizer_path=base or settings.model_base, split=split,
                                   max_length=max_length, test_weeks=test_weeks)
    except EngineError as exc:
        fail(str(exc))
    typer.echo("\n".join(render_summary(manifest)))


@dataset_app.command("build")
def dataset_build(
    tickers: Annotated[list[str], typer.Argument(help="Symbols, or 'dow30' for the members at --end.")],
    start: Annotated[str, typer.Option(help="First target week's Sunday on or after this date (YYYY-MM-DD).")],
    end: Annotated[str, typer.Option(help="Last target week starts on or before this date (YYYY-MM-DD).")],
    out_dir: Annotated[Path, typer.Option("--out", help="Folder for rows.jsonl (resumable), failures, manifest.")],
    weeks: Annotated[int, typer.Option(min=1, max=4, help="Past weeks per prompt.")] = 3,
) -> None:
    """The FinGPT pipeline on fresh data: prompts from our sources, labels from realized returns, answers from a
    teacher model behind an OpenAI-compatible endpoint (TEACHER_BASE_URL, TEACHER_MODEL, TEACHER_API_KEY)."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    from engine.exceptions import EngineError
    from engine.market.dow30 import members
    from engine.market.weeks import NEW_YORK, parse_day
    from engine.training.teacher import build_dataset
    from engine.training.teacher_client import Teacher

    settings = load_settings()
    now = dt.datetime.now(dt.UTC)
    today = now.astimezone(NEW_YORK).date()
    try:
        first, last = parse_day(start, today=today), parse_day(end, today=today)
    except EngineError as exc:
        fail(str(exc))
    missing = [name for name, value in (("TEACHER_BASE_URL", settings.teacher_base_url),
                                        ("TEACHER_MODEL", settings.teacher_model),
                                        ("TEACHER_API_KEY", settings.teacher_api_key)) if not value]
    if missing:
        fail(f"set {', '.join(missing)}: the teacher model behind an OpenAI-compatible endpoint writes the answers")
    symbols = members(last) if [t.lower() for t in tickers] == ["dow30"] else parse_tickers(tickers)
    teacher = Teacher(base_url=settings.teacher_base_url, model=settings.teacher_model,
                      api_key=settings.teacher_api_key.get_secret_value())
    with Progress(TextColumn("building"), BarColumn(), MofNCompleteColumn(), TimeRemainingColumn(),
                  console=err) as bar:
        task = bar.add_task("build", total=None)
        try:
            sources = common.build_live_sources(settings)
            summary = build_dataset(symbols, start=first, end=last, out=out_dir, sources=sources,
                                    teacher=teacher, weeks=weeks, now=now,
                                    progress=lambda done, total: bar.update(task, completed=done, total=total))
        except EngineError as exc:
            fail(str(exc))
    err.print(f"{summary.rows_total} rows in {out_dir / 'rows.jsonl'} ({summary.written} new, {summary.skipped} "
              f"already there, {summary.failed} failed: see failures.jsonl); status {summary.status}",
              highlight=False)
    if summary.status != "complete":
        raise typer.Exit(1)


def _train_config(settings: Settings, base: str | None, **values) -> TrainConfig:
    from engine.training.train_config import TrainConfig

    try:
        return TrainConfig(base=base or settings.model_base, device=settings.model_device, **values)
    except ValueError as exc:
        fail(str(exc))


@contextlib.contextmanager
def training_bar(max_steps_hint: int | None = None):
    """A rich progress bar fed by the trainer's progress callback: step, loss, tokens/s, ETA."""
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeRemainingColumn

    with Progress(TextColumn("training"), BarColumn(), MofNCompleteColumn(), TextColumn("{task.fields[info]}"),
                  TimeRemainingColumn(), console=err) as bar:
        task = bar.add_task("train", total=max_steps_hint, info="")

        def update(p) -> None:
            info = f"loss {p.loss:.4f}" if p.loss is not None else ""
            if p.tokens_per_s:
                info += f"  {p.tokens_per_s:,.0f} tok/s"
            bar.update(task, completed=p.step, total=p.max_steps, info=info)
            if not err.is_terminal:  # a log file gets a line per update instead of a live bar
                eta = f"  ETA {dt.timedelta(seconds=round(p.eta_s))}" if p.eta_s is not None else ""
                err.print(f"training step {p.step}/{p.max_steps}  {info}{eta}", highlight=False)

        yield update


@app.command("train")
def train_command(
    dataset: Annotated[Path, typer.Option(help="A folder written by `forecaster dataset prepare`.")],
    out_dir: Annotated[Path, typer.Option("--out", help="New folder for the adapter.")],
    base: Annotated[str | None, typer.Option(help="Base model (default MODEL_BASE).")] = None,
    qlora: Annotated[bool, typer.Option("--qlora", help="4-bit NF4 base (bitsandbytes) under the LoRA.")] = False,
    max_length: Annotated[int, typer.Option(help="Longest prompt + answer, in tokens.")] = 4096,
    epochs: Annotated[float, typer.Option(help="Passes over the training rows.")] = 1.0,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-5,
    rank: Annotated[int, typer.Option(help="LoRA rank (alpha = 2 x rank).")] = 8,
    grad_accum: Annotated[int, typer.Option(help="Rows per optimizer update (batch size is 1).")] = 8,
    max_steps: Annotated[int, typer.Option(help="Stop after this many updates (-1: the epochs).")] = -1,
    dropout: Annotated[float, typer.Option(help="LoRA dropout (on a CPU its random masks cost ~40% of a step).")]
        = 0.1,
    seed: Annotated[int, typer.Option(help="Seeds the row order, LoRA's initialisation and dropout.")] = 0,
    checkpoints: Annotated[Path | None, typer.Option(help="Keep checkpoints here; the same command again "
                                                          "resumes a stopped run.")] = None,
) -> None:
    """LoRA/QLoRA fine-tuning on the answers only, memory-lean by construction."""
    from engine.exceptions import EngineError
    from engine.training.train import train

    settings = load_settings()
    cfg = _train_config(settings, base, qlora=qlora, max_length=max_length, epochs=epochs, learning_rate=lr,
                        rank=rank, alpha=2 * rank, gradient_accumulation=grad_accum, max_steps=max_steps,
                        dropout=dropout, seed=seed)
    try:
        with training_bar() as progress:
            result = train(cfg, dataset, out_dir, progress=progress, checkpoint_dir=checkpoints)
    except EngineError as exc:
        fail(str(exc))
    r = result.record
    err.print(f"adapter saved to {out_dir}: {r['steps']} steps, loss {r['loss_first']:.4f} → {r['loss_last']:.4f}, "
              f"{r['wall_s']:.0f}s, peak {r['peak_memory']}", highlight=False)


@app.command()
def retrain(
    dataset: Annotated[Path, typer.Option(help="A folder written by `forecaster dataset prepare`.")],
    eval_dataset: Annotated[str | None, typer.Option(help="FinGPT-format split the gate evaluates on "
                                                          "(default EVAL_DATASET).")] = None,
    eval_limit: Annotated[int | None, typer.Option(min=1, help="Evaluate on the first N rows only.")] = None,
    epochs: Annotated[float, typer.Option(help="Passes over the training rows.")] = 1.0,
    max_steps: Annotated[int, typer.Option(help="Stop after this many updates (-1: the epochs).")] = -1,
    grad_accum: Annotated[int, typer.Option(help="Rows per optimizer update (batch size is 1).")] = 8,
    qlora: Annotated[bool, typer.Option("--qlora", help="4-bit NF4 base under the LoRA.")] = False,
    force: Annotated[bool, typer.Option("--force", help="Promote even if it scores worse (admin override).")]
        = False,
    max_length: Annotated[int, typer.Option(help="Longest prompt + answer, in tokens.")] = 4096,
    lr: Annotated[float, typer.Option(help="Learning rate.")] = 5e-5,
    dropout: Annotated[float, typer.Option(help="LoRA dropout (0.1 as FinGPT; on a CPU its random masks cost "
                                                "~40% of each step, README: First adapter).")] = 0.1,
    seed: Annotated[int, typer.Option(help="Seeds the row order, LoRA's initialisation and dropout.")] = 0,
    checkpoints: Annotated[Path | None, typer.Option(help="Keep training checkpoints here; run the same command "
                                                          "again to resume a stopped retrain.")] = None,
) -> None:
    """Train a new adapter into MODEL_DIR, evaluate it against the served one, promote it only if not worse."""
    from engine.exceptions import EngineError
    from engine.training.registry import Registry
    from engine.training.retrain import retrain as run_retrain

    settings = load_settings()
    eval_dataset = eval_dataset or settings.eval_dataset
    if not eval_dataset:
        fail("give --eval-dataset or set EVAL_DATASET: a new adapter is served only after it is evaluated")
    cfg = _train_config(settings, None, qlora=qlora, epochs=epochs, max_steps=max_steps,
                        gradient_accumulation=grad_accum, max_length=max_length, learning_rate=lr,
                        dropout=dropout, seed=seed)
    try:
        with training_bar() as train_progress, progress_bar(eval_limit or 300, enabled=True) as eval_progress:
            outcome = run_retrain(
                cfg, dataset_dir=dataset, registry=Registry(settings.model_dir), eval_dataset=eval_dataset,
                load_analyst=lambda: _load_base(settings), metric=settings.model_gate_metric, force=force,
                eval_limit=eval_limit, max_new_tokens=settings.model_max_new_tokens,
                batch_size=settings.model_batch_size, train_progress=train_progress, eval_progress=eval_progress,
                model_name=settings.model_name, checkpoint_dir=checkpoints)
    except EngineError as exc:
        fail(str(exc))
    verdict = ("promoted" if outcome.decision.promote
               else f"not promoted, {outcome.compared_version or 'the bare base'} stays served")
    typer.echo(f"{outcome.version}: {verdict} (decided by {outcome.decision.decided_by}) — {outcome.decision.reason}")
    if outcome.current_scores:
        from engine.evaluation.eval_report import render_comparison

        typer.echo("\n".join(render_comparison(outcome.current_scores, outcome.new_scores,
                                                before_name=outcome.compared_version or "bare base",
                                                after_name=outcome.version)))
    t = outcome.training
    typer.echo(f"training: {t['steps']} updates in {t['wall_s']:.0f}s ({t.get('tokens_per_s') or '–'} tokens/s, "
               f"{t['placement']['dtype']} on {t['placement']['device']}), loss {t['loss_first']:.3f} → "
               f"{t['loss_last']:.3f}, peak {t['peak_memory']}; answers of both in "
               f"{Path(settings.model_dir) / outcome.version / 'answers.json'}")


def _load_base(settings: Settings):
    from engine.generation.model import Analyst

    return Analyst.load(settings.model_base, device=settings.model_device, dtype=settings.model_dtype,
                        load_in_4bit=settings.model_load_in_4bit, quantize=settings.model_quantize,
                        threads=settings.model_threads,
                        merge_adapter=settings.model_merge_adapter,
                        constrained=settings.model_constrained)


@model_app.command("list")
def model_list() -> None:
    """Every adapter version with its scores and the gate's verdict; * marks the one served."""
    from engine.training.registry import Registry

    registry = Registry(load_settings().model_dir)
    current = registry.current_version()
    if not registry.versions():
        typer.echo(f"no adapters in {registry.root}; the bare base model is served")
        return
    for version in registry.versions():
        scores = (registry.read(version, "evaluation.json") or {}).get("scores") or {}
        decision = registry.read(version, "decision.json") or {}
        acc = scores.get("binary_accuracy_all")
        verdict = ("promoted" if decision.get("promote") else "refused") if decision else "not evaluated"
        base = registry.base_model(version)
        typer.echo(f"{'*' if version == current else ' '} {version}{f'  on {base}' if base else ''}  acc(all) "
                   f"{'–' if acc is None else f'{acc:.3f}'}  {verdict}  {decision.get('reason', '')}".rstrip())


@model_app.command("promote")
def model_promote(version: Annotated[str, typer.Argument(help="e.g. v0003")]) -> None:
    """Serve VERSION from now on (workers pick it up between jobs)."""
    from engine.exceptions import EngineError
    from engine.training.registry import Registry

    try:
        Registry(load_settings().model_dir).promote(version, reason="promoted by hand")
    except EngineError as exc:
        fail(str(exc))
    typer.echo(f"{version} is now served")


@model_app.command("rollback")
def model_rollback() -> None:
    """Serve the version that was current before this one (or the bare base)."""
    from engine.exceptions import EngineError
    from engine.training.registry import Registry

    try:
        previous = Registry(load_settings().model_dir).rollback(reason="rolled back by hand")
    except EngineError as exc:
        fail(str(exc))
    typer.echo(f"now serving {previous or 'the bare base model'}")
