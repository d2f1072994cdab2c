"""Train → register → evaluate against what is served → promote only if not worse and better than naive.

The one flow behind `forecaster retrain` and the `/retrain` Slack job. The new adapter is compared on the same rows
with the served adapter or, when none is served, with the bare base (scored here, then kept in the registry), and
with the best naive baseline on those rows (`engine.registry.gate`). Every outcome is written next to the new
adapter: `evaluation.json` (both score sets) and `decision.json` (the gate's verdict and which comparison decided),
so a refused adapter stays inspectable and can still be promoted by hand.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.bin_calibration import IDENTITY, BinCalibration, write_calibration
from engine.evaluate import evaluate
from engine.fingpt_rows import EvalRow, load_eval_rows
from engine.provenance import base_model_name
from engine.registry import BARE_BASE, Decision, Registry, gate
from engine.scaffold import SCAFFOLD, content_free_conversation
from engine.train import ProgressFn, train
from engine.train_config import TrainConfig

# Only what the gate and a reader need; the predictions and per-row failures stay out of the registry.
SCORE_KEYS = ("n", "parsed", "parse_rate", "binary_accuracy", "binary_accuracy_all", "ci95_binary_accuracy_all",
              "mse", "mcc", "rouge", "direction_counts", "baselines", "latency_s", "tokens_per_s",
              "calibration_fit", "consistency")


@dataclass(frozen=True)
class RetrainOutcome:
    version: str
    decision: Decision
    new_scores: dict
    current_scores: dict | None  # the compared model's: the served adapter's, or the bare base's
    training: dict
    compared_version: str | None = None  # the served adapter compared with; None: the bare base
    base_model: str = ""


def _scores(report: dict) -> dict:
    return {k: report.get(k) for k in SCORE_KEYS}


def score_adapter(analyst, adapter: Path | None, rows: list[EvalRow], *, max_new_tokens: int,
                  batch_size: int, progress: Callable[[int, int, float], None] | None = None) -> dict:
    """Scores of `adapter` (None: the bare base) on `rows`, generated with the already loaded base, with the
    out-of-sample comparison of bin calibrations (engine.calibration_fit) among them."""
    analyst.use_adapter(adapter)
    content_free = None
    if hasattr(analyst, "score_after"):
        [content_free] = analyst.score_after([content_free_conversation()], SCAFFOLD)
    report = evaluate(rows, generate=lambda c: analyst.generate(c, max_new_tokens=max_new_tokens),
                      batch_size=batch_size, progress=progress, content_free=content_free,
                      calibration=getattr(analyst, "calibration", IDENTITY), model=getattr(analyst, "version", ""))
    return _scores(report)


def retrain(
    cfg: TrainConfig,
    *,
    dataset_dir: Path,
    registry: Registry,
    eval_dataset: str,
    load_analyst: Callable[[], object],
    metric: str = "binary_accuracy_all",
    force: bool = False,
    eval_limit: int | None = None,
    max_new_tokens: int = 700,
    batch_size: int = 8,
    train_progress: ProgressFn | None = None,
    eval_progress: Callable[[int, int, float], None] | None = None,
    model_name: str | None = None,
) -> RetrainOutcome:
    """`model_name` is MODEL_NAME: what the registry records as the base (else it is named from its own files)."""
    rows = load_eval_rows(eval_dataset, limit=eval_limit)  # fail fast, before an hour of training
    base_name = base_model_name(cfg.base, model_name)
    with tempfile.TemporaryDirectory(prefix="adapter-", dir=registry.root if registry.root.is_dir() else None) as tmp:
        result = train(cfg, dataset_dir, Path(tmp) / "adapter", progress=train_progress)
        version = registry.add(result.out_dir, note=f"trained on {dataset_dir}", base_model=base_name,
                               base_path=cfg.base)

    analyst = load_analyst()

    def scores_of(adapter: Path | None) -> dict:
        return score_adapter(analyst, adapter, rows, max_new_tokens=max_new_tokens, batch_size=batch_size,
                             progress=eval_progress)

    current = registry.current_version()
    if current is not None:
        compared_with = f"served {current}"
        stored = registry.read(current, "evaluation.json") or {}
        same_rows = stored.get("eval_dataset") == eval_dataset and stored.get("eval_limit") == eval_limit
        current_scores = (stored.get("scores") if same_rows else None) or scores_of(registry.path(current))
    else:
        # Nothing served: the bare base answers today, so the new adapter must do at least as well as it does.
        compared_with = BARE_BASE
        key = {"base_model": base_name, "base_path": cfg.base, "eval_dataset": eval_dataset, "eval_limit": eval_limit,
               "max_new_tokens": max_new_tokens}
        current_scores = registry.base_scores(**key)
        if current_scores is None:
            current_scores = scores_of(None)
            registry.write_base_scores(current_scores, **key)
    new_scores = scores_of(registry.path(version))

    decision = gate(new_scores, current_scores, compared_with=compared_with, metric=metric, force=force)
    registry.write(version, "evaluation.json", {
        "eval_dataset": eval_dataset, "eval_limit": eval_limit, "scores": new_scores, "base_model": base_name,
        "compared_with": {"version": current, "label": compared_with, "scores": current_scores},
    })
    registry.write(version, "decision.json", decision.to_dict())
    fit = new_scores.get("calibration_fit")
    if fit:  # served with the adapter from its promotion on (engine.bin_calibration.served_calibration)
        write_calibration(registry.path(version), BinCalibration.from_json(fit["calibration"]),
                          chosen=fit["chosen"], evidence="generated", eval_dataset=eval_dataset)
    if decision.promote:
        registry.promote(version, reason=decision.reason)
    else:
        registry.refuse(version, reason=decision.reason)
    return RetrainOutcome(version, decision, new_scores, current_scores, result.record, compared_version=current,
                          base_model=base_name)
