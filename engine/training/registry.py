"""The adapter registry (`MODEL_DIR`) and the promotion gate. Files only, torch-free.

    MODEL_DIR/
      versions/v0001/   adapter_config.json, adapter_model.safetensors, training.json,
                        provenance.json (the base model it was trained on), evaluation.json (scores on the test
                        split), decision.json (the gate's verdict)
      current.json      {"version": "v0003", "since": ..., "reason": ...}; absent: the bare base is served
      history.jsonl     one line per event: added, promoted, refused, rolled back
      base-evaluation.json  the bare base's scores, so a gate with no adapter served need not score it again

A worker checks `current_version()` between jobs (one small file read) and switches adapters when it changes.
`current.json` is replaced atomically (write a temp file, then rename), so a reader never sees half a pointer.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from engine.exceptions import EngineError

VERSION_RE = re.compile(r"^v(\d{4,})$")
# Primary metrics the gate may use, and which way is better.
HIGHER_IS_BETTER = {"binary_accuracy_all": True, "binary_accuracy": True, "parse_rate": True, "mcc": True,
                    "mse": False}


class RegistryError(EngineError):
    """A registry operation that cannot be done as asked."""


BARE_BASE = "the bare base"
PARSE_RATE = "parse rate"
BEST_BASELINE = "best naive baseline"


@dataclass(frozen=True)
class Check:
    """One comparison the gate made: what against, whether the new adapter passed, in words."""

    against: str  # PARSE_RATE, "served v0003" / BARE_BASE, BEST_BASELINE
    passed: bool
    detail: str


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    new: float | None
    current: float | None  # the compared model's score (the served adapter's, or the bare base's)
    forced: bool = False
    compared_with: str = BARE_BASE  # "served v0003" or BARE_BASE
    baseline: str | None = None  # the best naive baseline on the same rows, and its score
    baseline_score: float | None = None
    checks: tuple[Check, ...] = ()

    @property
    def decided_by(self) -> str:
        """Which comparison decided: the failed ones when refused, every one when promoted."""
        if self.forced:
            return "an admin's --force"
        failed = [c.against for c in self.checks if not c.passed]
        return ", ".join(failed or [c.against for c in self.checks]) or "no comparison"

    def to_dict(self) -> dict:
        return {"promote": self.promote, "reason": self.reason, "metric": self.metric, "new": self.new,
                "current": self.current, "forced": self.forced, "compared_with": self.compared_with,
                "baseline": self.baseline, "baseline_score": self.baseline_score, "decided_by": self.decided_by,
                "checks": [{"against": c.against, "passed": c.passed, "detail": c.detail} for c in self.checks]}


def _not_worse(new: float, other: float, metric: str) -> bool:
    return new >= other if HIGHER_IS_BETTER[metric] else new <= other


def _beats(new: float, other: float, metric: str) -> bool:
    return new > other if HIGHER_IS_BETTER[metric] else new < other


def best_baseline(scores: dict, metric: str) -> tuple[str, float] | None:
    """The naive baseline (constant up, constant down, momentum, ...) scoring best on `metric` on the same rows;
    the first in name order on a tie."""
    found = [(name, (values or {}).get(metric)) for name, values in sorted((scores.get("baselines") or {}).items())]
    found = [(name, value) for name, value in found if value is not None]
    if not found:
        return None
    pick = max if HIGHER_IS_BETTER[metric] else min
    best = pick(value for _, value in found)
    return next((name, value) for name, value in found if value == best)


def gate(new_scores: dict, compared_scores: dict | None, *, compared_with: str = BARE_BASE,
         metric: str = "binary_accuracy_all", force: bool = False) -> Decision:
    """Promote only when the new adapter, on the same rows,
    - parses at least as often as the compared model (the served adapter, or the bare base when none is served),
    - is not worse than it on `metric`,
    - and beats the best naive baseline on `metric` (matching "always up" is no skill).
    With no scores for the compared model there is nothing to stand on: refused. `force` promotes anyway, says so,
    and still records what the comparisons said."""
    if metric not in HIGHER_IS_BETTER:
        raise RegistryError(f"unknown gate metric {metric!r}; use one of {', '.join(HIGHER_IS_BETTER)}")
    new = new_scores.get(metric)
    compared = compared_scores or {}
    current = compared.get(metric)
    baseline = best_baseline(new_scores, metric) if metric != "parse_rate" else None  # baselines always parse

    checks: list[Check] = []
    if new is None:
        checks.append(Check("the new adapter", False, f"the new adapter has no {metric} (nothing parsed?)"))
    else:
        new_parse, old_parse = new_scores.get("parse_rate"), compared.get("parse_rate")
        if new_parse is not None and old_parse is not None:
            ok = new_parse >= old_parse
            checks.append(Check(PARSE_RATE, ok, f"parse rate {new_parse:.3f} {'≥' if ok else 'is below'} "
                                f"{compared_with}'s {old_parse:.3f}"))
        if current is None:
            checks.append(Check(compared_with, False, f"no {metric} of {compared_with} on these rows to compare with"))
        else:
            ok = _not_worse(new, current, metric)
            checks.append(Check(compared_with, ok, f"{metric} {new:.4f} is {'not worse than' if ok else 'worse than'} "
                                f"{compared_with}'s {current:.4f}"))
        if baseline is not None:
            ok = _beats(new, baseline[1], metric)
            checks.append(Check(BEST_BASELINE, ok, f"{metric} {new:.4f} {'beats' if ok else 'does not beat'} the best "
                                f"naive baseline ({baseline[0]}: {baseline[1]:.4f})"))
    passed = all(c.passed for c in checks)
    failed = [c.detail for c in checks if not c.passed]
    summary = "; ".join(failed or [c.detail for c in checks])
    fields = {"metric": metric, "new": new, "current": current, "compared_with": compared_with,
              "baseline": baseline[0] if baseline else None, "baseline_score": baseline[1] if baseline else None,
              "checks": tuple(checks)}
    if force:
        return Decision(True, f"forced by an admin (the gate said: {summary})", forced=True, **fields)
    return Decision(passed, summary, **fields)


class Registry:
    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    # -- reading -----------------------------------------------------------------------------------------------

    @property
    def _versions_dir(self) -> Path:
        return self.root / "versions"

    def versions(self) -> list[str]:
        if not self._versions_dir.is_dir():
            return []
        return sorted((p.name for p in self._versions_dir.iterdir() if VERSION_RE.match(p.name)),
                      key=lambda name: int(VERSION_RE.match(name).group(1)))

    def path(self, version: str) -> Path:
        if version not in self.versions():
            known = ", ".join(self.versions()) or "none yet"
            raise RegistryError(f"no adapter version {version!r} in {self.root} (known: {known})")
        return self._versions_dir / version

    def current_version(self) -> str | None:
        """The served version, or None for the bare base. Cheap: one small file read."""
        pointer = self.root / "current.json"
        if not pointer.is_file():
            return None
        return json.loads(pointer.read_text())["version"]

    def current_path(self) -> Path | None:
        version = self.current_version()
        return None if version is None else self._versions_dir / version

    def read(self, version: str, name: str) -> dict | None:
        path = self.path(version) / name
        return json.loads(path.read_text()) if path.is_file() else None

    def history(self) -> list[dict]:
        path = self.root / "history.jsonl"
        if not path.is_file():
            return []
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    # -- writing -----------------------------------------------------------------------------------------------

    def add(self, adapter_dir: Path, *, note: str = "", base_model: str | None = None,
            base_path: str | None = None) -> str:
        """Copy a trained adapter folder in as the next version (not served until promoted), with the base model it
        was trained on (its name, `engine.provenance.base_model_name`, and where it was loaded from)."""
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise RegistryError(f"{adapter_dir} is not an adapter folder (no adapter_config.json)")
        existing = self.versions()
        number = int(VERSION_RE.match(existing[-1]).group(1)) + 1 if existing else 1
        version = f"v{number:04d}"
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(adapter_dir, self._versions_dir / version)
        if base_model is not None:
            self.write(version, "provenance.json", {"base_model": base_model, "base_path": base_path,
                                                    "added": _now(), "note": note})
        detail = note or f"from {adapter_dir}"
        self._log("added", version, f"{detail} (base {base_model})" if base_model else detail)
        return version

    def base_model(self, version: str) -> str | None:
        """The base model `version` was trained on, when it was recorded."""
        return (self.read(version, "provenance.json") or {}).get("base_model")

    def base_scores(self, **key: object) -> dict | None:
        """The bare base's stored scores, when they were measured under exactly `key` (base, rows, ...)."""
        path = self.root / "base-evaluation.json"
        if not path.is_file():
            return None
        stored = json.loads(path.read_text())
        return stored.get("scores") if stored.get("key") == key else None

    def write_base_scores(self, scores: dict, **key: object) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        (self.root / "base-evaluation.json").write_text(json.dumps({"key": key, "scores": scores, "at": _now()},
                                                                   indent=2) + "\n")

    def write(self, version: str, name: str, data: dict) -> None:
        (self.path(version) / name).write_text(json.dumps(data, indent=2) + "\n")

    def promote(self, version: str, *, reason: str) -> None:
        self.path(version)  # raises for an unknown version
        self._point_to(version, reason)
        self._log("promoted", version, reason)

    def refuse(self, version: str, *, reason: str) -> None:
        self._log("refused", version, reason)

    def rollback(self, *, reason: str = "rollback") -> str | None:
        """Serve the version that was current before the present one (None: the bare base). Repeated rollbacks
        walk further back through the promotions."""
        current = self.current_version()
        if current is None:
            raise RegistryError("nothing to roll back: no adapter is being served")
        served = self._served_stack()
        served.pop()
        previous = served[-1] if served else None
        if previous is None:
            (self.root / "current.json").unlink()
        else:
            self._point_to(previous, reason)
        self._log("rolled back", previous, f"{reason} (was {current})")
        return previous

    def _served_stack(self) -> list[str]:
        """Versions in the order they were put in service, with rolled-back ones taken off again."""
        stack: list[str] = []
        for event in self.history():
            if event["event"] == "promoted":
                stack.append(event["version"])
            elif event["event"] == "rolled back" and stack:
                stack.pop()
        return stack

    def _point_to(self, version: str, reason: str) -> None:
        pointer = self.root / "current.json"
        tmp = pointer.with_suffix(".json.tmp")
        tmp.write_text(json.dumps({"version": version, "since": _now(), "reason": reason}) + "\n")
        os.replace(tmp, pointer)  # atomic: readers see the old pointer or the new one

    def _log(self, event: str, version: str | None, detail: str) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        with open(self.root / "history.jsonl", "a", encoding="utf-8") as f:
            f.write(json.dumps({"at": _now(), "event": event, "version": version, "detail": detail}) + "\n")


def _now() -> str:
    return dt.datetime.now(dt.UTC).isoformat(timespec="seconds")
