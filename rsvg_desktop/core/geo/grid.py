"""The tile grid: which windows of a scene are sent to the model, and which are skipped as nodata.

Grid rules (pure arithmetic, see :func:`axis_offsets` and :func:`iter_grid`):

* Tiles are ``tile_size`` × ``tile_size`` model pixels (504 for GeoChat) and step by
  ``tile_size - overlap``. The default overlap is **64 px** (12.7 % of a tile): an object up to 64 px
  across that one tile cuts at its edge lies whole in the neighbouring tile (vehicles, small buildings,
  aircraft at ≤ 0.5 m), at the price of reading (504/440)² ≈ 1.31× the scene's pixels; larger objects
  are joined by the box-merging step.
* Every pixel is covered: the last column and row of tiles are shifted inward to end exactly at the
  scene's edge, so no tile reaches past it. A scene smaller than a tile in a dimension gets a single
  tile there that starts at 0 and keeps the full tile width; the part past the edge is padding
  (invalid, painted ``FILL_RGB``).
* ``(row, col)`` ids are stable: they depend only on the scene size and the grid parameters.
* With ``target_gsd`` (metres on the ground) the grid resamples: a tile covers
  ``round(tile_size * target_gsd / scene_gsd)`` source pixels per side, ``scene_gsd`` being a pixel's
  ground distance at the scene's centre (overlap scaled the same way, so it stays ``overlap`` model
  pixels), and is read with ``out_shape = (tile_size, tile_size)``; ``Tile.size`` stays ``tile_size``. A
  target finer than the scene (upsampling) is allowed but logged as a warning; without ``target_gsd``
  nothing is resampled.

Skipping nodata: validity is read **once** for the whole scene at 1/8 resolution
(:meth:`Scene.coarse_validity`, through overviews when the file has them; a cell counts as valid when any
of its pixels is), not twice per tile. Tiles with a valid cell well inside them are kept without further
reading; every other tile (skip candidates, and tiles whose valid cells are cut by their edge) is checked
once at full resolution (:meth:`Scene.window_has_valid`: the mask band only, or the pixels of mostly
nodata areas, which decode fast), because an overview may have lost small valid features. So with the
default ``max_nodata_fraction=1.0`` a tile is skipped **exactly** when it holds no valid pixel (tiles are
kept when their nodata fraction is *strictly below* ``max_nodata_fraction``). Lower thresholds use the
fraction estimated from the cells a tile overlaps, which undercounts nodata in mixed cells. Fractions
are of the tile's pixels inside the scene: the padding of a scene smaller than a tile does not count.
``None`` keeps every tile. Skipped tiles are counted in the :class:`TilePlan` and never read again; kept
tiles get their exact mask when read.

A scene with no valid pixel at all makes :func:`plan_tiles` raise :class:`EmptySceneError` (opening
it still works, so its information can be shown); pass ``allow_empty=True`` to get the plan with zero
kept tiles instead.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass

import numpy as np

from rsvg_desktop.core.geo.scene.info import SceneInfo
from rsvg_desktop.core.geo.scene.reading import Scene
from rsvg_desktop.core.geo.scene.validity import CoarseValidity
from rsvg_desktop.core.geo.transform import Transform6, window_corners
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import ConfigError, EmptySceneError

__all__ = [
    "DEFAULT_OVERLAP",
    "DEFAULT_TILE_SIZE",
    "TilePlan",
    "axis_offsets",
    "iter_grid",
    "iter_tile_images",
    "plan_tiles",
    "tile_corners",
    "tile_footprint_pixels",
    "window_size_for_gsd",
]

logger = logging.getLogger(__name__)

DEFAULT_TILE_SIZE = 504
DEFAULT_OVERLAP = 64


def axis_offsets(length: int, window: int, stride: int) -> tuple[int, ...]:
    """Start offsets of windows of ``window`` px stepping by ``stride`` along an axis of ``length`` px.

    Regular steps from 0, then one last window shifted inward to end exactly at ``length``; a single
    window at 0 when ``length <= window`` (it then reaches past the edge: padding).
    """
    if length < 1 or window < 1 or stride < 1:
        raise ConfigError(f"length, window and stride must be positive, got {length}, {window}, {stride}")
    if length <= window:
        return (0,)
    last = length - window
    n_regular = math.ceil(last / stride)  # windows at 0, stride, ... strictly before `last`
    return (*(i * stride for i in range(n_regular)), last)


def _check_grid(tile_size: int, overlap: int) -> None:
    if not isinstance(tile_size, int) or tile_size < 1:
        raise ConfigError(f"--tile-size must be a positive integer, got {tile_size!r}")
    if not isinstance(overlap, int) or not 0 <= overlap < tile_size:
        raise ConfigError(
            f"--overlap must be an integer from 0 to the tile size - 1 ({tile_size - 1}), got {overlap!r}"
        )


def _source_geometry(
    tile_size: int, overlap: int, window_size: tuple[int, int] | None
) -> tuple[int, int, int, int]:
    """``(window_w, window_h, stride_x, stride_y)`` in source pixels."""
    _check_grid(tile_size, overlap)
    win_w, win_h = (tile_size, tile_size) if window_size is None else window_size
    if win_w < 1 or win_h < 1:
        raise ConfigError(f"the tile window must be at least 1 px, got {win_w}x{win_h}")
    stride_x = max(1, win_w - round(overlap * win_w / tile_size))
    stride_y = max(1, win_h - round(overlap * win_h / tile_size))
    return win_w, win_h, stride_x, stride_y


def iter_grid(
    width: int,
    height: int,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    window_size: tuple[int, int] | None = None,
) -> Iterator[Tile]:
    """Generate the tiles covering a ``width`` × ``height`` scene, row by row (no pixels read).

    ``window_size = (w, h)`` is the tile's window in source pixels when it differs from ``tile_size``
    (resampling to a target GSD); the overlap is then scaled to source pixels.
    """
    win_w, win_h, stride_x, stride_y = _source_geometry(tile_size, overlap, window_size)
    cols = axis_offsets(width, win_w, stride_x)
    rows = axis_offsets(height, win_h, stride_y)
    for r, row_off in enumerate(rows):
        for c, col_off in enumerate(cols):
            yield Tile(
                row=r, col=c, col_off=col_off, row_off=row_off, width=win_w, height=win_h, size=tile_size
            )


def window_size_for_gsd(info: SceneInfo, tile_size: int, target_gsd: float) -> tuple[int, int]:
    """Source window ``(w, h)`` of a tile that shows ``tile_size`` pixels of ``target_gsd`` each.

    The scene's GSD is taken in metres on the ground at the scene's centre (``info.gsd_m``, whatever the
    CRS: a Web Mercator scene's map units are not ground metres) when known, else in the file's own units
    (pixel mode). Logs a warning when this upsamples (target finer than the scene).
    """
    if not (isinstance(target_gsd, int | float) and math.isfinite(target_gsd) and target_gsd > 0):
        raise ConfigError(f"--target-gsd must be a positive number, got {target_gsd!r}")
    gsd_x, gsd_y = info.gsd_m if info.gsd_m is not None else info.gsd
    if gsd_x <= 0 or gsd_y <= 0:
        raise ConfigError(f"{info.path}: cannot resample a scene whose pixel size is {info.gsd}")
    if target_gsd < min(gsd_x, gsd_y) * (1 - 1e-9):
        logger.warning(
            "%s: target GSD %g is finer than the scene's %g × %g: tiles will be upsampled",
            info.path,
            target_gsd,
            gsd_x,
            gsd_y,
        )
    return (max(1, round(tile_size * target_gsd / gsd_x)), max(1, round(tile_size * target_gsd / gsd_y)))


@dataclass(frozen=True, slots=True)
class TilePlan:
    """The tile grid of a scene and the nodata decision for each tile. Plain values: picklable.

    ``tiles`` is the full grid (row-major; ``n_rows`` × ``n_cols``); ``nodata_fractions[i]`` the estimated
    nodata fraction of ``tiles[i]`` (1.0 = no valid pixel); ``kept`` go to the model, ``skipped`` never do.
    ``window_size`` is each tile's window in source pixels (``(tile_size, tile_size)`` unless resampling).
    """

    scene: SceneInfo
    tile_size: int
    overlap: int
    target_gsd: float | None
    max_nodata_fraction: float | None
    window_size: tuple[int, int]
    n_rows: int
    n_cols: int
    tiles: tuple[Tile, ...]
    nodata_fractions: tuple[float, ...]
    kept: tuple[Tile, ...]
    skipped: tuple[Tile, ...]

    @property
    def n_tiles(self) -> int:
        return len(self.tiles)

    @property
    def n_kept(self) -> int:
        return len(self.kept)

    @property
    def n_skipped(self) -> int:
        return len(self.skipped)


def _overlaps(offsets: np.ndarray, window: int, cell: float, n_cells: int, widen: float) -> np.ndarray:
    """``(len(offsets), n_cells)`` lengths by which each window overlaps each (widened) cell."""
    edges = np.arange(n_cells + 1, dtype=np.float64) * cell
    lo = np.maximum(offsets[:, None].astype(np.float64), edges[None, :-1] - widen)
    hi = np.minimum((offsets + window)[:, None].astype(np.float64), edges[None, 1:] + widen)
    return np.clip(hi - lo, 0.0, None)


def _contains(offsets: np.ndarray, window: int, cell: float, n_cells: int, widen: float) -> np.ndarray:
    """``(len(offsets), n_cells)``: whether each (widened) cell lies entirely inside each window."""
    edges = np.arange(n_cells + 1, dtype=np.float64) * cell
    starts = offsets[:, None].astype(np.float64)
    return (edges[None, :-1] - widen >= starts) & (edges[None, 1:] + widen <= starts + window)


def _coarse_estimate(
    coarse: CoarseValidity, cols: np.ndarray, rows: np.ndarray, win_w: int, win_h: int, area: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """From the coarse validity, per tile ``(n_rows, n_cols)``: the estimated nodata fraction, whether
    the tile surely holds a valid pixel, and whether it may hold one. ``area`` is each tile's area inside
    the scene (padding past the edge of a small scene does not count as nodata).

    Cells are widened by one pixel on each side for the sure/maybe tests, which covers GDAL's rounding of
    the cell bounds in the decimated read.
    """
    n_cy, n_cx = coarse.valid.shape
    # Separable weights: per tile column × cell column, per tile row × cell row.
    col_weights = (
        _overlaps(cols, win_w, coarse.cell_width, n_cx, 0.0),  # nominal overlap length
        _overlaps(cols, win_w, coarse.cell_width, n_cx, 1.0),  # widened: may touch
        _contains(cols, win_w, coarse.cell_width, n_cx, 1.0).astype(np.float64),
    )  # surely inside
    row_weights = (
        _overlaps(rows, win_h, coarse.cell_height, n_cy, 0.0),
        _overlaps(rows, win_h, coarse.cell_height, n_cy, 1.0),
        _contains(rows, win_h, coarse.cell_height, n_cy, 1.0).astype(np.float64),
    )
    # rows_weight @ valid @ cols_weight.T, accumulated over strips of cell rows to keep memory small.
    results = [np.zeros((len(rows), len(cols))) for _ in range(3)]
    for start in range(0, n_cy, 256):
        strip = coarse.valid[start : start + 256].astype(np.float64)
        for result, wy, wx in zip(results, row_weights, col_weights, strict=True):
            result += wy[:, start : start + 256] @ (strip @ wx.T)
    valid_area, maybe, sure = results[0], results[1] > 0, results[2] > 0
    fractions = np.clip(1.0 - valid_area / area, 0.0, 1.0)
    return fractions, sure, maybe


def plan_tiles(
    scene: Scene,
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    target_gsd: float | None = None,
    max_nodata_fraction: float | None = 1.0,
    allow_empty: bool = False,
    mask_factor: int = 8,
) -> TilePlan:
    """Lay the tile grid over a scene and decide which tiles to skip as nodata (see module doc).

    Reads the scene's validity once, decimated by ``mask_factor``, then the exact validity of the tiles it
    cannot decide (skip candidates, edge cases); no image is read. A tile is kept when
    its nodata fraction is strictly below ``max_nodata_fraction`` (``None``: keep all). Raises
    :class:`EmptySceneError` when the scene holds no valid pixel (unless ``allow_empty``) and
    :class:`ConfigError` for invalid parameters.
    """
    _check_grid(tile_size, overlap)
    if max_nodata_fraction is not None and not 0.0 < max_nodata_fraction <= 1.0:
        raise ConfigError(f"--max-nodata must be in (0, 1], got {max_nodata_fraction!r}")
    info = scene.info
    window_size = None if target_gsd is None else window_size_for_gsd(info, tile_size, target_gsd)
    win_w, win_h, stride_x, stride_y = _source_geometry(tile_size, overlap, window_size)
    cols = np.asarray(axis_offsets(info.width, win_w, stride_x), dtype=np.int64)
    rows = np.asarray(axis_offsets(info.height, win_h, stride_y), dtype=np.int64)
    tiles = tuple(
        iter_grid(info.width, info.height, tile_size=tile_size, overlap=overlap, window_size=(win_w, win_h))
    )

    fractions, maybe = _nodata_fractions(scene, cols, rows, win_w, win_h, mask_factor)
    if not maybe.any() and not allow_empty:
        raise EmptySceneError(
            f"{info.path}: the scene has no valid pixels (every pixel is nodata or masked): all "
            f"{len(tiles)} tiles would be skipped and nothing sent to the model"
        )
    if max_nodata_fraction is None:
        keep = np.ones(fractions.shape, dtype=bool)
    else:
        keep = maybe & (fractions < max_nodata_fraction)
    flat_keep = keep.ravel()
    plan = TilePlan(
        scene=info,
        tile_size=tile_size,
        overlap=overlap,
        target_gsd=None if target_gsd is None else float(target_gsd),
        max_nodata_fraction=None if max_nodata_fraction is None else float(max_nodata_fraction),
        window_size=(win_w, win_h),
        n_rows=len(rows),
        n_cols=len(cols),
        tiles=tiles,
        nodata_fractions=tuple(float(f) for f in fractions.ravel()),
        kept=tuple(t for t, k in zip(tiles, flat_keep, strict=True) if k),
        skipped=tuple(t for t, k in zip(tiles, flat_keep, strict=True) if not k),
    )
    _log_plan(plan, any_valid=bool(maybe.any()))
    return plan


def _nodata_fractions(
    scene: Scene, cols: np.ndarray, rows: np.ndarray, win_w: int, win_h: int, mask_factor: int
) -> tuple[np.ndarray, np.ndarray]:
    """Per tile ``(n_rows, n_cols)``: its nodata fraction, and whether it holds a valid pixel.

    From the scene's validity read once, decimated by ``mask_factor``; the tiles it cannot decide are
    checked at full resolution. A tile with a valid pixel is never reported as entirely nodata, one
    without always is.
    """
    info = scene.info
    coarse = scene.coarse_validity(mask_factor)
    area = np.outer(
        np.minimum(rows + win_h, info.height) - rows, np.minimum(cols + win_w, info.width) - cols
    ).astype(np.float64)  # inside the scene
    fractions, sure, maybe = _coarse_estimate(coarse, cols, rows, win_w, win_h, area)
    # Only a tile with a valid cell well inside it is surely valid. Every other tile (a skip candidate,
    # or valid pixels only in cells cut by its edge) is checked at full resolution: the decimated read may
    # come from an overview that lost small valid features, so skipping on it alone could drop data.
    # Candidates are mostly nodata, which decodes fast; a masked scene reads only its mask band.
    unsure = np.argwhere(~sure)
    for r, c in unsure:
        maybe[r, c] = scene.window_has_valid((int(cols[c]), int(rows[r]), win_w, win_h))
    if len(unsure):
        logger.debug("%s: %d tiles checked at full resolution", info.path, len(unsure))
    return np.where(maybe, np.minimum(fractions, 1.0 - 1.0 / area), 1.0), maybe


def _log_plan(plan: TilePlan, *, any_valid: bool) -> None:
    win_w, win_h = plan.window_size
    path = plan.scene.path
    logger.info(
        "%s: %d×%d grid of %d tiles (%d×%d px windows, overlap %d): %d kept, %d skipped as nodata",
        path,
        plan.n_rows,
        plan.n_cols,
        plan.n_tiles,
        win_w,
        win_h,
        plan.overlap,
        plan.n_kept,
        plan.n_skipped,
    )
    if not plan.kept and any_valid:
        logger.warning("%s: every tile has at least %g nodata: none is kept", path, plan.max_nodata_fraction)


def iter_tile_images(scene: Scene, tiles: Iterable[Tile]) -> Iterator[tuple[Tile, np.ndarray, np.ndarray]]:
    """Read tiles one at a time: yields ``(tile, image (size, size, 3) uint8, valid (size, size) bool)``.

    A generator: only the current tile's arrays are alive, so memory does not grow with the scene.
    A failed read raises :class:`RasterReadError` naming the file and the window (``err.window``);
    tiles yielded before it are unaffected.
    """
    for tile in tiles:
        image, valid = scene.read_tile(tile)
        yield tile, image, valid


def tile_footprint_pixels(tile: Tile) -> np.ndarray:
    """The tile window's corners in scene pixel coordinates, ``(4, 2)``: TL, TR, BR, BL."""
    return window_corners((1.0, 0.0, 0.0, 0.0, 1.0, 0.0), *tile.window)


def tile_corners(transform: Transform6, tile: Tile) -> np.ndarray:
    """The tile window's corners in map coordinates through the full affine, ``(4, 2)``: TL, TR, BR, BL."""
    return window_corners(transform, *tile.window)
