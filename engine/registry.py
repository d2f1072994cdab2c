"""The adapter registry (`MODEL_DIR`) and the promotion gate. Files only, torch-free.

    MODEL_DIR/
      versions/v0001/   adapter_config.json, adapter_model.safetensors, training.json,
                        evaluation.json (scores on the test split), decision.json (the gate's verdict)
      current.json      {"version": "v0003", "since": ..., "reason": ...}; absent: the bare base is served
      history.jsonl     one line per event: added, promoted, refused, rolled back

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


@dataclass(frozen=True)
class Decision:
    promote: bool
    reason: str
    metric: str
    new: float | None
    current: float | None
    forced: bool = False

    def to_dict(self) -> dict:
        return {"promote": self.promote, "reason": self.reason, "metric": self.metric, "new": self.new,
                "current": self.current, "forced": self.forced}


def gate(new_scores: dict, current_scores: dict | None, *, metric: str = "binary_accuracy_all",
         force: bool = False) -> Decision:
    """Promote only when the new adapter is not worse than the current one on `metric`. No current adapter (the
    bare base is served): promote when the new one has a score at all. `force` promotes anyway, and says so."""
    if metric not in HIGHER_IS_BETTER:
        raise RegistryError(f"unknown gate metric {metric!r}; use one of {', '.join(HIGHER_IS_BETTER)}")
    new = new_scores.get(metric)
    current = (current_scores or {}).get(metric)
    if force:
        return Decision(True, f"forced by an admin ({metric}: new {new}, current {current})", metric, new, current,
                        forced=True)
    if new is None:
        return Decision(False, f"the new adapter has no {metric} (nothing parsed?)", metric, new, current)
    if current is None:
        return Decision(True, f"no current adapter to beat; {metric} = {new:.4f}", metric, new, current)
    better = HIGHER_IS_BETTER[metric]
    ok = new >= current if better else new <= current
    verb = "not worse than" if ok else "worse than"
    return Decision(ok, f"{metric} {new:.4f} is {verb} the current {current:.4f}", metric, new, current)


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

    def add(self, adapter_dir: Path, *, note: str = "") -> str:
        """Copy a trained adapter folder in as the next version (not served until promoted)."""
        adapter_dir = Path(adapter_dir)
        if not (adapter_dir / "adapter_config.json").is_file():
            raise RegistryError(f"{adapter_dir} is not an adapter folder (no adapter_config.json)")
        existing = self.versions()
        number = int(VERSION_RE.match(existing[-1]).group(1)) + 1 if existing else 1
        version = f"v{number:04d}"
        self._versions_dir.mkdir(parents=True, exist_ok=True)
        shutil.copytree(adapter_dir, self._versions_dir / version)
        self._log("added", version, note or f"from {adapter_dir}")
        return version

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
