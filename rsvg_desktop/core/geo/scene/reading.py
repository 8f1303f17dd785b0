"""Windowed reading of an open scene: :class:`Scene` gives tiles for the model and a preview for the map.

Images are always ``(h, w, 3)`` uint8 RGB plus an ``(h, w)`` bool *valid* mask (``validity.py``);
8-bit data passes through unchanged, other types get one scene-wide stretch computed on first use from
a decimated sample (``stretch.py``). Pixels are only read on demand, one window at a time.
"""

from __future__ import annotations

import logging
from typing import NamedTuple

import numpy as np
import rasterio
from rasterio.enums import Resampling
from rasterio.windows import Window

from rsvg_desktop.core.geo.scene.gdal_errors import reading_errors
from rsvg_desktop.core.geo.scene.info import SceneInfo
from rsvg_desktop.core.geo.scene.validity import CoarseValidity, ValidityReader
from rsvg_desktop.core.geo.stretch import DEFAULT_PERCENTILES, Stretch, compute_stretch, render_rgb
from rsvg_desktop.core.geo.transform import Transform6, scale_transform
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import EmptySceneError

__all__ = ["STRETCH_SAMPLE_SIZE", "Preview", "Scene"]

logger = logging.getLogger(__name__)

#: Long side of the decimated sample the scene-wide stretch is computed from.
STRETCH_SAMPLE_SIZE = 1024


class Preview(NamedTuple):
    """A decimated view of the whole scene: ``image`` ``(h, w, 3)`` uint8, ``valid`` ``(h, w)`` bool and
    the ``transform`` (6-tuple) that places the preview's pixels on the map."""

    image: np.ndarray
    valid: np.ndarray
    transform: Transform6


class Scene:
    """An open scene: its :class:`SceneInfo` and windowed reads of 8-bit RGB images with validity masks.

    Create it with :func:`open_scene`; close it (or use ``with``) to release the file. ``source`` is the
    file's dataset behind a warped ``dataset`` (``open_scene(warp_to=...)``), closed with it.
    """

    def __init__(
        self,
        dataset: rasterio.io.DatasetReader,
        info: SceneInfo,
        *,
        stretch: Stretch | None = None,
        percentiles: tuple[float, float] = DEFAULT_PERCENTILES,
        source: rasterio.io.DatasetReader | None = None,
    ) -> None:
        self._ds = dataset
        self._source = source
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
        self._validity = ValidityReader(dataset, info, self._read_bands)

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
        if self._source is not None:
            self._source.close()

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
        with reading_errors(info.path, window, what):
            if inside:
                win = Window(col_off, row_off, width, height)
                raw = np.moveaxis(np.empty((out_h, out_w, len(self._read_bands)), dtype=dtype), -1, 0)
                self._ds.read(self._read_bands, window=win, out=raw, resampling=resampling)
                return raw, self._validity.of_read(raw, win, (out_h, out_w), resampling)
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
            part_valid = self._validity.of_read(part, win, (dy1 - dy0, dx1 - dx0), resampling)
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

    # --- validity ---------------------------------------------------------------------------------
    def window_has_valid(self, window: tuple[int, int, int, int]) -> bool:
        """Whether a pixel window holds at least one valid pixel, checked at full resolution.

        Reads only the mask band when the scene has one, else the display bands (nodata value, NaN).
        Used by the planner for the few tiles the coarse validity cannot decide.
        """
        self._check_open()
        return self._validity.window_has_valid(window)

    def coarse_validity(self, factor: int = 8, max_side: int = 2048) -> CoarseValidity:
        """Read the scene's validity once at ``1/factor`` resolution (coarser if the long side would pass
        ``max_side`` cells): a cell is valid when any of its pixels is. Used to skip nodata tiles without
        reading them. Integer scenes without mask or nodata are all valid: nothing is read."""
        self._check_open()
        return self._validity.coarse(factor, max_side)
