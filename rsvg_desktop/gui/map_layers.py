"""The map's layers: graphics items in scene *pixel* coordinates that the :class:`~rsvg_desktop.gui.map_view.
MapView` stacks and toggles.

- :class:`LayerItem`: an invisible parent whose visibility and z-order apply to its children;
- :class:`TileGridLayer`: one rectangle per grid tile (pending / done / failed / skipped); the part of a
  tile that reaches past the raster (a scene smaller than a tile, the last row or column padded) is
  drawn as padding, dotted and hatched, apart from the data;
- :class:`DetectionsLayer` of :class:`DetectionItem`: rotated polygons outlined in a colour per phrase,
  labelled, selectable;
- :class:`VectorOverlayLayer`: a vector file the analyst opened on top of the scene (read-only).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt
from PySide6.QtGui import QBrush, QColor, QPainter, QPainterPath, QPen, QPolygonF, QTransform
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPathItem,
    QGraphicsPolygonItem,
    QGraphicsRectItem,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QStyle,
    QStyleOptionGraphicsItem,
    QWidget,
)

from rsvg_desktop.core.types import Tile
from rsvg_desktop.gui.logic.viewrules import label_fits

__all__ = [
    "LAYERS",
    "DetectionItem",
    "DetectionsLayer",
    "LayerItem",
    "TileGridLayer",
    "VectorOverlayLayer",
    "cosmetic_pen",
    "phrase_color",
]

log = logging.getLogger(__name__)

#: Layer names the analyst can toggle, with their labels.
LAYERS: tuple[tuple[str, str], ...] = (
    ("scene", "Scene"),
    ("grid", "Tile grid"),
    ("detections", "Detections"),
    ("active", "Tile in progress"),
    ("overlays", "Vector overlays"),
)

Key = tuple[int, int, int]
PixelRect = tuple[float, float, float, float]

_PALETTE = ("#ffd400", "#ff5ca8", "#38e1ff", "#7cff4f", "#ff8a2b", "#b48cff", "#ffffff", "#ff4040")


def phrase_color(phrase: str | None) -> QColor:
    """A stable colour per phrase (same phrase, same colour, across runs and sessions)."""
    digest = hashlib.blake2s((phrase or "").lower().encode("utf-8"), digest_size=2).digest()
    return QColor(_PALETTE[int.from_bytes(digest, "big") % len(_PALETTE)])


def cosmetic_pen(color: QColor | str, width: float = 1.0, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
    pen = QPen(QColor(color), width, style)
    pen.setCosmetic(True)
    return pen


class LayerItem(QGraphicsItem):
    """An invisible parent item: a layer whose visibility and z-order apply to all its children."""

    def __init__(self, z: float) -> None:
        super().__init__()
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemHasNoContents, True)
        self.setZValue(z)

    def boundingRect(self) -> QRectF:
        return QRectF()

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        return


# --- tile grid -------------------------------------------------------------------------------------
_TILE_STYLE: dict[str, tuple[QPen, QBrush]] = {}


def _tile_style(state: str) -> tuple[QPen, QBrush]:
    if not _TILE_STYLE:
        _TILE_STYLE.update(
            {
                "pending": (cosmetic_pen(QColor(0, 220, 255, 150), 1.0), QBrush(Qt.BrushStyle.NoBrush)),
                "done": (cosmetic_pen(QColor(90, 255, 120, 190), 1.0), QBrush(QColor(90, 255, 120, 16))),
                "failed": (cosmetic_pen(QColor(255, 60, 60, 220), 1.5), QBrush(QColor(255, 60, 60, 40))),
                "skipped": (
                    cosmetic_pen(QColor(150, 150, 150, 170), 1.0, Qt.PenStyle.DashLine),
                    QBrush(QColor(150, 150, 150, 120), Qt.BrushStyle.BDiagPattern),
                ),
            }
        )
    return _TILE_STYLE[state]


class TileGridLayer(LayerItem):
    """One rectangle per grid tile; states ``pending`` / ``done`` / ``failed`` / ``skipped``."""

    def __init__(self, z: float = 10) -> None:
        super().__init__(z)
        self._items: dict[tuple[int, int], QGraphicsRectItem] = {}
        self._states: dict[tuple[int, int], str] = {}
        self.tiles: dict[tuple[int, int], Tile] = {}
        self.padding: QGraphicsPathItem | None = None

    def set_grid(
        self, kept: Sequence[Tile], skipped: Sequence[Tile], scene_size: tuple[int, int] | None = None
    ) -> None:
        """Show the grid; with ``scene_size`` (width, height) a tile's part past the raster is padding."""
        self.clear()
        bounds = None if scene_size is None else QRectF(0, 0, scene_size[0], scene_size[1])
        padded = QPainterPath()
        for tile, state in [*((t, "skipped") for t in skipped), *((t, "pending") for t in kept)]:
            rect = QRectF(tile.col_off, tile.row_off, tile.width, tile.height)
            if bounds is not None and not bounds.contains(rect):
                outside = QPainterPath()
                outside.addRect(rect)
                inside = QPainterPath()
                inside.addRect(bounds)
                padded = padded.united(outside.subtracted(inside))
                rect = rect.intersected(bounds)
            item = QGraphicsRectItem(rect, self)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            item.setToolTip(f"tile {tile.id}" + (" (skipped: no data)" if state == "skipped" else ""))
            self._items[(tile.row, tile.col)] = item
            self.tiles[(tile.row, tile.col)] = tile
            self._apply(item, state)
            self._states[(tile.row, tile.col)] = state
        if not padded.isEmpty():
            self.padding = QGraphicsPathItem(padded, self)
            self.padding.setPen(cosmetic_pen(QColor(200, 200, 200, 140), 1.0, Qt.PenStyle.DotLine))
            self.padding.setBrush(QBrush(QColor(200, 200, 200, 60), Qt.BrushStyle.Dense6Pattern))
            self.padding.setZValue(-1)
            self.padding.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self.padding.setToolTip("padding: the model's tile reaches past the raster here (no data)")

    def clear(self) -> None:
        scene = self.scene()
        items: list[QGraphicsItem] = list(self._items.values())
        if self.padding is not None:
            items.append(self.padding)
        for item in items:
            if scene is not None:
                scene.removeItem(item)
            item.setParentItem(None)  # type: ignore[arg-type]  # PySide6 accepts None (no parent)
        self.padding = None
        self._items.clear()
        self._states.clear()
        self.tiles.clear()

    def _apply(self, item: QGraphicsRectItem, state: str) -> None:
        pen, brush = _tile_style(state)
        item.setPen(pen)
        item.setBrush(brush)
        item.setZValue({"skipped": 0, "pending": 1, "done": 2, "failed": 3}[state])

    def set_state(self, tile: Tile, state: str) -> None:
        key = (tile.row, tile.col)
        item = self._items.get(key)
        if item is None or self._states.get(key) == "skipped":
            return
        self._states[key] = state
        self._apply(item, state)

    def reset_states(self) -> None:
        for key, item in self._items.items():
            if self._states[key] != "skipped":
                self._states[key] = "pending"
                self._apply(item, "pending")

    def state(self, tile: Tile | tuple[int, int]) -> str | None:
        key = (tile.row, tile.col) if isinstance(tile, Tile) else tile
        return self._states.get(key)

    def count(self, state: str) -> int:
        return sum(1 for s in self._states.values() if s == state)


