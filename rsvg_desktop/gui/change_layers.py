"""What a finished comparison shows: its three change layers on the map (appeared green, disappeared red,
persisting grey, each toggled on its own), the objects found on the date shown (dashed white, a toggle
of their own) and, in the Results panel, a count per layer with the same toggles and the Export button
of the change GeoPackage.

The layers are read back from the comparison's GeoPackage (:func:`read_change`) and placed on the open
scene's pixels (the comparison's grid).
"""

from __future__ import annotations

import logging
import os
import shutil
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PySide6.QtCore import QPointF, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QPainterPath, QPolygonF
from PySide6.QtWidgets import QCheckBox, QGraphicsPathItem, QHBoxLayout, QLabel, QPushButton, QWidget

from rsvg_desktop.core.geo.overlay import read_overlay
from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.engine.change.summary import ChangeSummary
from rsvg_desktop.errors import OverlayError
from rsvg_desktop.gui.map_layers import LayerItem, cosmetic_pen

__all__ = [
    "CHANGE_KINDS",
    "DATE_LAYERS",
    "SHOWN_DATE",
    "ChangeMapLayer",
    "ChangePanel",
    "ChangeParts",
    "export_change",
    "read_change",
]

log = logging.getLogger(__name__)

#: The change layers shown: name → (label, colour).
CHANGE_KINDS: dict[str, tuple[str, str]] = {
    "appeared": ("Appeared", "#2ecc40"),
    "disappeared": ("Disappeared", "#ff4136"),
    "persisting": ("Persisting", "#8a8a8a"),
}

#: The dates' own objects (layers ``before`` and ``after``): the shown date's are drawn.
DATE_LAYERS = ("before", "after")
#: The toggle of the shown date's objects.
SHOWN_DATE = "dates"

#: A layer's parts in scene pixels: ``(kind, (n, 2) array)`` as :mod:`rsvg_desktop.core.geo.overlay` gives.
Parts = list[tuple[str, np.ndarray]]
ChangeParts = dict[str, Parts]


def read_change(output: str | os.PathLike[str], info: SceneInfo) -> ChangeParts:
    """The change layers and both dates' objects of ``output`` placed on ``info``'s pixels (an empty
    layer: no parts)."""
    out: ChangeParts = {}
    for name in (*CHANGE_KINDS, *DATE_LAYERS):
        try:
            overlay = read_overlay(output, crs_wkt=info.crs_wkt, transform=info.transform, layer=name)
        except OverlayError as exc:  # an empty layer may carry no geometry type
            log.info("change layer %s not shown: %s", name, exc)
            out[name] = []
            continue
        out[name] = [(p.kind, p.xy) for p in overlay.parts]
    return out


def export_change(output: str | os.PathLike[str], path: str | os.PathLike[str]) -> Path:
    """Copy the comparison's GeoPackage ``output`` to ``path`` (``.gpkg`` added when it has another
    suffix); returns where it was written. Raises ``OSError``."""
    target = Path(path) if Path(path).suffix.lower() == ".gpkg" else Path(f"{os.fspath(path)}.gpkg")
    if target.resolve() != Path(output).resolve():
        shutil.copyfile(output, target)
    return target


