"""The real-weights tier (`make test-real`): real pretrained Qwen2.5-architecture weights at REAL_MODEL_DIR (see
tests/real/weights.py). Never collected by `make test` (pyproject's testpaths); every test skips, with the reason
shown, when the folder holds no weights."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tests.real.weights import missing_reason, real_model_dir


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if "tests/real/" in str(item.path).replace(os.sep, "/"):
            item.add_marker(pytest.mark.real)


@pytest.fixture(scope="session")
def real_dir() -> Path:
    folder = real_model_dir()
    if folder is None:
        pytest.skip(missing_reason())
    return folder
