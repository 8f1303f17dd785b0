"""Open a scene without freezing the window: metadata, display stretch, preview and tile grid are read in a
background thread, then handed to the GUI thread as one :class:`OpenedScene`."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QImage

from rsvg_desktop.core.geo.grid import TilePlan, plan_tiles
from rsvg_desktop.core.geo.scene import SceneInfo, open_scene
from rsvg_desktop.core.geo.stretch import Stretch
from rsvg_desktop.errors import ConfigError, NoCRSError
from rsvg_desktop.gui.logic.nodata import given_nodata
from rsvg_desktop.gui.raster_layer import rgba_image
from rsvg_desktop.gui.tasks import run_in_background

__all__ = ["PREVIEW_SIZE", "OpenedScene", "SceneLoader", "plan_grid"]

log = logging.getLogger(__name__)

PREVIEW_SIZE = 1024


@dataclass(frozen=True)
class OpenedScene:
    info: SceneInfo
    preview: QImage
    stretch: Stretch | None
    plan: TilePlan


def plan_grid(info: SceneInfo, tile_size: int, overlap: int) -> TilePlan:
    """The scene's tile grid at these settings (reads a decimated validity mask only)."""
    with open_scene(
        info.path, pixel_mode=info.pixel_mode, bands=info.display_bands, nodata=given_nodata(info)
    ) as scene:
        return plan_tiles(scene, tile_size=tile_size, overlap=overlap, allow_empty=True)


def _open(
    path: str, tile_size: int, overlap: int, pixel_mode: bool, nodata: float | None = None
) -> OpenedScene:
    """Read the scene. A kept ``nodata`` the scene no longer takes (NaN, and the file is now integer)
    is dropped: the file's own validity is used, and the field shows it empty."""
    try:
        scene = open_scene(path, pixel_mode=pixel_mode, nodata=nodata)
    except ConfigError:
        if nodata is None:
            raise
        log.warning("%s: the nodata value kept for it no longer applies; using the file's own", path)
        scene = open_scene(path, pixel_mode=pixel_mode)
    with scene:
        stretch = scene.stretch
        preview = scene.preview(PREVIEW_SIZE)
        plan = plan_tiles(scene, tile_size=tile_size, overlap=overlap, allow_empty=True)
        return OpenedScene(scene.info, rgba_image(preview.image, preview.valid), stretch, plan)


class SceneLoader(QObject):
    """``open(path)`` → :attr:`opened` (:class:`OpenedScene`) or :attr:`failed` (path, message, no_crs);
    ``reread(info, nodata=…)`` (the same scene with another nodata value) → :attr:`reread_done`."""

    opened = Signal(object)
    failed = Signal(str, str, bool)
    planned = Signal(object)  # TilePlan after a grid change
    reread_done = Signal(object)  # OpenedScene: the open scene read again with another nodata value

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self._calls: list[Any] = []
        self._serial = 0
        self.busy = False

    def open(
        self,
        path: str | os.PathLike[str],
        *,
        tile_size: int,
        overlap: int,
        pixel_mode: bool = False,
        nodata: float | None = None,
        again: bool = False,
    ) -> None:
        """Read the scene in the background (``nodata``: the analyst's value, ``None``: the file's);
        ``again``: the open scene read again, announced by :attr:`reread_done` instead of :attr:`opened`."""
        path = os.fspath(path)
        self._serial += 1
        serial = self._serial
        self.busy = True

        def done(result: OpenedScene) -> None:
            if serial == self._serial:
                self.busy = False
                (self.reread_done if again else self.opened).emit(result)

        def failed(exc: BaseException) -> None:
            if serial == self._serial:
                self.busy = False
                log.warning("cannot open %s: %s", path, exc)
                self.failed.emit(path, str(exc) or type(exc).__name__, isinstance(exc, NoCRSError))

        self._calls.append(
            run_in_background(
                lambda: _open(path, tile_size, overlap, pixel_mode, nodata), done, failed, name=f"open {path}"
            )
        )
        self._calls = [c for c in self._calls if not c.finished]

    def replan(self, info: SceneInfo, *, tile_size: int, overlap: int) -> None:
        """Recompute the grid (e.g. after the tile size changed) → :attr:`planned`."""

        def failed(exc: BaseException) -> None:
            self.failed.emit(info.path, f"cannot lay the tile grid: {exc}", False)

        self._calls.append(
            run_in_background(
                lambda: plan_grid(info, tile_size, overlap), self.planned.emit, failed, name="plan"
            )
        )
        self._calls = [c for c in self._calls if not c.finished]
