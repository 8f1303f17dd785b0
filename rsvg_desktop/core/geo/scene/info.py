"""Describing a scene without reading its pixels: :class:`SceneInfo` (CRS, full affine transform, size,
bands, nodata, ground sample distance, overviews, display bands, where validity comes from)."""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from dataclasses import astuple, dataclass

import rasterio
from rasterio.enums import ColorInterp, MaskFlags
from rasterio.errors import NotGeoreferencedWarning

from rsvg_desktop.core.geo.ground import ground_pixel_size, map_unit_name
from rsvg_desktop.core.geo.scene.gdal_errors import GDAL_ERRORS
from rsvg_desktop.core.geo.transform import Transform6, as_transform6, pixel_size, pixel_to_map
from rsvg_desktop.errors import BandSelectionError, NoCRSError, NotARasterError, UnsupportedRasterError

__all__ = ["MaskKind", "SceneInfo", "describe_dataset"]

logger = logging.getLogger(__name__)

MaskKind = str  # "all_valid" | "nodata" | "per_dataset" | "alpha"


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, slots=True, eq=False)
class SceneInfo:
    """What is known about a scene without reading its pixels. Plain types only: picklable.

    ``transform`` is rasterio's ``(a, b, c, d, e, f)`` (rotated ones included); ``gsd`` is the length of
    one pixel step along a row and down a column in CRS units (for a rotated affine: the lengths of the
    pixel's column and row vectors), in ``gsd_unit`` (the CRS's unit name, e.g. ``metre`` or ``degree``;
    ``None`` in pixel mode); ``gsd_m`` the same steps as ground distances in metres, geodesic at the
    scene's centre whatever the CRS (a Web Mercator "metre" at 37.7° N is 0.79 m on the ground; ``None``
    in pixel mode or when it cannot be measured). ``display_bands`` are 1-based band indices shown as R, G, B.
    ``mask_kind`` says where validity comes from: ``all_valid``, ``nodata`` (the nodata value),
    ``per_dataset`` (an internal/external mask band) or ``alpha``. Equality treats NaN nodata as equal.
    ``nodata_given``: ``nodata`` is the user's (``--nodata``), not the file's: a pixel equal to it in
    every display band is nodata, whatever the file's own nodata or mask says (``mask_kind`` ``nodata``).
    ``warped``: the scene is read through a warp onto another scene's grid (``open_scene(warp_to=...)``):
    CRS, transform, size, blocks and overviews are the grid's, ``path`` and ``driver`` the source file's.
    """

    path: str
    driver: str
    crs_wkt: str | None
    crs_name: str | None
    transform: Transform6
    width: int
    height: int
    count: int
    dtype: str
    nodata: float | None
    gsd: tuple[float, float]
    gsd_m: tuple[float, float] | None
    overviews: tuple[int, ...]
    colorinterp: tuple[str, ...]
    display_bands: tuple[int, int, int]
    pixel_mode: bool
    mask_kind: MaskKind
    block_shape: tuple[int, int]
    gsd_unit: str | None = None
    nodata_given: bool = False
    warped: bool = False

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, SceneInfo):
            return NotImplemented
        return all(_same(a, b) for a, b in zip(astuple(self), astuple(other), strict=True))

    def __hash__(self) -> int:
        values = astuple(self)
        return hash(tuple("nan" if isinstance(v, float) and math.isnan(v) else v for v in values))

    @property
    def shape(self) -> tuple[int, int]:
        """``(height, width)`` in pixels."""
        return (self.height, self.width)

    @property
    def georeferenced(self) -> bool:
        """Whether the scene has a CRS (false in pixel mode)."""
        return self.crs_wkt is not None

    @property
    def bounds(self) -> tuple[float, float, float, float]:
        """``(xmin, ymin, xmax, ymax)`` of the scene's four corners in map units (rotation included)."""
        w, h = self.width, self.height
        xs, ys = pixel_to_map(self.transform, [0, w, w, 0], [0, 0, h, h])
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


def _crs_name(crs: rasterio.crs.CRS) -> str | None:
    try:
        auth = crs.to_authority()
    except GDAL_ERRORS:  # pragma: no cover - exotic CRS
        auth = None
    if auth:
        return f"{auth[0]}:{auth[1]}"
    try:
        import pyproj

        return str(pyproj.CRS.from_wkt(crs.to_wkt()).name)
    except Exception:  # pragma: no cover - pyproj cannot parse what GDAL wrote
        logger.debug("no short name for CRS %s", crs, exc_info=True)
        return None


