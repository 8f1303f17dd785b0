"""Issue 22: the app's Reopen a run refuses an answer log whose scene is a URL or a GDAL network path,
with a message, and opens nothing."""

from __future__ import annotations

from pathlib import Path

import pytest
from PySide6.QtWidgets import QMessageBox

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
from rsvg_desktop.gui.main_window import MainWindow

pytestmark = pytest.mark.gui


def test_reopen_refuses_a_remote_scene_with_a_message(qtbot, window: MainWindow, tmp_path: Path) -> None:
    log = tmp_path / "shared.answers.jsonl"
    with AnswerLogWriter(log) as w:
        w.write(
            AnswerRecord(
                scene="/vsicurl/http://127.0.0.1:9/scene.tif",
                col_off=0,
                row_off=0,
                width=100,
                height=100,
                task="refer",
                query="q",
                answer="x",
            )
        )
    window.open_run(log)
    texts = [box.text() for box in window.findChildren(QMessageBox) if box.isVisible()]
    assert len(texts) == 1 and "network" in texts[0] and "--allow-remote" not in texts[0]
    assert window.info is None  # no scene was opened
