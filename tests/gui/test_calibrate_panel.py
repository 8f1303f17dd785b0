"""Calibrating q4cal from the Model panel: in the background, on the open scene, then selectable."""

from __future__ import annotations

from pathlib import Path

from test_main_window import open_sample

from rsvg_desktop.core.model.loader import LoadSpec, calibration_record
from rsvg_desktop.core.precisions import Precision
from rsvg_desktop.gui.main_window import MainWindow


def test_calibrate_from_the_model_panel(
    qtbot, window: MainWindow, sample_scene: Path, test_model_dir: Path, tmp_path: Path
) -> None:
    import shutil

    model = tmp_path / "model"
    shutil.copytree(test_model_dir, model, ignore=shutil.ignore_patterns(".rsvg-cache"))
    open_sample(qtbot, window, sample_scene)
    panel = window.model_panel
    panel.folder_radio.setChecked(True)
    panel.folder_edit.setText(str(model))
    panel.device_combo.setCurrentIndex(panel.device_combo.findData("cpu"))
    window.models.calibration_samples = 2
    assert window.models.calibration_inputs == [str(sample_scene)]
    panel.calibrate_button.click()
    assert panel.calibrate_button.text() == "Cancel calibration"
    qtbot.waitUntil(lambda: "q4cal calibrated" in panel.status_label.text(), timeout=240000)
    assert panel.precision_combo.currentData() == "q4cal"
    record = calibration_record(LoadSpec(model, Precision.Q4CAL, "cpu"))
    assert record is not None and record["inputs"] == [str(sample_scene)]
