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


@pytest.fixture(scope="session")
def test_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in tiny random-weights model (converted), built once per session outside $HOME."""
    from rsvg_desktop.engine.model_files import ensure_test_model

    return ensure_test_model(tmp_path_factory.mktemp("rsvg-data"))


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's data folder."""
    monkeypatch.setenv("RSVG_DATA_DIR", str(tmp_path_factory.getbasetemp() / "rsvg-data-home"))
