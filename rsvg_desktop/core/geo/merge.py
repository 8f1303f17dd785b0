"""Merge duplicate detections across tile seams (and repeats within one answer).

Overlapping tiles see the same object twice. Two greedy passes remove the copies and a third pass
stitches fragments, each within one phrase group (phrases compared after trimming, collapsing
whitespace, case-folding and making the last word singular — "Tennis courts" and "tennis court" are
one group; ``None`` is its own group — a box never suppresses a box of another group):

1. **IoU pass** (rotated IoU ≥ ``iou_threshold``, default 0.5): boxes are visited in *priority order*
   and a visited box that survives suppresses every later box it overlaps that much.
2. **IoS pass** (intersection over the smaller area ≥ ``ios_threshold``, default 0.8) on the survivors:
   boxes are visited *largest first* (ties in priority order); a box mostly inside an already kept,
   larger box is dropped. This removes the fragment of an object cut by a tile edge, which the
   neighbouring tile saw whole.
3. **Stitch pass** (``stitch=True``) on the survivors: where *both* tiles cut an object, each holds a
   fragment and neither contains the other. Two survivors of one phrase group in neighbouring tiles
   (sharing an edge or a corner) are fragments of one object when

   - *a cut*: across every seam between their tiles, one of them reaches its own tile's edge on the
     seam side, within ``stitch_tolerance`` (default 3 % of the tile, 15 px of 504) — only a box at a
     tile edge can have been cut; and
   - *they agree in the shared band*: both tiles see all of the overlap band between them, so the
     parts of the two boxes inside it must match: their IoU there ≥ ``stitch_band_iou`` (default
     0.75). Where tiles only touch (a band narrower than the tolerance), only the extents along the
     seam are compared.

   Fragments are joined transitively (union–find: an object at a four-tile corner has four); the
   fragment first in priority order stands for the object and the others are dropped with reason
   ``STITCH``. Its polygon becomes the convex hull of all its fragments (:func:`apply_merge`). The
   test runs on each box's axis-aligned extent: its bounds when upright (θ a multiple of 90°), else
   the rectangle as written before the turn, which is what GeoChat clipped at the tile edge.
   *Limits*: two distinct objects are fused only if their boxes, cut at the seam, agree inside the
   band — two neighbours side by side do not (the one that is whole in a tile does not reach its
   edge, and their parts in the band differ); fragments that the model drew inconsistently across
   the seam (band IoU under the threshold) stay apart; fragments of oblique boxes are compared
   through their written rectangles, an approximation; the stitched polygon is a convex hull, so an
   L-shaped union becomes its hull.

**Priority order.** GeoChat gives no scores, so a box is preferred the farther it lies from the edges
of its own tile window, where objects are cut and context is missing. The score is the smallest
distance from any of the box's four pixel corners to its window's edges, each axis normalised by the
window's size on that axis (``min(x−left, right−x)/width``, likewise for y); a corner outside the
window gives a negative score. Higher first; ties by ``(tile_row, tile_col)`` ascending, then by the
box's first three pixel corners (ascending, x before y), then by input position. So only *identical*
boxes of the same tile are ordered by input position, and the kept set (as values) never depends on
the input order.

**Same tile.** GeoChat repeats itself within one answer (``{…}{…}`` with the same or nearly the same
box), so by default boxes of the same tile *can* suppress each other in the IoU pass
(``same_tile_iou=True``) but not in the IoS pass (``same_tile_ios=False``): in one answer, a small box
inside a larger one of the same phrase is a separate object more often than a fragment (there is no
seam inside a tile).

**Geometry.** Overlaps are computed on the boxes' scene-pixel rectangles. An affine map multiplies all
areas by the same factor, so IoU and IoS in pixels equal those in the scene's map CRS exactly (and the
result does not depend on the export CRS). Candidate pairs come from a shapely ``STRtree``, are
pre-filtered with bounding-box bounds, and only the rest get an exact intersection: the boxes are convex
quadrilaterals, clipped against each other with a vectorised Sutherland–Hodgman (about 30× faster
than pairwise GEOS overlay; ``box_overlap.py``). Ratios exactly at a threshold pass (a relative slack
of 1e-9).

**Scale.** Nothing holds all candidate pairs at once: each greedy pass visits its heads in blocks
(starting at one head, growing while a block yields under about 200,000 candidate pairs, shrinking
when it yields more); a head already absorbed is never queried, and exact intersections are computed
in chunks. One answer of 20,000 boxes in one tile merges in 1.6 s when nearly all of them overlap
(a model in a loop) and in about 9 s for a dense mix of small and large boxes, in under 60 MB
(``benchmarks/bench_boxes.py --single``; the previous all-pairs merge took 92 s and 3.9 GB).
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import shapely

from rsvg_desktop.core.geo.box_overlap import greedy_absorb, pair_test
from rsvg_desktop.core.geo.boxes import boxes_to_pixel_corners
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import ConfigError

__all__ = [
    "MergeConfig",
    "MergeReason",
    "MergeResult",
    "apply_merge",
    "edge_scores",
    "merge_boxes",
    "merge_detections",
    "normalise_phrase",
    "phrase_groups",
    "priority_order",
    "stitched_geometry",
    "stitched_groups",
]

log = logging.getLogger(__name__)


class MergeReason(IntEnum):
    """Why a box was dropped (``KEPT`` if it was not)."""

    KEPT = 0
    IOU = 1
    IOS = 2
    STITCH = 3


#: The command-line options of the thresholds a user sets (``rsvg export --iou/--ios``).
_OPTIONS = {"iou_threshold": "--iou", "ios_threshold": "--ios"}


@dataclass(frozen=True, slots=True)
class MergeConfig:
    """Merge thresholds and policy. A threshold of ``None`` disables its pass."""

    iou_threshold: float | None = 0.5
    ios_threshold: float | None = 0.8
    same_tile_iou: bool = True
    same_tile_ios: bool = False
    stitch: bool = True
    stitch_tolerance: float = 0.03
    stitch_band_iou: float = 0.75

    def __post_init__(self) -> None:
        for name in ("iou_threshold", "ios_threshold", "stitch_band_iou"):
            value = getattr(self, name)
            if value is not None and not (0.0 < value <= 1.0):
                raise ConfigError(f"{_OPTIONS.get(name, name)} must be in (0, 1], got {value!r}")
        if not (0.0 <= self.stitch_tolerance < 0.5):
            raise ConfigError(f"stitch_tolerance must be in [0, 0.5), got {self.stitch_tolerance!r}")


@dataclass(frozen=True, eq=False)
class MergeResult:
    """Outcome of a merge over ``N`` input boxes.

    ``kept``: ascending input indices of the survivors. ``absorbed_by[i]``: for a dropped box, the index
    of the *surviving* box that absorbed it (directly or through a box the IoS pass dropped later);
    ``-1`` for kept boxes. ``reason[i]``: :class:`MergeReason`. ``score[i]``: the edge score used.
    """

    kept: np.ndarray
    absorbed_by: np.ndarray
    reason: np.ndarray
    score: np.ndarray

    @property
    def dropped(self) -> np.ndarray:
        return np.flatnonzero(self.absorbed_by >= 0)

    @property
    def absorbed_count(self) -> np.ndarray:
        """For every input box, how many dropped boxes it absorbed (0 for dropped boxes)."""
        return np.bincount(self.absorbed_by[self.absorbed_by >= 0], minlength=len(self.absorbed_by))


# --- building blocks ------------------------------------------------------------------------------
def _singular(word: str) -> str:
    """A plural English noun's singular, by suffix (enough to match one tile's "ships" with the
    next tile's "ship"; irregular plurals stay as they are)."""
    if len(word) <= 3 or word.endswith(("ss", "us", "is")):
        return word
    if word.endswith("ies") and len(word) > 4:
        return word[:-3] + "y"
    if word.endswith(("ches", "shes", "xes", "sses", "uses")):
        return word[:-2]
    if word.endswith("s"):
        return word[:-1]
    return word


