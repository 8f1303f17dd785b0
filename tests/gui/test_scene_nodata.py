"""The nodata field through the real window: the drone scene's black collar (0s, no nodata flag)."""

from __future__ import annotations

from pathlib import Path

import pytest

from rsvg_desktop.gui.main_window import MainWindow

pytestmark = pytest.mark.gui


@pytest.fixture
def drone(data_dir: Path) -> Path:
    return data_dir / "manila_drone.tif"


def _open(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.sceneOpened, timeout=30000):
        window.open_scene(path)


def _enter(qtbot, window: MainWindow, text: str) -> None:
    edit = window.query_panel.nodata_field.edit
    edit.setFocus()
    edit.setText(text)
    with qtbot.waitSignal(window.loader.reread_done, timeout=30000):
        edit.editingFinished.emit()


def test_nodata_zero_skips_the_collar_is_remembered_and_sent(
    qtbot, window: MainWindow, drone: Path, fake_workers
) -> None:
    _open(qtbot, window, drone)
    field = window.query_panel.nodata_field
    assert field.edit.isEnabled() and field.edit.text() == ""
    assert "manila_drone.tif" in field.scene_label.text()
    assert window.plan is not None and (window.plan.n_kept, window.plan.n_skipped) == (25, 0)
    assert window.map.grid.count("skipped") == 0

    _enter(qtbot, window, "0")
    assert window.info is not None and window.info.nodata_given and window.info.nodata == 0.0
    assert window.plan is not None and (window.plan.n_kept, window.plan.n_skipped) == (24, 1)
    assert window.map.grid.count("skipped") == 1  # hatched on the map
    assert window.map.raster.info is window.info  # the display reads with the value too
    assert "(yours)" in field.scene_label.text() and not field.error_label.isVisibleTo(field)
    assert window.settings.scene_nodata(str(drone)) == 0.0

    # A run sends it.
    window.model_panel.test_radio.setChecked(True)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20000):
        window.model_panel.load_button.click()
    qtbot.waitUntil(lambda: window.query_panel.run_button.isEnabled(), timeout=5000)
    window.query_panel.set_task("refer")
    window.query_panel.query_edit.setText("cars")
    with qtbot.waitSignal(window.runs.runEnded, timeout=30000):
        window.query_panel.run_button.click()
    config = fake_workers[0].configs[-1]
    assert config.nodata == 0.0 and config.scene == window.info.path


def test_nodata_is_reapplied_when_the_scene_is_opened_again(
    qtbot, window: MainWindow, drone: Path, sample_scene: Path
) -> None:
    _open(qtbot, window, drone)
    _enter(qtbot, window, "0")
    _open(qtbot, window, sample_scene)  # another scene: its own (none)
    assert window.query_panel.nodata_field.edit.text() == ""
    assert window.info is not None and not window.info.nodata_given
    _open(qtbot, window, drone)
    assert window.query_panel.nodata_field.edit.text() == "0"
    assert window.info is not None and window.info.nodata_given and window.info.nodata == 0.0
    assert window.plan is not None and window.plan.n_skipped == 1

    _enter(qtbot, window, "")  # emptied: the file's own again, and forgotten
    assert window.info is not None and not window.info.nodata_given
    assert window.plan is not None and window.plan.n_skipped == 0
    assert window.settings.scene_nodata(str(drone)) is None


def test_invalid_nodata_text_is_explained_in_the_window(qtbot, window: MainWindow, drone: Path) -> None:
    _open(qtbot, window, drone)
    field = window.query_panel.nodata_field
    field.edit.setText("black")
    field.edit.editingFinished.emit()
    assert field.error_label.isVisibleTo(field)
    assert "is not a number" in field.error_label.text()
    assert "is not a number" in window.statusBar().currentMessage()
    field.edit.setText("nan")  # the drone scene is uint8
    field.edit.editingFinished.emit()
    assert "floating-point" in field.error_label.text()
    assert window.info is not None and not window.info.nodata_given
    assert window.settings.scene_nodata(str(drone)) is None


def test_a_kept_value_the_scene_no_longer_takes_is_dropped(qtbot, window: MainWindow, drone: Path) -> None:
    window.settings.set_scene_nodata(str(drone), float("nan"))  # the drone scene is uint8
    _open(qtbot, window, drone)
    assert window.info is not None and not window.info.nodata_given
    assert window.query_panel.nodata_field.edit.text() == ""
