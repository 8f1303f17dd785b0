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
    """The built-in tiny random-weights model (converted) where ``rsvg … --smoke`` and the app's test
    model look for it (the session's data folder): a copy of the machine's cached build
    (:mod:`model_cache`), so one build serves every test run. Any test that runs the test model, in
    process or not, asks for this fixture (which also marks it slow)."""
    from model_cache import CONVERTED_NAME, copy_of

    from rsvg_desktop.engine.model_files import ensure_test_model

    base = _data_home(tmp_path_factory) / "test-model"
    if not (base / CONVERTED_NAME).exists():
        copy_of("converted", base / CONVERTED_NAME)
    return ensure_test_model(base)  # finds the copy: nothing is built


#: Fixtures that build or load a model: a test using any of them (directly or through another fixture)
#: is marked ``slow``, so ``make test-fast`` leaves it out without anyone marking it by hand.
MODEL_FIXTURES = frozenset({"test_model_dir", "tiny_geochat_dir", "tiny_converted_dir", "tiny_clip_dir"})


@pytest.fixture(autouse=True)
def _isolated_data_dir(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    """Tests never write to the user's data folder."""
    monkeypatch.setenv("RSVG_DATA_DIR", str(_data_home(tmp_path_factory)))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Everything under tests/gui is a GUI test, and everything that uses a model fixture is slow
    (``make test-fast`` leaves both out)."""
    gui = Path(__file__).parent / "gui"
    for item in items:
        if gui in Path(str(item.path)).parents:
            item.add_marker(pytest.mark.gui)
        if MODEL_FIXTURES.intersection(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.slow)
