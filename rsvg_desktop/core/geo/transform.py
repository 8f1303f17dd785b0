"""Pixel ↔ map coordinates through the full affine geotransform.

Conventions (the same as GDAL and rasterio):

* A transform is the 6-tuple ``(a, b, c, d, e, f)`` of rasterio's ``Affine`` (*not* GDAL's
  ``GetGeoTransform`` order): ``X = a*x + b*y + c`` and ``Y = d*x + e*y + f``. A rasterio ``Affine`` or any
  sequence whose first six items are these numbers is accepted.
* Pixel coordinates are continuous and corner-based: ``(0, 0)`` is the top-left *corner* of the top-left
  pixel, the centre of pixel ``(col, row)`` is ``(col + 0.5, row + 0.5)``, and ``(width, height)`` is the
  bottom-right corner of the raster.
* Nothing assumes a north-up image: the shear terms ``b`` and ``d`` are always applied, so rotated rasters
  (``rotated.tif``) are placed correctly.

All functions are vectorised with numpy: scalars, lists and arrays of any (broadcastable) shape work.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any

import numpy as np

__all__ = [
    "Transform6",
    "as_transform6",
    "is_identity",
    "map_to_pixel",
    "pixel_size",
    "pixel_to_map",
    "scale_transform",
    "window_corners",
]

Transform6 = tuple[float, float, float, float, float, float]

_IDENTITY: Transform6 = (1.0, 0.0, 0.0, 0.0, 1.0, 0.0)


def as_transform6(transform: Sequence[float] | Any) -> Transform6:
    """The plain 6-tuple ``(a, b, c, d, e, f)`` of a rasterio ``Affine`` or of a 6- or 9-item sequence."""
    values = tuple(float(v) for v in tuple(transform)[:6])
    if len(values) != 6:
        raise ValueError(f"a transform needs 6 coefficients (a, b, c, d, e, f), got {len(values)}")
    a, b, c, d, e, f = values
    return (a, b, c, d, e, f)


def is_identity(transform: Sequence[float], *, tol: float = 0.0) -> bool:
    """Whether the transform is the identity (what GDAL reports for a file without a geotransform)."""
    t = as_transform6(transform)
    return all(abs(u - v) <= tol for u, v in zip(t, _IDENTITY, strict=True))


def pixel_size(transform: Sequence[float]) -> tuple[float, float]:
    """Ground size of one pixel step along a row and down a column, in map units.

    For a rotated affine these are the lengths of the pixel's column vector ``(a, d)`` (one step in x)
    and row vector ``(b, e)`` (one step in y), not ``|a|`` and ``|e|``.
    """
    a, b, _c, d, e, _f = as_transform6(transform)
    return (math.hypot(a, d), math.hypot(b, e))


def pixel_to_map(transform: Sequence[float], x: Any, y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Map coordinates ``(X, Y)`` of continuous pixel coordinates ``(x, y)`` (column, row), full affine."""
    a, b, c, d, e, f = as_transform6(transform)
    xs = np.asarray(x, dtype=np.float64)
    ys = np.asarray(y, dtype=np.float64)
    return a * xs + b * ys + c, d * xs + e * ys + f


def map_to_pixel(transform: Sequence[float], X: Any, Y: Any) -> tuple[np.ndarray, np.ndarray]:
    """Continuous pixel coordinates ``(x, y)`` of map coordinates ``(X, Y)``: the inverse of ``pixel_to_map``.

    Raises ``ValueError`` for a degenerate (non-invertible) transform. Results are not rounded: use
    ``np.floor`` to get the column/row index of the pixel containing a point.
    """
    a, b, c, d, e, f = as_transform6(transform)
    det = a * e - b * d
    if det == 0.0 or not math.isfinite(det):
        raise ValueError(f"the transform {(a, b, c, d, e, f)} cannot be inverted (determinant {det})")
    dx = np.asarray(X, dtype=np.float64) - c
    dy = np.asarray(Y, dtype=np.float64) - f
    return (e * dx - b * dy) / det, (a * dy - d * dx) / det


def window_corners(
    transform: Sequence[float], col_off: float, row_off: float, width: float, height: float
) -> np.ndarray:
    """The 4 map-coordinate corners of a pixel window, as a ``(4, 2)`` array.

    Order: top-left, top-right, bottom-right, bottom-left *in pixel space* (clockwise on the image;
    on the map the ring's orientation depends on the sign of the transform's determinant).
    """
    xs = np.array([col_off, col_off + width, col_off + width, col_off], dtype=np.float64)
    ys = np.array([row_off, row_off, row_off + height, row_off + height], dtype=np.float64)
    mx, my = pixel_to_map(transform, xs, ys)
    return np.column_stack([mx, my])


def scale_transform(transform: Sequence[float], sx: float, sy: float) -> Transform6:
    """The transform of the same raster resampled so that one new pixel spans ``sx`` × ``sy`` old pixels.

    Used for previews and decimated reads: ``new = old * Affine.scale(sx, sy)``; the origin is unchanged.
    """
    a, b, c, d, e, f = as_transform6(transform)
    return (a * sx, b * sy, c, d * sx, e * sy, f)
