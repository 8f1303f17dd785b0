"""The map: a QGraphicsView in scene *pixel* coordinates with toggleable layers and drawing tools.

Layers (bottom to top): the scene raster (:class:`~rsvg_desktop.gui.raster_layer.RasterLayer`), the tile
grid (kept tiles outlined, skipped nodata tiles hatched grey, finished tiles tinted), the detections
(rotated polygons outlined, labelled by phrase, selectable), the tiles being processed, and the overlay
(the highlighted tile, the scope rectangle, the identify region, the rubber band).

Pixel coordinates are the map's units: polygons arrive in the scene CRS and are brought back through
the inverse of the full affine by the caller (:func:`rsvg_desktop.gui.logic.geometry.polygon_to_pixels`), so
rotated or sheared geotransforms line up with the image.

Mouse: drag on empty ground or with the middle button pans, the wheel zooms about the cursor, a click
selects a detection (Ctrl adds). Keys: ``+``/``-`` zoom, arrows pan, ``Home`` or ``0`` fits the scene,
``Esc`` leaves a drawing tool, ``Delete`` asks to delete the selected detections. Tools: ``pan``,
``scope`` (draw the scope rectangle) and ``region`` (draw the region to identify).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Iterable, Sequence

import numpy as np
from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QPen,
    QPolygonF,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsPolygonItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsSimpleTextItem,
    QGraphicsView,
    QStyle,
    QStyleOptionGraphicsItem,
    QWidget,
)

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.geo.stretch import Stretch
from rsvg_desktop.core.types import Tile
from rsvg_desktop.gui.raster_layer import RasterLayer

__all__ = ["LAYERS", "DetectionItem", "DetectionsLayer", "LayerItem", "MapView", "TileGridLayer"]

log = logging.getLogger(__name__)

#: Layer names the analyst can toggle, with their labels.
LAYERS: tuple[tuple[str, str], ...] = (
    ("scene", "Scene"),
    ("grid", "Tile grid"),
    ("detections", "Detections"),
    ("active", "Tile in progress"),
)

Key = tuple[int, int, int]
PixelRect = tuple[float, float, float, float]

_PALETTE = ("#ffd400", "#ff5ca8", "#38e1ff", "#7cff4f", "#ff8a2b", "#b48cff", "#ffffff", "#ff4040")


def phrase_color(phrase: str | None) -> QColor:
    """A stable colour per phrase (same phrase, same colour, across runs and sessions)."""
    digest = hashlib.blake2s((phrase or "").lower().encode("utf-8"), digest_size=2).digest()
    return QColor(_PALETTE[int.from_bytes(digest, "big") % len(_PALETTE)])


def _cosmetic(color: QColor | str, width: float = 1.0, style: Qt.PenStyle = Qt.PenStyle.SolidLine) -> QPen:
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
                "pending": (_cosmetic(QColor(0, 220, 255, 150), 1.0), QBrush(Qt.BrushStyle.NoBrush)),
                "done": (_cosmetic(QColor(90, 255, 120, 190), 1.0), QBrush(QColor(90, 255, 120, 16))),
                "failed": (_cosmetic(QColor(255, 60, 60, 220), 1.5), QBrush(QColor(255, 60, 60, 40))),
                "skipped": (
                    _cosmetic(QColor(150, 150, 150, 170), 1.0, Qt.PenStyle.DashLine),
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

    def set_grid(self, kept: Sequence[Tile], skipped: Sequence[Tile]) -> None:
        self.clear()
        for tile, state in [*((t, "skipped") for t in skipped), *((t, "pending") for t in kept)]:
            item = QGraphicsRectItem(QRectF(tile.col_off, tile.row_off, tile.width, tile.height), self)
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            item.setToolTip(f"tile {tile.id}" + (" (skipped: no data)" if state == "skipped" else ""))
            self._items[(tile.row, tile.col)] = item
            self.tiles[(tile.row, tile.col)] = tile
            self._apply(item, state)
            self._states[(tile.row, tile.col)] = state

    def clear(self) -> None:
        scene = self.scene()
        for item in self._items.values():
            if scene is not None:
                scene.removeItem(item)
            item.setParentItem(None)  # type: ignore[arg-type]  # PySide6 accepts None (no parent)
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
    """A phrase label of constant screen size on a dark plate."""

    def __init__(self, text: str, parent: QGraphicsItem) -> None:
        super().__init__(text, parent)
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIgnoresTransformations, True)
        self.setBrush(QBrush(QColor("white")))
        self.setAcceptedMouseButtons(Qt.MouseButton.NoButton)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        painter.fillRect(self.boundingRect().adjusted(-2, -1, 2, 1), QColor(0, 0, 0, 150))
        super().paint(painter, option, widget)  # type: ignore[arg-type]  # None is allowed


class DetectionItem(QGraphicsPolygonItem):
    """One detection polygon (scene pixels), keyed by (tile_row, tile_col, index in the tile's answer)."""

    def __init__(
        self, key: Key, polygon: QPolygonF, label: str, color: QColor, parent: QGraphicsItem
    ) -> None:
        super().__init__(polygon, parent)
        self.key = key
        self.color = color
        self.setFlag(QGraphicsItem.GraphicsItemFlag.ItemIsSelectable, True)
        self.setPen(_cosmetic(color, 2.0))
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
            painter.setPen(_cosmetic(QColor("#00e5ff"), 3.5))
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


# --- the view --------------------------------------------------------------------------------------
class MapView(QGraphicsView):
    """The map (see module doc)."""

    cursorMoved = Signal(float, float)  # scene pixels
    cursorLeft = Signal()
    viewChanged = Signal()
    rectangleDrawn = Signal(str, object)  # tool ("scope" | "region"), (x0, y0, x1, y1) in scene pixels
    toolChanged = Signal(str)
    detectionSelectionChanged = Signal(object)  # list of keys
    deleteRequested = Signal()
    filesDropped = Signal(object)  # list of local paths

    MAX_SCALE = 40.0  # screen pixels per scene pixel

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("mapView")
        self._gscene = QGraphicsScene(self)
        self._gscene.setBackgroundBrush(QColor(28, 30, 34))
        self.setScene(self._gscene)
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorUnderMouse)
        self.setResizeAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
        self.setViewportUpdateMode(QGraphicsView.ViewportUpdateMode.SmartViewportUpdate)
        self.setDragMode(QGraphicsView.DragMode.NoDrag)
        self.setMouseTracking(True)
        self.setAcceptDrops(True)
        self.setFocusPolicy(Qt.FocusPolicy.StrongFocus)
        self.setRenderHint(QPainter.RenderHint.Antialiasing, True)

        self.raster = RasterLayer()
        self.raster.setZValue(0)
        self.grid = TileGridLayer(10)
        self.detections = DetectionsLayer(20)
        self.active = LayerItem(30)
        self.overlay = LayerItem(40)
        for item in (self.raster, self.grid, self.detections, self.active, self.overlay):
            self._gscene.addItem(item)
        self._layers: dict[str, QGraphicsItem] = {
            "scene": self.raster,
            "grid": self.grid,
            "detections": self.detections,
            "active": self.active,
        }
        self._active_items: dict[tuple[int, int], QGraphicsRectItem] = {}
        self._highlight: QGraphicsRectItem | None = None
        self._scope_item: QGraphicsRectItem | None = None
        self._region_item: QGraphicsRectItem | None = None
        self._rubber: QGraphicsRectItem | None = None
        self._rubber_origin: QPointF | None = None
        self._pan_origin: QPointF | None = None
        self._pan_moved = False
        self._tool = "pan"
        self._info: SceneInfo | None = None
        self.scope_rect: PixelRect | None = None
        self.region_rect: PixelRect | None = None

        self._view_timer = QTimer(self)
        self._view_timer.setSingleShot(True)
        self._view_timer.setInterval(0)
        self._view_timer.timeout.connect(self._view_settled)
        self.horizontalScrollBar().valueChanged.connect(self._schedule_view)
        self.verticalScrollBar().valueChanged.connect(self._schedule_view)
        self._gscene.selectionChanged.connect(self._on_selection_changed)
        self._suppress_selection = False

    # --- scene -------------------------------------------------------------------------------
    @property
    def info(self) -> SceneInfo | None:
        return self._info

    def set_scene_raster(self, info: SceneInfo, preview_image: object, stretch: Stretch | None) -> None:
        """Show a scene (``preview_image``: a QImage of the whole scene, decimated)."""
        self.clear_scene()
        self._info = info
        self.raster.set_scene(info, preview_image, stretch)  # type: ignore[arg-type]
        margin = max(info.width, info.height) * 0.25
        self._gscene.setSceneRect(QRectF(-margin, -margin, info.width + 2 * margin, info.height + 2 * margin))
        self.fit_scene()

    def clear_scene(self) -> None:
        self.raster.clear()
        self.grid.clear()
        self.detections.clear()
        self.set_active_tiles(())
        self.highlight_tile(None)
        self.clear_scope_rect()
        self.clear_region_rect()
        self._info = None

    # --- layers ------------------------------------------------------------------------------
    def set_layer_visible(self, name: str, visible: bool) -> None:
        self._layers[name].setVisible(visible)

    def layer_visible(self, name: str) -> bool:
        return self._layers[name].isVisible()

    def set_active_tiles(self, tiles: Iterable[Tile]) -> None:
        """Outline the tiles the model is working on now."""
        for item in self._active_items.values():
            self._gscene.removeItem(item)
        self._active_items.clear()
        for tile in tiles:
            item = QGraphicsRectItem(QRectF(tile.col_off, tile.row_off, tile.width, tile.height), self.active)
            item.setPen(_cosmetic(QColor("#ff9d00"), 3.0))
            item.setBrush(QBrush(QColor(255, 157, 0, 45)))
            item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
            self._active_items[(tile.row, tile.col)] = item

    def active_tiles(self) -> list[tuple[int, int]]:
        return sorted(self._active_items)

    def highlight_tile(self, tile: Tile | None, *, center: bool = False) -> None:
        """Mark one tile (the transcript's selected entry); ``center`` scrolls it into view."""
        if self._highlight is not None:
            self._gscene.removeItem(self._highlight)
            self._highlight = None
        if tile is None:
            return
        rect = QRectF(tile.col_off, tile.row_off, tile.width, tile.height)
        self._highlight = QGraphicsRectItem(rect, self.overlay)
        self._highlight.setPen(_cosmetic(QColor("#ffffff"), 3.0, Qt.PenStyle.DashLine))
        self._highlight.setBrush(QBrush(QColor(255, 255, 255, 30)))
        self._highlight.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        if center:
            visible = self.visible_rect_f()
            if not visible.contains(rect):
                self.zoom_to(rect, margin=0.15, max_scale=self.current_scale())

    @property
    def highlighted(self) -> QRectF | None:
        return None if self._highlight is None else self._highlight.rect()

    # --- overlay rectangles ------------------------------------------------------------------
    def _overlay_rect(self, rect: PixelRect, color: str) -> QGraphicsRectItem:
        x0, y0, x1, y1 = rect
        item = QGraphicsRectItem(QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized(), self.overlay)
        item.setPen(_cosmetic(color, 2.0, Qt.PenStyle.DashLine))
        item.setBrush(QBrush(Qt.BrushStyle.NoBrush))
        item.setAcceptedMouseButtons(Qt.MouseButton.NoButton)
        return item

    def set_scope_rect(self, rect: PixelRect | None) -> None:
        self.clear_scope_rect()
        if rect is not None:
            self.scope_rect = rect
            self._scope_item = self._overlay_rect(rect, "#4da3ff")

    def clear_scope_rect(self) -> None:
        if self._scope_item is not None:
            self._gscene.removeItem(self._scope_item)
        self._scope_item = None
        self.scope_rect = None

    def set_region_rect(self, rect: PixelRect | None) -> None:
        self.clear_region_rect()
        if rect is not None:
            self.region_rect = rect
            self._region_item = self._overlay_rect(rect, "#ff4fd8")

    def clear_region_rect(self) -> None:
        if self._region_item is not None:
            self._gscene.removeItem(self._region_item)
        self._region_item = None
        self.region_rect = None

    # --- selection ---------------------------------------------------------------------------
    def select_keys(self, keys: Iterable[Key]) -> None:
        """Select these detections (and no others) without re-emitting the selection."""
        wanted = set(keys)
        self._suppress_selection = True
        try:
            for key, item in self.detections.items.items():
                item.setSelected(key in wanted)
        finally:
            self._suppress_selection = False

    def _on_selection_changed(self) -> None:
        if self._suppress_selection:
            return
        self.detectionSelectionChanged.emit(self.detections.selected_keys())

    # --- navigation --------------------------------------------------------------------------
    def current_scale(self) -> float:
        return float(self.transform().m11())

    def visible_rect_f(self) -> QRectF:
        return self.mapToScene(self.viewport().rect()).boundingRect()

    def visible_scene_rect(self) -> PixelRect | None:
        """The visible extent in scene pixels, clipped to the scene (None when nothing is shown)."""
        if self._info is None:
            return None
        rect = self.visible_rect_f().intersected(QRectF(0, 0, self._info.width, self._info.height))
        if rect.isEmpty():
            return None
        return (rect.left(), rect.top(), rect.right(), rect.bottom())

    def _fit_scale(self) -> float:
        if self._info is None:
            return 1.0
        vw, vh = max(1, self.viewport().width()), max(1, self.viewport().height())
        return min(vw / self._info.width, vh / self._info.height)

    def set_scale(self, scale: float) -> None:
        lo = self._fit_scale() * 0.25
        scale = max(lo, min(self.MAX_SCALE, scale))
        factor = scale / max(self.current_scale(), 1e-12)
        if abs(factor - 1.0) > 1e-9:
            self.scale(factor, factor)
        self._schedule_view()

    def zoom_by(self, factor: float) -> None:
        self.set_scale(self.current_scale() * factor)

    def fit_scene(self) -> None:
        if self._info is None:
            return
        self.zoom_to(QRectF(0, 0, self._info.width, self._info.height), margin=0.02)

    def zoom_to(
        self, rect: QRectF | PixelRect, *, margin: float = 0.2, max_scale: float | None = None
    ) -> None:
        """Show ``rect`` (scene pixels) with ``margin`` (fraction of its size) around it."""
        if not isinstance(rect, QRectF):
            x0, y0, x1, y1 = rect
            rect = QRectF(QPointF(x0, y0), QPointF(x1, y1)).normalized()
        pad = max(rect.width(), rect.height(), 16.0) * margin
        target = rect.adjusted(-pad, -pad, pad, pad)
        vw, vh = max(1, self.viewport().width()), max(1, self.viewport().height())
        scale = min(vw / max(target.width(), 1e-6), vh / max(target.height(), 1e-6))
        if max_scale is not None:
            scale = min(scale, max_scale)
        anchor = self.transformationAnchor()
        self.setTransformationAnchor(QGraphicsView.ViewportAnchor.NoAnchor)
        self.set_scale(scale)
        self.setTransformationAnchor(anchor)
        self.centerOn(rect.center())
        self._schedule_view()

    def pan_by(self, dx: int, dy: int) -> None:
        self.horizontalScrollBar().setValue(self.horizontalScrollBar().value() + dx)
        self.verticalScrollBar().setValue(self.verticalScrollBar().value() + dy)

    def _schedule_view(self, *_args: object) -> None:
        self._view_timer.start()

    def _view_settled(self) -> None:
        if self._info is not None:
            self.raster.update_view(self.visible_rect_f(), self.current_scale())
        self.viewChanged.emit()

    # --- tools -------------------------------------------------------------------------------
    @property
    def tool(self) -> str:
        return self._tool

    def set_tool(self, tool: str) -> None:
        if tool not in ("pan", "scope", "region"):
            raise ValueError(f"unknown map tool {tool!r}")
        self._cancel_rubber()
        self._tool = tool
        cursor = Qt.CursorShape.OpenHandCursor if tool == "pan" else Qt.CursorShape.CrossCursor
        self.viewport().setCursor(cursor)
        self.toolChanged.emit(tool)

    def draw_rectangle(self, tool: str, rect: PixelRect) -> None:
        """Finish a drawing as if the analyst had dragged ``rect`` with ``tool`` (also used by tests)."""
        if self._info is not None:
            xa, xb = sorted((float(rect[0]), float(rect[2])))
            ya, yb = sorted((float(rect[1]), float(rect[3])))
            w, h = self._info.width, self._info.height
            rect = (min(max(xa, 0.0), w), min(max(ya, 0.0), h), min(max(xb, 0.0), w), min(max(yb, 0.0), h))
        if tool == "scope":
            self.set_scope_rect(rect)
        elif tool == "region":
            self.set_region_rect(rect)
        self.rectangleDrawn.emit(tool, rect)

    def _cancel_rubber(self) -> None:
        if self._rubber is not None:
            self._gscene.removeItem(self._rubber)
        self._rubber = None
        self._rubber_origin = None

    # --- events ------------------------------------------------------------------------------
    def wheelEvent(self, event: QWheelEvent) -> None:
        delta = event.angleDelta().y() or event.angleDelta().x()
        if delta:
            self.zoom_by(1.0015**delta)
        event.accept()

    def resizeEvent(self, event: object) -> None:
        super().resizeEvent(event)  # type: ignore[arg-type]
        self._schedule_view()

    def _scene_point(self, event: QMouseEvent) -> QPointF:
        return self.mapToScene(event.position().toPoint())

    def _detection_at(self, event: QMouseEvent) -> bool:
        return any(
            isinstance(item, DetectionItem) and item.isVisible() and self.detections.isVisible()
            for item in self.items(event.position().toPoint())
        )

    def mousePressEvent(self, event: QMouseEvent) -> None:
        button = event.button()
        left_pan = button == Qt.MouseButton.LeftButton and self._tool == "pan"
        if button == Qt.MouseButton.MiddleButton or (left_pan and not self._detection_at(event)):
            self._pan_origin = event.position()
            self._pan_moved = False
            self.viewport().setCursor(Qt.CursorShape.ClosedHandCursor)
            event.accept()
            return
        if button == Qt.MouseButton.LeftButton and self._tool in ("scope", "region"):
            self._rubber_origin = self._scene_point(event)
            self._rubber = QGraphicsRectItem(QRectF(self._rubber_origin, self._rubber_origin), self.overlay)
            color = "#4da3ff" if self._tool == "scope" else "#ff4fd8"
            self._rubber.setPen(_cosmetic(color, 1.5))
            self._rubber.setBrush(QBrush(QColor(255, 255, 255, 35)))
            event.accept()
            return
        super().mousePressEvent(event)

    def mouseMoveEvent(self, event: QMouseEvent) -> None:
        point = self._scene_point(event)
        self.cursorMoved.emit(point.x(), point.y())
        if self._pan_origin is not None:
            delta = event.position() - self._pan_origin
            if abs(delta.x()) + abs(delta.y()) >= 2:
                self._pan_moved = True
            self._pan_origin = event.position()
            self.pan_by(-round(delta.x()), -round(delta.y()))
            event.accept()
            return
        if self._rubber is not None and self._rubber_origin is not None:
            self._rubber.setRect(QRectF(self._rubber_origin, point).normalized())
            event.accept()
            return
        super().mouseMoveEvent(event)

    def mouseReleaseEvent(self, event: QMouseEvent) -> None:
        if self._pan_origin is not None:
            clicked = not self._pan_moved and event.button() == Qt.MouseButton.LeftButton
            self._pan_origin = None
            self.viewport().setCursor(
                Qt.CursorShape.OpenHandCursor if self._tool == "pan" else Qt.CursorShape.CrossCursor
            )
            if clicked and not (event.modifiers() & Qt.KeyboardModifier.ControlModifier):
                self._gscene.clearSelection()  # a click on empty ground deselects
            event.accept()
            return
        if self._rubber is not None and self._rubber_origin is not None:
            rect = self._rubber.rect()
            tool = self._tool
            self._cancel_rubber()
            on_screen = self.mapFromScene(rect).boundingRect()
            if on_screen.width() >= 3 and on_screen.height() >= 3:
                self.draw_rectangle(tool, (rect.left(), rect.top(), rect.right(), rect.bottom()))
                self.set_tool("pan")
            event.accept()
            return
        super().mouseReleaseEvent(event)

    def leaveEvent(self, event: object) -> None:
        self.cursorLeft.emit()
        super().leaveEvent(event)  # type: ignore[arg-type]

    def keyPressEvent(self, event: QKeyEvent) -> None:
        key = event.key()
        step_x = max(20, self.viewport().width() // 8)
        step_y = max(20, self.viewport().height() // 8)
        anchor = self.transformationAnchor()
        if key in (Qt.Key.Key_Plus, Qt.Key.Key_Equal):
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
            self.zoom_by(1.25)
            self.setTransformationAnchor(anchor)
        elif key in (Qt.Key.Key_Minus, Qt.Key.Key_Underscore):
            self.setTransformationAnchor(QGraphicsView.ViewportAnchor.AnchorViewCenter)
            self.zoom_by(0.8)
            self.setTransformationAnchor(anchor)
        elif key == Qt.Key.Key_Left:
            self.pan_by(-step_x, 0)
        elif key == Qt.Key.Key_Right:
            self.pan_by(step_x, 0)
        elif key == Qt.Key.Key_Up:
            self.pan_by(0, -step_y)
        elif key == Qt.Key.Key_Down:
            self.pan_by(0, step_y)
        elif key in (Qt.Key.Key_Home, Qt.Key.Key_0):
            self.fit_scene()
        elif key == Qt.Key.Key_Escape:
            self.set_tool("pan")
        elif key in (Qt.Key.Key_Delete, Qt.Key.Key_Backspace):
            self.deleteRequested.emit()
        else:
            super().keyPressEvent(event)
            return
        event.accept()

    def dragEnterEvent(self, event: object) -> None:
        mime = event.mimeData()  # type: ignore[attr-defined]
        if mime.hasUrls() and any(u.isLocalFile() for u in mime.urls()):
            event.acceptProposedAction()  # type: ignore[attr-defined]
        else:
            event.ignore()  # type: ignore[attr-defined]

    def dragMoveEvent(self, event: object) -> None:
        self.dragEnterEvent(event)

    def dropEvent(self, event: object) -> None:
        mime = event.mimeData()  # type: ignore[attr-defined]
        paths = [u.toLocalFile() for u in mime.urls() if u.isLocalFile()]
        if paths:
            event.acceptProposedAction()  # type: ignore[attr-defined]
            self.filesDropped.emit(paths)
