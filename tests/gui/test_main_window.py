"""The main window end to end with an in-process fake worker (the real engine after the model: plans,
answer logs, polygons, exports). The real model worker process is exercised in test_real_worker.py."""

from __future__ import annotations

from pathlib import Path

import pyogrio
import pytest
from PySide6.QtCore import QPoint, Qt

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.gui.main_window import MainWindow
from rsvg_desktop.gui.transcript import KIND_ROLE

pytestmark = pytest.mark.gui


# --- helpers ---------------------------------------------------------------------------------------
def open_sample(qtbot, window: MainWindow, path: Path) -> None:
    with qtbot.waitSignal(window.sceneOpened, timeout=20000):
        window.open_scene(path)


def load_model(qtbot, window: MainWindow) -> None:
    window.model_panel.test_radio.setChecked(True)
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=20000):
        window.model_panel.load_button.click()
    qtbot.waitUntil(lambda: window.query_panel.run_button.isEnabled(), timeout=5000)


def run_query(qtbot, window: MainWindow, task: str, text: str = "", *, scope: str = "scene", timeout=20000):
    panel = window.query_panel
    panel.set_task(task)
    panel.query_edit.setText(text)
    panel.set_scope(scope)
    with qtbot.waitSignal(window.runs.runEnded, timeout=timeout) as blocker:
        panel.run_button.click()
    return blocker.args[0]


def transcript_texts(window: MainWindow, kind: str | None = None) -> list[str]:
    model = window.transcript_model
    out = []
    for r in range(model.rowCount()):
        run = model.item(r)
        for c in range(run.rowCount()):
            child = run.child(c)
            if kind is None or child.data(KIND_ROLE) == kind:
                out.append(child.text())
    return out


@pytest.fixture
def ready(qtbot, window: MainWindow, sample_scene: Path) -> MainWindow:
    open_sample(qtbot, window, sample_scene)
    load_model(qtbot, window)
    return window


# --- scene and map ---------------------------------------------------------------------------------
def test_open_scene_shows_grid_recent_files_and_cursor(qtbot, window: MainWindow, sample_scene: Path) -> None:
    open_sample(qtbot, window, sample_scene)
    grid = window.map.grid
    assert len(grid.tiles) == 9 and grid.count("pending") == 9 and grid.count("skipped") == 0
    assert window.settings.recent_files[0] == str(sample_scene.resolve())
    assert [a.text() for a in window.recent_menu.actions()] == [str(sample_scene.resolve())]
    assert "sample_scene.tif" in window.windowTitle()
    # The cursor's position in the scene CRS and in latitude/longitude.
    window.map.cursorMoved.emit(100.5, 200.5)
    text = window.cursor_label.text()
    assert text.startswith("px 100, 200") and "EPSG:3857" in text and "° N" in text
    window.map.cursorMoved.emit(-10.0, 5.0)  # off the scene
    assert window.cursor_label.text() == ""
    # a real mouse move over the map updates it too
    centre = window.map.viewport().rect().center()
    qtbot.mouseMove(window.map.viewport(), centre)
    qtbot.waitUntil(lambda: window.cursor_label.text().startswith("px "), timeout=3000)


def test_without_a_model_the_panel_explains_how_to_get_one(
    window: MainWindow, sample_scene: Path, qtbot
) -> None:
    open_sample(qtbot, window, sample_scene)
    panel = window.model_panel
    assert "No GeoChat model is set" in panel.guidance.text()
    assert "MBZUAI/geochat-7B" in panel.guidance.text()
    assert not panel.load_button.isEnabled()
    assert not window.query_panel.run_button.isEnabled()
    assert "Load a model first" in window.query_panel.reason_label.text()
    panel.test_radio.setChecked(True)
    assert panel.load_button.isEnabled()
    assert "RANDOM WEIGHTS" in panel.guidance.text()
    assert "random weights" in panel.test_radio.text().lower()


