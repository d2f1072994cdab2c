"""Each GPU measurement runs in a fresh child process: its CUDA peak is its own, a crash or an out-of-memory stays
there, and the pytest process never holds CUDA memory. A child reads a spec (JSON) and writes its result (JSON)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]


class ChildFailed(RuntimeError):
    def __init__(self, message: str, stderr: str = "") -> None:
        super().__init__(message)
        self.stderr = stderr

    def __str__(self) -> str:
        return f"{self.args[0]}:\n{self.stderr}" if self.stderr else self.args[0]


def run_child(module: str, spec: dict, work: Path, *, timeout: float) -> dict:
    """`python -m module work/spec.json`; returns the child's result (plus "child_s", its wall time)."""
    work.mkdir(parents=True, exist_ok=True)
    result = work / "result.json"
    (work / "spec.json").write_text(json.dumps({**spec, "result": str(result)}))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(REPO_ROOT), os.environ.get("PYTHONPATH")])),
           "TOKENIZERS_PARALLELISM": "false"}
    started = time.perf_counter()
    try:
        done = subprocess.run([sys.executable, "-m", module, str(work / "spec.json")], cwd=REPO_ROOT, env=env,
                              capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else exc.stderr or ""
        raise ChildFailed(f"{module} ran past {timeout:.0f} s and was stopped", stderr[-4000:]) from None
    if done.returncode != 0 or not result.is_file():
        raise ChildFailed(f"{module} failed (exit code {done.returncode})", done.stderr[-4000:])
    return {**json.loads(result.read_text()), "child_s": time.perf_counter() - started}