def _choose_bands(
    path: str, colorinterp: Sequence[ColorInterp], count: int, bands: Sequence[int] | None
) -> tuple[int, int, int]:
    if bands is not None:
        chosen = [int(b) for b in bands]
        if len(chosen) not in (1, 3):
            raise BandSelectionError(f"{path}: give 1 or 3 display bands, got {len(chosen)} ({chosen})")
        bad = [b for b in chosen if not 1 <= b <= count]
        if bad:
            raise BandSelectionError(
                f"{path}: band {bad[0]} does not exist; the raster has {count} band(s), numbered 1 to {count}"
            )
        if len(chosen) == 1:
            chosen *= 3
        return (chosen[0], chosen[1], chosen[2])
    by_interp: dict[ColorInterp, int] = {}
    for i, ci in enumerate(colorinterp, start=1):
        by_interp.setdefault(ci, i)
    if all(c in by_interp for c in (ColorInterp.red, ColorInterp.green, ColorInterp.blue)):
        return (by_interp[ColorInterp.red], by_interp[ColorInterp.green], by_interp[ColorInterp.blue])
    if ColorInterp.gray in by_interp:
        g = by_interp[ColorInterp.gray]
        return (g, g, g)
    usable = [i for i, ci in enumerate(colorinterp, start=1) if ci != ColorInterp.alpha] or [1]
    if len(usable) >= 3:
        return (usable[0], usable[1], usable[2])
    return (usable[0], usable[0], usable[0])


def _mask_kind(ds: rasterio.io.DatasetReader, bands: Sequence[int]) -> MaskKind:
    flags = [set(ds.mask_flag_enums[b - 1]) for b in bands]
    if any(MaskFlags.per_dataset in f for f in flags):
        return "alpha" if any(MaskFlags.alpha in f for f in flags) else "per_dataset"
    if all(MaskFlags.nodata in f for f in flags):
        return "nodata"
    return "all_valid"


def _refuse_unsupported(ds: rasterio.io.DatasetReader, path: str) -> None:
    """Refuse a file without raster bands (a container of subdatasets) and complex-valued data."""
    if ds.count == 0:
        subs = ds.subdatasets
        hint = f"; open one of its {len(subs)} subdatasets, e.g. {subs[0]}" if subs else ""
        raise NotARasterError(f"{path}: the file has no raster bands{hint}")
    complex_bands = [i for i, dt in enumerate(ds.dtypes, start=1) if str(dt).startswith(("c", "complex"))]
    if complex_bands:
        raise UnsupportedRasterError(
            f"{path}: complex-valued data ({ds.dtypes[complex_bands[0] - 1]}, e.g. SAR single-look "
            "complex) is not supported; convert it to amplitude first, e.g. gdal_calc.py -A IN "
            "--calc='numpy.absolute(A)' --type=Float32 --outfile=OUT.tif"
        )


def _crs_and_transform(
    ds: rasterio.io.DatasetReader, path: str, pixel_mode: bool
) -> tuple[rasterio.crs.CRS | None, Transform6]:
    """The dataset's CRS (``None`` when it has none, refused unless ``pixel_mode``) and its affine."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        crs = ds.crs
        transform = as_transform6(ds.transform)
    if crs is not None and not crs.to_wkt():
        crs = None
    if crs is None and not pixel_mode:
        gcps, _gcp_crs = ds.gcps
        hint = (
            " (it is georeferenced by ground control points only: warp it first, e.g. with gdalwarp)"
            if gcps
            else ""
        )
        raise NoCRSError(
            f"{path}: the raster has no coordinate reference system{hint}, so results cannot be placed "
            "on a map; open it in pixel mode (--pixel-mode) to work in the file's "
            "own pixel coordinates"
        )
    return crs, transform


def describe_dataset(
    ds: rasterio.io.DatasetReader, path: str, pixel_mode: bool, bands: Sequence[int] | None
) -> SceneInfo:
    """The :class:`SceneInfo` of an open dataset (``bands``: 1-based display bands, or ``None`` to choose
    them). Raises :class:`NotARasterError`, :class:`UnsupportedRasterError`, :class:`NoCRSError`
    (without a CRS unless ``pixel_mode``) and :class:`BandSelectionError`."""
    _refuse_unsupported(ds, path)
    crs, transform = _crs_and_transform(ds, path, pixel_mode)
    colorinterp = tuple(ds.colorinterp)
    display = _choose_bands(path, colorinterp, ds.count, bands)
    gsd = pixel_size(transform)
    nodata = ds.nodatavals[display[0] - 1]
    block_h, block_w = ds.block_shapes[0]
    return SceneInfo(
        path=path,
        driver=str(ds.driver),
        crs_wkt=crs.to_wkt() if crs is not None else None,
        crs_name=_crs_name(crs) if crs is not None else None,
        transform=transform,
        width=int(ds.width),
        height=int(ds.height),
        count=int(ds.count),
        dtype=str(ds.dtypes[display[0] - 1]),
        nodata=None if nodata is None else float(nodata),
        gsd=gsd,
        gsd_m=None if crs is None else ground_pixel_size(crs.to_wkt(), transform, ds.width, ds.height),
        overviews=tuple(int(f) for f in ds.overviews(display[0])),
        colorinterp=tuple(ci.name for ci in colorinterp),
        display_bands=display,
        pixel_mode=crs is None,
        mask_kind=_mask_kind(ds, display),
        block_shape=(int(block_h), int(block_w)),
        gsd_unit=None if crs is None else map_unit_name(crs.to_wkt()),
    )
