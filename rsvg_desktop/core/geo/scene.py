"""Open a georeferenced scene and read it in windows: tiles for the model, a preview for the map.

``open_scene(path)`` opens any raster GDAL reads (through rasterio) and returns a :class:`Scene`, a
context manager that keeps the dataset open for windowed reads. Its :class:`SceneInfo` is a small frozen,
picklable description (CRS, full affine transform, size, bands, nodata, ground sample distance,
overviews...). Pixels are only read on demand, one window at a time, so memory stays flat however large
the scene is.

Images produced here are always ``(h, w, 3)`` uint8 RGB plus an ``(h, w)`` bool *valid* mask:

* display bands: red/green/blue from the colour interpretation; a grey band is replicated; otherwise the
  first three non-alpha bands (or the first band, replicated); overridable with 1-based ``bands``;
* 8-bit data passes through unchanged; other types get one scene-wide linear stretch (2–98 %
  percentiles of a decimated sample, nodata ignored), never a per-tile one (see ``stretch.py``);
* validity follows GDAL's mask semantics (RFC 15): an internal mask band or alpha band, else the nodata
  value, and NaN is always invalid in float data; with a nodata value a pixel is valid when *any* display
  band is valid (rasterio's ``dataset_mask`` rule). Invalid pixels are painted :data:`FILL_RGB`.

Scenes without a CRS are refused with :class:`NoCRSError` unless ``pixel_mode=True``: the scene then keeps
the file's own geotransform (the identity when it has none, so coordinates are plain pixel coordinates)
and reports ``crs_wkt=None``. ``pixel_mode`` is a permission, not an override: a scene *with* a CRS keeps it.

A ``Scene`` wraps one rasterio dataset and is not thread-safe: use one per thread or process (pickle the
``SceneInfo`` and reopen with ``open_scene(info.path, ...)``).
"""

from __future__ import annotations

import errno
import logging
import math
import os
import stat
import threading
import warnings
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import astuple, dataclass, field
from typing import NamedTuple

import numpy as np
import rasterio
from rasterio.enums import ColorInterp, MaskFlags, Resampling
from rasterio.errors import CRSError, NotGeoreferencedWarning, RasterioError
from rasterio.windows import Window

from rsvg_desktop.core.geo.stretch import (
    DEFAULT_PERCENTILES,
    FILL_RGB,
    Stretch,
    compute_stretch,
    render_rgb,
)
from rsvg_desktop.core.geo.transform import (
    Transform6,
    as_transform6,
    pixel_size,
    pixel_to_map,
    scale_transform,
)
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import (
    BandSelectionError,
    ConfigError,
    EmptySceneError,
    NoCRSError,
    NotARasterError,
    RasterReadError,
    SceneNotFoundError,
    UnsupportedRasterError,
)

try:  # GDAL errors that rasterio does not translate derive from this private base class
    from rasterio._err import CPLE_BaseError
except ImportError:  # pragma: no cover - layout of a future rasterio
    CPLE_BaseError = RasterioError

__all__ = [
    "FILL_RGB",
    "CoarseValidity",
    "Preview",
    "Scene",
    "SceneInfo",
    "check_input_file",
    "open_scene",
    "route_gdal_messages",
]

logger = logging.getLogger(__name__)

_GDAL_ERRORS = (RasterioError, CPLE_BaseError)

#: Long side of the decimated sample the scene-wide stretch is computed from.
STRETCH_SAMPLE_SIZE = 1024

MaskKind = str  # "all_valid" | "nodata" | "per_dataset" | "alpha"


def _one_line(err: BaseException) -> str:
    return " ".join(str(err).split()) or type(err).__name__


def _same(a: object, b: object) -> bool:
    return a == b or (isinstance(a, float) and isinstance(b, float) and math.isnan(a) and math.isnan(b))


@dataclass(frozen=True, slots=True, eq=False)
class SceneInfo:
    """What is known about a scene without reading its pixels. Plain types only: picklable.

    ``transform`` is rasterio's ``(a, b, c, d, e, f)`` (rotated ones included); ``gsd`` is the length of
    one pixel step along a row and down a column in CRS units (for a rotated affine: the lengths of the
    pixel's column and row vectors); ``gsd_m`` the same in metres (linear units converted for projected
    CRSs, nominal as in the CRS, e.g. Web Mercator metres; geodesic at the scene centre for geographic
    CRSs; ``None`` in pixel mode). ``display_bands`` are 1-based band indices shown as R, G, B.
    ``mask_kind`` says where validity comes from: ``all_valid``, ``nodata`` (the nodata value),
    ``per_dataset`` (an internal/external mask band) or ``alpha``. Equality treats NaN nodata as equal.
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


class Preview(NamedTuple):
    """A decimated view of the whole scene: ``image`` ``(h, w, 3)`` uint8, ``valid`` ``(h, w)`` bool and
    the ``transform`` (6-tuple) that places the preview's pixels on the map."""

    image: np.ndarray
    valid: np.ndarray
    transform: Transform6