def normalise_phrase(p: Any) -> str | None:
    """A phrase as merging and matching compare it: trimmed, whitespace collapsed, case-folded, the last
    word made singular ("Tennis  Courts" → "tennis court"); ``None`` stays ``None``."""
    if p is None:
        return None
    words = str(p).casefold().split()
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


def phrase_groups(
    phrases: Sequence[Any] | np.ndarray, key: Callable[[Any], str | None] = normalise_phrase
) -> np.ndarray:
    """Group id per phrase, numbered in order of first appearance: phrases of one ``key`` share one
    (by default normalised: trimmed, whitespace collapsed, case-folded, the last word made singular;
    ``None`` apart)."""
    ids: dict[str | None, int] = {}
    raw: dict[Any, int] = {}  # memo per raw value: phrases repeat a lot
    out = np.empty(len(phrases), dtype=np.int64)
    for i, p in enumerate(phrases):
        code = raw.get(p)
        if code is None:
            code = raw[p] = ids.setdefault(key(p), len(ids))
        out[i] = code
    return out


def edge_scores(pixel_corners: np.ndarray, windows: np.ndarray) -> np.ndarray:
    """Normalised distance of each box (its nearest corner) to its tile window's edges: ``(N,)``."""
    c = np.asarray(pixel_corners, dtype=np.float64)
    w = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    if len(w) == 1 and len(c) != 1:
        w = np.broadcast_to(w, (len(c), 4))
    x0, y0, ww, hh = (w[:, k, None] for k in range(4))
    dx = np.minimum(c[..., 0] - x0, x0 + ww - c[..., 0]) / ww
    dy = np.minimum(c[..., 1] - y0, y0 + hh - c[..., 1]) / hh
    return np.minimum(dx, dy).min(axis=1)