def test_layers_toggle(window: MainWindow, sample_scene: Path, qtbot) -> None:
    open_sample(qtbot, window, sample_scene)
    for name, action in window.layer_actions.items():
        action.setChecked(False)
        assert not window.map.layer_visible(name)
        action.setChecked(True)
        assert window.map.layer_visible(name)


def test_open_a_file_that_is_not_a_raster(window: MainWindow, tmp_path: Path, qtbot) -> None:
    bad = tmp_path / "notes.tif"
    bad.write_text("not a raster")
    with qtbot.waitSignal(window.sceneFailed, timeout=10000) as blocker:
        window.open_scene(bad)
    assert "not a raster" in blocker.args[0]
    assert window.info is None


def test_drop_a_scene_on_the_map(window: MainWindow, sample_scene: Path, qtbot) -> None:
    with qtbot.waitSignal(window.sceneOpened, timeout=20000):
        window.map.filesDropped.emit([str(sample_scene)])


# --- the whole flow ---------------------------------------------------------------------------------
def test_load_run_select_delete_export_reopen(qtbot, ready: MainWindow, fake_workers, tmp_path: Path) -> None:
    window = ready
    assert "RANDOM WEIGHTS" in window.device_label.text()
    assert window.model_panel.random_badge.isVisibleTo(window.model_panel)
    assert "RANDOM WEIGHTS" in window.model_panel.status_label.text()
    assert fake_workers[0].specs[0].model_dir.endswith("fake-test-model")

    run = run_query(qtbot, window, "refer", "storage tanks")
    config = fake_workers[0].configs[-1]
    assert (config.task, config.query, config.scope) == ("refer", "storage tanks", None)
    assert Path(config.output).parent.parent == Path(window.settings.runs_dir)
    assert run.done == 9 and not run.cancelled
    assert window.map.grid.count("done") == 9
    assert window.results.rowCount() == 18 and len(window.map.detections.items) == 18
    assert all(r.phrase == "storage tanks" and r.area > 0 for r in window.results.rows)
    assert len(transcript_texts(window, "tile")) == 9
    assert any("Finished: 9 / 9 tiles" in t for t in transcript_texts(window, "note"))
    assert window.query_panel.progress.value() == 9
    assert window.map.active_tiles() == []

    # table → map: selecting a row selects its polygon and zooms to it
    table = window.results_table
    table.view.selectRow(0)
    key = table.selected_keys()[0]
    assert window.map.detections.items[key].isSelected()
    visible = window.map.visible_rect_f()
    bounds = window.results.detection(key).pixel_bounds()
    assert visible.contains(bounds[0], bounds[1]) and visible.width() < 1024
    # map → table: selecting a polygon selects its row
    other = window.results.rows[5].key
    window.map.detections.items[key].setSelected(False)
    window.map.detections.items[other].setSelected(True)
    assert table.selected_keys() == [other]

    # delete two false positives
    window.map.select_keys([window.results.rows[0].key, window.results.rows[1].key])
    window.map.detectionSelectionChanged.emit(window.map.detections.selected_keys())
    deleted = table.selected_keys()
    window.delete_selected()
    assert window.results.rowCount() == 16 and window.results.excluded == frozenset(deleted)
    assert all(k not in window.map.detections.items for k in deleted)

    # export through the dialog, then reopen the file
    dialog = window.open_export_dialog()
    assert dialog is not None and "2 deleted" in dialog.info_label.text()
    out = tmp_path / "exports" / "tanks.gpkg"
    out.parent.mkdir()
    dialog.set_path(str(out))
    assert dialog.fmt == "gpkg"
    with qtbot.waitSignal(dialog.exported, timeout=30000) as blocker:
        dialog.export_button.click()
    summary = blocker.args[0]
    assert summary.excluded == 2 and summary.raw_detections == 18
    layers = {name for name, _geom in pyogrio.list_layers(out)}
    assert {"detections", "tiles", "run"} <= layers
    frame = pyogrio.read_dataframe(out, layer="detections")
    assert len(frame) == summary.detections > 0
    assert set(frame["phrase"]) == {"storage tanks"}
    assert frame.crs.to_epsg() == 3857

    # GeoJSON and Shapefile from the same dialog
    dialog.set_format("geojson")
    assert dialog.path_edit.text().endswith("tanks.geojson")
    with qtbot.waitSignal(dialog.exported, timeout=30000):
        dialog.export_button.click()
    gj = pyogrio.read_dataframe(out.with_suffix(".geojson"))
    assert len(gj) == summary.detections and gj.crs.to_epsg() == 4326
    dialog.set_format("shp")
    with qtbot.waitSignal(dialog.exported, timeout=30000):
        dialog.export_button.click()
    assert out.with_suffix(".prj").is_file() and out.with_suffix(".cpg").is_file()
    assert len(pyogrio.read_dataframe(out.with_suffix(".shp"))) == summary.detections
    # exporting again without "replace" is refused with a clear message
    with qtbot.waitSignal(dialog.failed, timeout=30000) as failed:
        dialog.export_button.click()
    assert "exists" in failed.args[0]

    # restore brings the deleted ones back
    window.restore_deleted()
    assert window.results.rowCount() == 18 and not window.results.excluded