@dataclass(frozen=True, slots=True, eq=False)
class CoarseValidity:
    """A decimated validity map of the whole scene, read once for tile planning.

    ``valid[i, j]`` is true when the cell holds at least one valid pixel (GDAL's averaged mask read
    keeps a cell when any pixel in it is valid; read through an overview, features smaller than the
    overview's pixels may be lost, so a false cell is only a hint: see ``grid.plan_tiles``).
    Cell ``(i, j)`` covers scene pixels ``[j*cell_width, (j+1)*cell_width) × [i*cell_height,
    (i+1)*cell_height)`` (fractional bounds).
    """

    valid: np.ndarray = field(repr=False)
    cell_width: float
    cell_height: float


def _band_valid(band: np.ndarray, nodata: float | None) -> np.ndarray:
    """Pixels of one band that are not the nodata value (NaN is never valid in float data)."""
    is_float = band.dtype.kind == "f"
    valid = np.isfinite(band) if is_float else np.ones(band.shape, dtype=bool)
    if nodata is None or (is_float and math.isnan(nodata)):
        return valid
    if not is_float:
        limits = np.iinfo(band.dtype)
        if not (limits.min <= nodata <= limits.max and float(nodata).is_integer()):
            return valid  # a nodata value the type cannot hold matches no pixel
    valid &= band != band.dtype.type(nodata)
    return valid


def _as_str_path(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("/vsi")


_thread_env = threading.local()


def route_gdal_messages() -> None:
    """Send GDAL's (and libtiff's) warnings from this thread to Python logging (logger
    ``rasterio._env``) instead of GDAL's default printing to stderr. GDAL error handlers are per
    thread, and rasterio only installs its logging handler inside a ``rasterio.Env``: this enters one
    for the rest of the thread's life when none is active. Cheap; called before every read."""
    if getattr(_thread_env, "env", None) is None and not rasterio.env.hasenv():
        env = rasterio.Env()
        env.__enter__()
        _thread_env.env = env


def check_input_file(path: str | os.PathLike[str], what: str = "raster file") -> None:
    """Refuse, in one line naming ``path``, what cannot be read as a file: a missing file, a dangling
    symbolic link or a link loop, a folder, and any non-regular file (a FIFO, a device, a socket: GDAL
    would block on a FIFO forever)."""
    p = os.fspath(path)
    try:
        st = os.stat(p)
    except FileNotFoundError:
        if os.path.islink(p):
            raise SceneNotFoundError(
                f"{p}: a symbolic link to {os.readlink(p)}, which does not exist (dangling link)"
            ) from None
        raise SceneNotFoundError(f"{p}: no such file") from None
    except OSError as err:
        if err.errno == errno.ELOOP:
            raise NotARasterError(f"{p}: a loop of symbolic links, not a {what}") from None
        raise NotARasterError(f"{p}: cannot be read ({err.strerror or err})") from None
    if stat.S_ISDIR(st.st_mode):
        raise NotARasterError(f"{p}: is a directory, not a {what}")
    if not stat.S_ISREG(st.st_mode):
        kind = (
            "a FIFO (named pipe)"
            if stat.S_ISFIFO(st.st_mode)
            else "a socket"
            if stat.S_ISSOCK(st.st_mode)
            else "a device"
            if stat.S_ISCHR(st.st_mode) or stat.S_ISBLK(st.st_mode)
            else "not a regular file"
        )
        raise NotARasterError(f"{p}: is {kind}, not a {what}: only regular files are read")


def _crs_name(crs: rasterio.crs.CRS) -> str | None:
    try:
        auth = crs.to_authority()
    except _GDAL_ERRORS:  # pragma: no cover - exotic CRS
        auth = None
    if auth:
        return f"{auth[0]}:{auth[1]}"
    try:
        import pyproj

        return str(pyproj.CRS.from_wkt(crs.to_wkt()).name)
    except Exception:  # pragma: no cover - pyproj cannot parse what GDAL wrote
        logger.debug("no short name for CRS %s", crs, exc_info=True)
        return None


def _ground_gsd(
    crs: rasterio.crs.CRS, transform: Transform6, width: int, height: int, gsd: tuple[float, float]
) -> tuple[float, float] | None:
    """GSD in metres: linear units converted for projected CRSs, geodesic at the centre otherwise."""
    try:
        if crs.is_projected:
            _unit, factor = crs.linear_units_factor
            return (gsd[0] * factor, gsd[1] * factor)
        if crs.is_geographic:
            import pyproj

            geod = pyproj.CRS.from_wkt(crs.to_wkt()).get_geod()
            if geod is None:  # pragma: no cover
                return None
            cx, cy = width / 2.0, height / 2.0
            xs, ys = pixel_to_map(transform, [cx, cx + 1.0, cx], [cy, cy, cy + 1.0])
            _f, _b, dist_x = geod.inv(xs[0], ys[0], xs[1], ys[1])
            _f, _b, dist_y = geod.inv(xs[0], ys[0], xs[2], ys[2])
            return (float(dist_x), float(dist_y))
    except Exception:  # pragma: no cover - unusual CRS: GSD in metres is a convenience only
        logger.debug("cannot compute the GSD in metres for %s", crs, exc_info=True)
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


def _describe(
    ds: rasterio.io.DatasetReader, path: str, pixel_mode: bool, bands: Sequence[int] | None
) -> SceneInfo:
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
            "on a map; open it in pixel mode (--pixel-mode, or pixel_mode=True) to work in the file's "
            "own pixel coordinates"
        )
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
        gsd_m=_ground_gsd(crs, transform, ds.width, ds.height, gsd) if crs is not None else None,
        overviews=tuple(int(f) for f in ds.overviews(display[0])),
        colorinterp=tuple(ci.name for ci in colorinterp),
        display_bands=display,
        pixel_mode=crs is None,
        mask_kind=_mask_kind(ds, display),
        block_shape=(int(block_h), int(block_w)),
    )


