"""The scene raster on the map: a decimated preview plus a lazily read pyramid of 256 px display tiles.

The map's coordinates are scene pixels. The whole scene is first shown from its preview (long side
1024 px, read through the file's overviews). When the view zooms in past the preview's resolution, the
layer asks for display tiles at pyramid level ``L`` (one display pixel = ``2**L`` scene pixels, the
coarsest level still at least as sharp as the screen). Tiles are read in a background thread pool
through the scene's windowed, decimated reads (GDAL picks the overview), cached (LRU), and painted as
they arrive; until then coarser cached tiles or the preview show through. Requests no longer visible
are dropped before they are read. Nothing ever holds the full-resolution raster.

Nodata pixels are transparent. Reads use the same scene-wide stretch as the preview and the model's
tiles (computed once and shared).
"""

from __future__ import annotations

import logging
import math
import threading
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future, ThreadPoolExecutor
from concurrent.futures import wait as wait_futures
from contextlib import contextmanager

import numpy as np
from PySide6.QtCore import QObject, QRectF, Signal
from PySide6.QtGui import QColor, QImage, QPainter
from PySide6.QtWidgets import QGraphicsObject, QStyleOptionGraphicsItem, QWidget

from rsvg_desktop.core.geo.change.types import TargetGrid
from rsvg_desktop.core.geo.scene import Scene, SceneInfo, open_scene
from rsvg_desktop.core.geo.stretch import Stretch
from rsvg_desktop.gui.logic.nodata import given_nodata

__all__ = ["TILE_PX", "RasterLayer", "ScenePool", "rgba_image", "warp_grid"]

log = logging.getLogger(__name__)

TILE_PX = 256
CACHE_TILES = 256  # ≈ 64 MiB of RGBA display tiles

TileKey = tuple[int, int, int]  # (level, tile x, tile y)


def rgba_image(image: np.ndarray, valid: np.ndarray | None = None) -> QImage:
    """An owned RGBA QImage of an ``(h, w, 3)`` uint8 image; invalid pixels transparent."""
    h, w = image.shape[:2]
    rgba = np.empty((h, w, 4), dtype=np.uint8)
    rgba[..., :3] = image
    rgba[..., 3] = 255 if valid is None else np.where(valid, 255, 0).astype(np.uint8)
    qimg = QImage(rgba.data, w, h, 4 * w, QImage.Format.Format_RGBA8888)
    return qimg.copy()  # own the pixels: ``rgba`` goes away


def warp_grid(info: SceneInfo) -> TargetGrid | None:
    """The grid a warped scene (``info.warped``: another date shown on the open scene's grid) is read
    on: its info describes that grid. ``None`` for a scene read as it is."""
    if not info.warped:
        return None
    return TargetGrid(crs_wkt=info.crs_wkt, transform=info.transform, width=info.width, height=info.height)


class ScenePool:
    """Open scenes for background reads: a ``Scene`` is not thread-safe, so each read borrows one. A
    warped scene is reopened on the same grid."""

    def __init__(self, info: SceneInfo, stretch: Stretch | None) -> None:
        self.info = info
        self.stretch = stretch
        self._lock = threading.Lock()
        self._free: list[Scene] = []
        self._all: list[Scene] = []
        self._closed = False

    @contextmanager
    def scene(self) -> Iterator[Scene]:
        with self._lock:
            if self._closed:
                raise RuntimeError("the scene pool is closed")
            scene = self._free.pop() if self._free else None
        if scene is None:
            scene = open_scene(
                self.info.path,
                pixel_mode=self.info.pixel_mode,
                bands=self.info.display_bands,
                stretch=self.stretch,
                nodata=given_nodata(self.info),
                warp_to=warp_grid(self.info),
            )
            with self._lock:
                self._all.append(scene)
        try:
            yield scene
        finally:
            with self._lock:
                if self._closed:
                    scene.close()
                else:
                    self._free.append(scene)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            for scene in self._free:
                scene.close()
            self._free.clear()


class _Signals(QObject):
    loaded = Signal(object, int, object)  # key, generation, QImage
    dropped = Signal(object, int)


class _Requests:
    """What the pool threads may look at (plain Python, never the Qt item): the scene generation and
    the display tiles the view wants now. Replaced wholesale, so reads are consistent under the GIL."""

    def __init__(self) -> None:
        self.generation = 0
        self.wanted: frozenset[TileKey] = frozenset()

    def still_wanted(self, key: TileKey, generation: int) -> bool:
        return generation == self.generation and key in self.wanted


