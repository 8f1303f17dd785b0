"""The two dates of a comparison, ready to show: the open scene (before) as it is, and the other scene
(after) warped onto its grid on the fly (``open_scene(warp_to=grid)``, never a warped copy), each with
its preview and display stretch. Read in a background thread (:func:`open_dates`)."""

from __future__ import annotations

import os
from dataclasses import dataclass

from PySide6.QtGui import QImage

from rsvg_desktop.core.geo.change import TargetGrid, choose_grid
from rsvg_desktop.core.geo.scene import SceneInfo, open_scene
from rsvg_desktop.core.geo.stretch import Stretch
from rsvg_desktop.gui.logic.nodata import given_nodata
from rsvg_desktop.gui.raster_layer import rgba_image
from rsvg_desktop.gui.scene_loader import PREVIEW_SIZE

__all__ = ["ComparedDates", "DateImage", "open_dates"]


@dataclass(frozen=True)
class DateImage:
    """One date as the map shows it: its info (on the comparison grid), preview and stretch."""

    info: SceneInfo
    preview: QImage
    stretch: Stretch | None


@dataclass(frozen=True)
class ComparedDates:
    before: DateImage
    after: DateImage
    grid: TargetGrid

    def date(self, name: str) -> DateImage:
        return self.before if name == "before" else self.after


def open_dates(info: SceneInfo, other: str | os.PathLike[str]) -> ComparedDates:
    """Both dates on ``info``'s grid. Raises :class:`~rsvg_desktop.errors.ChangeInputError` for scenes
    that cannot be compared (no overlap, a CRS on one side only, pixel-mode scenes of two sizes), and the
    errors of ``open_scene`` for a file that cannot be read."""
    other = os.fspath(other)
    with open_scene(other, pixel_mode=True) as scene:  # keeps a CRS it has; choose_grid refuses a mismatch
        other_info = scene.info
    grid = choose_grid(info, other_info, "before")
    with open_scene(
        info.path, pixel_mode=info.pixel_mode, bands=info.display_bands, nodata=given_nodata(info)
    ) as scene:
        preview = scene.preview(PREVIEW_SIZE)
        before = DateImage(info, rgba_image(preview.image, preview.valid), scene.stretch)
    with open_scene(other, pixel_mode=info.pixel_mode, warp_to=grid) as scene:
        preview = scene.preview(PREVIEW_SIZE)
        after = DateImage(scene.info, rgba_image(preview.image, preview.valid), scene.stretch)
    return ComparedDates(before, after, grid)
