"""Train → register → evaluate against what is served → promote only if not worse and better than naive.

The one flow behind `forecaster retrain` and the `/retrain` Slack job. The new adapter is compared on the same rows
with the served adapter or, when none is served, with the bare base (scored here, then kept in the registry), and
with the best naive baseline on those rows (`engine.training.registry.gate`). Every outcome is written next to the new
adapter: `evaluation.json` (both score sets) and `decision.json` (the gate's verdict and which comparison decided),
so a refused adapter stays inspectable and can still be promoted by hand.

Scores are measured once per set of conditions and kept: the bare base's in MODEL_DIR/base-evaluation.json, an
adapter's in its `evaluation.json` (as a new adapter) and `gate-scores.json` (as the served one, measured again).
Kept scores are reused only under exactly the conditions they were measured under (`scoring_conditions`: the rows,
the base, MODEL_CONSTRAINED, MODEL_MAX_NEW_TOKENS, the batch size, the backend and its numerics, the calibration
served with the adapter, how the scores are computed); under any other, the model is scored again.
"""

from __future__ import annotations

import json
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from engine.data.fingpt_rows import EvalRow, load_eval_rows
from engine.evaluation.evaluate import evaluate
from engine.generation.bin_calibration import IDENTITY, BinCalibration, write_calibration
from engine.generation.scaffold import SCAFFOLD, content_free_conversation
from engine.provenance import base_model_name
from engine.training.registry import BARE_BASE, Decision, Registry, gate
from engine.training.train import ProgressFn, train
from engine.training.train_config import TrainConfig

# Only what the gate and a reader need; the predictions and per-row failures stay out of the registry.
SCORE_KEYS = ("n", "parsed", "parse_rate", "binary_accuracy", "binary_accuracy_all", "ci95_binary_accuracy_all",
              "mse", "mcc", "rouge", "direction_counts", "baselines", "latency_s", "tokens_per_s",
              "calibration_fit", "consistency", "calibration", "grounding")
