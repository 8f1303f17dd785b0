"""From what the analyst asked in the query panel to the engine's :class:`RunConfig` (Qt-free).

The query panel produces a :class:`QueryRequest`; the map supplies the visible extent or a drawn
rectangle in scene pixels; :func:`build_run_config` turns them into one ``RunConfig``. Everything here is
plain Python so the rules are tested without a window:

* **Scope.** ``scene`` (whole scene), ``visible`` (the map's visible extent) or ``rectangle`` (a
  rectangle drawn on the map) → ``RunConfig.scope``, a pixel window ``(col_off, row_off, width,
  height)`` clipped to the scene. The engine runs the tiles that intersect it.
* **One tile** (follow-up questions, ``identify``). The engine selects tiles by intersection, and
  neighbouring tiles overlap, so a tile's own window would also select its neighbours. The scope is
  instead a 1×1 px *probe* inside the tile and outside every other tile of the grid
  (:func:`tile_probe_window`); when no such pixel exists (a degenerate last column squeezed between
  two others) the tile's centre is used and the neighbour answers too.
* **Identify.** The drawn region (scene pixels) is placed in the grid tile that holds it whole and
  best (:func:`region_in_tile`) and written on GeoChat's 0–100 grid of that tile. A region that no grid
  tile holds whole (larger than a tile, or across a seam wider than the overlap) gets a window of its
  own (:func:`fit_region`): a square around the region, at least a tile wide, resampled to the model's
  input size (``RunConfig.tile``), so the whole region reaches the model in one input;
  :func:`input_note` says what the model sees. An axis-aligned region is written the way GeoChat's
  training data writes upright boxes: extents swapped and ``θ = 90`` (``{<x1><y1><x2><y2>|<90>}``),
  which is the same rectangle under either angle convention.
* **Nodata.** The analyst's nodata value for the scene (the Ask panel's field, ``None``: the file's own
  nodata and mask) goes to ``RunConfig.nodata``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

from rsvg_desktop.core.precisions import Precision, lower_precision
from rsvg_desktop.core.prompt.templates import TASKS
from rsvg_desktop.core.types import GridBox, Tile
from rsvg_desktop.engine.events import RunConfig
from rsvg_desktop.errors import ConfigError

__all__ = [
    "PRECISIONS",
    "SCOPES",
    "PixelRect",
    "QueryRequest",
    "build_run_config",
    "clip_window",
    "fit_region",
    "input_note",
    "lower_precision",
    "region_grid_box",
    "region_in_tile",
    "tile_probe_window",
]

#: Precisions offered in the model panel, in order (value, label) (q4cal after calibrating).
PRECISIONS: tuple[tuple[str, str], ...] = tuple((p.value, p.description) for p in Precision)

#: Scope choices of the query panel (value, label).
SCOPES: tuple[tuple[str, str], ...] = (
    ("scene", "Whole scene"),
    ("visible", "Visible extent"),
    ("rectangle", "Drawn rectangle"),
)

PixelRect = tuple[float, float, float, float]
"""A rectangle in continuous scene pixels: ``(x0, y0, x1, y1)``, x right, y down."""


@dataclass(frozen=True, slots=True)
class QueryRequest:
    """What the query panel asks: task name, text, class list (classify), scope, identify region."""

    task: str
    query: str = ""
    classes: tuple[str, ...] = ()
    scope: str = "scene"
    region: PixelRect | None = None  # identify: the region drawn on the map, scene pixels


def clip_window(rect: PixelRect, width: int, height: int) -> tuple[int, int, int, int]:
    """The integer pixel window ``(col_off, row_off, w, h)`` covering ``rect``, clipped to the scene.

    Raises ConfigError when nothing of the rectangle lies inside the scene.
    """
    x0, y0, x1, y1 = (float(v) for v in rect)
    x0, x1 = sorted((x0, x1))
    y0, y1 = sorted((y0, y1))
    c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    c1, r1 = min(width, math.ceil(x1)), min(height, math.ceil(y1))
    if c1 <= c0 or r1 <= r0:
        raise ConfigError("the rectangle lies outside the scene")
    return (c0, r0, c1 - c0, r1 - r0)


def _unique_point(offset: int, size: int, others: Sequence[tuple[int, int]]) -> float | None:
    """The middle of the longest stretch of ``[offset, offset + size)`` covered by none of ``others``."""
    cuts = sorted(
        (max(offset, o), min(offset + size, o + s)) for o, s in others if o < offset + size and o + s > offset
    )
    best: tuple[float, float] | None = None
    pos = float(offset)
    for lo, hi in cuts:
        if lo > pos and (best is None or lo - pos > best[1] - best[0]):
            best = (pos, float(lo))
        pos = max(pos, float(hi))
    end = float(offset + size)
    if end > pos and (best is None or end - pos > best[1] - best[0]):
        best = (pos, end)
    if best is None:
        return None
    return (best[0] + best[1]) / 2.0


def tile_probe_window(tile: Tile, tiles: Sequence[Tile]) -> tuple[int, int, int, int]:
    """A 1×1 px window inside ``tile`` and, when possible, inside no other tile of ``tiles`` (see module doc).

    ``tiles`` is the scene's full grid (skipped tiles included: they are never run, so overlapping
    them is harmless, but the rule stays simple). The grid is a product of column and row offsets, so a
    pixel whose column lies in no other column's span and whose row lies in no other row's span is in
    no other tile.
    """
    cols = {(t.col_off, t.width) for t in tiles if t.col != tile.col}
    rows = {(t.row_off, t.height) for t in tiles if t.row != tile.row}
    px = _unique_point(tile.col_off, tile.width, sorted(cols))
    py = _unique_point(tile.row_off, tile.height, sorted(rows))
    if px is None:
        px = tile.col_off + tile.width / 2.0
    if py is None:
        py = tile.row_off + tile.height / 2.0
    return (math.floor(px), math.floor(py), 1, 1)


def _overlap(rect: PixelRect, tile: Tile) -> float:
    x0, y0, x1, y1 = rect
    w = min(x1, tile.col_off + tile.width) - max(x0, tile.col_off)
    h = min(y1, tile.row_off + tile.height) - max(y0, tile.row_off)
    return max(0.0, w) * max(0.0, h)


def region_in_tile(region: PixelRect, tiles: Sequence[Tile]) -> Tile:
    """The tile that holds ``region`` best: among tiles holding it whole, the one where it is most
    central; else the tile with the largest overlap. ConfigError when it touches no tile."""
    x0, y0, x1, y1 = region
    rect = (min(x0, x1), min(y0, y1), max(x0, x1), max(y0, y1))
    if rect[2] - rect[0] <= 0 or rect[3] - rect[1] <= 0:
        raise ConfigError("the region is empty: drag a rectangle around the object")
    cx, cy = (rect[0] + rect[2]) / 2.0, (rect[1] + rect[3]) / 2.0
    area = (rect[2] - rect[0]) * (rect[3] - rect[1])
    whole = [t for t in tiles if _overlap(rect, t) >= area * (1 - 1e-9)]
    if whole:
        return min(
            whole, key=lambda t: (t.col_off + t.width / 2 - cx) ** 2 + (t.row_off + t.height / 2 - cy) ** 2
        )
    best = max(tiles, key=lambda t: _overlap(rect, t), default=None)
    if best is None or _overlap(rect, best) <= 0:
        raise ConfigError("the region lies outside every tile that is sent to the model")
    return best


#: Context kept around a region that gets a window of its own (a fraction of its longer side, each side).
REGION_MARGIN = 0.05


def _place(centre: float, side: int, length: int) -> int:
    """The offset of a ``side`` long window about ``centre``, inside ``[0, length)`` when it fits."""
    start = round(centre - side / 2.0)
    return min(max(0, start), length - side) if side <= length else start


def fit_region(
    region: PixelRect, tiles: Sequence[Tile], *, scene_size: tuple[int, int], tile_size: int
) -> Tile:
    """The model input that shows the whole ``region``: the grid tile that holds it whole and best, else
    a square window about it (at least ``tile_size`` wide, with a margin), sent resampled to
    ``tile_size`` pixels; it keeps the id of the grid tile that holds most of the region. ConfigError
    when the region is empty or touches no tile of ``tiles``."""
    best = region_in_tile(region, tiles)
    x0, y0, x1, y1 = region
    left, right, top, bottom = min(x0, x1), max(x0, x1), min(y0, y1), max(y0, y1)
    if _overlap((left, top, right, bottom), best) >= (right - left) * (bottom - top) * (1 - 1e-9):
        return best
    side = max(tile_size, math.ceil(max(right - left, bottom - top) * (1 + 2 * REGION_MARGIN)))
    width, height = scene_size
    col_off = _place((left + right) / 2.0, side, width)
    row_off = _place((top + bottom) / 2.0, side, height)
    return Tile(best.row, best.col, col_off, row_off, side, side, tile_size)


def input_note(config: RunConfig) -> str:
    """What the model sees of a run asked about one window of its own (``""`` for a grid run)."""
    tile = config.tile
    if tile is None:
        return ""
    scale = max(tile.width, tile.height) / tile.size
    how = f"scaled down {scale:.1f}×" if scale > 1.005 else "at full resolution"
    return (
        f"The model sees the {tile.width} × {tile.height} px window around the region as one "
        f"{tile.size} px image ({how}), so the whole region reaches it."
    )


def region_grid_box(region: PixelRect, tile: Tile) -> GridBox:
    """``region`` (scene pixels) on GeoChat's 0–100 grid of ``tile``, clipped to it, written as GeoChat's
    training data writes upright boxes: width and height swapped about the centre, ``θ = 90``."""
    x0, y0, x1, y1 = region
    gx0 = (min(x0, x1) - tile.col_off) / tile.width * 100.0
    gx1 = (max(x0, x1) - tile.col_off) / tile.width * 100.0
    gy0 = (min(y0, y1) - tile.row_off) / tile.height * 100.0
    gy1 = (max(y0, y1) - tile.row_off) / tile.height * 100.0
    gx0, gx1 = max(0.0, gx0), min(100.0, gx1)
    gy0, gy1 = max(0.0, gy0), min(100.0, gy1)
    if gx1 <= gx0 or gy1 <= gy0:
        raise ConfigError("the region lies outside the tile")
    cx, cy = (gx0 + gx1) / 2.0, (gy0 + gy1) / 2.0
    half_w, half_h = (gx1 - gx0) / 2.0, (gy1 - gy0) / 2.0
    # Turned a quarter about its centre, a box written half_h wide and half_w tall covers the region.
    return GridBox(round(cx - half_h), round(cy - half_w), round(cx + half_h), round(cy + half_w), 90)


def _ask_one(tile: Tile, tiles: Sequence[Tile]) -> tuple[tuple[int, int, int, int] | None, Tile | None]:
    """``(scope, RunConfig.tile)`` that ask about ``tile`` alone: a grid tile through its probe scope, a
    window of its own (not in the grid) as the run's one tile."""
    return (tile_probe_window(tile, tiles), None) if tile in tiles else (None, tile)


