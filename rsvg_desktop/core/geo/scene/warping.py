"""Reading a scene on another scene's pixel grid, on the fly: GDAL's warped VRT (rasterio's ``WarpedVRT``),
never a warped copy on disk. Used to compare two dates (``rsvg change``) on one grid.

The warped dataset covers the target grid exactly (its CRS, transform and size). Pixels of the grid
that the source does not cover, or covers with invalid pixels, are invalid on the warped dataset:

* a source whose validity is its nodata value keeps it (``src_nodata`` = ``nodata`` = the value, the
  user's ``--nodata`` included): the warp fills the outside with it;
* a source with an alpha band keeps it (GDAL warps the alpha band as the validity);
* any other source (a mask band, or no mask at all) gets an alpha band added to the VRT, which GDAL's
  warper sets from the source's validity (its mask band honoured), so the outside reads as invalid.
  GDAL reads an alpha band as the mask only for 8- and 16-bit unsigned data of 1 or 3 bands; for any
  other source the VRT gets a nodata value instead, which the warp writes wherever no valid source
  pixel lands: NaN for floating-point data, else the type's extreme (the minimum of a signed type, the
  maximum of an unsigned one), so a source pixel holding that value in every display band reads as
  invalid too.

Continuous data is resampled bilinearly; palette (colour table) data by nearest neighbour, as its
values are class codes. A target grid without CRS (both dates in pixel mode, of one size) is read
pixel for pixel, without warping: the scene then takes the grid's transform.
"""

from __future__ import annotations

import dataclasses
import math
from typing import TYPE_CHECKING, Any

import numpy as np
import rasterio
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import CRSError
from rasterio.transform import Affine
from rasterio.vrt import WarpedVRT

from rsvg_desktop.core.geo.scene.coarse_warp import CoarseWarpedVRT
from rsvg_desktop.core.geo.scene.gdal_errors import GDAL_ERRORS, one_line
from rsvg_desktop.core.geo.scene.info import SceneInfo, describe_dataset
from rsvg_desktop.core.geo.transform import as_transform6, pixel_size
from rsvg_desktop.errors import ChangeInputError

if TYPE_CHECKING:  # at run time only the grid's attributes are used (no import of the change package)
    from rsvg_desktop.core.geo.change.types import TargetGrid

__all__ = ["fill_value", "grid_resampling", "same_grid", "warped_dataset"]

#: Transform coefficients closer than this share of a pixel count as equal.
_GRID_TOLERANCE = 1e-6


def _same_crs(a: str | None, b: str | None) -> bool:
    if a is None or b is None:
        return a is None and b is None
    return a == b or CRS.from_wkt(a) == CRS.from_wkt(b)


def same_grid(info: SceneInfo, grid: TargetGrid) -> bool:
    """Whether the scene already lies on ``grid`` (same CRS, size and transform to a millionth of a
    pixel): then it is read as it is, without a warp."""
    if (info.width, info.height) != (grid.width, grid.height) or not _same_crs(info.crs_wkt, grid.crs_wkt):
        return False
    step = max(min(pixel_size(grid.transform)), 1e-300)
    return all(
        math.isclose(u, v, rel_tol=0, abs_tol=_GRID_TOLERANCE * (step if k in (2, 5) else 1))
        for k, (u, v) in enumerate(zip(info.transform, grid.transform, strict=True))
    )


def grid_resampling(info: SceneInfo) -> Resampling:
    """Nearest neighbour for palette (colour table) data, whose values are class codes; else bilinear."""
    first = info.display_bands[0] - 1
    palette = first < len(info.colorinterp) and info.colorinterp[first] == "palette"
    return Resampling.nearest if palette else Resampling.bilinear


def _validity_options(info: SceneInfo) -> dict[str, Any]:
    """The WarpedVRT options that carry the source's validity over (see the module's doc)."""
    if info.mask_kind == "nodata" and info.nodata is not None:
        return {"src_nodata": info.nodata, "nodata": info.nodata}
    if info.mask_kind == "alpha":
        return {}
    return {"add_alpha": True}


def fill_value(dtype: str) -> float:
    """The nodata value a warp writes outside the source when an alpha band cannot serve as the mask."""
    kind = np.dtype(dtype)
    if kind.kind == "f":
        return math.nan
    limits = np.iinfo(kind)
    return float(limits.min if kind.kind == "i" else limits.max)


