"""Where verification looks: the windows its questions are asked about, and which objects share one.

An unmatched object is asked about in a square window of the other date, resampled to the model's input
size, so the model sees the place larger than in the tile that missed it. A small object (longest side
at most a quarter of the tile size) is asked about in a window of a fixed lattice — side half the
tile size, stride a quarter: the one whose centre is nearest to the object's (its centre is then at
most ``tile_size / 8`` from the window's centre, and the whole object inside), unless a neighbouring
lattice window that already holds a question about the same phrase holds the whole object too. So
unmatched objects of one date and one phrase near one another share a single question (a parking lot's
missed cars, a harbour's ships): each is confirmed by a box of the answer that overlaps it. A larger
object gets a window of its own, centred on it, of side twice its longest side. The windows depend only
on the objects (in row order), so a resumed comparison finds its earlier answers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from shapely.geometry.base import BaseGeometry

from rsvg_desktop.core.geo.change.matching import phrase_key
from rsvg_desktop.core.geo.change.types import TargetGrid
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.change.dates import to_grid_pixels

__all__ = ["Question", "group_questions", "neighbourhood"]


@dataclass(frozen=True, slots=True)
class Question:
    """Whether the objects ``rows`` of ``own`` date's table (polygons ``targets``, grid CRS) are on the
    ``asked`` date too, asked about the window ``tile`` of the grid."""

    own: str
    rows: tuple[int, ...]
    asked: str
    query: str
    tile: Tile
    targets: tuple[BaseGeometry, ...]


def _clipped(start: float, side: int, extent: int) -> int:
    return 0 if extent <= side else min(max(round(start), 0), extent - side)


def neighbourhood(grid: TargetGrid, target: BaseGeometry, tile_size: int, index: int) -> Tile:
    """The window a question about ``target`` alone is asked about (see the module's doc)."""
    x0, y0, x1, y1 = to_grid_pixels(grid, target).bounds
    side = max(tile_size // 2, math.ceil(2 * max(x1 - x0, y1 - y0)))
    col_off = _clipped((x0 + x1 - side) / 2, side, grid.width)
    row_off = _clipped((y0 + y1 - side) / 2, side, grid.height)
    return Tile(0, index, col_off, row_off, side, side, tile_size)


def _lattice_windows(
    grid: TargetGrid, bounds: tuple[float, float, float, float], tile_size: int
) -> list[tuple[int, int]]:
    """Top-left corners of the lattice windows near the box ``bounds``, the one whose centre is
    nearest first, then its eight neighbours (those that hold the whole box are candidates)."""
    side = tile_size // 2
    stride = max(1, side // 2)
    x0, y0, x1, y1 = bounds
    col = round(((x0 + x1) / 2 - side / 2) / stride) * stride
    row = round(((y0 + y1) / 2 - side / 2) / stride) * stride
    corners = [(col + dc * stride, row + dr * stride) for dr in (0, -1, 1) for dc in (0, -1, 1)]
    return list(
        dict.fromkeys((_clipped(c, side, grid.width), _clipped(r, side, grid.height)) for c, r in corners)
    )


def _holds(corner: tuple[int, int], side: int, bounds: tuple[float, float, float, float]) -> bool:
    col_off, row_off = corner
    x0, y0, x1, y1 = bounds
    return col_off <= x0 and row_off <= y0 and x1 <= col_off + side and y1 <= row_off + side


def group_questions(
    grid: TargetGrid,
    tile_size: int,
    own: str,
    asked: str,
    objects: list[tuple[int, str, BaseGeometry]],
    first_index: int = 0,
) -> list[Question]:
    """The questions about ``own`` date's unmatched ``objects`` (row, query, polygon) asked of ``asked``:
    small objects of one phrase in one lattice window share a question (module's doc)."""
    groups: dict[tuple[str, int, int], list[tuple[int, str, BaseGeometry]]] = {}
    single: list[tuple[int, str, BaseGeometry]] = []
    for row, query, target in objects:
        bounds = to_grid_pixels(grid, target).bounds
        if max(bounds[2] - bounds[0], bounds[3] - bounds[1]) > tile_size / 4:
            single.append((row, query, target))
            continue
        key = phrase_key(query)
        corners = _lattice_windows(grid, bounds, tile_size)
        shared = [c for c in corners if (key, *c) in groups and _holds(c, tile_size // 2, bounds)]
        col_off, row_off = shared[0] if shared else corners[0]
        groups.setdefault((key, col_off, row_off), []).append((row, query, target))
    out: list[Question] = []
    side = tile_size // 2
    for (_, col_off, row_off), members in groups.items():
        tile = Tile(0, first_index + len(out), col_off, row_off, side, side, tile_size)
        rows, queries, targets = zip(*members, strict=True)
        out.append(Question(own, tuple(rows), asked, queries[0], tile, tuple(targets)))
    for row, query, target in single:
        tile = neighbourhood(grid, target, tile_size, first_index + len(out))
        out.append(Question(own, (row,), asked, query, tile, (target,)))
    return out