def priority_order(
    scores: np.ndarray, tile_rows: np.ndarray, tile_cols: np.ndarray, pixel_corners: np.ndarray
) -> np.ndarray:
    """Indices in priority order: score descending, then tile row, tile column, corners, input index."""
    n = len(scores)
    # Three corners fix a parallelogram: enough to order distinct boxes.
    flat = np.asarray(pixel_corners, dtype=np.float64)[:, :3, :].reshape(n, -1)
    # np.lexsort sorts by the *last* key first.
    keys: list[np.ndarray] = [np.arange(n)]
    keys += [flat[:, k] for k in range(flat.shape[1] - 1, -1, -1)]
    keys += [np.asarray(tile_cols), np.asarray(tile_rows), -np.asarray(scores, dtype=np.float64)]
    return np.lexsort(keys)


# --- the passes -----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True, eq=False)
class _Boxes:
    """The per-box arrays the passes share (``N`` boxes, scene pixels)."""

    corners: np.ndarray  # (N, 4, 2) pixel corners
    win: np.ndarray  # (N, 4) tile windows (col_off, row_off, width, height)
    rows: np.ndarray  # (N,) tile rows
    cols: np.ndarray  # (N,) tile columns
    groups: np.ndarray  # (N,) phrase group ids
    tiles: np.ndarray  # (N,) one integer key per tile (only compared for equality)
    polys: np.ndarray  # (N,) shapely polygons
    areas: np.ndarray  # (N,)
    bounds: np.ndarray  # (N, 4) xmin, ymin, xmax, ymax
    order: np.ndarray  # priority order (indices)
    tree: shapely.STRtree  # of ``polys``

    @classmethod
    def build(
        cls,
        corners: np.ndarray,
        win: np.ndarray,
        phrases: Sequence[Any] | np.ndarray,
        rows: np.ndarray,
        cols: np.ndarray,
        scores: np.ndarray,
    ) -> _Boxes:
        polys = shapely.polygons(corners)
        return cls(
            corners=corners,
            win=win,
            rows=rows,
            cols=cols,
            groups=phrase_groups(phrases),
            tiles=(rows - rows.min()) * (int(cols.max() - cols.min()) + 1) + (cols - cols.min()),
            polys=polys,
            areas=shapely.area(polys),
            bounds=shapely.bounds(polys),
            order=priority_order(scores, rows, cols, corners),
            tree=shapely.STRtree(polys),
        )

    def rank(self) -> np.ndarray:
        """Each box's position in the priority order."""
        rank = np.empty(len(self.order), dtype=np.int64)
        rank[self.order] = np.arange(len(self.order))
        return rank


