"""Choosing the one pixel grid two dates are compared on: one scene's own grid (``--grid before|after``,
default before), the other scene warped onto it when read (``open_scene(warp_to=grid)``).

Refused, in one line naming both files (:class:`ChangeInputError`, exit status 2): a CRS on one side
only; two scenes in pixel mode of different sizes (pixel mode compares pixel for pixel); two
georeferenced scenes whose footprints do not overlap (the after scene's bounds, transformed into the
before scene's CRS with densified edges, must share an area with the before scene's bounds).
"""

from __future__ import annotations

from rasterio.crs import CRS
from rasterio.errors import CRSError
from rasterio.warp import transform_bounds

from rsvg_desktop.core.geo.change.types import TargetGrid
from rsvg_desktop.core.geo.scene.gdal_errors import GDAL_ERRORS, one_line
from rsvg_desktop.core.geo.scene.info import SceneInfo
from rsvg_desktop.errors import ChangeInputError

__all__ = ["GRID_CHOICES", "choose_grid", "scene_grid"]

#: The values of ``rsvg change --grid``.
GRID_CHOICES = ("before", "after")


def scene_grid(info: SceneInfo, source: str = "before") -> TargetGrid:
    """A scene's own pixel grid (its CRS, transform and size), labelled with whose it is."""
    if source not in GRID_CHOICES:
        raise ChangeInputError(f"--grid must be one of {', '.join(GRID_CHOICES)}, got {source!r}")
    return TargetGrid(
        crs_wkt=info.crs_wkt,
        transform=info.transform,
        width=info.width,
        height=info.height,
        source=source,
    )


def _overlap(before: SceneInfo, after: SceneInfo) -> bool:
    """Whether the two georeferenced scenes' footprints (bounds) share an area, in the before CRS."""
    assert before.crs_wkt is not None and after.crs_wkt is not None
    try:
        bx0, by0, bx1, by1 = before.bounds
        ax0, ay0, ax1, ay1 = transform_bounds(
            CRS.from_wkt(after.crs_wkt), CRS.from_wkt(before.crs_wkt), *after.bounds, densify_pts=21
        )
    except (*GDAL_ERRORS, CRSError, ValueError) as err:
        raise ChangeInputError(
            f"{before.path} and {after.path}: the after scene's extent cannot be placed in the before "
            f"scene's CRS ({one_line(err)})"
        ) from err
    return min(bx1, ax1) > max(bx0, ax0) and min(by1, ay1) > max(by0, ay0)


def choose_grid(before: SceneInfo, after: SceneInfo, which: str = "before") -> TargetGrid:
    """The grid both dates are read on: ``which`` scene's own grid, after checking that the two scenes
    can be compared (see the module's doc). Raises :class:`ChangeInputError`."""
    if which not in GRID_CHOICES:
        raise ChangeInputError(f"--grid must be one of {', '.join(GRID_CHOICES)}, got {which!r}")
    names = f"{before.path} and {after.path}"
    if (before.crs_wkt is None) != (after.crs_wkt is None):
        with_crs, without = (before, after) if before.crs_wkt is not None else (after, before)
        raise ChangeInputError(
            f"{names}: {with_crs.path} has a CRS ({with_crs.crs_name or 'unnamed'}) and {without.path} "
            "has none; give both a CRS, or compare two scenes of one size in pixel mode"
        )
    if before.crs_wkt is None:
        if (before.width, before.height) != (after.width, after.height):
            raise ChangeInputError(
                f"{names}: in pixel mode both scenes must have one size, got {before.width}x{before.height} "
                f"and {after.width}x{after.height}"
            )
    elif not _overlap(before, after):
        raise ChangeInputError(f"{names} do not overlap: there is nothing to compare")
    return scene_grid(before if which == "before" else after, which)
