"""README's structure drawing is the code's: every package with its docstring's first sentence and what imports it,
and every import contract. A moved module, a new subpackage or a changed contract without a redrawn README fails here.

Redraw it with `python -m forecaster.cli.structure`."""

from __future__ import annotations

from pathlib import Path

import pytest

from forecaster.cli.structure import END, START, contracts, purpose, render, update_readme

ROOT = Path(__file__).resolve().parents[3]
REDRAW = "README.md's structure drawing is out of date: run `python -m forecaster.cli.structure`"


@pytest.fixture(scope="module")
def drawing() -> str:
    return render()


def test_the_readme_holds_the_current_drawing(drawing):
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    assert update_readme(readme, drawing) == readme, REDRAW


def test_the_drawing_names_every_engine_part_with_its_purpose_and_importers(drawing):
    lines = drawing.splitlines()
    for init in (ROOT / "engine").glob("*/__init__.py"):
        part = init.parent.name
        row = next(i for i, line in enumerate(lines) if line.startswith(f"  {part}/"))
        assert purpose(init) in " ".join(line.strip() for line in lines[row:row + 3])
        assert any(line.strip().startswith("← ") for line in lines[row + 1:row + 4])
    assert "← engine.evaluation, engine.training, forecaster, jobs" in drawing  # who uses generation
    for rule in contracts()[1]:
        assert f"  {rule['id']} " in drawing


def test_only_the_block_between_the_markers_changes():
    readme = "# x\n\n## How it works\n\n```\na diagram\n```\n\nprose\n\n## Next\n"
    first = update_readme(readme, "DRAWING")
    assert first == f"# x\n\n## How it works\n\n```\na diagram\n```\n\n{START}\nDRAWING\n{END}\n\nprose\n\n## Next\n"
    assert update_readme(first, "NEW") == first.replace("DRAWING", "NEW")
    with pytest.raises(ValueError):
        update_readme(f"{START}\nno end", "x")