def test_cancel_keeps_finished_tiles(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    worker = fake_workers[0]
    worker.tile_seconds = 0.15
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText("cars")
    panel.run_button.click()
    qtbot.waitUntil(lambda: window.runs.run is not None and window.runs.run.done >= 3, timeout=10000)
    assert panel.cancel_button.isEnabled() and not panel.run_button.isEnabled()
    assert window.map.active_tiles() or window.runs.run.done >= 3
    with qtbot.waitSignal(window.runs.runEnded, timeout=10000) as blocker:
        panel.cancel_button.click()
    run = blocker.args[0]
    assert run.cancelled and worker.cancel_calls == 1
    assert 3 <= run.done < 9
    assert window.results.rowCount() == 2 * run.done
    assert window.map.grid.count("done") == run.done
    records = list(read_answer_log(run.answer_log))
    assert len(records) == run.done
    assert any("Cancelled after" in t and "kept" in t for t in transcript_texts(window, "note"))
    assert panel.run_button.isEnabled() and not panel.cancel_button.isEnabled()
    # the finished tiles of the cancelled run can be exported
    assert window.results.answer_log == run.answer_log


def test_worker_death_is_reported_and_the_app_survives(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    worker = fake_workers[0]
    panel = window.model_panel
    panel.precision_combo.setCurrentIndex(panel.precision_combo.findData("int8"))
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10000):
        panel.load_button.click()  # reload the same worker at int8
    assert worker.specs[-1].precision == "int8"
    worker.tile_seconds = 0.1
    window.query_panel.query_edit.setText("ships")
    window.query_panel.run_button.click()
    qtbot.waitUntil(lambda: window.runs.run is not None and window.runs.run.done >= 2, timeout=10000)
    with qtbot.waitSignal(window.bridge.workerDied, timeout=10000) as died:
        window.bridge.kill()
    assert died.args[0] == -9
    assert window.model_panel.banner_visible
    text = window.model_panel.banner_label.text()
    assert "SIGKILL" in text and "stopped unexpectedly" in text
    assert window.model_panel.reload_lower_button.isVisibleTo(window.model_panel)
    assert not window.runs.running and window.bridge.state == "stopped"
    assert any("worker stopped" in t for t in transcript_texts(window, "error"))
    assert "Load a model first" in window.query_panel.reason_label.text()
    done = window.runs.run.done
    assert window.results.rowCount() == 2 * done  # what finished is kept
    assert window.isVisible()
    # reload at a lower precision starts a fresh worker
    assert panel.reload_lower_button.text() == "Reload at nf4 (less memory)"
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=10000):
        panel.reload_lower_button.click()
    assert len(fake_workers) == 2
    assert fake_workers[1].specs[0].precision == "nf4"
    assert not window.model_panel.banner_visible


