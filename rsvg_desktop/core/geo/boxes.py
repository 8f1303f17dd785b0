"""GeoChat rotated boxes → pixel rectangles → map polygons, vectorised with numpy.

The chain, for ``N`` boxes at once::

    grid box (0–100 on the model's square input)            boxes   (N, 5): x1, y1, x2, y2, angle
      → rotated rectangle, still in grid units               grid_corners()
      → scene pixels of the tile window                      boxes_to_pixel_corners()   windows (N, 4)
      → map coordinates through the full affine              apply_affine()             transform6
      → any target CRS                                       reproject_xy()             pyproj, always_xy
      → shapely Polygons (exterior counter-clockwise)        corners_to_polygons()

**Angle.** ``θ`` (degrees) turns the rectangle *as written* about its own centre. ``θ = 0`` leaves it as
written and ``θ = 90`` swaps its width and height, whatever the direction. For ``0 < θ < 90`` the
direction is a setting, :class:`AngleConvention`. The default, ``CCW``, turns the box
**counter-clockwise as seen on screen**, that is in image coordinates with x to the right and y *down*:
a corner offset ``(dx, dy)`` from the centre becomes ``(dx·cosθ + dy·sinθ, −dx·sinθ + dy·cosθ)``, so the
point to the right of the centre moves *up* the screen. This is OpenCV's ``getRotationMatrix2D`` sense
(positive angle = counter-clockwise, origin top-left), the routine GeoChat's demo draws boxes with.
``CW`` is the mirror image: ``(dx·cosθ − dy·sinθ, dx·sinθ + dy·cosθ)``. An angle of ``None`` (the
answer had no ``|<θ>``) is 0. The convention used is recorded in every export.

**Square frame.** The rotation is done in grid units, i.e. in the square image the model saw (the
0–100 grid spans the ``size × size`` model input on both axes), and only then are the corners scaled
to the tile window: ``x_px = col_off + x/100·width``, ``y_px = row_off + y/100·height``. For the usual
square windows this equals rotating in scene pixels; for a non-square window (a resampled or clipped
tile) the box stays the shape the model drew on its square input (a parallelogram in scene pixels)
instead of being distorted by rotating in anisotropic units.

**Pixels.** Pixel coordinates are continuous with the origin at the *top-left corner* of the scene's
first pixel (the GDAL/rasterio convention the affine transform expects): grid 0 is the window's left or
top edge and grid 100 its right or bottom edge.

**Affine.** ``transform6`` is ``(a, b, c, d, e, f)`` in rasterio/``affine`` order (*not* GDAL's
geotransform order): ``X = a·col + b·row + c``, ``Y = d·col + e·row + f``. An ``affine.Affine`` works as
is. Rotated and sheared transforms are applied in full.

**Reprojection.** Only the four corners are reprojected (no densification): boxes are tens of pixels,
far too small for the curvature of projected edges to matter.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from enum import StrEnum
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Transformer

from rsvg_desktop.core.geo.transform import pixel_to_map
from rsvg_desktop.core.types import GridBox, Tile
from rsvg_desktop.errors import ConfigError

__all__ = [
    "DEFAULT_ANGLE_CONVENTION",
    "AngleConvention",
    "apply_affine",
    "boxes_to_array",
    "boxes_to_pixel_corners",
    "corners_to_polygons",
    "grid_boxes_to_polygons",
    "grid_corners",
    "reproject_xy",
    "tile_footprints",
    "windows_to_array",
    "windows_to_corners",
]

log = logging.getLogger(__name__)


class AngleConvention(StrEnum):
    """Direction in which a positive GeoChat angle turns a box, *as seen on screen* (image y down)."""

    CCW = "ccw"
    """Counter-clockwise on screen: ``(dx, dy) → (dx·cosθ + dy·sinθ, −dx·sinθ + dy·cosθ)`` (y down)."""
    CW = "cw"
    """Clockwise on screen: ``(dx, dy) → (dx·cosθ − dy·sinθ, dx·sinθ + dy·cosθ)`` (y down)."""

    @property
    def description(self) -> str:
        """One line for metadata: what a positive angle does."""
        turn = "counter-clockwise" if self is AngleConvention.CCW else "clockwise"
        return (
            f"{self.value}: a positive angle turns the written box {turn} about its centre as seen on "
            "screen (image x right, y down), in the model's square input frame; 0 and 90 are "
            "direction-independent (90 swaps width and height)"
        )


DEFAULT_ANGLE_CONVENTION = AngleConvention.CCW


# --- array helpers -----------------------------------------------------------------------------------
def boxes_to_array(boxes: Iterable[GridBox]) -> np.ndarray:
    """``GridBox`` values → float array ``(N, 5)``: x1, y1, x2, y2, angle (``NaN`` where angle is None)."""
    rows = [(b.x1, b.y1, b.x2, b.y2, np.nan if b.angle is None else b.angle) for b in boxes]
    if not rows:
        return np.empty((0, 5), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def windows_to_array(tiles: Iterable[Tile]) -> np.ndarray:
    """``Tile`` values → float array ``(N, 4)``: col_off, row_off, width, height (``Tile.window``)."""
    rows = [t.window for t in tiles]
    if not rows:
        return np.empty((0, 4), dtype=np.float64)
    return np.asarray(rows, dtype=np.float64)


def _as_boxes(boxes: Any) -> np.ndarray:
    arr = np.asarray(boxes, dtype=np.float64)
    if arr.ndim == 1 and arr.shape[0] in (4, 5):
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] not in (4, 5):
        raise ConfigError(f"boxes must be (N, 4) or (N, 5) (x1, y1, x2, y2[, angle]), not {arr.shape}")
    if arr.shape[1] == 4:
        arr = np.concatenate([arr, np.zeros((arr.shape[0], 1))], axis=1)
    if not np.isfinite(arr[:, :4]).all():
        raise ConfigError("boxes contain non-finite coordinates")
    return arr


def _as_windows(windows: Any, n: int) -> np.ndarray:
    arr = np.asarray(windows, dtype=np.float64)
    if arr.ndim == 1:
        arr = arr[None, :]
    if arr.ndim != 2 or arr.shape[1] != 4:
        raise ConfigError(f"windows must be (N, 4) (col_off, row_off, width, height), not {arr.shape}")
    if arr.shape[0] == 1 and n != 1:
        arr = np.broadcast_to(arr, (n, 4))
    if arr.shape[0] != n:
        raise ConfigError(f"{n} boxes but {arr.shape[0]} windows")
    if not np.isfinite(arr).all():
        raise ConfigError("windows contain non-finite values (unknown tile window?)")
    if n and (arr[:, 2:] <= 0).any():
        raise ConfigError("tile windows must have a positive width and height")
    return arr


def _as_transform6(transform6: Any) -> tuple[float, float, float, float, float, float]:
    try:
        vals = tuple(float(v) for v in transform6)
    except TypeError as exc:
        raise ConfigError(f"transform must be a sequence (a, b, c, d, e, f); got {transform6!r}") from exc
    if len(vals) == 9:  # affine.Affine iterates over all nine members
        if vals[6:] != (0.0, 0.0, 1.0):
            raise ConfigError(f"not an affine transform (last row {vals[6:]})")
        vals = vals[:6]
    if len(vals) != 6:
        raise ConfigError(f"transform must have 6 members (a, b, c, d, e, f); got {len(vals)}")
    a, b, c, d, e, f = vals
    if not np.isfinite(vals).all() or a * e - b * d == 0:
        raise ConfigError(f"transform {vals} is not invertible")
    return (a, b, c, d, e, f)


# --- the chain ---------------------------------------------------------------------------------------
def grid_corners(boxes: Any, convention: AngleConvention = DEFAULT_ANGLE_CONVENTION) -> np.ndarray:
    """Rotated rectangles in grid units: ``(N, 4, 2)`` corners.

    Before rotation the corners are top-left, top-right, bottom-right, bottom-left of the written
    rectangle (``x1, x2`` and ``y1, y2`` may come in either order). ``NaN``/missing angle = 0.
    """
    arr = _as_boxes(boxes)
    convention = AngleConvention(convention)
    x1, x2 = np.minimum(arr[:, 0], arr[:, 2]), np.maximum(arr[:, 0], arr[:, 2])
    y1, y2 = np.minimum(arr[:, 1], arr[:, 3]), np.maximum(arr[:, 1], arr[:, 3])
    cx, cy = (x1 + x2) / 2.0, (y1 + y2) / 2.0
    hw, hh = (x2 - x1) / 2.0, (y2 - y1) / 2.0
    theta = np.deg2rad(np.nan_to_num(arr[:, 4], nan=0.0))
    c, s = np.cos(theta), np.sin(theta)
    # Exact zeros at multiples of 90° so that θ = 90 swaps width and height exactly.
    c[np.abs(c) < 1e-12] = 0.0
    s[np.abs(s) < 1e-12] = 0.0
    if convention is AngleConvention.CW:
        s = -s
    # Unrotated offsets: TL, TR, BR, BL (y down).
    dx = np.stack([-hw, hw, hw, -hw], axis=1)
    dy = np.stack([-hh, -hh, hh, hh], axis=1)
    # CCW on screen with y down; CW uses −s (the mirror rotation).
    rx = dx * c[:, None] + dy * s[:, None]
    ry = -dx * s[:, None] + dy * c[:, None]
    return np.stack([cx[:, None] + rx, cy[:, None] + ry], axis=2)


def boxes_to_pixel_corners(
    boxes: Any, windows: Any, convention: AngleConvention = DEFAULT_ANGLE_CONVENTION
) -> np.ndarray:
    """Grid boxes ``(N, 5)`` in tile windows ``(N, 4)`` → scene-pixel corners ``(N, 4, 2)``.

    ``windows`` rows are ``(col_off, row_off, width, height)``; a single window broadcasts to all boxes.
    """
    g = grid_corners(boxes, convention)
    w = _as_windows(windows, g.shape[0])
    out = np.empty_like(g)
    out[..., 0] = w[:, 0, None] + g[..., 0] / 100.0 * w[:, 2, None]
    out[..., 1] = w[:, 1, None] + g[..., 1] / 100.0 * w[:, 3, None]
    return out


def windows_to_corners(windows: Any) -> np.ndarray:
    """Tile windows ``(N, 4)`` → their pixel rectangles as ``(N, 4, 2)`` corners (TL, TR, BR, BL)."""
    w = np.asarray(windows, dtype=np.float64)
    w = _as_windows(w, len(w) if w.ndim == 2 else 1)
    x0, y0, x1, y1 = w[:, 0], w[:, 1], w[:, 0] + w[:, 2], w[:, 1] + w[:, 3]
    return np.stack(
        [np.stack([x0, y0], 1), np.stack([x1, y0], 1), np.stack([x1, y1], 1), np.stack([x0, y1], 1)], axis=1
    )


def apply_affine(transform6: Any, xy: np.ndarray) -> np.ndarray:
    """Apply ``(a, b, c, d, e, f)`` to pixel coordinates ``(..., 2)`` → map coordinates ``(..., 2)``."""
    xy = np.asarray(xy, dtype=np.float64)
    big_x, big_y = pixel_to_map(_as_transform6(transform6), xy[..., 0], xy[..., 1])
    return np.stack([big_x, big_y], axis=-1)


def reproject_xy(xy: np.ndarray, src_crs: Any, dst_crs: Any) -> np.ndarray:
    """Reproject ``(..., 2)`` x/y (easting/northing or lon/lat order) from ``src_crs`` to ``dst_crs``.

    Raises :class:`ConfigError` when a point cannot be represented in the target CRS.
    """
    src, dst = CRS.from_user_input(src_crs), CRS.from_user_input(dst_crs)
    xy = np.asarray(xy, dtype=np.float64)
    if src == dst or xy.size == 0:
        return xy.copy()
    transformer = Transformer.from_crs(src, dst, always_xy=True)
    x, y = transformer.transform(xy[..., 0], xy[..., 1])
    out = np.stack([np.asarray(x, dtype=np.float64), np.asarray(y, dtype=np.float64)], axis=-1)
    bad = ~np.isfinite(out).all(axis=-1)
    if bad.any():
        raise ConfigError(
            f"{int(bad.sum())} point(s) cannot be transformed from {src.name!r} to {dst.name!r} "
            "(outside the target CRS's domain)"
        )
    return out


def corners_to_polygons(corners: np.ndarray, *, ccw: bool = True) -> np.ndarray:
    """Corners ``(N, K, 2)`` (K ≥ 3, open rings) → object array of shapely Polygons.

    With ``ccw`` (default) every exterior ring is counter-clockwise in the output's x/y axes (the
    RFC 7946 / OGC orientation), whatever the handedness of the transform applied before.
    """
    corners = np.asarray(corners, dtype=np.float64)
    if corners.ndim != 3 or corners.shape[2] != 2 or corners.shape[1] < 3:
        raise ConfigError(f"corners must have shape (N, K>=3, 2); got {corners.shape}")
    if corners.shape[0] == 0:
        return np.empty(0, dtype=object)
    if ccw:
        x, y = corners[..., 0], corners[..., 1]
        # Shoelace on coordinates relative to the first corner (keeps precision for large eastings).
        xr, yr = x - x[:, :1], y - y[:, :1]
        signed = (xr * np.roll(yr, -1, axis=1) - np.roll(xr, -1, axis=1) * yr).sum(axis=1)
        flip = signed < 0
        if flip.any():
            corners = corners.copy()
            corners[flip] = corners[flip, ::-1]
    return shapely.polygons(corners)


def grid_boxes_to_polygons(
    boxes: Any,
    windows: Any,
    transform6: Any | None = None,
    src_crs: Any | None = None,
    dst_crs: Any | None = None,
    *,
    convention: AngleConvention = DEFAULT_ANGLE_CONVENTION,
) -> np.ndarray:
    """Grid boxes ``(N, 5)`` in tile windows ``(N, 4)`` → object array of ``N`` shapely Polygons.

    ``transform6`` None = pixel mode (scene pixel coordinates, y down). With a transform the polygons are
    in the scene CRS, or in ``dst_crs`` when given (which then needs ``src_crs``). Exteriors are CCW.
    """
    corners = boxes_to_pixel_corners(boxes, windows, convention)
    corners = _pixels_to_crs(corners, transform6, src_crs, dst_crs)
    return corners_to_polygons(corners)


def tile_footprints(
    windows: Any, transform6: Any | None = None, src_crs: Any | None = None, dst_crs: Any | None = None
) -> np.ndarray:
    """Tile windows ``(N, 4)`` → object array of footprint Polygons (pixel, scene-CRS or ``dst_crs``)."""
    corners = windows_to_corners(windows)
    return corners_to_polygons(_pixels_to_crs(corners, transform6, src_crs, dst_crs))


def _pixels_to_crs(corners: np.ndarray, transform6: Any, src_crs: Any, dst_crs: Any) -> np.ndarray:
    if transform6 is None:
        if dst_crs is not None:
            raise ConfigError("pixel mode (no transform) cannot be reprojected to a CRS")
        return corners
    corners = apply_affine(transform6, corners)
    if dst_crs is not None:
        if src_crs is None:
            raise ConfigError("reprojection needs the scene CRS (src_crs)")
        corners = reproject_xy(corners, src_crs, dst_crs)
    return corners
