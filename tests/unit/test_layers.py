"""The import-linter contracts of pyproject.toml hold: the layers are one-way (forecaster > bot > jobs > engine), the
bot never reaches the model stack, numpy, pandas or APScheduler, not even through a function-level import in a
module it imports, and inside the engine its parts are one-way too (training > evaluation > generation > data, the
shared modules and sources below them, torch only in generation and training). A new import that breaks any fails
here, with the chain that breaks it."""

from __future__ import annotations

import subprocess
import sys
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _contracts() -> dict[str, dict]:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["importlinter"]
    return {contract["id"]: contract for contract in config["contracts"]}


def test_the_contracts_name_every_package_and_the_heavy_stack():
    contracts = _contracts()
    assert contracts["layers"]["layers"] == ["forecaster", "bot", "jobs", "engine"]
    heavy = set(contracts["light-bot"]["forbidden_modules"])
    assert {"torch", "transformers", "peft", "trl", "numpy", "apscheduler"} <= heavy
    packages = {path.parent.name for path in ROOT.glob("*/__init__.py")} - {"tests"}
    assert packages == set(contracts["layers"]["layers"]), "a new top-level package needs its place in the layers"


def test_the_engine_parts_have_their_places():
    contracts = _contracts()
    parts = contracts["engine-parts"]["layers"]
    assert parts == ["engine.training", "engine.evaluation", "engine.generation", "engine.data"]
    subpackages = {f"engine.{path.parent.name}" for path in (ROOT / "engine").glob("*/__init__.py")}
    below = set(contracts["engine-shared"]["source_modules"]) | set(contracts["engine-sources"]["source_modules"])
    placed = set(parts) | {name for name in below if (ROOT / name.replace(".", "/")).is_dir()}
    assert subpackages == placed, "a new engine subpackage needs its place in the engine's contracts"
    assert {"torch", "peft", "trl"} <= set(contracts["engine-torch"]["forbidden_modules"])


def test_the_import_contracts_are_kept():
    lint = Path(sys.executable).with_name("lint-imports")
    done = subprocess.run([str(lint), "--config", str(ROOT / "pyproject.toml"), "--no-cache"], cwd=ROOT,
                          capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stdout[-6000:] + done.stderr[-2000:]
    assert f"Contracts: {len(_contracts())} kept, 0 broken." in done.stdout
