"""The area two dates share: where both hold valid pixels on the comparison grid.

Both scenes are read on one grid (``open_scene(warp_to=grid)``), decimated so the grid has at most
``max_pixels`` cells, with the scenes' own validity (nodata, mask or alpha band; for a warped scene,
also the parts of the grid its file does not cover). Each cell's validity is sampled at its pixel
nearest the centre (no averaging, which would let a cell count as valid when only an edge pixel is),
so the boundary is exact to half a cell. Cells valid on both dates become polygons in the grid's
coordinates (map CRS, or scene pixels in pixel mode); the rest of the grid's extent is ``unknown``:
no change can be seen there.
"""

from __future__ import annotations

import math

import numpy as np
import shapely
from rasterio.enums import Resampling
from rasterio.features import shapes
from rasterio.transform import Affine
from shapely.geometry import Polygon, shape

from rsvg_desktop.core.geo.change.types import CommonArea
from rsvg_desktop.core.geo.scene.reading import Scene
from rsvg_desktop.core.geo.transform import pixel_to_map, scale_transform
from rsvg_desktop.errors import ChangeInputError, EmptySceneError

__all__ = ["DEFAULT_MAX_PIXELS", "common_area", "decimated_size", "grid_extent", "same_grid_or_raise"]

#: The most cells the validity of the two dates is compared on.
DEFAULT_MAX_PIXELS = 1_000_000


def same_grid_or_raise(before: Scene, after: Scene) -> None:
    """Refuse two scenes not read on one grid (a programming error: open both with ``warp_to``)."""
    b, a = before.info, after.info
    if (b.width, b.height, b.transform) != (a.width, a.height, a.transform):
        raise ValueError(
            f"{b.path} and {a.path} are not on one grid ({b.width}x{b.height} {b.transform} and "
            f"{a.width}x{a.height} {a.transform}): open both with open_scene(..., warp_to=grid)"
        )


def decimated_size(width: int, height: int, max_pixels: int) -> tuple[int, int]:
    """``(out_w, out_h)``: the grid shrunk by one factor until it has at most ``max_pixels`` cells."""
    if max_pixels < 1:
        raise ValueError(f"max_pixels must be positive, got {max_pixels}")
    factor = max(1.0, math.sqrt(width * height / max_pixels))
    out_w, out_h = max(1, math.floor(width / factor)), max(1, math.floor(height / factor))
    return out_w, out_h


def grid_extent(scene: Scene) -> Polygon:
    """The footprint of the scene's grid: its four corners through the full affine."""
    info = scene.info
    xs, ys = pixel_to_map(info.transform, [0, info.width, info.width, 0], [0, 0, info.height, info.height])
    return Polygon(zip(xs.tolist(), ys.tolist(), strict=True))


def both_valid(before: Scene, after: Scene, out_size: tuple[int, int]) -> np.ndarray:
    """The cells of the grid decimated to ``out_size`` that are valid on both dates (nearest sampling)."""
    info = before.info
    full = (0, 0, info.width, info.height)
    _, valid_b = before.read_window(full, out_size, resampling=Resampling.nearest)
    _, valid_a = after.read_window(full, out_size, resampling=Resampling.nearest)
    return np.asarray(valid_b & valid_a)


def common_area(before: Scene, after: Scene, *, max_pixels: int = DEFAULT_MAX_PIXELS) -> CommonArea:
    """Where both dates hold valid pixels (``compared``), the rest of the grid's extent (``unknown``) and
    the compared share of the extent. Raises :class:`ChangeInputError` when no cell is valid on both."""
    same_grid_or_raise(before, after)
    info = before.info
    out_w, out_h = decimated_size(info.width, info.height, max_pixels)
    nothing = f"{before.path} and {after.path}: no pixel is valid on both dates, there is nothing to compare"
    try:
        mask = both_valid(before, after, (out_w, out_h))
    except EmptySceneError as err:  # one date has no valid pixel on the grid (no stretch to compute)
        raise ChangeInputError(nothing) from err
    if not mask.any():
        raise ChangeInputError(nothing)
    transform = scale_transform(info.transform, info.width / out_w, info.height / out_h)
    polygons = [
        shape(geom)
        for geom, _ in shapes(mask.astype(np.uint8), mask=mask, connectivity=4, transform=Affine(*transform))
    ]
    compared = shapely.union_all(polygons)
    extent = grid_extent(before)
    unknown = extent.difference(compared) if not mask.all() else Polygon()
    return CommonArea(compared=compared, unknown=unknown, compared_fraction=float(mask.mean()))
