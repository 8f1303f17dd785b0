"""Plugins ▸ rsvg ▸ Diagnostics: what ``rsvg doctor`` says (engine, torch, GPUs, kernels, models), in a
window with a Copy button, for pasting into an issue."""

from __future__ import annotations

import os
import subprocess

from qgis.PyQt.QtCore import Qt
from qgis.PyQt.QtGui import QFontDatabase, QGuiApplication
from qgis.PyQt.QtWidgets import QApplication, QDialog, QDialogButtonBox, QPlainTextEdit, QVBoxLayout, QWidget

from .engine_cli import EngineNotFoundError, clean_environment, find_engine
from .settings import engine_setting


def doctor_text(timeout: float = 180.0) -> str:
    """``rsvg doctor``'s report, or the one line saying why there is none."""
    try:
        program = find_engine(engine_setting())
    except EngineNotFoundError as exc:
        return str(exc)
    try:
        proc = subprocess.run(
            [program, "doctor"],
            env=clean_environment(os.environ),
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            encoding="utf-8",
            errors="replace",
            timeout=timeout,
        )
    except (OSError, subprocess.TimeoutExpired) as exc:
        return f"{program} doctor: {exc}"
    text = proc.stdout.strip()
    if proc.returncode != 0 or not text:
        text = "\n".join(filter(None, [text, proc.stderr.strip(), f"(exit status {proc.returncode})"]))
    return f"engine: {program}\n\n{text}"


class DiagnosticsDialog(QDialog):
    def __init__(self, text: str, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("rsvg diagnostics (rsvg doctor)")
        self.resize(760, 560)
        view = QPlainTextEdit(self)
        view.setReadOnly(True)
        view.setFont(QFontDatabase.systemFont(QFontDatabase.FixedFont))
        view.setPlainText(text)
        buttons = QDialogButtonBox(QDialogButtonBox.Close, self)
        copy = buttons.addButton("Copy", QDialogButtonBox.ActionRole)
        copy.clicked.connect(lambda: QGuiApplication.clipboard().setText(text))
        buttons.rejected.connect(self.reject)
        layout = QVBoxLayout(self)
        layout.addWidget(view)
        layout.addWidget(buttons)
        self.text = text


def show_diagnostics(parent: QWidget | None = None) -> DiagnosticsDialog:
    QApplication.setOverrideCursor(Qt.WaitCursor)
    try:
        text = doctor_text()
    finally:
        QApplication.restoreOverrideCursor()
    dialog = DiagnosticsDialog(text, parent)
    dialog.show()
    return dialog
