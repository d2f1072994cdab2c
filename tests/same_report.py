"""One comparison for two track reports computed different ways (in SQL, in numpy, stored as JSON): equal in
every key and item, floats to 1e-12 (sums in SQL and in numpy may round the last digit differently)."""

from __future__ import annotations

import pytest


def assert_same(ours, theirs, path: str = "report") -> None:
    """Fails naming the first path where they differ (e.g. `report.cumulative.model.mse`)."""
    if isinstance(theirs, dict):
        assert ours.keys() == theirs.keys(), path
        for key in theirs:
            assert_same(ours[key], theirs[key], f"{path}.{key}")
    elif isinstance(theirs, (list, tuple)):  # JSON makes a list of a tuple
        assert isinstance(ours, (list, tuple)) and len(ours) == len(theirs), path
        for i, (a, b) in enumerate(zip(ours, theirs, strict=True)):
            assert_same(a, b, f"{path}[{i}]")
    elif isinstance(theirs, float):
        assert ours == pytest.approx(theirs, rel=1e-12, abs=1e-12), path
    else:
        assert ours == theirs and type(ours) is type(theirs), path
