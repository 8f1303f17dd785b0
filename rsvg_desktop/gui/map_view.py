"""The map: a QGraphicsView in scene *pixel* coordinates with toggleable layers and drawing tools.

Layers (bottom to top, classes in :mod:`rsvg_desktop.gui.map_layers`): the scene raster
(:class:`~rsvg_desktop.gui.raster_layer.RasterLayer`), the tile grid (kept tiles outlined, skipped nodata
tiles hatched grey, finished tiles tinted, padding past the raster dotted), the vector overlays, the
detections (rotated polygons outlined, labelled by phrase, selectable), the tiles being processed, and
the overlay (the highlighted tile, the scope rectangle, the identify region, the rubber band).

Pixel coordinates are the map's units: polygons arrive in the scene CRS and are brought back through
the inverse of the full affine by the caller (:func:`rsvg_desktop.gui.logic.geometry.polygon_to_pixels`).
The view then turns pixels to the screen with the geotransform's linear part, so the map is north-up
(rotated scenes line up with QGIS) while every item, drawn rectangle and cursor position stays in
pixels: one convention, :func:`~rsvg_desktop.gui.logic.geometry.view_orientation`. Zoom is a uniform
scale on top of that turn (:meth:`MapView.current_scale` is screen pixels per scene pixel).

Mouse: drag on empty ground or with the middle button pans, the wheel zooms about the cursor, a click
selects a detection (Ctrl adds). Keys: ``+``/``-`` zoom, arrows pan, ``Home`` or ``0`` fits the scene,
``Esc`` leaves a drawing tool, ``Delete`` asks to delete the selected detections. Tools: ``pan``,
``scope`` (draw the scope rectangle) and ``region`` (draw the region to identify).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable

from PySide6.QtCore import QPointF, QRectF, Qt, QTimer, Signal
from PySide6.QtGui import (
    QBrush,
    QColor,
    QKeyEvent,
    QMouseEvent,
    QPainter,
    QTransform,
    QWheelEvent,
)
from PySide6.QtWidgets import (
    QGraphicsItem,
    QGraphicsRectItem,
    QGraphicsScene,
    QGraphicsView,
    QWidget,
)

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.geo.stretch import Stretch
from rsvg_desktop.core.types import Tile
from rsvg_desktop.gui.logic.geometry import view_orientation
from rsvg_desktop.gui.map_layers import (
    LAYERS,
    DetectionItem,
    DetectionsLayer,
    Key,
    LayerItem,
    PixelRect,
    TileGridLayer,
    VectorOverlayLayer,
)
from rsvg_desktop.gui.map_layers import cosmetic_pen as _cosmetic
from rsvg_desktop.gui.raster_layer import RasterLayer

__all__ = [
    "LAYERS",
    "DetectionItem",
    "DetectionsLayer",
    "LayerItem",
    "MapView",
    "TileGridLayer",
    "VectorOverlayLayer",
]

log = logging.getLogger(__name__)


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
        self.overlays = VectorOverlayLayer(15)
        self.active = LayerItem(30)
        self.overlay = LayerItem(40)
        for item in (self.raster, self.grid, self.overlays, self.detections, self.active, self.overlay):
            self._gscene.addItem(item)
        self._layers: dict[str, QGraphicsItem] = {
            "scene": self.raster,
            "grid": self.grid,
            "detections": self.detections,
            "active": self.active,
            "overlays": self.overlays,
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
        self._orientation = QTransform()
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
        m11, m12, m21, m22 = view_orientation(info.transform, info.crs_wkt is not None)
        self._orientation = QTransform(m11, m12, m21, m22, 0.0, 0.0)
        self.setTransform(self._orientation)
        margin = max(info.width, info.height) * 0.25
        self._gscene.setSceneRect(QRectF(-margin, -margin, info.width + 2 * margin, info.height + 2 * margin))
        self.fit_scene()

    def replace_raster(self, info: SceneInfo, preview_image: object, stretch: Stretch | None) -> None:
        """Show the same scene read again (e.g. with another nodata value): the view, the layers over it
        and the tools stay."""
        self._info = info
        self.raster.set_scene(info, preview_image, stretch)  # type: ignore[arg-type]
        self._schedule_view()

    def clear_scene(self) -> None:
        self.raster.clear()
        self.grid.clear()
        self.overlays.clear()
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
        """Screen pixels per scene pixel (the square root of the view's area scale: rotation-free)."""
        t = self.transform()
        return float(abs(t.m11() * t.m22() - t.m12() * t.m21()) ** 0.5)

    @property
    def orientation(self) -> QTransform:
        """The unit-area turn from scene pixels to the screen (see :func:`view_orientation`)."""
        return QTransform(self._orientation)

    def _oriented_size(self, rect: QRectF) -> tuple[float, float]:
        """Width and height on screen of ``rect`` (scene pixels) at scale 1, orientation applied."""
        box = self._orientation.mapRect(rect)
        return box.width(), box.height()

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
        w, h = self._oriented_size(QRectF(0, 0, self._info.width, self._info.height))
        return min(vw / max(w, 1e-6), vh / max(h, 1e-6))

    def set_scale(self, scale: float) -> None:
        fit = self._fit_scale()
        # A scene of a few pixels may be fitted to the view: the upper bound never stops a fit.
        scale = max(fit * 0.25, min(max(self.MAX_SCALE, fit), scale))
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
        tw, th = self._oriented_size(target)
        scale = min(vw / max(tw, 1e-6), vh / max(th, 1e-6))
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