# --- detections ------------------------------------------------------------------------------------
class _Label(QGraphicsSimpleTextItem):
    """A phrase label of constant screen size on a dark plate, drawn just above its box's top corner
    (never over the box), and only when the box is big enough on screen (:func:`label_fits`)."""

    def __init__(self, text: str, parent: QGraphicsItem) -> None:
        super().__init__(text, parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setBrush(QBrush(QColor("white")))
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def _lift(self) -> float:
        return super().boundingRect().height() + 2.0

    def boundingRect(self) -> QRectF:
        return super().boundingRect().translated(0, -self._lift())

    def fits(self, view_transform: QTransform) -> bool:
        """Whether the box is big enough on screen, under the view's ``view_transform``, for its label."""
        parent = self.parentItem()
        if parent is None:
            return True
        box = view_transform.mapRect(parent.boundingRect())
        return label_fits(box.width(), box.height())

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        view = widget.parentWidget() if widget is not None else None
        if isinstance(view, QGraphicsView) and not self.fits(view.transform()):
            return  # a label over a small box would hide it
        painter.save()
        painter.translate(0, -self._lift())
        painter.fillRect(super().boundingRect().adjusted(-2, -1, 2, 1), QColor(0, 0, 0, 150))
        super().paint(painter, option, widget)  # type: ignore[arg-type]  # None is allowed
        painter.restore()


class DetectionItem(QGraphicsPolygonItem):
    """One detection polygon (scene pixels), keyed by (tile_row, tile_col, index in the tile's answer)."""

    def __init__(
        self, key: Key, polygon: QPolygonF, label: str, color: QColor, parent: QGraphicsItem
    ) -> None:
        super().__init__(polygon, parent)
        self.key = key
        self.color = color
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setPen(cosmetic_pen(color, 2.0))
        self.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        self.setToolTip(label)
        self.label = _Label(label, self) if label else None
        if self.label is not None:
            top = min((polygon.at(i) for i in range(polygon.size())), key=lambda p: (p.y(), p.x()))
            self.label.setPos(top)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        selected = self.isSelected()
        opt = QStyleOptionGraphicsItem(option)
        opt.state &= ~QStyle.StateFlag.State_Selected  # no dashed selection box: the outline shows it
        if selected:
            painter.setPen(cosmetic_pen(QColor("#00e5ff"), 3.5))
            painter.setBrush(QBrush(QColor(0, 229, 255, 70)))
        else:
            painter.setPen(self.pen())
            painter.setBrush(self.brush())
        painter.drawPolygon(self.polygon())


class DetectionsLayer(LayerItem):
    def __init__(self, z: float = 20) -> None:
        super().__init__(z)
        self.items: dict[Key, DetectionItem] = {}
        self._labels_visible = True

    def add(self, key: Key, pixels: np.ndarray, label: str) -> DetectionItem | None:
        if len(pixels) < 3:
            return None
        if key in self.items:
            self.remove([key])
        polygon = QPolygonF([QPointF(float(x), float(y)) for x, y in pixels])
        item = DetectionItem(key, polygon, label, phrase_color(label), self)
        if item.label is not None:
            item.label.setVisible(self._labels_visible)
        self.items[key] = item
        return item

    def remove(self, keys: Iterable[Key]) -> None:
        scene = self.scene()
        for key in list(keys):
            item = self.items.pop(key, None)
            if item is not None:
                if scene is not None:
                    scene.removeItem(item)
                item.setParentItem(None)  # type: ignore[arg-type]  # PySide6 accepts None (no parent)

    def clear(self) -> None:
        self.remove(list(self.items))

    def set_labels_visible(self, visible: bool) -> None:
        self._labels_visible = visible
        for item in self.items.values():
            if item.label is not None:
                item.label.setVisible(visible)

    def selected_keys(self) -> list[Key]:
        return sorted(k for k, item in self.items.items() if item.isSelected())


# --- vector overlays -------------------------------------------------------------------------------
_OVERLAY_COLORS = ("#ff9de2", "#9dffb0", "#9dc7ff", "#ffe39d")


class VectorOverlayLayer(LayerItem):
    """Vector files opened over the scene (see :mod:`rsvg_desktop.core.geo.overlay`), one child per file,
    each toggled on its own; parts arrive in scene pixels."""

    def __init__(self, z: float = 15) -> None:
        super().__init__(z)
        self.overlays: dict[str, QGraphicsPathItem] = {}

    def add(self, name: str, parts: Sequence[tuple[str, np.ndarray]]) -> QGraphicsPathItem:
        """Show ``parts`` (``(kind, (n, 2) pixels)``) under ``name`` (replacing one of the same name)."""
        self.remove(name)
        path = QPainterPath()
        for kind, xy in parts:
            if len(xy) == 0:
                continue
            if kind == "point":
                for x, y in xy:
                    path.addEllipse(QPointF(float(x), float(y)), 0.5, 0.5)
                continue
            path.addPolygon(QPolygonF([QPointF(float(x), float(y)) for x, y in xy]))
        item = QGraphicsPathItem(path, self)
        color = QColor(_OVERLAY_COLORS[len(self.overlays) % len(_OVERLAY_COLORS)])
        item.setPen(cosmetic_pen(color, 1.5))
        item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        item.setToolTip(name)
        self.overlays[name] = item
        return item

    def set_visible(self, name: str, visible: bool) -> None:
        item = self.overlays.get(name)
        if item is not None:
            item.setVisible(visible)

    def remove(self, name: str) -> None:
        item = self.overlays.pop(name, None)
        if item is not None:
            scene = self.scene()
            if scene is not None:
                scene.removeItem(item)
            item.setParentItem(None)  # type: ignore[arg-type]  # PySide6 accepts None (no parent)

    def clear(self) -> None:
        for name in list(self.overlays):
            self.remove(name)
