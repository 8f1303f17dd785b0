"""Validity masks: which pixels of a scene hold data, following GDAL's mask semantics (RFC 15).

An internal mask band or alpha band, else the nodata value, and NaN is always invalid in float data;
with a nodata value a pixel is valid when *any* display band is valid (rasterio's ``dataset_mask``
rule). :class:`ValidityReader` gives the validity of a read, of a window at full resolution and of the
whole scene decimated (:class:`CoarseValidity`, for tile planning).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from rsvg_desktop.core.geo.scene.gdal_errors import reading_errors
from rsvg_desktop.core.geo.scene.info import SceneInfo

__all__ = ["CoarseValidity", "ValidityReader", "band_valid"]


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


def band_valid(band: np.ndarray, nodata: float | None) -> np.ndarray:
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


class ValidityReader:
    """The validity of an open dataset's display bands ``read_bands`` (each once, 1-based), by the
    scene's ``info.mask_kind``. Does not check that the dataset is open: its :class:`Scene` does."""

    def __init__(
        self, dataset: rasterio.io.DatasetReader, info: SceneInfo, read_bands: Sequence[int]
    ) -> None:
        self._ds = dataset
        self.info = info
        self._read_bands = list(read_bands)
        self._nodatas = (
            [info.nodata] * len(self._read_bands)
            if info.nodata_given
            else [dataset.nodatavals[b - 1] for b in self._read_bands]
        )

    def of_read(
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
                valid |= band_valid(band, nodata)
            return valid
        if raw.dtype.kind == "f":
            return np.isfinite(raw).any(axis=0)
        return None

    def window_has_valid(self, window: tuple[int, int, int, int]) -> bool:
        """Whether a pixel window holds at least one valid pixel, checked at full resolution (the mask
        band only when the scene has one, else the display bands)."""
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
        with reading_errors(info.path, (col_off, row_off, width, height), "the validity mask"):
            if kind in ("per_dataset", "alpha"):
                valid = self.of_read(None, win, shape, Resampling.nearest)
            else:
                raw = self._ds.read(self._read_bands, window=win)
                valid = self.of_read(raw, win, shape, Resampling.nearest)
        return True if valid is None else bool(valid.any())

    def coarse(self, factor: int, max_side: int) -> CoarseValidity:
        """The scene's validity at ``1/factor`` resolution (coarser if the long side would pass
        ``max_side`` cells): a cell is valid when any of its pixels is."""
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
            with reading_errors(info.path, full, what):
                valid = self.of_read(None, win, (out_h, out_w), Resampling.average)
            assert valid is not None
        elif kind == "nodata":
            # GDAL's averaging skips nodata: a cell is nodata only when all its pixels are. Band by band.
            valid = np.zeros((out_h, out_w), dtype=bool)
            with reading_errors(info.path, full, what):
                for band, nodata in zip(self._read_bands, self._nodatas, strict=True):
                    data = self._ds.read(
                        band, window=win, out_shape=(out_h, out_w), resampling=Resampling.average
                    )
                    valid |= band_valid(data, nodata)
        else:  # float without nodata: NaN would spread through averages, so never skip anything
            valid = np.ones((out_h, out_w), dtype=bool)
        return CoarseValidity(valid, cell_w, cell_h)