def _iou_pass(boxes: _Boxes, active: np.ndarray, config: MergeConfig) -> np.ndarray:
    """Absorbers of the IoU pass: boxes visited in priority order."""

    def test(h: np.ndarray, c: np.ndarray) -> np.ndarray:
        return pair_test(boxes.corners, boxes.areas, boxes.bounds, h, c, iou_min=config.iou_threshold)

    return greedy_absorb(
        boxes.order,
        active,
        boxes.tree,
        boxes.polys,
        boxes.groups,
        boxes.tiles,
        allow_same_tile=config.same_tile_iou,
        test=test,
    )


def _ios_pass(boxes: _Boxes, active: np.ndarray, config: MergeConfig) -> np.ndarray:
    """Absorbers of the IoS pass: boxes visited largest first, ties in priority order."""

    def test(h: np.ndarray, c: np.ndarray) -> np.ndarray:
        return pair_test(boxes.corners, boxes.areas, boxes.bounds, h, c, ios_min=config.ios_threshold)

    order_ios = np.lexsort((boxes.rank(), -boxes.areas))  # largest first, ties in priority order
    return greedy_absorb(
        order_ios,
        active,
        boxes.tree,
        boxes.polys,
        boxes.groups,
        boxes.tiles,
        allow_same_tile=config.same_tile_ios,
        test=test,
    )


def _stitch_extents(corners: np.ndarray, areas: np.ndarray, bounds: np.ndarray) -> np.ndarray:
    """The rectangle ``(x0, y0, x1, y1)`` the stitch test uses per box: its bounds when the box is upright
    (θ a multiple of 90°), else the rectangle as written, before the turn (what GeoChat clipped at its
    tile's edge): the box's centre ± half its side lengths."""
    box_area = (bounds[:, 2] - bounds[:, 0]) * (bounds[:, 3] - bounds[:, 1])
    upright = areas >= (1.0 - 1e-6) * box_area
    centre = corners.mean(axis=1)
    half_w = np.hypot(*(corners[:, 1] - corners[:, 0]).T) / 2.0
    half_h = np.hypot(*(corners[:, 3] - corners[:, 0]).T) / 2.0
    written = np.column_stack(
        [centre[:, 0] - half_w, centre[:, 1] - half_h, centre[:, 0] + half_w, centre[:, 1] + half_h]
    )
    return np.where(upright[:, None], bounds, written)


class _UnionFind:
    """Components of stitched fragments; a component's root is its smallest index."""

    def __init__(self, n: int) -> None:
        self.parent = np.arange(n)

    def find(self, i: int) -> int:
        parent = self.parent
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    def union(self, x: int, y: int) -> None:
        rx, ry = self.find(x), self.find(y)
        if rx != ry:
            self.parent[max(rx, ry)] = min(rx, ry)


def _stitch(boxes: _Boxes, active: np.ndarray, config: MergeConfig) -> np.ndarray:
    """Seam fragments to stitch: absorber per box (the fragment first in priority order), −1 otherwise.

    See the module documentation for the rule. Pairs come from an ``STRtree`` query, in blocks, of
    the bounding boxes (grown by the tolerance) of the boxes that reach an edge of their tile: every
    stitched pair holds one. Components are found with a union–find, so the result does not depend on
    the input order.
    """
    n = len(boxes.corners)
    absorber = np.full(n, -1, dtype=np.int64)
    win = boxes.win
    tol = config.stitch_tolerance * np.minimum(win[:, 2], win[:, 3])
    ext = _stitch_extents(boxes.corners, boxes.areas, boxes.bounds)
    # Only a box that reaches an edge of its tile can be a fragment, and only if tiles differ.
    near_edge = (
        (ext[:, 0] <= win[:, 0] + tol)
        | (ext[:, 1] <= win[:, 1] + tol)
        | (ext[:, 2] >= win[:, 0] + win[:, 2] - tol)
        | (ext[:, 3] >= win[:, 1] + win[:, 3] - tol)
    )
    single_tile = (boxes.rows == boxes.rows[0]).all() and (boxes.cols == boxes.cols[0]).all()
    # Pairs are found from the boxes near an edge (every stitched pair holds one: the cut rule).
    queried = active & near_edge
    if not queried.any() or single_tile:
        return absorber
    fragments = _UnionFind(n)
    for i, j in _neighbour_pairs(boxes, active, queried, ext, tol):
        good = _fragments_of_one_object(boxes, i, j, ext, tol, config.stitch_band_iou)
        for x, y in zip(i[good].tolist(), j[good].tolist(), strict=True):
            fragments.union(x, y)
    return _component_heads(fragments, boxes.rank(), absorber)


