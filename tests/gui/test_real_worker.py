"""The window with the real model worker process and the tiny test model (RANDOM WEIGHTS): open the sample
scene, load, run to the end while measuring the event loop's lag, export and reopen, cancel a second
run midway, and kill the worker during a run. Slow: a worker start and model load take ~10 s on a CPU."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import pyogrio
import pytest

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.gui.main_window import MainWindow

pytestmark = [pytest.mark.usefixtures("test_model_dir"), pytest.mark.gui]  # the window loads the test model

log = logging.getLogger(__name__)

LOAD_TIMEOUT = 180_000
RUN_TIMEOUT = 180_000


@pytest.fixture(scope="session")
def shared_data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One data folder for the session: the test model is built once."""
    return tmp_path_factory.mktemp("rsvg-data")


@pytest.fixture
def real_window(qtbot, settings, shared_data_dir: Path, monkeypatch: pytest.MonkeyPatch, sample_scene: Path):
    monkeypatch.setenv("RSVG_DATA_DIR", str(shared_data_dir))
    win = MainWindow(settings)  # the engine's ModelWorker and ensure_test_model()
    win.ask_pixel_mode = lambda path, message: False
    qtbot.addWidget(win)
    win.resize(1200, 800)
    win.show()
    with qtbot.waitSignal(win.sceneOpened, timeout=30000):
        win.open_scene(sample_scene)
    win.model_panel.test_radio.setChecked(True)
    win.model_panel.precision_combo.setCurrentIndex(win.model_panel.precision_combo.findData("fp32"))
    win.model_panel.device_combo.setCurrentIndex(win.model_panel.device_combo.findData("cpu"))
    with qtbot.waitSignal(win.bridge.modelLoaded, timeout=LOAD_TIMEOUT):
        win.model_panel.load_button.click()
    yield win
    win.close()
    assert win.bridge.worker is None


def test_real_worker_run_export_cancel(qtbot, real_window: MainWindow, tmp_path: Path) -> None:
    from gui_fakes import LagProbe

    window = real_window
    info = window.bridge.model_info
    assert info.random_weights and info.device_name == "CPU"
    assert "RANDOM WEIGHTS" in window.device_label.text()
    assert "RANDOM WEIGHTS" in window.model_panel.status_label.text()
    assert window.bridge.alive and window.bridge.pid is not None

    # run to the end, measuring how late a 10 ms timer fires meanwhile
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText("airplanes")
    with LagProbe() as probe, qtbot.waitSignal(window.runs.runEnded, timeout=RUN_TIMEOUT) as ended:
        panel.run_button.click()
    run = ended.args[0]
    assert not run.cancelled and run.done == run.total == 9
    log.info("run of 9 tiles: %d timer ticks, worst lag %.1f ms", probe.ticks, probe.max_lag * 1000)
    assert probe.ticks > 20
    # a second-long stall means blocking work on the GUI thread; the figure itself is logged above
    assert probe.max_lag < 1.0, f"the event loop stalled for {probe.max_lag * 1000:.0f} ms"
    assert window.map.grid.count("done") == 9
    records = list(read_answer_log(run.answer_log))
    assert len(records) == 9 and all(r.extra.get("random_weights") for r in records)
    assert window.results.rowCount() == len(window.map.detections.items) == run.boxes
    assert Path(run.config.output).is_file()  # the run's own results store

    # export through the dialog and reopen it
    dialog = window.open_export_dialog()
    assert dialog is not None
    out = tmp_path / "real.gpkg"
    dialog.set_path(str(out))
    with qtbot.waitSignal(dialog.exported, timeout=60000) as exported:
        dialog.export_button.click()
    summary = exported.args[0]
    assert summary.records == 9 and summary.raw_detections == run.boxes
    frame = pyogrio.read_dataframe(out, layer="detections")
    assert len(frame) == summary.detections
    tiles = pyogrio.read_dataframe(out, layer="tiles")
    assert len(tiles) == 9
    dialog.close()

    # a second run, cancelled midway: the finished tiles are kept
    panel.query_edit.setText("ships")
    panel.run_button.click()
    qtbot.waitUntil(lambda: window.runs.run.index == 2 and window.runs.run.done >= 1, timeout=RUN_TIMEOUT)
    done_at_click = window.runs.run.done
    clicked = time.monotonic()
    with qtbot.waitSignal(window.runs.runEnded, timeout=RUN_TIMEOUT) as ended:
        panel.cancel_button.click()
        assert window.bridge.state == "cancelling" and not panel.cancel_button.isEnabled()
    latency = time.monotonic() - clicked
    second = ended.args[0]
    log.info(
        "cancel: clicked after %d tiles, stopped after %d, %.2f s later", done_at_click, second.done, latency
    )
    assert second.cancelled and 1 <= second.done < 9
    # Generation polls the cancel flag between tokens: the batch in flight is abandoned, so the run
    # ends within about a second (slack for a loaded 2-core machine) with no tile beyond the click's
    # batch answered.
    assert latency < 3.0
    assert second.done <= done_at_click + 4
    kept = list(read_answer_log(second.answer_log))
    assert len(kept) == second.done
    assert window.map.grid.count("done") == second.done
    assert window.results.answer_log == second.answer_log
    assert window.bridge.state == "ready" and panel.run_button.isEnabled()


def test_real_worker_killed_during_a_run(qtbot, real_window: MainWindow) -> None:
    window = real_window
    panel = window.query_panel
    panel.set_task("refer")
    panel.query_edit.setText("storage tanks")
    panel.run_button.click()
    qtbot.waitUntil(lambda: window.runs.run is not None and window.runs.run.done >= 1, timeout=RUN_TIMEOUT)
    pid = window.bridge.pid
    with qtbot.waitSignal(window.bridge.workerDied, timeout=30000) as died:
        window.bridge.kill()
    assert died.args[0] == -9
    assert window.isVisible() and window.bridge.state == "stopped" and not window.runs.running
    assert window.model_panel.banner_visible and "SIGKILL" in window.model_panel.banner_label.text()
    done = window.runs.run.done
    assert len(list(read_answer_log(window.runs.run.answer_log))) >= done >= 1
    assert "Load a model first" in panel.reason_label.text()
    # the analyst reloads and the app carries on with a new worker process
    with qtbot.waitSignal(window.bridge.modelLoaded, timeout=LOAD_TIMEOUT):
        window.model_panel.reload_button.click()
    assert window.bridge.pid != pid and window.bridge.alive
    assert not window.model_panel.banner_visible