def _open_vrt(
    ds: rasterio.io.DatasetReader,
    info: SceneInfo,
    grid: TargetGrid,
    options: dict[str, Any],
    *,
    shape: tuple[Affine, int, int] | None = None,
    resampling: Resampling | None = None,
) -> WarpedVRT:
    """The VRT of ``ds`` on ``grid`` (or on ``shape``: a coarser grid's transform, width and height)."""
    assert grid.crs_wkt is not None
    transform, width, height = shape or (Affine(*grid.transform), grid.width, grid.height)
    try:
        return WarpedVRT(
            ds,
            crs=CRS.from_wkt(grid.crs_wkt),
            transform=transform,
            width=width,
            height=height,
            resampling=grid_resampling(info) if resampling is None else resampling,
            **options,
        )
    except (*GDAL_ERRORS, CRSError) as err:
        raise ChangeInputError(
            f"{info.path}: cannot be warped onto the other date's grid ({one_line(err)})"
        ) from err


def _with_coarse_reads(
    vrt: WarpedVRT, ds: rasterio.io.DatasetReader, info: SceneInfo, grid: TargetGrid, options: dict[str, Any]
) -> CoarseWarpedVRT:
    """``vrt`` answering decimated reads from coarser VRTs of the same options (``coarse_warp.py``);
    palette data keeps nearest neighbour at every resolution (its values are class codes)."""
    palette = grid_resampling(info) == Resampling.nearest

    def coarser(transform: Affine, width: int, height: int, resampling: Resampling) -> WarpedVRT:
        chosen = Resampling.nearest if palette else resampling
        return _open_vrt(ds, info, grid, options, shape=(transform, width, height), resampling=chosen)

    return CoarseWarpedVRT(vrt, coarser)


def _described(vrt: WarpedVRT, info: SceneInfo) -> SceneInfo:
    try:
        return describe_dataset(vrt, info.path, False, info.display_bands)
    except BaseException:
        vrt.close()
        raise


def _warped_vrt(
    ds: rasterio.io.DatasetReader, info: SceneInfo, grid: TargetGrid
) -> tuple[CoarseWarpedVRT, SceneInfo]:
    """The warped VRT and its description, with a validity GDAL reads as a mask (module's doc)."""
    options = _validity_options(info)
    vrt = _open_vrt(ds, info, grid, options)
    described = _described(vrt, info)
    if options.get("add_alpha") and described.mask_kind != "alpha":  # GDAL ignores this alpha band
        vrt.close()
        options = {"nodata": fill_value(info.dtype)}
        vrt = _open_vrt(ds, info, grid, options)
        described = _described(vrt, info)
    return _with_coarse_reads(vrt, ds, info, grid, options), described


def _refuse_other_kind(info: SceneInfo, grid: TargetGrid) -> None:
    if (info.crs_wkt is None) == (grid.crs_wkt is None):
        if info.crs_wkt is None and (info.width, info.height) != (grid.width, grid.height):
            raise ChangeInputError(
                f"{info.path}: {info.width}x{info.height} pixels in pixel mode cannot be read on the "
                f"other date's {grid.width}x{grid.height} pixel grid (pixel mode needs one size)"
            )
        return
    side = "has no CRS" if info.crs_wkt is None else "has a CRS"
    raise ChangeInputError(
        f"{info.path} {side} and the other date does not: both need a CRS, or both pixel mode and one size"
    )


def warped_dataset(
    ds: rasterio.io.DatasetReader, info: SceneInfo, grid: TargetGrid
) -> tuple[rasterio.io.DatasetReader | CoarseWarpedVRT, SceneInfo]:
    """The dataset to read ``info``'s scene on ``grid`` and the :class:`SceneInfo` that describes it.

    ``ds`` itself, placed with the grid's exact transform, when the scene is on the grid already (to a
    millionth of a pixel) or both are in pixel mode; else a ``WarpedVRT`` over ``ds`` (the caller closes
    both), whose decimated reads go through a coarser VRT (``coarse_warp.py``). The info keeps the
    source's path, driver, display bands and user nodata; it takes the grid's CRS, transform and size,
    the VRT's validity kind, blocks and overviews, and ``warped=True``."""
    _refuse_other_kind(info, grid)
    if grid.crs_wkt is None or same_grid(info, grid):  # read as it is, placed exactly on the grid
        transform = as_transform6(grid.transform)
        return ds, info if info.transform == transform else dataclasses.replace(info, transform=transform)
    vrt, described = _warped_vrt(ds, info, grid)
    warped = dataclasses.replace(
        described,
        driver=info.driver,
        nodata=info.nodata if info.nodata_given else described.nodata,
        nodata_given=info.nodata_given,
        mask_kind="nodata" if info.nodata_given else described.mask_kind,
        warped=True,
    )
    return vrt, warped