def _neighbour_pairs(
    boxes: _Boxes, active: np.ndarray, queried: np.ndarray, ext: np.ndarray, tol: np.ndarray
) -> Iterator[tuple[np.ndarray, np.ndarray]]:
    """Candidate pairs ``(i, j)`` block by block, each pair once: ``i`` a ``queried`` box, ``j`` an active
    box of the same phrase group in a neighbouring tile (sharing an edge or a corner) whose bounds meet
    ``i``'s extent grown by the tolerance."""
    cand_idx = np.flatnonzero(queried)
    lo = np.minimum(boxes.bounds[cand_idx, :2], ext[cand_idx, :2]) - tol[cand_idx, None]
    hi = np.maximum(boxes.bounds[cand_idx, 2:], ext[cand_idx, 2:]) + tol[cand_idx, None]
    grown = shapely.box(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1])
    rows, cols, groups = boxes.rows, boxes.cols, boxes.groups
    block = 4096
    for start in range(0, len(cand_idx), block):
        qi, j = boxes.tree.query(grown[start : start + block])
        i = cand_idx[start + qi]
        keep = active[j] & (groups[i] == groups[j]) & ((i < j) | ~queried[j])  # each pair once
        dr, dc = rows[j] - rows[i], cols[j] - cols[i]
        keep &= (np.abs(dr) <= 1) & (np.abs(dc) <= 1) & ((dr != 0) | (dc != 0))  # neighbour tiles
        i, j = i[keep], j[keep]
        if len(i):
            yield i, j


def _fragments_of_one_object(
    boxes: _Boxes, i: np.ndarray, j: np.ndarray, ext: np.ndarray, tol: np.ndarray, band_iou_min: float
) -> np.ndarray:
    """Mask of the pairs ``i[k]–j[k]`` that are fragments of one object: cut at every seam between their
    tiles, and agreeing inside the band both tiles see (IoU there ≥ ``band_iou_min``)."""
    win = boxes.win
    t = np.minimum(tol[i], tol[j])
    cut = np.ones(len(i), dtype=bool)
    part_i, part_j = ext[i].copy(), ext[j].copy()
    for ax, idx in ((0, boxes.cols), (1, boxes.rows)):  # x across column seams, y across row seams
        differ = idx[i] != idx[j]
        if not differ.any():
            continue
        # ``f`` is the box in the tile that comes first along this axis, ``s`` the other one.
        i_first = idx[i] < idx[j]
        f, s = np.where(i_first, i, j), np.where(i_first, j, i)
        band_lo = win[s, ax]  # where the second tile starts
        band_hi = win[f, ax] + win[f, ax + 2]  # where the first tile ends
        # Each differing axis needs a fragment that reaches its tile's seam-side edge (a cut).
        cut_here = (ext[f, ax + 2] >= band_hi - t) | (ext[s, ax] <= band_lo + t)
        cut &= np.where(differ, cut_here, True)
        lo = np.where(differ, band_lo, -np.inf)
        hi = np.where(differ, band_hi, np.inf)
        # Across a band narrower than the tolerance (tiles that only touch) there is nothing to
        # compare: the cut rule already makes the two meet there; only the other axis counts.
        thin = differ & (band_hi - band_lo < t)
        for part in (part_i, part_j):
            part[:, ax] = np.where(thin, band_lo - t, np.clip(part[:, ax], lo, hi))
            part[:, ax + 2] = np.where(thin, band_hi + t, np.clip(part[:, ax + 2], lo, hi))
    # Inside the shared band both tiles see the same thing: the parts of the two boxes there must agree.
    return cut & (_rectangle_iou(part_i, part_j) >= band_iou_min)