def test_failed_load_offers_a_reload(qtbot, window: MainWindow, fake_workers, sample_scene: Path) -> None:
    open_sample(qtbot, window, sample_scene)
    window.model_panel.test_radio.setChecked(True)
    window.model_panel.load_button.click()
    qtbot.waitUntil(lambda: bool(fake_workers), timeout=10000)
    fake_workers[0].fail_load = "CUDA out of memory"
    fake_workers[0]._queue.clear()
    fake_workers[0].load(fake_workers[0].specs[0])
    qtbot.waitUntil(lambda: window.model_panel.banner_visible, timeout=30000)
    assert "out of memory" in window.model_panel.banner_label.text()


def test_text_answers_follow_ups_and_identify(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    worker = fake_workers[0]
    run_query(qtbot, window, "refer", "planes")
    n_rows = window.results.rowCount()

    # classification: text in the transcript, detections untouched
    window.query_panel.set_task("classify")
    window.query_panel.classes_edit.setText("forest, residential, airport")
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000):
        window.query_panel.run_button.click()
    assert worker.configs[-1].classes == ("forest", "residential", "airport")
    texts = transcript_texts(window, "tile")
    assert any(t.endswith(": forest") for t in texts) and any(t.endswith(": residential") for t in texts)
    assert window.results.rowCount() == n_rows

    # select a tile's entry: the tile is highlighted on the map
    entry = window.transcript_model.tile_entries("run-1")[4]
    window.transcript.select_entry(entry)
    tile = window.transcript.current_tile()
    assert tile is not None and window.map.highlighted is not None
    assert window.map.highlighted.x() == tile.col_off and window.map.highlighted.width() == tile.width

    # two follow-ups on that tile carry the conversation
    assert window.transcript.follow_button.isEnabled()
    window.transcript.follow_edit.setText("What colour are they?")
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000):
        window.transcript.follow_button.click()
    first = worker.configs[-1]
    assert first.task == "chat" and first.query == "What colour are they?"
    assert [q for q, _a in first.history] == ["[refer] Give me the location of <p> planes </p>"]
    assert len(worker.configs[-1].scope) == 4 and worker.configs[-1].scope[2:] == (1, 1)
    assert transcript_texts(window, "tile")[-1] == f"{tile.id}: answer 2 about tile {tile.id}"
    window.transcript.select_entry(window.transcript_model.tile_entries("run-3")[0])
    window.transcript.follow_edit.setText("How many?")
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000):
        window.transcript.follow_button.click()
    second = worker.configs[-1]
    assert [q for q, _a in second.history] == [
        "[refer] Give me the location of <p> planes </p>",
        "What colour are they?",
    ]
    assert second.history[1][1] == f"answer 2 about tile {tile.id}"

    # identify: draw a region with the mouse on the map
    view = window.map
    view.fit_scene()
    qtbot.wait(50)
    window.tool_actions["region"].trigger()
    assert view.tool == "region"
    a = view.mapFromScene(300, 300)
    b = view.mapFromScene(360, 340)
    qtbot.mousePress(view.viewport(), Qt.MouseButton.LeftButton, pos=a)
    qtbot.mouseMove(view.viewport(), pos=QPoint((a.x() + b.x()) // 2, (a.y() + b.y()) // 2))
    qtbot.mouseMove(view.viewport(), pos=b)
    qtbot.mouseRelease(view.viewport(), Qt.MouseButton.LeftButton, pos=b)
    assert view.tool == "pan" and view.region_rect is not None
    assert window.query_panel.task == "identify"
    assert "px at" in window.query_panel.region_label.text()
    with qtbot.waitSignal(window.runs.runEnded, timeout=20000):
        window.query_panel.run_button.click()
    config = worker.configs[-1]
    assert config.task == "identify" and config.region is not None and config.region.angle == 90
    assert transcript_texts(window, "tile")[-1].endswith("a white storage tank")
    assert window.results.rowCount() == n_rows


def test_scope_visible_extent_and_drawn_rectangle(qtbot, ready: MainWindow, fake_workers) -> None:
    window = ready
    view = window.map
    view.zoom_to((0, 0, 200, 200), margin=0.0)
    qtbot.wait(20)
    visible = view.visible_scene_rect()
    assert visible is not None and visible[2] < 600
    run = run_query(qtbot, window, "vqa", "Is there a road?", scope="visible")
    config = fake_workers[0].configs[-1]
    assert config.scope is not None and config.scope[0] == 0 and config.scope[2] < 600
    assert run.total < 9
    assert any(t.endswith(": yes") for t in transcript_texts(window, "tile"))

    window.query_panel.scope_button.click()
    assert view.tool == "scope" and window.query_panel.scope == "rectangle"
    view.draw_rectangle("scope", (900, 900, 1000, 1010))
    assert view.scope_rect == (900, 900, 1000, 1010) or view.scope_rect == (900.0, 900.0, 1000.0, 1010.0)
    run = run_query(qtbot, window, "vqa", "Is there a road?", scope="rectangle")
    assert fake_workers[0].configs[-1].scope == (900, 900, 100, 110)
    assert run.total == 4  # the rectangle lies where four tiles overlap


def test_ui_stays_responsive_while_the_fake_worker_streams(qtbot, ready: MainWindow, fake_workers) -> None:
    """The bridge's per-tick budget keeps a burst of tiles from stalling the event loop."""
    from gui_fakes import LagProbe

    fake_workers[0].tile_seconds = 0.0
    with LagProbe() as probe:
        run_query(qtbot, ready, "refer", "buildings")
    assert probe.ticks > 3
    # A stall of a second means blocking work on the GUI thread (a bug); how small the lag is on an
    # idle machine is a figure for benchmarks, not a test (CI machines are shared).
    assert probe.max_lag < 1.0, probe.max_lag


def test_settings_persist_between_sessions(qtbot, settings, fake_factory, fake_test_model, tmp_path) -> None:
    first = MainWindow(settings, worker_factory=fake_factory, test_model=fake_test_model)
    qtbot.addWidget(first)
    first.model_panel.folder_edit.setText(str(tmp_path))
    first.model_panel.precision_combo.setCurrentIndex(first.model_panel.precision_combo.findData("int8"))
    first.model_panel.device_combo.setCurrentIndex(first.model_panel.device_combo.findData("cpu"))
    first.query_panel.tile_spin.setValue(448)
    first.query_panel.overlap_spin.setValue(32)
    first.query_panel._grid_edited()
    first.settings.add_recent("/data/a.tif")
    first.results_dock.setVisible(False)
    first.close()
    assert settings.precision == "int8" and settings.model_dir == str(tmp_path)

    second = MainWindow(settings, worker_factory=fake_factory, test_model=fake_test_model)
    qtbot.addWidget(second)
    choice = second.model_panel.choice()
    assert (choice.folder, choice.precision, choice.device) == (str(tmp_path), "int8", "cpu")
    assert second.query_panel.grid() == (448, 32)
    assert second.settings.recent_files == ["/data/a.tif"]
    assert second.results_dock.isHidden()
    second.close()


def test_settings_file_option_never_touches_the_user_store(tmp_path: Path) -> None:
    from rsvg_desktop.gui.app import build_parser
    from rsvg_desktop.gui.settings import Settings, open_qsettings

    args = build_parser().parse_args(["--settings-file", str(tmp_path / "s.ini"), "scene.tif"])
    s = Settings(open_qsettings(args.settings_file))
    s.precision = "fp16"
    s.sync()
    assert (tmp_path / "s.ini").read_text().count("fp16") == 1
    assert Settings(open_qsettings()).file_name.endswith("rsvg-desktop.ini")  # the env override of conftest


def test_reopen_a_run_from_its_answer_log(
    qtbot, ready: MainWindow, settings, fake_factory, fake_test_model, tmp_path: Path
) -> None:
    run = run_query(qtbot, ready, "refer", "tanks")
    keys = [r.key for r in ready.results.rows]
    ready.close()
    # a new session: the run is reopened from its answer log, the scene is opened on the way
    second = MainWindow(settings, worker_factory=fake_factory, test_model=fake_test_model)
    qtbot.addWidget(second)
    second.show()
    with qtbot.waitSignal(second.runReopened, timeout=20000) as reopened:
        second.open_run(run.answer_log)
    assert second.info is not None and Path(second.info.path).name == "sample_scene.tif"
    assert reopened.args[0].done == 9
    assert [r.key for r in second.results.rows] == keys
    assert len(second.map.detections.items) == len(keys) == 18
    assert second.results.answer_log == run.answer_log
    titles = [second.transcript_model.item(r).text() for r in range(second.transcript_model.rowCount())]
    assert any("reopened" in t for t in titles)
    # it can be pruned and exported again, without a model
    second.results_table.view.selectRow(0)
    second.delete_selected()
    dialog = second.open_export_dialog()
    dialog.set_path(str(tmp_path / "again.geojson"))
    with qtbot.waitSignal(dialog.exported, timeout=30000) as exported:
        dialog.export_button.click()
    assert exported.args[0].excluded == 1
    second.close()


def test_app_main_opens_the_scene_and_quits(tmp_path: Path, sample_scene: Path) -> None:
    """``rsvg-desktop SCENE --settings-file F --test-model`` in a process of its own (it runs the
    event loop, which must not be quit in the test process)."""
    import os
    import subprocess
    import sys

    driver = (
        "import sys\n"
        "from PySide6.QtCore import QTimer\n"
        "from PySide6.QtWidgets import QApplication\n"
        "import rsvg_desktop.gui.app as app\n"
        "create = app.create_window\n"
        "def create_and_quit(args):\n"
        "    w = create(args)\n"
        "    def done():\n"
        "        sys.stdout.write(w.windowTitle() + '|' + w.model_panel.choice().source + '\\n')\n"
        "        w.close()\n"
        "        QApplication.instance().quit()\n"
        "    QTimer.singleShot(4000, done)\n"
        "    return w\n"
        "app.create_window = create_and_quit\n"
        "sys.exit(app.main(sys.argv[1:]))\n"
    )
    settings_file = tmp_path / "app.ini"
    env = dict(os.environ, QT_QPA_PLATFORM="offscreen")
    args = [
        sys.executable,
        "-c",
        driver,
        str(sample_scene),
        "--settings-file",
        str(settings_file),
        "--test-model",
    ]
    result = subprocess.run(args, capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    title, source = result.stdout.strip().splitlines()[-1].split("|")
    assert title.startswith("sample_scene.tif") and source == "test"
    assert "sample_scene.tif" in settings_file.read_text()


def test_model_folder_discovered_like_the_cli(
    qtbot, settings, fake_factory, fake_test_model, test_model_dir, monkeypatch
):
    """With no folder in the settings, $RSVG_MODEL_DIR (then the HF cache) fills the model panel."""
    from rsvg_desktop.gui.main_window import MainWindow

    model = test_model_dir
    monkeypatch.setenv("RSVG_MODEL_DIR", str(model))
    settings.model_dir = ""
    win = MainWindow(settings, worker_factory=fake_factory, test_model=fake_test_model)
    qtbot.addWidget(win)
    qtbot.waitUntil(lambda: win.model_panel.folder_edit.text() == str(model), timeout=20000)
