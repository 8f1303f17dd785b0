"""The residual shift between two dates read on one grid: how far the after date's content lies from
the before date's, in grid pixels, after georeferencing and the warp.

Two steps, both phase correlation (``phase.py``) of grey images (the mean of the scene's 8-bit display
channels; each date's own stretch does not matter, phase correlation ignores contrast):

1. **coarse**: the common area's bounding box read decimated (long side at most ``COARSE_SIZE``
   pixels), both dates masked by where both are valid; any shift up to a quarter of the area;
2. **fine**: a full-resolution window (``FINE_SIZE`` square, smaller where the common area is thin)
   where both dates are valid, nearest the common area's centre; the after window is moved by the
   coarse shift rounded, so only the remainder is measured, to a few hundredths of a pixel. A common
   area small enough to be read at full resolution in step 1 needs no step 2.

The fine step replaces the coarse one when it finds a clear peak (height at least ``MIN_PEAK``) within
the coarse estimate's error (a pixel and a half, or two decimated pixels); else the coarse estimate
stands. The shift matters for
matching: a box drawn on GeoChat's 0–100 grid is placed to a cell of ``tile_size / 100`` pixels, so a
shift above a third of a cell (:func:`shift_warning_px`) costs IoU to every persisting object.
"""

from __future__ import annotations

import logging
import math

import numpy as np
from rasterio.enums import Resampling
from scipy.ndimage import uniform_filter

from rsvg_desktop.core.geo.change.overlap import same_grid_or_raise
from rsvg_desktop.core.geo.change.phase import Translation, phase_correlate, prepare
from rsvg_desktop.core.geo.change.types import CommonArea, ShiftEstimate
from rsvg_desktop.core.geo.scene.reading import Scene
from rsvg_desktop.core.geo.transform import map_to_pixel

__all__ = ["COARSE_SIZE", "FINE_SIZE", "MIN_PEAK", "estimate_shift", "shift_warning_px"]

log = logging.getLogger(__name__)

COARSE_SIZE = 1024
FINE_SIZE = 512
#: The smallest fine window tried where the common area is thin.
_MIN_FINE = 64
#: A fine estimate needs a correlation peak at least this high (1: a pure translation).
MIN_PEAK = 0.1

Window = tuple[int, int, int, int]


def shift_warning_px(tile_size: int = 504) -> float:
    """The shift above which matching suffers: a third of a GeoChat grid cell (``tile_size / 100``
    pixels), ≈ 1.7 px for 504-px tiles."""
    return tile_size / 100 / 3


def _grey(scene: Scene, window: Window, out_size: tuple[int, int]) -> tuple[np.ndarray, np.ndarray]:
    """Mean of the 8-bit display channels and the valid mask of a window, resampled to ``out_size``."""
    shrink = out_size[0] < window[2] or out_size[1] < window[3]
    image, valid = scene.read_window(
        window, out_size, resampling=Resampling.average if shrink else Resampling.nearest
    )
    return image.mean(axis=2, dtype=np.float64), valid


def _area_window(scene: Scene, area: CommonArea) -> Window:
    """The pixel window of the grid that holds the common area."""
    info = scene.info
    x0, y0, x1, y1 = area.compared.bounds
    cols, rows = map_to_pixel(info.transform, [x0, x1, x1, x0], [y0, y0, y1, y1])
    c0, r0 = max(0, math.floor(cols.min())), max(0, math.floor(rows.min()))
    c1, r1 = min(info.width, math.ceil(cols.max())), min(info.height, math.ceil(rows.max()))
    return (c0, r0, max(1, c1 - c0), max(1, r1 - r0))


