"""Building a second date of a real scene for the two-date comparison tests (``rsvg change``).

:func:`second_date` writes a copy of a scene whose content is displaced by a known amount of the
source's pixels (positive: right, down), optionally painted with rectangles (objects added or removed
at known places) and reprojected into another CRS, so the comparison must warp it back, recover the
shift and find the painted objects where they were put.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.transform import Affine, array_bounds
from rasterio.warp import calculate_default_transform, reproject

#: A rectangle of the source's pixels ``(x0, y0, x1, y1)`` and the value painted in every band.
Patch = tuple[tuple[int, int, int, int], float]


def second_date(
    source: Path,
    out: Path,
    *,
    shift: tuple[float, float] = (0.0, 0.0),
    crs: str | None = None,
    patches: Sequence[Patch] = (),
) -> Path:
    """Write ``out``: ``source`` with ``patches`` painted, its content displaced by ``shift`` source
    pixels (the data placed with the transform moved by ``shift``), reprojected into ``crs`` (default:
    the source's, on a grid moved by ``shift``, without resampling). Nodata is kept (0 when the source
    has none, so the area outside the source is invalid)."""
    with rasterio.open(source) as ds:
        data = ds.read()
        profile = ds.profile
        src_crs = ds.crs
        placed = ds.transform @ Affine.translation(*shift)
        nodata = ds.nodata if ds.nodata is not None else 0
    for (x0, y0, x1, y1), value in patches:
        data[:, y0:y1, x0:x1] = value
    profile.update(nodata=nodata)
    if crs is None:
        profile.update(transform=placed)
        out_data = data
    else:
        out_data, transform = reprojected(data, placed, src_crs, crs, nodata)
        profile.update(crs=crs, transform=transform, width=out_data.shape[2], height=out_data.shape[1])
    with rasterio.open(out, "w", **profile) as dst:
        dst.write(out_data)
    return out


def reprojected(
    data: np.ndarray, placed: Affine, src_crs: Any, crs: Any, nodata: float
) -> tuple[np.ndarray, Affine]:
    """``data`` (bands, rows, columns) placed by ``placed`` in ``src_crs``, resampled (bilinear) into
    ``crs`` on the grid that covers it: the new data (``nodata`` where nothing fell) and its transform."""
    h, w = data.shape[1:]
    transform, width, height = calculate_default_transform(src_crs, crs, w, h, *array_bounds(h, w, placed))
    out_data = np.full((data.shape[0], height, width), nodata, dtype=data.dtype)
    reproject(
        data,
        out_data,
        src_transform=placed,
        src_crs=src_crs,
        dst_transform=transform,
        dst_crs=crs,
        resampling=Resampling.bilinear,
        src_nodata=nodata,
        dst_nodata=nodata,
    )
    return out_data, transform
