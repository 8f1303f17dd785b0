"""Shared test fixtures: the real rasters of ``../shared/data`` (same layout locally and in CI)."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA = (Path(__file__).resolve().parents[1] / ".." / "shared" / "data").resolve()


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The shared test data folder (``<repo>/../shared/data``); fails clearly when it is missing."""
    if not DATA.is_dir():
        pytest.fail(f"test data folder {DATA} not found (expected at <repo>/../shared/data)")
    return DATA
