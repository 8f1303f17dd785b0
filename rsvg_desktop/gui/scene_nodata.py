"""The open scene's nodata value (the app's ``--nodata``): the field in the Ask panel, beside the
scene's description, and what changing it does.

:class:`NodataField` shows the scene and its validity and holds the value (empty: the file's own).
:class:`SceneNodata` applies an edit: the text is checked (a clear message in the field when it is not a
value), remembered for this scene in the settings, and the scene is read again in the background with
it, so the tile grid (skipped tiles hatched), the preview and the stretch follow; results and the
transcript stay. The next runs send it in ``RunConfig.nodata`` (it travels in the scene's
:class:`SceneInfo`, see :func:`~rsvg_desktop.gui.logic.nodata.given_nodata`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QObject, Signal
from PySide6.QtWidgets import QLabel, QLineEdit, QVBoxLayout, QWidget

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.nodata import given_nodata, nodata_text, parse_nodata
from rsvg_desktop.gui.scene_loader import OpenedScene

if TYPE_CHECKING:
    from rsvg_desktop.gui.main_window import MainWindow

__all__ = ["NodataField", "SceneNodata", "describe_validity"]

log = logging.getLogger(__name__)

PLACEHOLDER = "empty: the file's own"


def describe_validity(info: SceneInfo) -> str:
    """One line on the scene and where its nodata comes from."""
    bands = f"{info.count} band{'s' if info.count != 1 else ''} {info.dtype}"
    if info.nodata_given:
        where = f"nodata {nodata_text(info.nodata)} (yours)"
    elif info.mask_kind == "nodata":
        where = f"the file's nodata {nodata_text(info.nodata)}"
    elif info.mask_kind == "all_valid":
        where = "no nodata in the file"
    else:
        where = f"validity from the file's {info.mask_kind.replace('_', ' ')} mask"
    return f"{Path(info.path).name}: {info.width} × {info.height} px, {bands}; {where}"


class NodataField(QWidget):
    """The scene's description and its nodata value; :attr:`edited` (text) when the analyst changes it."""

    edited = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("nodataField")
        self.scene_label = QLabel("no scene", self)
        self.scene_label.setWordWrap(True)
        self.scene_label.setStyleSheet("color: palette(mid);")
        self.edit = QLineEdit(self)
        self.edit.setObjectName("nodataEdit")
        self.edit.setPlaceholderText(PLACEHOLDER)
        self.edit.setToolTip(
            "Pixels equal to this value in every display band are nodata (a black collar: 0): their "
            "tiles are skipped and the stretch leaves them out. Empty: the file's own nodata and mask."
        )
        self.error_label = QLabel(self)
        self.error_label.setObjectName("nodataError")
        self.error_label.setWordWrap(True)
        self.error_label.setStyleSheet("color: #b3261e;")
        self.error_label.setVisible(False)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        layout.addWidget(self.scene_label)
        layout.addWidget(self.edit)
        layout.addWidget(self.error_label)
        self._applied = ""
        self.edit.editingFinished.connect(self._finished)
        self.edit.setEnabled(False)

    def set_scene(self, info: SceneInfo | None) -> None:
        """Show ``info`` and the nodata value it was opened with (``None``: no scene)."""
        self._applied = "" if info is None else nodata_text(given_nodata(info))
        self.scene_label.setText("no scene" if info is None else describe_validity(info))
        self.edit.setText(self._applied)
        self.edit.setEnabled(info is not None)
        self.show_error("")

    def show_error(self, message: str) -> None:
        self.error_label.setText(message)
        self.error_label.setVisible(bool(message))

    def _finished(self) -> None:
        text = self.edit.text().strip()
        if text != self._applied:
            self.edited.emit(text)


class SceneNodata(QObject):
    """Applies the field's edits to the window's open scene (see module doc)."""

    def __init__(self, window: MainWindow, field: NodataField) -> None:
        super().__init__(window)
        self.window = window
        self.field = field
        field.edited.connect(self.apply)
        window.loader.reread_done.connect(self._reread)

    def apply(self, text: str) -> bool:
        """Use ``text`` as the open scene's nodata value; False (and a message) when it cannot."""
        w, info = self.window, self.window.info
        if info is None:
            return False
        try:
            value = parse_nodata(text, info.dtype)
        except ConfigError as exc:
            self._refuse(str(exc))
            return False
        if w.runs.running:
            self._refuse("Cancel the run before changing the nodata value.")
            return False
        self.field.show_error("")
        w.settings.set_scene_nodata(info.path, value)
        if nodata_text(value) == nodata_text(given_nodata(info)):
            return True
        w.plan = None  # no run until the grid is laid again
        w.runs.set_scene(info, None)
        w.query_panel.set_can_run(False, "Laying the tile grid…")
        tile_size, overlap = w.query_panel.grid()
        w.show_status(f"Reading {Path(info.path).name} with nodata {nodata_text(value) or 'of the file'}…")
        w.loader.open(
            info.path,
            tile_size=tile_size,
            overlap=overlap,
            pixel_mode=info.pixel_mode,
            nodata=value,
            again=True,
        )
        return True

    def _refuse(self, message: str) -> None:
        self.field.show_error(message)
        self.window.show_status(message)

    def _reread(self, opened: OpenedScene) -> None:
        w, info, plan = self.window, opened.info, opened.plan
        if w.info is None or Path(w.info.path).resolve() != Path(info.path).resolve():
            return  # another scene was opened meanwhile
        w.info, w.plan = info, plan
        w.map.replace_raster(info, opened.preview, opened.stretch)
        w.map.grid.set_grid(plan.kept, plan.skipped, (info.width, info.height))
        w.runs.set_scene(info, plan)
        self.field.set_scene(info)
        reason = w.runs.why_not()
        w.query_panel.set_can_run(not reason, reason)
        w.show_status(
            f"Nodata {nodata_text(given_nodata(info)) or 'of the file'}: {plan.n_kept} tiles to the "
            f"model, {plan.n_skipped} skipped as nodata"
        )