class _TileRead:
    """One display-tile read, run in a background (Python) thread."""

    def __init__(self, layer: RasterLayer, key: TileKey) -> None:
        self.key = key
        # What the run needs, copied now: the layer may move on while this waits in the queue.
        self.requests = layer._requests
        self.generation = layer._requests.generation
        self.pool = layer._pool
        self.signals = layer._signals
        self.window, self.out_size = layer.tile_window(key)

    def run(self) -> None:
        if not self.requests.still_wanted(self.key, self.generation) or self.pool is None:
            self.signals.dropped.emit(self.key, self.generation)
            return
        try:
            with self.pool.scene() as scene:
                image, valid = scene.read_window(self.window, self.out_size)
            qimg = rgba_image(image, valid)
        except Exception as exc:
            log.warning("reading display tile %s failed: %s", self.key, exc)
            self.signals.dropped.emit(self.key, self.generation)
            return
        self.signals.loaded.emit(self.key, self.generation, qimg)


class RasterLayer(QGraphicsObject):
    """The scene's pixels as one graphics item in scene-pixel coordinates (see module doc)."""

    tileLoaded = Signal(object)

    def __init__(self, parent: QGraphicsObject | None = None, *, threads: int = 2) -> None:
        super().__init__(parent)
        self.setFlag(QGraphicsObject.GraphicsItemFlag.ItemUsesExtendedStyleOption, True)
        self._info: SceneInfo | None = None
        self._preview: QImage | None = None
        self._pool: ScenePool | None = None
        self._cache: OrderedDict[TileKey, QImage] = OrderedDict()
        self._pending: set[TileKey] = set()
        self._requests = _Requests()
        self._level: int | None = None
        self._max_level = 0
        # Python threads, not a QThreadPool: see rsvg_desktop.gui.tasks for why.
        self._executor = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="rsvg-tiles")
        self._futures: set[Future[None]] = set()
        self._signals = _Signals()
        self._signals.loaded.connect(self._on_loaded)
        self._signals.dropped.connect(self._on_dropped)
        self.reads = 0  # display tiles read so far (for tests and logs)

    # --- scene -------------------------------------------------------------------------------
    def set_scene(self, info: SceneInfo, preview: QImage | None, stretch: Stretch | None) -> None:
        """Show a scene: its preview now, display tiles on demand (reads share ``stretch``)."""
        self.clear()
        self.prepareGeometryChange()
        self._info = info
        self._preview = preview
        self._pool = ScenePool(info, stretch)
        long_side = max(info.width, info.height)
        self._max_level = max(0, math.ceil(math.log2(max(1.0, long_side / TILE_PX))))
        self.update()

    def clear(self) -> None:
        """Forget the scene: drop queued reads, wait for running ones, close the files."""
        self._requests.generation += 1
        self._requests.wanted = frozenset()
        for future in list(self._futures):
            future.cancel()
        self.wait_idle(5000)
        if self._pool is not None:
            self._pool.close()
        self.prepareGeometryChange()
        self._pool = None
        self._info = None
        self._preview = None
        self._cache.clear()
        self._pending.clear()
        self._level = None
        self.update()

    @property
    def info(self) -> SceneInfo | None:
        return self._info

    @property
    def preview_decimation(self) -> float:
        """Scene pixels per preview pixel."""
        if self._info is None or self._preview is None or self._preview.isNull():
            return 1.0
        return max(self._info.width / self._preview.width(), self._info.height / self._preview.height())

    @property
    def level(self) -> int | None:
        """The pyramid level of the current view, or None when the preview is sharp enough."""
        return self._level

    @property
    def cached_tiles(self) -> int:
        return len(self._cache)

    # --- pyramid arithmetic ------------------------------------------------------------------
    def level_for_scale(self, scale: float) -> int | None:
        """The pyramid level for ``scale`` screen pixels per scene pixel (None: the preview suffices)."""
        if self._info is None or scale <= 0:
            return None
        scene_per_screen = 1.0 / scale
        if self._preview is not None and scene_per_screen >= self.preview_decimation * 0.999:
            return None
        return int(min(self._max_level, max(0, math.floor(math.log2(max(scene_per_screen, 1e-9))))))

    def tile_window(self, key: TileKey) -> tuple[tuple[int, int, int, int], tuple[int, int]]:
        """Scene window ``(col_off, row_off, w, h)`` and output size ``(w, h)`` of a display tile."""
        assert self._info is not None
        level, tx, ty = key
        factor = 2**level
        span = TILE_PX * factor
        x0, y0 = tx * span, ty * span
        w = min(span, self._info.width - x0)
        h = min(span, self._info.height - y0)
        return (x0, y0, w, h), (max(1, math.ceil(w / factor)), max(1, math.ceil(h / factor)))

    def tiles_in(self, rect: QRectF, level: int) -> list[TileKey]:
        """Display tiles of ``level`` that intersect ``rect`` (scene pixels), nearest the centre first."""
        if self._info is None:
            return []
        span = TILE_PX * 2**level
        nx = math.ceil(self._info.width / span)
        ny = math.ceil(self._info.height / span)
        x0 = max(0, math.floor(rect.left() / span))
        y0 = max(0, math.floor(rect.top() / span))
        x1 = min(nx - 1, math.floor(rect.right() / span))
        y1 = min(ny - 1, math.floor(rect.bottom() / span))
        if x1 < x0 or y1 < y0:
            return []
        cx, cy = rect.center().x() / span - 0.5, rect.center().y() / span - 0.5
        keys = [(level, tx, ty) for ty in range(y0, y1 + 1) for tx in range(x0, x1 + 1)]
        keys.sort(key=lambda k: (k[1] - cx) ** 2 + (k[2] - cy) ** 2)
        return keys

    # --- view changes ------------------------------------------------------------------------
    def update_view(self, visible: QRectF, scale: float) -> None:
        """Called by the map on every pan/zoom/resize: request the display tiles the view needs."""
        level = self.level_for_scale(scale)
        if level != self._level:
            self._level = level
            self.update()
        if level is None or self._pool is None:
            self._requests.wanted = frozenset()
            return
        span = TILE_PX * 2**level
        margin = QRectF(visible).adjusted(-span / 2, -span / 2, span / 2, span / 2)
        keys = self.tiles_in(margin, level)
        self._requests.wanted = frozenset(keys)
        for key in keys:
            if key in self._cache:
                self._cache.move_to_end(key)
            elif key not in self._pending:
                self._pending.add(key)
                future = self._executor.submit(_TileRead(self, key).run)
                self._futures.add(future)
                future.add_done_callback(self._futures.discard)

    def wait_idle(self, msecs: int = 5000) -> bool:
        """Wait for the reads in flight; whether they all ended in time."""
        _done, not_done = wait_futures(list(self._futures), timeout=msecs / 1000.0)
        return not not_done

    def shutdown(self) -> None:
        """Forget the scene and stop the reading threads (window closing)."""
        self.clear()
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_loaded(self, key: TileKey, generation: int, image: QImage) -> None:
        if generation != self._requests.generation:
            return
        self._pending.discard(key)
        self.reads += 1
        self._cache[key] = image
        self._cache.move_to_end(key)
        while len(self._cache) > CACHE_TILES:
            self._cache.popitem(last=False)
        (x0, y0, w, h), _size = self.tile_window(key)
        self.update(QRectF(x0, y0, w, h))
        self.tileLoaded.emit(key)

    def _on_dropped(self, key: TileKey, generation: int) -> None:
        if generation == self._requests.generation:
            self._pending.discard(key)

    # --- painting ----------------------------------------------------------------------------
    def boundingRect(self) -> QRectF:
        if self._info is None:
            return QRectF()
        return QRectF(0, 0, self._info.width, self._info.height)

    def paint(
        self, painter: QPainter, option: QStyleOptionGraphicsItem, widget: QWidget | None = None
    ) -> None:
        if self._info is None:
            return
        exposed = option.exposedRect.intersected(self.boundingRect())
        if exposed.isEmpty():
            return
        lod = option.levelOfDetailFromTransform(painter.worldTransform())
        painter.setRenderHint(QPainter.RenderHint.SmoothPixmapTransform, lod < 1.0)
        if self._preview is not None and not self._preview.isNull():
            sx = self._preview.width() / self._info.width
            sy = self._preview.height() / self._info.height
            source = QRectF(
                exposed.left() * sx, exposed.top() * sy, exposed.width() * sx, exposed.height() * sy
            )
            painter.drawImage(exposed, self._preview, source)
        else:
            painter.fillRect(exposed, QColor(40, 40, 40))
        if self._level is None:
            return
        # Coarser cached levels first (better than the preview while the wanted level loads).
        for level in range(min(self._max_level, self._level + 2), self._level - 1, -1):
            for key in self.tiles_in(exposed, level):
                image = self._cache.get(key)
                if image is not None:
                    (x0, y0, w, h), _size = self.tile_window(key)
                    painter.drawImage(QRectF(x0, y0, w, h), image)