# Bump when scoring changes what a score means (a new metric, another rule): scores kept from before are then
# measured again instead of being compared with new ones.
SCORING_VERSION = 3
GATE_SCORES = "gate-scores.json"  # a served adapter's scores, measured again under later conditions


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
    out-of-sample comparison of bin calibrations (engine.evaluation.calibration_fit) among them."""
    analyst.use_adapter(adapter)
    return _scores(_report_served(analyst, rows, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                  progress=progress))


def _constrained(analyst) -> bool | None:
    if hasattr(analyst, "grammar"):  # in process: the compiled grammar, None when MODEL_CONSTRAINED=false
        return analyst.grammar is not None
    return getattr(analyst, "constrained", None)  # vLLM: whether the grammar goes with each request


def scoring_conditions(analyst, *, base_model: str, base_path: str, eval_dataset: str, eval_limit: int | None,
                       max_new_tokens: int, batch_size: int) -> dict:
    """Everything that changes the scores of what `analyst` serves now (after `use_adapter`: its calibration
    follows the adapter), as plain JSON: kept scores are reused only when these are equal (see the module)."""
    placement = getattr(analyst, "placement", None)
    calibration = getattr(analyst, "calibration", IDENTITY)
    return json.loads(json.dumps({
        "scoring": SCORING_VERSION, "mode": "generate", "score_keys": list(SCORE_KEYS),
        "base_model": base_model, "base_path": base_path, "eval_dataset": eval_dataset, "eval_limit": eval_limit,
        "constrained": _constrained(analyst), "max_new_tokens": max_new_tokens, "batch_size": batch_size,
        "backend": type(analyst).__name__, "dtype": getattr(placement, "dtype", None),
        "load_in_4bit": getattr(placement, "load_in_4bit", None), "merged": getattr(analyst, "merged", None),
        "quantize": getattr(placement, "quantize", None),
        "repetition_penalty": getattr(analyst, "repetition_penalty", None),
        "calibration": {"bias": calibration.to_json()["bias"], "temperature": calibration.temperature},
    }, sort_keys=True))


def _report_served(analyst, rows: list[EvalRow], *, max_new_tokens: int, batch_size: int,
                   progress: Callable[[int, int, float], None] | None) -> dict:
    content_free = None
    if hasattr(analyst, "score_after"):
        [content_free] = analyst.score_after([content_free_conversation()], SCAFFOLD)
    report = evaluate(rows, generate=lambda c: analyst.generate(c, max_new_tokens=max_new_tokens),
                      batch_size=batch_size, progress=progress, content_free=content_free,
                      calibration=getattr(analyst, "calibration", IDENTITY), model=getattr(analyst, "version", ""))
    return report


def answers(rows: list[EvalRow], report: dict) -> list[dict]:
    """What the model wrote on each row, next to what happened: kept with the scores so a reader can check what a
    figure stands for."""
    return [{"symbol": r.symbol, "period": r.period, "label": r.label, "answer": text, "probabilities": p}
            for r, text, p in zip(rows, report["predictions"], report.get("probabilities") or [None] * len(rows),
                                  strict=True)]


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
    checkpoint_dir: Path | None = None,
) -> RetrainOutcome:
    """`model_name` is MODEL_NAME: what the registry records as the base (else it is named from its own files).
    `checkpoint_dir`: where training keeps checkpoints; a retrain stopped before its gate, called again with the
    same folder, configuration and rows, resumes (or, when training had finished, goes straight to the gate)."""
    rows = load_eval_rows(eval_dataset, limit=eval_limit)  # fail fast, before an hour of training
    base_name = base_model_name(cfg.base, model_name)
    with tempfile.TemporaryDirectory(prefix="adapter-", dir=registry.root if registry.root.is_dir() else None) as tmp:
        result = train(cfg, dataset_dir, Path(tmp) / "adapter", progress=train_progress,
                       checkpoint_dir=checkpoint_dir)
        version = registry.add(result.out_dir, note=f"trained on {dataset_dir}", base_model=base_name,
                               base_path=cfg.base)

    analyst = load_analyst()

    def serve(adapter: Path | None) -> dict:
        """Serve `adapter` (None: the bare base) and say under which conditions its scores are measured now."""
        analyst.use_adapter(adapter)
        return scoring_conditions(analyst, base_model=base_name, base_path=cfg.base, eval_dataset=eval_dataset,
                                  eval_limit=eval_limit, max_new_tokens=max_new_tokens, batch_size=batch_size)

    written: dict[str, list[dict]] = {}

    def measure(who: str) -> dict:
        report = _report_served(analyst, rows, max_new_tokens=max_new_tokens, batch_size=batch_size,
                                progress=eval_progress)
        written[who] = answers(rows, report)
        return _scores(report)

    current = registry.current_version()
    if current is not None:
        compared_with = f"served {current}"
        conditions = serve(registry.path(current))
        current_scores = _kept_scores(registry, current, conditions)
        if current_scores is None:
            current_scores = measure("compared")
            registry.write(current, GATE_SCORES, {"conditions": conditions, "scores": current_scores})
    else:
        # Nothing served: the bare base answers today, so the new adapter must do at least as well as it does.
        compared_with = BARE_BASE
        conditions = serve(None)
        current_scores = registry.base_scores(**conditions)
        if current_scores is None:
            current_scores = measure("compared")
            registry.write_base_scores(current_scores, **conditions)
    new_conditions = serve(registry.path(version))
    new_scores = measure("new")

    decision = gate(new_scores, current_scores, compared_with=compared_with, metric=metric, force=force)
    registry.write(version, "evaluation.json", {
        "eval_dataset": eval_dataset, "eval_limit": eval_limit, "scores": new_scores, "base_model": base_name,
        "conditions": new_conditions,
        "compared_with": {"version": current, "label": compared_with, "scores": current_scores,
                          "conditions": conditions},
    })
    registry.write(version, "decision.json", decision.to_dict())
    # The answers behind both score sets (the compared model's only when measured in this run, not kept).
    registry.write(version, "answers.json", {"new": written["new"], "compared": written.get("compared")})
    fit = new_scores.get("calibration_fit")
    if fit:  # served with the adapter from its promotion on (engine.generation.bin_calibration.served_calibration)
        write_calibration(registry.path(version), BinCalibration.from_json(fit["calibration"]),
                          chosen=fit["chosen"], evidence="generated", eval_dataset=eval_dataset)
    if decision.promote:
        registry.promote(version, reason=decision.reason)
    else:
        registry.refuse(version, reason=decision.reason)
    return RetrainOutcome(version, decision, new_scores, current_scores, result.record, compared_version=current,
                          base_model=base_name)


def _kept_scores(registry: Registry, version: str, conditions: dict) -> dict | None:
    """`version`'s scores measured under exactly `conditions`, if kept: as a new adapter (evaluation.json) or as
    the served one (GATE_SCORES). Scores kept without their conditions (an older release's) are never reused."""
    for name in ("evaluation.json", GATE_SCORES):
        kept = registry.read(version, name) or {}
        if kept.get("conditions") == conditions and kept.get("scores"):
            return kept["scores"]
    return None
