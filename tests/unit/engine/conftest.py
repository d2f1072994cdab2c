"""Engine test fixtures: the published FinGPT-Forecaster Dow30 test split (read-only, from shared/)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# tests/unit/engine/conftest.py -> parents[3] is the repository root; shared/ sits beside it.
_REPO_ROOT = Path(__file__).resolve().parents[3]
DEFAULT_TEST_SPLIT = _REPO_ROOT.parent / "shared/data/fingpt-dow30/fingpt-forecaster-dow30-202305-202405/test"
_ARROW_FILE = "data-00000-of-00001.arrow"


def _on_ci() -> bool:
    # CI=true on GitHub Actions, GitLab and most others; "false"/"0" are treated as unset.
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


@pytest.fixture(scope="session")
def fingpt_test_rows() -> list[dict]:
    """The 300 rows of the test split (columns prompt, answer, period, label, symbol), in dataset order.

    The folder is FINGPT_TEST_SPLIT, or shared/'s copy by default. When it is absent the golden tests skip
    with the reason shown, except on CI: a golden test that silently skips there is a defect, so it fails.
    """
    folder = Path(os.environ.get("FINGPT_TEST_SPLIT") or DEFAULT_TEST_SPLIT)
    if not folder.is_dir():
        message = (
            f"FinGPT test split not found at {folder}. Set FINGPT_TEST_SPLIT to the dataset's `test/` folder "
            "(the save_to_disk output holding data-00000-of-00001.arrow)."
        )
        if _on_ci():
            pytest.fail(message + " CI is set, so this fails instead of skipping.")
        pytest.skip(message)
    import pyarrow.ipc  # only the golden tests need pyarrow (a dev dependency)

    with open(folder / _ARROW_FILE, "rb") as f:
        return pyarrow.ipc.open_stream(f).read_all().to_pylist()
