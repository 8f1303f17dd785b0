"""The export dialog: write a run's merged detections to GeoPackage, GeoJSON or Shapefile.

The export is rebuilt from the run's answer log by the engine (``export_answer_log``, the same as
``rsvg export``), with the detections deleted in the results table excluded. It runs in a background
thread; :attr:`ExportDialog.exported` carries the engine's summary, :attr:`ExportDialog.failed` the
message. Conventions (RFC 7946 GeoJSON in WGS 84, Shapefile field names ≤ 10 characters with .prj and
.cpg, GeoPackage with tiles and run layers and QGIS styles) are the engine's.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QCheckBox,
    QComboBox,
    QDialog,
    QDialogButtonBox,
    QFileDialog,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rsvg_desktop.core.geo.export import format_for_path
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.messages import app_message
from rsvg_desktop.gui.tasks import run_in_background

__all__ = ["FORMATS", "ExportDialog", "default_export_function"]

log = logging.getLogger(__name__)

#: (format value, label, extension, file dialog filter)
FORMATS: tuple[tuple[str, str, str, str], ...] = (
    ("gpkg", "GeoPackage (detections, tiles, run; QGIS styles)", ".gpkg", "GeoPackage (*.gpkg)"),
    ("geojson", "GeoJSON (RFC 7946, WGS 84)", ".geojson", "GeoJSON (*.geojson *.json)"),
    ("shp", "Shapefile (.shp + .prj + .cpg)", ".shp", "Shapefile (*.shp)"),
)


def default_export_function() -> Callable[..., Any]:
    """The engine's ``export_answer_log`` (the same function as ``rsvg export``)."""
    from rsvg_desktop.engine.results import export_answer_log

    return export_answer_log


