"""Issue 21 §5 (last bullets) in the real window: status-bar messages show beside the cursor read-out,
vector layers outside the scene are reported and layers can be removed, a failed Load keeps the working
model, q4cal stays selectable, huge runs and quitting during a run ask first, selecting a result keeps
context, labels leave small boxes visible, messages speak of the app."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import pytest
from PySide6.QtCore import QRectF, Qt
from PySide6.QtGui import QKeySequence, QTransform
from PySide6.QtWidgets import QMessageBox
from test_main_window import load_model, open_sample, run_query

from rsvg_desktop.gui.logic.viewrules import RESULT_CONTEXT_PX, RESULT_MAX_ZOOM
from rsvg_desktop.gui.main_window import CURSOR_LABEL_WIDTH, MainWindow

pytestmark = pytest.mark.gui


@pytest.fixture
def ready(qtbot, window: MainWindow, sample_scene: Path) -> MainWindow:
    open_sample(qtbot, window, sample_scene)
    load_model(qtbot, window)
    return window


def _message_boxes(window: MainWindow) -> list[str]:
    return [box.text() for box in window.findChildren(QMessageBox) if box.isVisible()]


# --- the status bar -----------------------------------------------------------------------------------
def test_status_messages_have_room_beside_the_cursor_readout(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    bar = window.statusBar()
    window.cursor_label.setText("lat 12.345678°, lon -98.765432° · x 1023.5, y 1023.5 px · " * 4)
    qtbot.wait(50)
    assert window.cursor_label.width() <= CURSOR_LABEL_WIDTH
    permanent = window.cursor_label.width() + window.progress_label.width() + window.device_label.width()
    assert bar.width() - permanent >= bar.width() // 3  # the message area keeps a third of the bar at least

    run_query(qtbot, window, "refer", "cars")
    window.results_table.select_keys([window.results.rows[0].key])
    window.delete_selected()
    assert bar.currentMessage().startswith("Deleted 1 detection")

    fake_workers[0].hold = True
    window.query_panel.run_button.click()
    qtbot.waitUntil(lambda: window.runs.running, timeout=5000)
    with qtbot.waitSignal(window.runs.runEnded, timeout=10000):
        fake_workers[0].hold = False
        window.query_panel.cancel_button.click()
        assert bar.currentMessage().startswith("Cancelling")


# --- vector layers ------------------------------------------------------------------------------------
def _shifted_geojson(data_dir: Path, tmp_path: Path, shift: float) -> Path:
    source = json.loads((data_dir / "spacenet_uint16_buildings.geojson").read_text())

    def move(coords):
        if isinstance(coords[0], (int, float)):
            return [coords[0] + shift, *coords[1:]]
        return [move(c) for c in coords]

    for feature in source["features"]:
        feature["geometry"]["coordinates"] = move(feature["geometry"]["coordinates"])
    out = tmp_path / f"shifted_{shift:g}.geojson"
    out.write_text(json.dumps(source))
    return out


def test_a_layer_outside_the_scene_is_reported_and_layers_can_be_removed(
    qtbot, window: MainWindow, data_dir: Path, tmp_path: Path
) -> None:
    with qtbot.waitSignal(window.sceneOpened, timeout=20000):
        window.open_scene(data_dir / "spacenet_uint16.tif")
    far = _shifted_geojson(data_dir, tmp_path, 50_000.0)  # 50 km east (UTM metres): off the scene
    with qtbot.waitSignal(window.overlayAdded, timeout=20000) as blocker:
        window.add_overlay(far)
    far_name = blocker.args[0]
    assert "outside the scene" in window.statusBar().currentMessage()
    assert any("none of its" in text and "falls on the scene" in text for text in _message_boxes(window))

    with qtbot.waitSignal(window.overlayAdded, timeout=20000) as blocker:
        window.add_overlay(data_dir / "spacenet_uint16_buildings.geojson")
    near_name = blocker.args[0]
    assert window.statusBar().currentMessage().startswith("Added 43 features")
    assert set(window.map.overlays.overlays) == {far_name, near_name}

    # View ▸ Vector layers ▸ Remove ▸ <the far layer>
    remove_menu = window.overlays.remove_menu
    assert remove_menu.menuAction() in window.overlays_menu.actions()
    action = next(a for a in remove_menu.actions() if a.text() == far_name)
    action.trigger()
    assert set(window.map.overlays.overlays) == {near_name}
    assert list(window.overlay_actions) == [near_name]
    assert [a.text() for a in remove_menu.actions()] == [near_name]
    assert window.statusBar().currentMessage() == f"Removed the vector layer {far_name}"
    next(a for a in remove_menu.actions() if a.text() == near_name).trigger()
    assert not window.map.overlays.overlays and not window.overlay_actions
    assert not window.overlays_menu.isEnabled()


# --- loading the model --------------------------------------------------------------------------------
def _choose_device(window: MainWindow, device: str) -> None:
    combo = window.model_panel.device_combo
    combo.setCurrentIndex(combo.findData(device))


def test_a_failed_load_keeps_the_working_model_and_offers_the_cpu(
    qtbot, window: MainWindow, fake_workers
) -> None:
    panel = window.model_panel
    panel.test_radio.setChecked(True)
    _choose_device(window, "cpu")
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20000):
        panel.load_button.click()
    fake_workers[0].fail_devices = ("cuda",)  # a machine without CUDA
    _choose_device(window, "cuda")
    panel.load_button.click()
    qtbot.waitUntil(lambda: panel.banner_visible, timeout=10000)
    # the worker refused the device before dropping its model: it stays loaded, nothing is reloaded
    assert window.bridge.loaded and window.bridge.state == "ready"
    assert window.bridge.spec is not None and window.bridge.spec.device == "cpu"
    assert [s.device for s in fake_workers[0].specs] == ["cpu", "cuda"]
    text = panel.banner_label.text()
    assert "GPU (CUDA)" in text and "CUDA is not available" in text and "stays loaded" in text
    assert "Loaded:" in panel.status_label.text() and panel.unload_button.isEnabled()
    assert panel.device_combo.currentData() == "cpu"  # the panel shows what is loaded
    assert "CPU" in panel.reload_button.text()
    assert window.device_label.text().strip() == "CPU · RANDOM WEIGHTS"
    assert window.statusBar().currentMessage().startswith("The model could not be loaded")

    # a worker that dropped its model before failing: the working one is loaded again
    fake_workers[0].keeps_model = False
    _choose_device(window, "cuda")
    panel.load_button.click()
    qtbot.waitUntil(lambda: "is loaded again" in panel.banner_label.text(), timeout=10000)
    qtbot.waitUntil(lambda: window.bridge.loaded, timeout=10000)
    assert [s.device for s in fake_workers[0].specs] == ["cpu", "cuda", "cuda", "cpu"]
    assert panel.banner_visible and panel.device_combo.currentData() == "cpu"


def test_reload_after_a_failed_load_does_not_retry_the_failing_device(
    qtbot, window: MainWindow, fake_workers
) -> None:
    panel = window.model_panel
    panel.test_radio.setChecked(True)
    _choose_device(window, "cuda")
    panel.load_button.click()
    qtbot.waitUntil(lambda: bool(fake_workers), timeout=10000)
    fake_workers[0].fail_devices = ("cuda",)
    fake_workers[0]._queue.clear()
    fake_workers[0].load(fake_workers[0].specs[0])
    qtbot.waitUntil(lambda: panel.banner_visible, timeout=10000)
    assert panel.reload_button.text() == f"Load {panel.choice().precision} on the CPU"
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10000):
        panel.reload_button.click()
    assert fake_workers[0].specs[-1].device == "cpu"
    assert panel.device_combo.currentData() == "cpu"


def test_q4cal_can_be_chosen_and_is_selected_after_calibrating(
    qtbot, window: MainWindow, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import rsvg_desktop.engine.model_jobs as model_jobs

    panel = window.model_panel
    combo = panel.precision_combo
    i = combo.findData("q4cal")
    assert i == combo.count() - 1
    assert combo.model().flags(combo.model().index(i, 0)) & Qt.ItemFlag.ItemIsEnabled
    assert "rsvg" not in combo.itemText(i) and "Calibrate q4cal" in combo.itemText(i)
    summary = SimpleNamespace(calibration_id="c1", seconds=1.0, loss=0.5, loss_nf4=1.0)
    monkeypatch.setattr(model_jobs, "calibrate", lambda *a, **k: summary)
    panel.test_radio.setChecked(True)
    combo.setCurrentIndex(combo.findData("nf4"))
    panel.calibrate_button.click()
    qtbot.waitUntil(lambda: "q4cal calibrated" in panel.status_label.text(), timeout=10000)
    assert combo.currentData() == "q4cal"
    combo.setCurrentIndex(combo.findData("nf4"))
    combo.setCurrentIndex(i)  # chosen again
    assert panel.choice().precision == "q4cal"


# --- asking first -------------------------------------------------------------------------------------
def test_a_huge_tile_grid_asks_before_starting(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    panel = window.query_panel
    with qtbot.waitSignal(window.loader.planned, timeout=60000):
        panel.tile_spin.setValue(64)
        panel.overlap_spin.setValue(60)
        panel._grid_edited()
    qtbot.waitUntil(lambda: window.plan is not None and window.plan.tile_size == 64, timeout=60000)
    n = window.plan.n_kept
    assert n > 40000
    questions: list[str] = []
    window.ask_question = lambda title, text: questions.append(text) or False
    panel.set_task("refer")
    panel.query_edit.setText("cars")
    panel.run_button.click()
    assert len(questions) == 1 and f"{n:,} tiles" in questions[0] and "overlap" in questions[0]
    assert not window.runs.running and fake_workers[0].configs == []
    assert "Not started" in panel.reason_label.text()
    # yes: the run starts
    window.ask_question = lambda title, text: questions.append(text) or True
    fake_workers[0].hold = True
    panel.run_button.click()
    assert len(questions) == 2 and window.runs.running and len(fake_workers[0].configs) == 1
    with qtbot.waitSignal(window.runs.runEnded, timeout=30000):
        fake_workers[0].hold = False
        panel.cancel_button.click()


def test_quitting_during_a_run_asks_first(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    fake_workers[0].hold = True
    window.query_panel.set_task("refer")
    window.query_panel.query_edit.setText("cars")
    window.query_panel.run_button.click()
    qtbot.waitUntil(lambda: window.runs.running, timeout=5000)
    asked: list[str] = []
    window.ask_question = lambda title, text: asked.append(title) or False
    file_menu = window.menuBar().actions()[0].menu()
    quit_action = next(a for a in file_menu.actions() if a.text() == "&Quit")
    assert quit_action.shortcut() == QKeySequence(QKeySequence.StandardKey.Quit)  # Ctrl+Q
    quit_action.trigger()
    assert asked == ["Quit during a run?"]
    assert window.isVisible() and window.runs.running
    window.ask_question = lambda title, text: asked.append(title) or True
    assert window.close()
    assert asked == ["Quit during a run?"] * 2 and not window.isVisible()


# --- results on the map -------------------------------------------------------------------------------
def test_selecting_a_result_keeps_context(qtbot, ready: MainWindow) -> None:
    window = ready
    run_query(qtbot, window, "refer", "cars")
    row = window.results.rows[0]
    x0, y0, x1, y1 = row.pixel_bounds()
    window.results_table.select_keys([row.key])
    window._table_selection([row.key])
    assert window.map.current_scale() <= RESULT_MAX_ZOOM + 1e-6
    shown = window.map.visible_rect_f()
    assert shown.contains(QRectF(x0, y0, x1 - x0, y1 - y0))
    assert min(shown.width(), shown.height()) >= min(RESULT_CONTEXT_PX, 1024) - 1


def test_labels_leave_small_boxes_visible(qtbot, ready: MainWindow) -> None:
    window = ready
    run_query(qtbot, window, "refer", "cars")
    item = next(iter(window.map.detections.items.values()))
    label = item.label
    assert label is not None
    box = item.boundingRect()
    small = 10.0 / max(box.width(), box.height())  # the box is 10 px on screen
    large = 100.0 / min(box.width(), box.height())
    assert not label.fits(QTransform.fromScale(small, small))
    assert label.fits(QTransform.fromScale(large, large))
    # the label sits above its anchor (the box's top corner), not over the box
    assert label.boundingRect().bottom() <= 0


# --- messages in the app's words ----------------------------------------------------------------------
def test_banner_and_status_messages_name_no_command_line(qtbot, window: MainWindow, fake_workers) -> None:
    panel = window.model_panel
    panel.test_radio.setChecked(True)
    panel.load_button.click()
    qtbot.waitUntil(lambda: bool(fake_workers), timeout=10000)
    fake_workers[0].fail_load = (
        "/m: no q4cal calibration (absent); make one with `rsvg model calibrate /m [SCENE_OR_FOLDER...]` "
        "(or Model panel → Calibrate…), or choose nf4"
    )
    fake_workers[0]._queue.clear()
    fake_workers[0].load(fake_workers[0].specs[0])
    qtbot.waitUntil(lambda: panel.banner_visible, timeout=10000)
    text = panel.banner_label.text()
    assert "rsvg" not in text and "`" not in text and "Model panel ▸ Calibrate q4cal…" in text
    window.show_status("Download failed: <urlopen error [Errno -2] Name or service not known>")
    message = window.statusBar().currentMessage()
    assert "Errno" not in message and "network" in message


def test_a_network_failure_in_the_model_manager_is_said_in_words(
    qtbot, window: MainWindow, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import rsvg_desktop.engine.model_jobs as model_jobs

    def unreachable(*args: object, **kwargs: object) -> None:
        raise OSError(-2, "Name or service not known")  # what a failed name lookup raises

    monkeypatch.setenv("RSVG_DATA_DIR", str(tmp_path / "data"))
    monkeypatch.setattr(model_jobs, "download_known", unreachable)
    dialog = window.models.open_manager()
    dialog.list.setCurrentRow(0)
    dialog.download_button.click()
    qtbot.waitUntil(lambda: "network" in dialog.status.text(), timeout=10000)
    assert "Errno" not in dialog.status.text()


def test_the_no_crs_question_names_no_option(qtbot, window: MainWindow, data_dir: Path) -> None:
    asked: list[str] = []
    window.ask_pixel_mode = lambda path, message: asked.append(message) or False
    with qtbot.waitSignal(window.sceneFailed, timeout=20000):
        window.open_scene(data_dir / "float_nan.tif")
    assert asked and "pixel mode" in asked[0] and "--" not in asked[0] and "=True" not in asked[0]
    boxes = _message_boxes(window)
    assert boxes and all("--" not in text and "=True" not in text for text in boxes)