def _rectangle_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """IoU of axis-aligned rectangles ``a[k]`` and ``b[k]`` (``(x0, y0, x1, y1)``); 0 without area."""
    iw = np.clip(np.minimum(a[:, 2], b[:, 2]) - np.maximum(a[:, 0], b[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(a[:, 3], b[:, 3]) - np.maximum(a[:, 1], b[:, 1]), 0.0, None)
    inter = iw * ih
    area_a = (a[:, 2] - a[:, 0]) * (a[:, 3] - a[:, 1])
    area_b = (b[:, 2] - b[:, 0]) * (b[:, 3] - b[:, 1])
    union = area_a + area_b - inter
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(union > 0, inter / union, 0.0)


def _component_heads(fragments: _UnionFind, rank: np.ndarray, absorber: np.ndarray) -> np.ndarray:
    """``absorber`` with every stitched fragment pointing at its component's member first in priority
    order (``rank``); that member stays −1."""
    n = len(absorber)
    parent = fragments.parent
    touched = np.flatnonzero(parent != np.arange(n))
    if not len(touched):
        return absorber
    members = np.union1d(touched, parent[touched])
    roots = np.array([fragments.find(int(k)) for k in members])
    by = np.lexsort((rank[members], roots))
    members, comp = members[by], roots[by]
    starts = np.r_[True, comp[1:] != comp[:-1]]
    head = members[np.maximum.accumulate(np.where(starts, np.arange(len(members)), 0))]
    absorber[members] = np.where(members == head, -1, head)
    return absorber


# --- public entry points --------------------------------------------------------------------------
def merge_boxes(
    pixel_corners: np.ndarray,
    windows: np.ndarray,
    phrases: Sequence[Any] | np.ndarray,
    tile_rows: Sequence[int] | np.ndarray,
    tile_cols: Sequence[int] | np.ndarray,
    config: MergeConfig = MergeConfig(),
) -> MergeResult:
    """Merge duplicates among ``N`` boxes given as scene-pixel corners ``(N, 4, 2)`` with their tile
    windows ``(N, 4)``, phrases and tile ids. See the module docs for the order and the policy."""
    corners, win, rows, cols = _checked_inputs(pixel_corners, windows, phrases, tile_rows, tile_cols)
    n = len(corners)
    reason = np.zeros(n, dtype=np.int8)
    absorbed_by = np.full(n, -1, dtype=np.int64)
    scores = edge_scores(corners, win) if n else np.empty(0)
    if n < 2:
        return MergeResult(np.arange(n, dtype=np.int64), absorbed_by, reason, scores)

    boxes = _Boxes.build(corners, win, phrases, rows, cols, scores)
    active = np.ones(n, dtype=bool)

    def drop(absorber: np.ndarray, why: MergeReason) -> None:
        hit = absorber >= 0
        absorbed_by[hit], reason[hit] = absorber[hit], why
        active[hit] = False

    if config.iou_threshold is not None:
        drop(_iou_pass(boxes, active, config), MergeReason.IOU)
    if config.ios_threshold is not None:
        drop(_ios_pass(boxes, active, config), MergeReason.IOS)
    if config.stitch:
        drop(_stitch(boxes, active, config), MergeReason.STITCH)
    _follow_to_survivors(absorbed_by)

    kept = np.flatnonzero(active)
    log.debug("merge: %d boxes, %d kept", n, len(kept))
    return MergeResult(kept.astype(np.int64), absorbed_by, reason, scores)


def _checked_inputs(
    pixel_corners: np.ndarray,
    windows: np.ndarray,
    phrases: Sequence[Any] | np.ndarray,
    tile_rows: Sequence[int] | np.ndarray,
    tile_cols: Sequence[int] | np.ndarray,
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Corners ``(N, 4, 2)``, windows ``(N, 4)`` (one window is broadcast), tile rows and columns as
    arrays, refused when their shapes or lengths disagree or a window is unknown."""
    corners = np.asarray(pixel_corners, dtype=np.float64)
    n = len(corners)
    if corners.shape != (n, 4, 2):
        raise ConfigError(f"pixel_corners must be (N, 4, 2), got {corners.shape}")
    win = np.asarray(windows, dtype=np.float64).reshape(-1, 4)
    if len(win) == 1 and n != 1:
        win = np.broadcast_to(win, (n, 4))
    rows = np.asarray(tile_rows, dtype=np.int64).reshape(-1)
    cols = np.asarray(tile_cols, dtype=np.int64).reshape(-1)
    if not (len(win) == len(rows) == len(cols) == len(phrases) == n):
        raise ConfigError("pixel_corners, windows, phrases, tile_rows and tile_cols differ in length")
    if n and (~np.isfinite(win).all(axis=1)).any():
        raise ConfigError("tile windows are unknown for some boxes; pass the tiles to merge")
    return corners, win, rows, cols


def _follow_to_survivors(absorbed_by: np.ndarray) -> None:
    """A box absorbed by a box that a later pass dropped: follow the chain to the survivor (in place)."""
    for _ in range(4):
        idx = np.flatnonzero(absorbed_by >= 0)
        parent = absorbed_by[idx]
        chained = absorbed_by[parent] >= 0
        if not chained.any():
            break
        absorbed_by[idx[chained]] = absorbed_by[parent[chained]]


def merge_detections(
    table: DetectionTable,
    config: MergeConfig = MergeConfig(),
    *,
    tiles: Iterable[Tile] | Mapping[tuple[int, int], Tile] | None = None,
) -> MergeResult:
    """Merge a :class:`DetectionTable`. Tile windows come from the table, or from ``tiles`` (by
    ``(row, col)``) where the table has none. Pixel corners are rebuilt from the grid boxes with the
    table's angle convention."""
    windows = table.windows.copy()
    missing = ~np.isfinite(windows).all(axis=1)
    if missing.any() and tiles is not None:
        lookup = tiles if isinstance(tiles, Mapping) else {(t.row, t.col): t for t in tiles}
        for i in np.flatnonzero(missing):
            key = (int(table.tile_row[i]), int(table.tile_col[i]))
            if key not in lookup:
                raise ConfigError(f"no tile r{key[0]}c{key[1]} among the tiles given to merge")
            windows[i] = lookup[key].window
    if len(table) and (~np.isfinite(windows).all(axis=1)).any():
        raise ConfigError("tile windows are unknown for some detections; pass the tiles to merge")
    corners = (
        boxes_to_pixel_corners(table.boxes, windows, table.angle_convention)
        if len(table)
        else np.empty((0, 4, 2))
    )
    return merge_boxes(corners, windows, table.phrase, table.tile_row, table.tile_col, config)


def stitched_groups(result: MergeResult) -> dict[int, np.ndarray]:
    """For every survivor that stitched seam fragments: its input index → the indices of all its
    fragments (itself first, then the stitched ones ascending). Survivors that stitched nothing are
    left out."""
    frag = np.flatnonzero(result.reason == MergeReason.STITCH)
    if not len(frag):
        return {}
    heads = result.absorbed_by[frag]
    groups: dict[int, list[int]] = {}
    for h, f in zip(heads.tolist(), frag.tolist(), strict=True):
        groups.setdefault(h, []).append(f)
    return {h: np.asarray([h, *sorted(fs)], dtype=np.int64) for h, fs in sorted(groups.items())}


def stitched_geometry(geometries: Sequence[Any] | np.ndarray) -> Any:
    """One polygon for a stitched object: the convex hull of its fragments (exact for upright
    fragments that agree across the seam: their union is then a rectangle, in any affine CRS)."""
    parts = [g for g in geometries if g is not None and not shapely.is_empty(g)]
    if not parts:
        return None
    return shapely.convex_hull(shapely.geometrycollections(parts))


def apply_merge(table: DetectionTable, result: MergeResult) -> DetectionTable:
    """The surviving rows of ``table`` in input order; a survivor that stitched seam fragments gets the
    stitched polygon as its geometry (its tile and grid box stay those of the fragment kept)."""
    kept = table.take(result.kept)
    groups = stitched_groups(result)
    if not groups:
        return kept
    geoms = kept.geometry.copy()
    pos = {int(k): i for i, k in enumerate(result.kept.tolist())}
    for head, members in groups.items():
        geoms[pos[head]] = stitched_geometry(table.geometry[members])
    return dataclasses.replace(kept, geometry=geoms)
