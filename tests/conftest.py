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


def _data_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The session's stand-in for the user's data folder (``$RSVG_DATA_DIR`` in every test)."""
    return tmp_path_factory.getbasetemp() / "rsvg-data-home"


@pytest.fixture(scope="session")
def test_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The built-in tiny random-weights model (converted), built once per session outside $HOME, where
    ``rsvg … --smoke`` and the app's test model look for it: one build serves every test."""
    from rsvg_desktop.engine.model_files import ensure_test_model

    return ensure_test_model(_data_home(tmp_path_factory) / "test-model")


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's data folder."""
    monkeypatch.setenv("RSVG_DATA_DIR", str(_data_home(tmp_path_factory)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/gui is a GUI test (``make test-fast`` leaves them out)."""
    gui = Path(__file__).parent / "gui"
    for item in items:
        if gui in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.gui)