class ExportDialog(QDialog):
    """See module doc. ``exclude``: keys of deleted detections."""

    exported = Signal(object)  # ExportSummary
    failed = Signal(str)

    def __init__(
        self,
        answer_log: str,
        *,
        exclude: Iterable[tuple[int, int, int]] = (),
        detections: int = 0,
        default_path: str = "",
        pixel_mode: bool = False,
        export_function: Callable[..., Any] | None = None,
        parent: QWidget | None = None,
    ) -> None:
        super().__init__(parent)
        self.setObjectName("exportDialog")
        self.setWindowTitle("Export detections")
        self.answer_log = answer_log
        self.exclude = tuple(sorted(set(exclude)))
        self._export = export_function or default_export_function()
        self._pixel_mode = pixel_mode
        self.result: Any = None

        self.format_combo = QComboBox(self)
        for value, label, _ext, _filter in FORMATS:
            self.format_combo.addItem(label, value)
        self.path_edit = QLineEdit(default_path, self)
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self._browse)
        path_row = QHBoxLayout()
        path_row.addWidget(self.path_edit, 1)
        path_row.addWidget(self.browse_button)
        self.overwrite_check = QCheckBox("Replace the file if it exists", self)
        info = f"{detections} detection{'s' if detections != 1 else ''} before merging"
        if self.exclude:
            info += f"; {len(self.exclude)} deleted as false positives will be left out"
        info += ". Duplicates across tile seams are merged on export."
        self.info_label = QLabel(info, self)
        self.info_label.setWordWrap(True)
        self.log_label = QLabel(f"From the answer log: {answer_log}", self)
        self.log_label.setWordWrap(True)
        self.log_label.setStyleSheet("color: palette(mid);")
        self.status_label = QLabel(self)
        self.status_label.setWordWrap(True)

        self.buttons = QDialogButtonBox(self)
        self.export_button = self.buttons.addButton("Export", QDialogButtonBox.ButtonRole.AcceptRole)
        self.close_button = self.buttons.addButton(QDialogButtonBox.StandardButton.Close)
        self.export_button.clicked.connect(self.start_export)
        self.close_button.clicked.connect(self.reject)

        form = QFormLayout()
        form.addRow("Format", self.format_combo)
        form.addRow("File", path_row)
        form.addRow("", self.overwrite_check)
        layout = QVBoxLayout(self)
        layout.addLayout(form)
        layout.addWidget(self.info_label)
        layout.addWidget(self.log_label)
        layout.addWidget(self.status_label)
        layout.addWidget(self.buttons)
        self.format_combo.currentIndexChanged.connect(self._format_changed)
        # The format follows a file name typed with a known extension (out.shp → Shapefile).
        self.path_edit.textEdited.connect(self._select_format_for)
        self.resize(560, self.sizeHint().height())
        if default_path:
            self._select_format_for(default_path)

    # --- format and path ---------------------------------------------------------------------
    @property
    def fmt(self) -> str:
        return str(self.format_combo.currentData())

    def set_format(self, fmt: str) -> None:
        i = self.format_combo.findData(fmt)
        if i >= 0:
            self.format_combo.setCurrentIndex(i)

    def set_path(self, path: str) -> None:
        self.path_edit.setText(path)
        self._select_format_for(path)

    def _select_format_for(self, path: str) -> None:
        suffix = Path(path).suffix.lower()
        for value, _label, ext, _filter in FORMATS:
            if suffix == ext or (value == "geojson" and suffix == ".json"):
                self.set_format(value)
                return

    def _format_changed(self, *_args: object) -> None:
        ext = next(e for v, _l, e, _f in FORMATS if v == self.fmt)
        path = self.path_edit.text().strip()
        if path:
            p = Path(path)
            if p.suffix.lower() != ext:
                self.path_edit.setText(str(p.with_suffix(ext)))
        if self.fmt == "geojson" and self._pixel_mode:
            self.status_label.setText(
                "GeoJSON needs longitude/latitude: a pixel-mode scene cannot be "
                "written "
                "as GeoJSON. Choose GeoPackage or Shapefile."
            )
        else:
            self.status_label.setText("")

    def _browse(self) -> None:
        _value, _label, ext, filt = next(f for f in FORMATS if f[0] == self.fmt)
        path, _ = QFileDialog.getSaveFileName(self, "Export detections", self.path_edit.text(), filt)
        if path:
            if not Path(path).suffix:
                path += ext
            self.set_path(path)
            self.overwrite_check.setChecked(Path(path).exists())

    # --- export ------------------------------------------------------------------------------
    def start_export(self) -> None:
        """Write the file in the background (``exported`` or ``failed`` follows)."""
        path = self.path_edit.text().strip()
        if not path:
            self.status_label.setText("Choose a file to write.")
            return
        self._select_format_for(path)
        try:  # the format and the extension must agree: never GeoJSON text in a .shp
            format_for_path(path, self.fmt)
        except ConfigError as exc:
            self.status_label.setText(f"<span style='color:#e57373'>{app_message(str(exc))}</span>")
            self.failed.emit(str(exc))
            return
        self.export_button.setEnabled(False)
        self.status_label.setText("Exporting…")
        fmt, overwrite = self.fmt, self.overwrite_check.isChecked()
        exclude, log_path = self.exclude, self.answer_log
        export = self._export

        def work() -> Any:
            return export(log_path, path, overwrite=overwrite, fmt=fmt, exclude=exclude)

        self._call = run_in_background(work, self._done, self._failed, name="export")

    def _done(self, summary: Any) -> None:
        self.result = summary
        self.export_button.setEnabled(True)
        result = getattr(summary, "result", None)
        count = getattr(result, "count", getattr(summary, "detections", "?"))
        where = getattr(result, "path", self.path_edit.text())
        self.status_label.setText(f"<span style='color:#7cc47f'>Wrote {count} detections to {where}.</span>")
        log.info("exported %s detections to %s", count, where)
        self.exported.emit(summary)

    def _failed(self, exc: BaseException) -> None:
        self.export_button.setEnabled(True)
        message = app_message(str(exc) or type(exc).__name__, {"--overwrite": ""})
        if isinstance(exc, FileExistsError):
            message += " (tick “Replace the file if it exists”)"
        self.status_label.setText(f"<span style='color:#e57373'>Export failed: {message}</span>")
        log.warning("export failed: %s", message)
        self.failed.emit(message)