def open_scene(
    path: str | os.PathLike[str],
    *,
    pixel_mode: bool = False,
    bands: Sequence[int] | None = None,
    stretch: Stretch | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
) -> Scene:
    """Open a raster for windowed reading; use it as a context manager (``with open_scene(p) as s:``).

    ``pixel_mode`` allows a raster without CRS (see module doc); ``bands`` overrides the display bands
    (1 or 3 one-based indices); ``stretch`` fixes the 8-bit mapping (e.g. one recorded by an earlier run)
    instead of computing it from ``percentiles`` on first use. Opening reads no pixels.

    Raises :class:`SceneNotFoundError` (a :class:`NotARasterError` and ``FileNotFoundError``) for a
    missing file, :class:`NotARasterError` for anything GDAL cannot open as a raster,
    :class:`NoCRSError`, :class:`BandSelectionError`, and :class:`ConfigError` for bad percentiles.
    """
    route_gdal_messages()
    p = _as_str_path(path)
    p_lo, p_hi = percentiles
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise ConfigError(f"stretch percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    if _is_local(p):
        check_input_file(p)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", NotGeoreferencedWarning)
            ds = rasterio.open(p)
    except _GDAL_ERRORS as err:
        raise NotARasterError(f"{p}: not a raster GDAL can read ({_one_line(err)})") from err
    try:
        info = _describe(ds, p, pixel_mode, bands)
    except (*_GDAL_ERRORS, CRSError) as err:  # e.g. a CRS GDAL cannot express as WKT
        ds.close()
        raise NotARasterError(f"{p}: GDAL cannot describe the raster ({_one_line(err)})") from err
    except BaseException:
        ds.close()
        raise
    logger.debug(
        "opened %s: %dx%d, %d band(s) %s, %s, display bands %s, mask %s",
        p,
        info.width,
        info.height,
        info.count,
        info.dtype,
        info.crs_name or "pixel mode",
        info.display_bands,
        info.mask_kind,
    )
    return Scene(ds, info, stretch=stretch, percentiles=percentiles)


class Scene:
    """An open scene: its :class:`SceneInfo` and windowed reads of 8-bit RGB images with validity masks.

    Create it with :func:`open_scene`; close it (or use ``with``) to release the file.
    """

    def __init__(
        self,
        dataset: rasterio.io.DatasetReader,
        info: SceneInfo,
        *,
        stretch: Stretch | None = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    ) -> None:
        self._ds = dataset
        self.info = info
        self._percentiles = percentiles
        self._stretch = stretch
        self._stretch_ready = stretch is not None or np.dtype(info.dtype) == np.uint8
        self._luts: list[np.ndarray | None] | None = None
        # Bands to read (each once) and, for each display channel, its index in the read array.
        self._read_bands: list[int] = list(dict.fromkeys(info.display_bands))
        self._channels: tuple[int, int, int] = tuple(  # type: ignore[assignment]
            self._read_bands.index(b) for b in info.display_bands
        )
        self._nodatas = [dataset.nodatavals[b - 1] for b in self._read_bands]

    # --- lifetime ---------------------------------------------------------------------------------
    @property
    def path(self) -> str:
        return self.info.path

    @property
    def closed(self) -> bool:
        return bool(self._ds.closed)

    def close(self) -> None:
        """Release the dataset (idempotent)."""
        self._ds.close()

    def __enter__(self) -> Scene:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self.closed else "open"
        return f"<Scene {self.info.path!r} {self.info.width}x{self.info.height} {state}>"

    def _check_open(self) -> None:
        if self._ds.closed:
            raise ValueError(f"{self.info.path}: the scene is closed")

    @contextmanager
    def _reading(self, window: tuple[int, int, int, int], what: str = "pixels") -> Iterator[None]:
        route_gdal_messages()  # reads may run in read-ahead threads
        try:
            yield
        except _GDAL_ERRORS as err:
            col_off, row_off, width, height = window
            error = RasterReadError(
                f"{self.info.path}: reading {what} failed in window (col_off={col_off}, row_off={row_off}, "
                f"width={width}, height={height}): {err}"
            )
            error.path = self.info.path  # type: ignore[attr-defined]
            error.window = window  # type: ignore[attr-defined]
            raise error from err

    # --- stretch ----------------------------------------------------------------------------------
    @property
    def stretch(self) -> Stretch | None:
        """The scene-wide 8-bit mapping; ``None`` for 8-bit data (passed through unchanged).

        Computed once, on first use, from a decimated sample (long side ``STRETCH_SAMPLE_SIZE``, through
        overviews when the file has them), nodata and NaN ignored. Raises :class:`EmptySceneError` when the
        sample holds no valid pixel.
        """
        if not self._stretch_ready:
            self._stretch = self._compute_stretch()
            self._stretch_ready = True
        return self._stretch

    def _compute_stretch(self) -> Stretch:
        self._check_open()
        info = self.info
        scale = max(info.width, info.height) / STRETCH_SAMPLE_SIZE
        out_w, out_h = (
            (max(1, round(info.width / scale)), max(1, round(info.height / scale)))
            if scale > 1
            else (info.width, info.height)
        )
        full = (0, 0, info.width, info.height)
        for resampling in (Resampling.nearest, Resampling.average):
            raw, valid = self._read_raw(full, (out_w, out_h), resampling, what="the stretch sample")
            if valid is None or valid.any():
                break
            if (out_w, out_h) == (info.width, info.height):
                break
        if valid is not None and not valid.any():
            raise EmptySceneError(
                f"{info.path}: the scene has no valid pixels (every pixel is nodata or masked); "
                "there is nothing to show or to send to the model"
            )
        samples = [raw[c][valid] if valid is not None else raw[c].ravel() for c in self._channels]
        try:
            stretch = compute_stretch(samples, self._percentiles)
        except ValueError as err:  # e.g. every valid float is NaN/inf in one channel
            raise EmptySceneError(f"{info.path}: no finite values to compute a display stretch from") from err
        logger.info(
            "%s: %g-%g %% stretch, low %s, high %s (from a %dx%d sample)",
            info.path,
            *self._percentiles,
            stretch.low,
            stretch.high,
            out_w,
            out_h,
        )
        return stretch

    # --- reading ----------------------------------------------------------------------------------
    def _valid_from(
        self, raw: np.ndarray | None, window: Window, out_shape: tuple[int, int], resampling: Resampling
    ) -> np.ndarray | None:
        """Validity of a read (``None`` = all valid). ``raw`` holds the read bands (None: mask only)."""
        kind = self.info.mask_kind
        if kind in ("per_dataset", "alpha"):
            mask = self._ds.read_masks(
                self._read_bands[0], window=window, out_shape=out_shape, resampling=resampling
            )
            valid = mask > 0
            if raw is not None and raw.dtype.kind == "f":
                valid &= np.isfinite(raw).any(axis=0)
            return valid
        if raw is None:
            raise AssertionError("nodata validity needs the pixel values")  # pragma: no cover
        if kind == "nodata":
            valid = np.zeros(out_shape, dtype=bool)
            for band, nodata in zip(raw, self._nodatas, strict=True):
                valid |= _band_valid(band, nodata)
            return valid
        if raw.dtype.kind == "f":
            return np.isfinite(raw).any(axis=0)
        return None

    def _read_raw(
        self,
        window: tuple[int, int, int, int],
        out_size: tuple[int, int],
        resampling: Resampling,
        what: str = "pixels",
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Raw display-band data ``(n, out_h, out_w)`` and validity of a window that may pass the edge.

        The part of the window inside the scene is read (resampled to its share of ``out_size``); the
        rest is padding: zeros and invalid. The data is a band-first *view* of a pixel-interleaved
        ``(out_h, out_w, n)`` buffer: GDAL writes straight into it, and 8-bit RGB needs no transposing copy.
        """
        self._check_open()
        info = self.info
        col_off, row_off, width, height = window
        out_w, out_h = out_size
        c0, r0 = max(col_off, 0), max(row_off, 0)
        c1, r1 = min(col_off + width, info.width), min(row_off + height, info.height)
        dtype = np.dtype(info.dtype)
        inside = c0 == col_off and r0 == row_off and c1 == col_off + width and r1 == row_off + height
        with self._reading(window, what):
            if inside:
                win = Window(col_off, row_off, width, height)
                raw = np.moveaxis(np.empty((out_h, out_w, len(self._read_bands)), dtype=dtype), -1, 0)
                self._ds.read(self._read_bands, window=win, out=raw, resampling=resampling)
                return raw, self._valid_from(raw, win, (out_h, out_w), resampling)
            raw = np.moveaxis(np.zeros((out_h, out_w, len(self._read_bands)), dtype=dtype), -1, 0)
            valid = np.zeros((out_h, out_w), dtype=bool)
            if c1 <= c0 or r1 <= r0:
                return raw, valid
            sx, sy = out_w / width, out_h / height
            dx0, dx1 = round((c0 - col_off) * sx), round((c1 - col_off) * sx)
            dy0, dy1 = round((r0 - row_off) * sy), round((r1 - row_off) * sy)
            if dx1 <= dx0 or dy1 <= dy0:
                return raw, valid
            win = Window(c0, r0, c1 - c0, r1 - r0)
            part = self._ds.read(
                self._read_bands,
                window=win,
                resampling=resampling,
                out_shape=(len(self._read_bands), dy1 - dy0, dx1 - dx0),
            )
            raw[:, dy0:dy1, dx0:dx1] = part
            part_valid = self._valid_from(part, win, (dy1 - dy0, dx1 - dx0), resampling)
            valid[dy0:dy1, dx0:dx1] = True if part_valid is None else part_valid
            return raw, valid

    def _render(self, raw: np.ndarray, valid: np.ndarray | None) -> np.ndarray:
        stretch = self.stretch
        if stretch is not None and self._luts is None:
            self._luts = [stretch.lut(i, raw.dtype) for i in range(3)]
        return render_rgb(raw, self._channels, valid, stretch, luts=self._luts, reuse=True)

    def read_window(
        self,
        window: tuple[int, int, int, int],
        out_size: tuple[int, int] | None = None,
        *,
        resampling: Resampling | None = None,
    ) -> tuple[np.ndarray, np.ndarray]:
        """8-bit RGB image ``(out_h, out_w, 3)`` and valid mask of a pixel window ``(col_off, row_off,
        width, height)``, resampled to ``out_size = (out_w, out_h)`` (default: the window's size).

        The window may reach past the scene's edge (the outside is padding: invalid, :data:`FILL_RGB`).
        Default resampling: none at native size, ``average`` when shrinking, ``bilinear`` when enlarging.
        Raises :class:`RasterReadError` naming the file and the window.
        """
        col_off, row_off, width, height = (int(v) for v in window)
        if width <= 0 or height <= 0:
            raise ValueError(f"window {window} is empty")
        out_w, out_h = (width, height) if out_size is None else (int(out_size[0]), int(out_size[1]))
        if resampling is None:
            if (out_w, out_h) == (width, height):
                resampling = Resampling.nearest
            elif out_w < width or out_h < height:
                resampling = Resampling.average
            else:
                resampling = Resampling.bilinear
        _ = self.stretch  # compute (or fail with EmptySceneError) before reading the window
        raw, valid = self._read_raw((col_off, row_off, width, height), (out_w, out_h), resampling)
        image = self._render(raw, valid)
        return image, (np.ones((out_h, out_w), dtype=bool) if valid is None else valid)

    def read_tile(self, tile: Tile, *, resampling: Resampling | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The model's image of a tile: ``(tile.size, tile.size, 3)`` uint8 and its ``(size, size)`` valid
        mask, read from the tile's window (resampled when the window is not ``size`` pixels wide)."""
        return self.read_window(tile.window, (tile.size, tile.size), resampling=resampling)

    def preview(self, max_size: int = 1024, *, resampling: Resampling = Resampling.average) -> Preview:
        """The whole scene decimated so its long side is at most ``max_size`` pixels, read through the
        file's overviews when it has them (GDAL picks the overview for the decimated read), with the same
        scene-wide stretch as the tiles, its valid mask, and the transform of the preview's pixels."""
        if max_size < 1:
            raise ValueError(f"max_size must be positive, got {max_size}")
        info = self.info
        scale = max(info.width, info.height) / max_size
        if scale <= 1:
            out_w, out_h = info.width, info.height
        else:
            out_w, out_h = max(1, round(info.width / scale)), max(1, round(info.height / scale))
        image, valid = self.read_window(
            (0, 0, info.width, info.height),
            (out_w, out_h),
            resampling=resampling if scale > 1 else Resampling.nearest,
        )
        transform = scale_transform(info.transform, info.width / out_w, info.height / out_h)
        return Preview(image, valid, transform)

    def window_has_valid(self, window: tuple[int, int, int, int]) -> bool:
        """Whether a pixel window holds at least one valid pixel, checked at full resolution.

        Reads only the mask band when the scene has one, else the display bands (nodata value, NaN).
        Used by the planner for the few tiles the coarse validity cannot decide.
        """
        self._check_open()
        info = self.info
        col_off, row_off, width, height = (int(v) for v in window)
        c0, r0 = max(col_off, 0), max(row_off, 0)
        c1, r1 = min(col_off + width, info.width), min(row_off + height, info.height)
        if c1 <= c0 or r1 <= r0:
            return False
        win = Window(c0, r0, c1 - c0, r1 - r0)
        shape = (r1 - r0, c1 - c0)
        kind = info.mask_kind
        if kind == "all_valid" and np.dtype(info.dtype).kind != "f":
            return True
        with self._reading((col_off, row_off, width, height), "the validity mask"):
            if kind in ("per_dataset", "alpha"):
                valid = self._valid_from(None, win, shape, Resampling.nearest)
            else:
                raw = self._ds.read(self._read_bands, window=win)
                valid = self._valid_from(raw, win, shape, Resampling.nearest)
        return True if valid is None else bool(valid.any())

    def coarse_validity(self, factor: int = 8, max_side: int = 2048) -> CoarseValidity:
        """Read the scene's validity once at ``1/factor`` resolution (coarser if the long side would pass
        ``max_side`` cells): a cell is valid when any of its pixels is. Used to skip nodata tiles without
        reading them. Integer scenes without mask or nodata are all valid: nothing is read."""
        self._check_open()
        info = self.info
        factor = max(1, int(factor), math.ceil(max(info.width, info.height) / max_side))
        out_w, out_h = math.ceil(info.width / factor), math.ceil(info.height / factor)
        cell_w, cell_h = info.width / out_w, info.height / out_h
        full = (0, 0, info.width, info.height)
        win = Window(0, 0, info.width, info.height)
        kind = info.mask_kind
        what = f"the validity mask (decimated to {out_w}x{out_h})"
        valid: np.ndarray | None
        if kind == "all_valid" and np.dtype(info.dtype).kind != "f":
            valid = np.ones((out_h, out_w), dtype=bool)
        elif kind in ("per_dataset", "alpha"):
            with self._reading(full, what):
                valid = self._valid_from(None, win, (out_h, out_w), Resampling.average)
            assert valid is not None
        elif kind == "nodata":
            # GDAL's averaging skips nodata: a cell is nodata only when all its pixels are. Band by band.
            valid = np.zeros((out_h, out_w), dtype=bool)
            with self._reading(full, what):
                for band, nodata in zip(self._read_bands, self._nodatas, strict=True):
                    data = self._ds.read(
                        band, window=win, out_shape=(out_h, out_w), resampling=Resampling.average
                    )
                    valid |= _band_valid(data, nodata)
        else:  # float without nodata: NaN would spread through averages, so never skip anything
            valid = np.ones((out_h, out_w), dtype=bool)
        return CoarseValidity(valid, cell_w, cell_h)
