"""Take screenshots of the real window at each main step (for the README and for review).

    python tools/screenshots.py OUT_DIR [--scene resources/sample_scene.tif] [--size 1366x768]

Runs the application on the sample scene with the real model worker and the test model (RANDOM
WEIGHTS, so its answers are noise: the screenshots show the flow, not GeoChat's quality): opening,
loading, a run in progress, the finished run, a cancelled run, the export dialog and a worker crash.
Writes ``steps/01-open.jpg`` … ``steps/07-worker-died.jpg`` (JPEG, to keep them small) and
``main.png`` (the finished run, for the README). Run it under a
display (e.g. ``xvfb-run``) or with ``QT_QPA_PLATFORM=offscreen``. Settings go to a temporary file.
"""

from __future__ import annotations

import argparse
import logging
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

log = logging.getLogger("rsvg_screenshots")


def _wait(app: object, done: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out waiting for {what}")
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.01)


def _settle(app: object, seconds: float = 0.4) -> None:
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        app.processEvents()  # type: ignore[attr-defined]
        time.sleep(0.01)


def take(out_dir: Path, scene: Path, *, size: tuple[int, int] = (1500, 940)) -> list[Path]:
    """Drive the window through the main steps and save a PNG after each; returns the files."""
    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from rsvg_desktop.gui.main_window import MainWindow
    from rsvg_desktop.gui.settings import APP_NAME, ORG_NAME, Settings

    app = QApplication.instance() or QApplication(["rsvg-desktop"])
    app.setOrganizationName(ORG_NAME)
    app.setApplicationName(APP_NAME)
    out_dir.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix="rsvg-shots-"))
    settings = Settings(QSettings(str(tmp / "settings.ini"), QSettings.Format.IniFormat))
    settings.runs_dir = str(tmp / "runs")
    window = MainWindow(settings)
    window.resize(*size)
    window.show()
    files: list[Path] = []

    (out_dir / "steps").mkdir(exist_ok=True)

    def shot(name: str) -> None:
        _settle(app)
        path = out_dir / name if name.endswith(".png") else out_dir / "steps" / name
        window.grab().save(str(path), quality=85)
        files.append(path)
        log.info("wrote %s", path)

    opened: list[object] = []
    window.sceneOpened.connect(opened.append)
    window.open_scene(scene)
    _wait(app, lambda: bool(opened), 60, "the scene")
    shot("01-open.jpg")

    loaded: list[object] = []
    window.bridge.modelLoaded.connect(loaded.append)
    panel = window.model_panel
    panel.test_radio.setChecked(True)
    panel.precision_combo.setCurrentIndex(panel.precision_combo.findData("fp32"))
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    panel.load_button.click()
    _wait(app, lambda: bool(loaded), 300, "the model")
    shot("02-model-loaded.jpg")

    ended: list[object] = []
    window.runs.runEnded.connect(ended.append)
    query = window.query_panel
    query.set_task("grounding")
    query.query_edit.setText("")
    query.run_button.click()
    _wait(app, lambda: window.runs.run is not None and window.runs.run.done >= 1, 300, "the first tiles")
    shot("03-running.jpg")
    _wait(app, lambda: len(ended) == 1, 600, "the run")
    entries = window.transcript_model.tile_entries()
    if entries:
        window.transcript.select_entry(entries[len(entries) // 2])
    window.map.fit_scene()
    shot("04-finished.jpg")
    shot("main.png")

    query.set_task("classify")
    query.run_button.click()
    _wait(app, lambda: window.runs.run.index == 2 and window.runs.run.done >= 1, 300, "the second run")
    query.cancel_button.click()
    _wait(app, lambda: len(ended) == 2, 600, "the cancel")
    shot("05-cancelled.jpg")

    window.results.answer_log = window.results.answer_log or getattr(ended[0], "answer_log", None)
    dialog = window.open_export_dialog()
    if dialog is not None:
        dialog.set_path(str(tmp / "export.gpkg"))
        _settle(app)
        path = out_dir / "steps" / "06-export-dialog.jpg"
        dialog.grab().save(str(path), quality=85)
        files.append(path)
        dialog.close()

    died: list[object] = []
    window.bridge.workerDied.connect(died.append)
    query.set_task("vqa")
    query.query_edit.setText("Is there a road?")
    query.run_button.click()
    _wait(app, lambda: window.runs.run.index == 3 and window.runs.run.done >= 1, 300, "the third run")
    window.bridge.kill()
    _wait(app, lambda: bool(died), 60, "the worker's death")
    shot("07-worker-died.jpg")

    window.close()
    return files


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python tools/screenshots.py")
    parser.add_argument("out_dir", type=Path)
    parser.add_argument("--scene", type=Path, default=Path("resources/sample_scene.tif"))
    parser.add_argument("--size", default="1500x940", help="window size WIDTHxHEIGHT (default 1500x940)")
    args = parser.parse_args(argv)
    width, height = (int(v) for v in args.size.lower().split("x"))
    logging.basicConfig(level=logging.INFO, format="%(levelname)s %(name)s: %(message)s")
    take(args.out_dir, args.scene, size=(width, height))
    return 0


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
