"""GUI test fixtures. Qt runs offscreen; settings and data folders are temporary, never the user's."""

from __future__ import annotations

import os

os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from gui_fakes import FakeWorker

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "resources" / "sample_scene.tif"


@pytest.fixture(autouse=True)
def _isolated_settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every test gets its own settings file and data folder (never the user's)."""
    monkeypatch.setenv("RSVG_DESKTOP_SETTINGS", str(tmp_path / "settings" / "rsvg-desktop.ini"))
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "xdg-data"))


@pytest.fixture
def sample_scene() -> Path:
    if not SAMPLE.is_file():
        pytest.fail(f"the bundled sample scene {SAMPLE} is missing")
    return SAMPLE


@pytest.fixture
def settings(tmp_path: Path):
    from PySide6.QtCore import QSettings

    from rsvg_desktop.gui.settings import Settings

    s = Settings(QSettings(str(tmp_path / "settings" / "test.ini"), QSettings.Format.IniFormat))
    s.runs_dir = str(tmp_path / "runs")
    return s


@pytest.fixture
def fake_workers() -> list[FakeWorker]:
    """Every FakeWorker the window created, in order."""
    return []


@pytest.fixture
def fake_factory(fake_workers: list[FakeWorker]) -> Callable[[], FakeWorker]:
    def make() -> FakeWorker:
        worker = FakeWorker()
        fake_workers.append(worker)
        return worker

    return make


@pytest.fixture
def fake_test_model(tmp_path: Path) -> Callable[[], Path]:
    folder = tmp_path / "fake-test-model"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "llava", "rsvg_random_weights": true}')
    return lambda: folder


@pytest.fixture
def window(qtbot, settings, fake_factory, fake_test_model) -> Iterator[object]:
    """The main window with an in-process fake model worker."""
    from rsvg_desktop.gui.main_window import MainWindow

    win = MainWindow(settings, worker_factory=fake_factory, test_model=fake_test_model)
    win.ask_pixel_mode = lambda path, message: False
    win.ask_question = lambda title, text: True  # no modal question (closing during a run, large runs)
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    qtbot.waitExposed(win)
    yield win
    win.close()