def _coarse(before: Scene, after: Scene, window: Window) -> tuple[Translation, np.ndarray, float]:
    """The coarse shift in grid pixels, the decimated both-valid mask and the decimation factor."""
    scale = max(1.0, max(window[2], window[3]) / COARSE_SIZE)
    out = (max(1, round(window[2] / scale)), max(1, round(window[3] / scale)))
    grey_b, valid_b = _grey(before, window, out)
    grey_a, valid_a = _grey(after, window, out)
    both = valid_b & valid_a
    t = phase_correlate(prepare(grey_b, both), prepare(grey_a, both))
    sx, sy = window[2] / out[0], window[3] / out[1]
    return Translation(t.dx * sx, t.dy * sy, t.peak), both, (sx + sy) / 2


def _fine_window(
    both: np.ndarray, scale: float, window: Window, area: CommonArea, scene: Scene
) -> Window | None:
    """A full-resolution square window where both dates are valid (by the decimated mask), as large as
    fits up to ``FINE_SIZE``, nearest the common area's centre; ``None`` where none fits."""
    info = scene.info
    centre = area.compared.centroid
    if not area.compared.contains(centre):
        centre = area.compared.representative_point()
    cx, cy = map_to_pixel(info.transform, centre.x, centre.y)
    size = min(FINE_SIZE, info.width, info.height)
    while size >= _MIN_FINE:
        cells = max(1, math.ceil(size / scale))
        fits = uniform_filter(both.astype(np.float64), size=cells, mode="constant") > 1 - 1e-9
        if fits.any():
            rows, cols = np.nonzero(fits)
            px = window[0] + (cols + 0.5) * scale
            py = window[1] + (rows + 0.5) * scale
            k = int(np.argmin((px - cx) ** 2 + (py - cy) ** 2))
            c0 = int(np.clip(round(px[k] - size / 2), 0, info.width - size))
            r0 = int(np.clip(round(py[k] - size / 2), 0, info.height - size))
            return (c0, r0, size, size)
        size //= 2
    return None


def _fine(
    before: Scene, after: Scene, window: Window, coarse: Translation, scale: float
) -> Translation | None:
    """The shift measured at full resolution in ``window``, the after window moved by the coarse shift
    rounded; ``None`` when the peak is unclear or farther from the coarse estimate than its error can be
    (a pixel and a half, or two decimated pixels)."""
    ox, oy = round(coarse.dx), round(coarse.dy)
    c0, r0, w, h = window
    grey_b, valid_b = _grey(before, window, (w, h))
    grey_a, valid_a = _grey(after, (c0 + ox, r0 + oy, w, h), (w, h))
    both = valid_b & valid_a
    if both.mean() < 0.5:
        return None
    t = phase_correlate(prepare(grey_b, both), prepare(grey_a, both))
    if t.peak < MIN_PEAK or math.hypot(t.dx, t.dy) > max(1.5, 2 * scale):
        log.debug("fine shift rejected: %s (coarse %s)", t, coarse)
        return None
    return Translation(ox + t.dx, oy + t.dy, t.peak)


def estimate_shift(before: Scene, after: Scene, area: CommonArea) -> ShiftEstimate:
    """The after date's shift against the before date on their common grid, in grid pixels (positive
    ``dx``: after lies to the right; ``dy``: lower), with the correlation peak as ``confidence``."""
    same_grid_or_raise(before, after)
    window = _area_window(before, area)
    coarse, both, scale = _coarse(before, after, window)
    found = None
    if scale > 1:  # else the first step read the whole common area at full resolution already
        fine_window = _fine_window(both, scale, window, area, before)
        if fine_window is not None:
            found = _fine(before, after, fine_window, coarse, scale)
    best = found or coarse
    log.info(
        "residual shift after vs before: dx %.2f px, dy %.2f px (%s; peak %.2f; coarse %.2f, %.2f)",
        best.dx,
        best.dy,
        "full-resolution window" if found else f"common area decimated {scale:.1f}x",
        best.peak,
        coarse.dx,
        coarse.dy,
    )
    return ShiftEstimate(dx=best.dx, dy=best.dy, confidence=best.peak)