def build_run_config(
    request: QueryRequest,
    *,
    scene: str,
    scene_size: tuple[int, int],
    tiles: Sequence[Tile],
    output: str,
    tile_size: int,
    overlap: int,
    pixel_mode: bool = False,
    visible: PixelRect | None = None,
    rectangle: PixelRect | None = None,
    history: Sequence[tuple[str, str]] = (),
    follow_up_tile: Tile | None = None,
    max_new_tokens: int = 256,
    nodata: float | None = None,
) -> RunConfig:
    """The ``RunConfig`` for ``request`` (see module doc). ``tiles``: the scene's grid at these settings.

    ``follow_up_tile`` with ``history`` asks a follow-up question about one tile (scope: that tile).
    Raises ConfigError with a message for the analyst when something is missing.
    """
    task = TASKS.get(request.task)
    if task is None:
        raise ConfigError(f"unknown task {request.task!r}")
    query = request.query.strip()
    classes = tuple(c.strip() for c in request.classes if c.strip())
    region: GridBox | None = None
    scope: tuple[int, int, int, int] | None = None
    one_tile: Tile | None = None  # a window of its own, not a grid tile

    if task.needs_region:
        if request.region is None:
            raise ConfigError("draw the region to identify on the map first (Identify region tool)")
        tile = fit_region(request.region, tiles, scene_size=scene_size, tile_size=tile_size)
        region = region_grid_box(request.region, tile)
        scope, one_tile = _ask_one(tile, tiles)
        query = ""
    elif follow_up_tile is not None:  # a grid tile, or the window of its own a region was asked in
        scope, one_tile = _ask_one(follow_up_tile, tiles)
    elif request.scope == "scene":
        scope = None
    elif request.scope == "visible":
        if visible is None:
            raise ConfigError("the visible extent is unknown")
        scope = clip_window(visible, *scene_size)
    elif request.scope == "rectangle":
        if rectangle is None:
            raise ConfigError("draw a rectangle on the map first (Draw scope rectangle tool)")
        scope = clip_window(rectangle, *scene_size)
    else:
        raise ConfigError(f"unknown scope {request.scope!r}")

    if (
        not task.needs_region
        and not query
        and task.default_query is None
        and not (task.takes_classes and classes)
    ):
        raise ConfigError(f"type a query for '{task.label}'")
    if task.takes_classes and not classes and not query:
        raise ConfigError("give the class list (comma separated)")

    return RunConfig(
        scene=scene,
        query=query,
        task=task.name,
        output=output,
        overwrite=False,
        tile_size=tile_size,
        overlap=overlap,
        scope=scope,
        pixel_mode=pixel_mode,
        max_new_tokens=max_new_tokens,
        classes=classes if task.takes_classes else (),
        region=region,
        history=tuple((str(q), str(a)) for q, a in history),
        tile=one_tile,
        nodata=nodata,
    )