class ChangeMapLayer(LayerItem):
    """The change layers over the scene, one path per layer in its colour (see module doc)."""

    def __init__(self, z: float = 18) -> None:
        super().__init__(z)
        self.paths: dict[str, QGraphicsPathItem] = {}
        self.parts: dict[str, int] = {}
        self.shown_date = "before"
        self.dates_visible = True

    def set_layers(self, layers: ChangeParts) -> None:
        """Show ``layers`` (replacing what was shown); each keeps its visibility."""
        visible = {name: item.isVisible() for name, item in self.paths.items()}
        self.clear()
        for name, parts in layers.items():
            item = QGraphicsPathItem(_path(parts), self)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.paths[name] = item
            self.parts[name] = len(parts)
            if name in DATE_LAYERS:
                item.setPen(cosmetic_pen("#ffffff", 1.0, Qt.PenStyle.DashLine))
                item.setToolTip(f"Objects found on the {name} date")
                item.setZValue(-1)
                continue
            color = QColor(CHANGE_KINDS[name][1])
            item.setPen(cosmetic_pen(color, 2.0))
            fill = QColor(color)
            fill.setAlpha(60)
            item.setBrush(QBrush(fill))
            item.setToolTip(CHANGE_KINDS[name][0])
            item.setVisible(visible.get(name, True))
        self.show_date(self.shown_date)

    def show_date(self, date: str) -> None:
        """Draw the objects of ``date`` (the date on the map), not the other date's."""
        self.shown_date = date
        for name in DATE_LAYERS:
            if name in self.paths:
                self.paths[name].setVisible(self.dates_visible and name == date)

    def set_visible(self, name: str, visible: bool) -> None:
        """Show or hide a change layer, or (``SHOWN_DATE``) the shown date's objects."""
        if name == SHOWN_DATE:
            self.dates_visible = visible
            self.show_date(self.shown_date)
            return
        item = self.paths.get(name)
        if item is not None:
            item.setVisible(visible)

    def is_visible(self, name: str) -> bool:
        item = self.paths.get(name)
        return item is not None and item.isVisible()

    def clear(self) -> None:
        for item in self.paths.values():
            scene = self.scene()
            if scene is not None:
                scene.removeItem(item)
            item.setParentItem(None)  # type: ignore[arg-type]  # PySide6 accepts None (no parent)
        self.paths.clear()
        self.parts.clear()


def _path(parts: Sequence[tuple[str, np.ndarray]]) -> QPainterPath:
    path = QPainterPath()
    for kind, xy in parts:
        if len(xy) == 0 or kind == "point":
            continue
        path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in xy]))
        path.closeSubpath()
    return path


class ChangePanel(QWidget):
    """The comparison's row in the Results panel: a toggle with the count of each change layer, and
    Export. Emits :attr:`visibilityChanged` (layer, shown) and :attr:`exportRequested`."""

    visibilityChanged = Signal(str, bool)
    exportRequested = Signal()

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("changePanel")
        layout = QHBoxLayout(self)
        layout.setContentsMargins(0, 0, 0, 0)
        self.title = QLabel("Comparison:", self)
        layout.addWidget(self.title)
        self.boxes: dict[str, QCheckBox] = {}
        for name, (label, color) in CHANGE_KINDS.items():
            box = QCheckBox(label, self)
            box.setObjectName(f"change_{name}")
            box.setChecked(True)
            box.setStyleSheet(f"QCheckBox {{ color: {color}; font-weight: bold; }}")
            box.toggled.connect(lambda on, n=name: self.visibilityChanged.emit(n, on))
            layout.addWidget(box)
            self.boxes[name] = box
        self.dates_box = QCheckBox("Objects of the shown date", self)
        self.dates_box.setObjectName("change_dates")
        self.dates_box.setChecked(True)
        self.dates_box.setToolTip("Each date's own objects, dashed white, for the date on the map")
        self.dates_box.toggled.connect(lambda on: self.visibilityChanged.emit(SHOWN_DATE, on))
        layout.addWidget(self.dates_box)
        self.note = QLabel(self)
        layout.addWidget(self.note, 1)
        self.export_button = QPushButton("Export change…", self)
        self.export_button.setToolTip("Write the change GeoPackage (appeared, disappeared, persisting, …)")
        self.export_button.clicked.connect(self.exportRequested.emit)
        layout.addWidget(self.export_button)
        self.show_summary(None)

    def show_summary(self, summary: ChangeSummary | None, note: str = "") -> None:
        """The counts of a finished comparison (``None``: none yet)."""
        for name, (label, _color) in CHANGE_KINDS.items():
            count = None if summary is None else getattr(summary, name)
            self.boxes[name].setText(label if count is None else f"{label}: {count}")
            self.boxes[name].setEnabled(summary is not None)
        self.dates_box.setEnabled(summary is not None)
        if summary is not None and not note:
            note = f"({summary.before} before, {summary.after} after; {summary.verified} verified)"
        self.note.setText(note)
        self.export_button.setEnabled(summary is not None)

    def count(self, name: str) -> int | None:
        """The count shown for layer ``name`` (``None`` before a comparison finished)."""
        text = self.boxes[name].text()
        return int(text.rsplit(": ", 1)[1]) if ": " in text else None
