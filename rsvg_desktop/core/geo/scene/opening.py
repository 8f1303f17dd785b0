"""Opening a scene: refuse what is not a readable file, open it with GDAL (through rasterio), describe it
and hand it to a :class:`Scene` for windowed reads. Opening reads no pixels."""

from __future__ import annotations

import dataclasses
import errno
import logging
import math
import os
import stat
import warnings
from collections.abc import Sequence
from typing import TYPE_CHECKING

import numpy as np
import rasterio
from rasterio.errors import CRSError, NotGeoreferencedWarning

from rsvg_desktop.core.geo.scene.gdal_errors import GDAL_ERRORS, one_line, route_gdal_messages
from rsvg_desktop.core.geo.scene.info import SceneInfo, describe_dataset
from rsvg_desktop.core.geo.scene.reading import Scene
from rsvg_desktop.core.geo.scene.warping import warped_dataset
from rsvg_desktop.core.geo.stretch import DEFAULT_PERCENTILES, Stretch
from rsvg_desktop.errors import ConfigError, NotARasterError, SceneNotFoundError

if TYPE_CHECKING:  # the change package imports the scene package, not the other way round
    from rsvg_desktop.core.geo.change.types import TargetGrid

__all__ = ["check_input_file", "open_scene"]

logger = logging.getLogger(__name__)


def _as_str_path(path: str | os.PathLike[str]) -> str:
    return os.fspath(path)


def _is_local(path: str) -> bool:
    return "://" not in path and not path.startswith("/vsi")


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


def _with_given_nodata(info: SceneInfo, nodata: float) -> SceneInfo:
    """``info`` with the user's nodata value in place of the file's validity."""
    value = float(nodata)
    if math.isinf(value):
        raise ConfigError(f"--nodata must be a finite number or nan, got {nodata!r}")
    if math.isnan(value) and np.dtype(info.dtype).kind != "f":
        raise ConfigError(
            f"{info.path}: --nodata nan needs floating-point data, the scene holds {info.dtype}"
        )
    return dataclasses.replace(info, nodata=value, mask_kind="nodata", nodata_given=True)


def open_scene(
    path: str | os.PathLike[str],
    *,
    pixel_mode: bool = False,
    bands: Sequence[int] | None = None,
    stretch: Stretch | None = None,
    percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
    nodata: float | None = None,
    warp_to: TargetGrid | None = None,
) -> Scene:
    """Open a raster for windowed reading; use it as a context manager (``with open_scene(p) as s:``).

    ``pixel_mode`` allows a raster without CRS (see the doc of ``rsvg_desktop.core.geo.scene``);
    ``bands`` overrides the display bands (1 or 3 one-based indices); ``stretch`` fixes the 8-bit mapping
    (e.g. one recorded by an earlier run) instead of computing it from ``percentiles`` on first use.
    ``nodata`` (``--nodata``) overrides the file's validity: a pixel equal to it in every display band
    is nodata (skipped tiles, padding colour, the stretch); the file's own nodata and mask are then not
    used. ``warp_to`` reads the scene on another grid (the other date's, to compare two dates) through a
    warped VRT made on the fly (``warping.py``; nothing is written): the scene's info then describes the
    grid (size, transform, CRS, ``warped=True``) and still names ``path``; pixels the source does not
    cover are invalid. A scene already on the grid is read as it is. Opening reads no pixels.

    Raises :class:`SceneNotFoundError` (a :class:`NotARasterError` and ``FileNotFoundError``) for a
    missing file, :class:`NotARasterError` for anything GDAL cannot open as a raster,
    :class:`NoCRSError`, :class:`BandSelectionError`, :class:`ConfigError` for bad percentiles, and
    :class:`ChangeInputError` when ``warp_to`` has a CRS and the scene none (or the other way round), or
    both are in pixel mode with different sizes.
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
    except GDAL_ERRORS as err:
        raise NotARasterError(f"{p}: not a raster GDAL can read ({one_line(err)})") from err
    try:
        info = describe_dataset(ds, p, pixel_mode, bands)
    except (*GDAL_ERRORS, CRSError) as err:  # e.g. a CRS GDAL cannot express as WKT
        ds.close()
        raise NotARasterError(f"{p}: GDAL cannot describe the raster ({one_line(err)})") from err
    except BaseException:
        ds.close()
        raise
    if nodata is not None:
        info = _with_given_nodata(info, nodata)
    source = None
    if warp_to is not None:
        try:
            reader, info = warped_dataset(ds, info, warp_to)
        except BaseException:
            ds.close()
            raise
        if reader is not ds:
            source, ds = ds, reader
    logger.debug(
        "opened %s%s: %dx%d, %d band(s) %s, %s, display bands %s, mask %s",
        p,
        " (warped)" if info.warped else "",
        info.width,
        info.height,
        info.count,
        info.dtype,
        info.crs_name or "pixel mode",
        info.display_bands,
        info.mask_kind,
    )
    return Scene(ds, info, stretch=stretch, percentiles=percentiles, source=source)
