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
than pairwise GEOS overlay). Ratios exactly at a threshold pass (a relative slack of 1e-9).

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
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from enum import IntEnum
from typing import Any

import numpy as np
import shapely

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
    "phrase_groups",
    "priority_order",
    "quad_intersection_area",
    "stitched_geometry",
    "stitched_groups",
]

log = logging.getLogger(__name__)

#: Candidate pairs one block of greedy heads may produce before the block size shrinks.
_PAIR_BUDGET = 200_000
#: Pairs whose exact intersection is computed at once.
_EXACT_CHUNK = 65_536


class MergeReason(IntEnum):
    """Why a box was dropped (``KEPT`` if it was not)."""

    KEPT = 0
    IOU = 1
    IOS = 2
    STITCH = 3


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
                raise ConfigError(f"{name} must be in (0, 1], got {value!r}")
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


def _norm_phrase(p: Any) -> Any:
    if p is None:
        return None
    words = str(p).casefold().split()
    if words:
        words[-1] = _singular(words[-1])
    return " ".join(words)


def phrase_groups(phrases: Sequence[Any] | np.ndarray) -> np.ndarray:
    """Group id per phrase (normalised: trimmed, whitespace collapsed, case-folded, the last word made
    singular; ``None`` apart)."""
    ids: dict[Any, int] = {}
    raw: dict[Any, int] = {}  # memo per raw value: phrases repeat a lot
    out = np.empty(len(phrases), dtype=np.int64)
    for i, p in enumerate(phrases):
        code = raw.get(p)
        if code is None:
            code = raw[p] = ids.setdefault(_norm_phrase(p), len(ids))
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


def _ccw_quads(q: np.ndarray) -> np.ndarray:
    x, y = q[..., 0], q[..., 1]
    signed = (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
    return np.where((signed < 0)[:, None, None], q[:, ::-1], q)


def quad_intersection_area(p: np.ndarray, q: np.ndarray) -> np.ndarray:
    """Areas of the intersections of convex quadrilaterals ``p[i] ∩ q[i]`` (``(M, 4, 2)`` each).

    Vectorised Sutherland–Hodgman clipping of ``p`` by the four edges of ``q`` (exact for convex
    polygons, any vertex order). Rows where rounding would need more than the 8 vertices a convex
    result can have fall back to GEOS. Much faster than pairwise GEOS overlay for many small boxes.
    """
    p = np.asarray(p, dtype=np.float64)
    q = np.asarray(q, dtype=np.float64)
    m = len(p)
    if m == 0:
        return np.empty(0)
    origin = p[:, :1, :].copy()  # work relative to one corner: small numbers, less cancellation
    p, q = _ccw_quads(p - origin), _ccw_quads(q - origin)
    k = 8
    subj = np.zeros((m, k, 2))
    subj[:, :4] = p
    cnt = np.full(m, 4)
    rows = np.arange(m)[:, None]
    slots = np.arange(k)[None, :]
    overflow = np.zeros(m, dtype=bool)
    for e in range(4):
        a = q[:, e][:, None, :]
        d = (q[:, (e + 1) % 4] - q[:, e])[:, None, :]
        valid = slots < cnt[:, None]
        nxt = subj[rows, np.where(slots + 1 < cnt[:, None], slots + 1, 0)]
        s_cur = d[..., 0] * (subj[..., 1] - a[..., 1]) - d[..., 1] * (subj[..., 0] - a[..., 0])
        s_nxt = d[..., 0] * (nxt[..., 1] - a[..., 1]) - d[..., 1] * (nxt[..., 0] - a[..., 0])
        c_in, n_in = s_cur >= 0, s_nxt >= 0
        cross = valid & (c_in != n_in)
        with np.errstate(divide="ignore", invalid="ignore"):
            t = np.where(cross, s_cur / (s_cur - s_nxt), 0.0)
        out = np.empty((m, 2 * k, 2))
        out[:, 0::2] = subj
        out[:, 1::2] = subj + t[..., None] * (nxt - subj)
        keep = np.empty((m, 2 * k), dtype=bool)
        keep[:, 0::2] = valid & c_in
        keep[:, 1::2] = cross
        # Compact the kept points to the front of each row (order preserved).
        pos = np.cumsum(keep, axis=1) - 1
        cnt = pos[:, -1] + 1
        overflow |= cnt > k
        sel = keep & (pos < k)
        subj = np.zeros((m, k, 2))
        r_idx = np.broadcast_to(rows, keep.shape)[sel]
        subj[r_idx, pos[sel]] = out[sel]
        cnt = np.minimum(cnt, k)
    filled = np.where((slots < cnt[:, None])[..., None], subj, subj[:, :1, :])
    x, y = filled[..., 0], filled[..., 1]
    area = 0.5 * (x * np.roll(y, -1, axis=1) - np.roll(x, -1, axis=1) * y).sum(axis=1)
    # A clip quad without area (a point or a segment) clips nothing away on its zero-length edges.
    qx, qy = q[..., 0], q[..., 1]
    q_area = 0.5 * (qx * np.roll(qy, -1, axis=1) - np.roll(qx, -1, axis=1) * qy).sum(axis=1)
    area = np.where((cnt >= 3) & (q_area > 0), np.abs(area), 0.0)
    if overflow.any():  # pragma: no cover - needs pathological rounding
        bad = np.flatnonzero(overflow)
        area[bad] = shapely.area(shapely.intersection(shapely.polygons(p[bad]), shapely.polygons(q[bad])))
    return area


def _pair_test(
    corners: np.ndarray,
    areas: np.ndarray,
    bounds: np.ndarray,
    left: np.ndarray,
    right: np.ndarray,
    *,
    iou_min: float | None = None,
    ios_min: float | None = None,
) -> np.ndarray:
    """Mask of the pairs ``left[k]–right[k]`` whose IoU ≥ ``iou_min`` or IoS ≥ ``ios_min``.

    Bounding boxes rule out most pairs first; the rest get an exact intersection, in chunks of
    :data:`_EXACT_CHUNK` pairs so that memory stays bounded however many pairs there are.
    """
    out = np.zeros(len(left), dtype=bool)
    bl, br = bounds[left], bounds[right]
    iw = np.clip(np.minimum(bl[:, 2], br[:, 2]) - np.maximum(bl[:, 0], br[:, 0]), 0.0, None)
    ih = np.clip(np.minimum(bl[:, 3], br[:, 3]) - np.maximum(bl[:, 1], br[:, 1]), 0.0, None)
    # The intersection lies inside both envelopes: an upper bound of its area (with slack for rounding).
    ub = iw * ih * (1.0 + 1e-9)
    al, ar = areas[left], areas[right]
    small = np.minimum(al, ar)
    possible = np.zeros(len(left), dtype=bool)
    with np.errstate(divide="ignore", invalid="ignore"):
        if iou_min is not None:
            union_lb = al + ar - np.minimum(ub, small)
            possible |= (union_lb > 0) & (np.minimum(ub, small) >= iou_min * union_lb)
        if ios_min is not None:
            possible |= (small > 0) & (ub >= ios_min * small)
    idx = np.flatnonzero(possible)
    for s in range(0, len(idx), _EXACT_CHUNK):
        k = idx[s : s + _EXACT_CHUNK]
        inter = quad_intersection_area(corners[left[k]], corners[right[k]])
        a, b, m = al[k], ar[k], small[k]
        union = a + b - inter
        ok = np.zeros(len(k), dtype=bool)
        # A relative slack of 1e-9: ratios that are exactly the threshold on the integer grid pass
        # whatever the rounding of the clipping (which depends on the order of the two boxes).
        if iou_min is not None:
            ok |= (union > 0) & (inter >= iou_min * union * (1.0 - 1e-9))
        if ios_min is not None:
            ok |= (m > 0) & (inter >= ios_min * m * (1.0 - 1e-9))
        out[k] = ok
    return out


def _greedy(
    order: np.ndarray,
    active: np.ndarray,
    tree: shapely.STRtree,
    polys: np.ndarray,
    groups: np.ndarray,
    tiles: np.ndarray,
    *,
    allow_same_tile: bool,
    test: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> np.ndarray:
    """Greedy suppression along ``order``; returns the absorber of every box (−1: not absorbed).

    The boxes are visited in ``order``; a visited box that is active and not yet absorbed absorbs every
    later, active, not yet absorbed box of its phrase group for which ``test(head, box)`` holds. Only
    ``active`` boxes take part. Work is done in blocks of heads: a block's candidates come from one
    ``STRtree`` query, and heads absorbed by an earlier block are never queried. The block size adapts
    so that a block yields about :data:`_PAIR_BUDGET` candidate pairs: memory stays bounded however
    dense the boxes are, and time grows with the pairs that really have to be looked at.
    """
    n = len(order)
    absorber = np.full(n, -1, dtype=np.int64)
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    seq = order[active[order]]
    block, pos = 1, 0  # grows while blocks stay under the budget (the first heads of a dense answer
    # absorb most of it: they are queried alone)
    while pos < len(seq):
        heads = seq[pos : pos + block]
        pos += len(heads)
        heads = heads[absorber[heads] < 0]
        if not len(heads):
            continue
        qi, cand = tree.query(polys[heads])
        pairs = len(qi)
        head = heads[qi]
        keep = (rank[cand] > rank[head]) & active[cand] & (absorber[cand] < 0)
        keep &= groups[cand] == groups[head]
        if not allow_same_tile:
            keep &= tiles[cand] != tiles[head]
        head, cand = head[keep], cand[keep]
        ok = test(head, cand)
        head, cand = head[ok], cand[ok]
        # Resolve the block in visiting order: a head absorbed by an earlier head of the block absorbs
        # nothing.
        if len(head):
            by = np.argsort(rank[head], kind="stable")
            head, cand = head[by], cand[by]
            starts = np.flatnonzero(np.r_[True, head[1:] != head[:-1]])
            ends = np.r_[starts[1:], len(head)]
            for h, s, e in zip(head[starts].tolist(), starts.tolist(), ends.tolist(), strict=True):
                if absorber[h] < 0:
                    cs = cand[s:e]
                    absorber[cs[absorber[cs] < 0]] = h
        if pairs > _PAIR_BUDGET:
            block = max(1, int(block * _PAIR_BUDGET / pairs))
        elif pairs < _PAIR_BUDGET // 4:
            block = min(block * 2, 65_536)
    return absorber


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


def _stitch(
    corners: np.ndarray,
    win: np.ndarray,
    areas: np.ndarray,
    bounds: np.ndarray,
    groups: np.ndarray,
    rows: np.ndarray,
    cols: np.ndarray,
    order: np.ndarray,
    active: np.ndarray,
    tree: shapely.STRtree,
    config: MergeConfig,
) -> np.ndarray:
    """Seam fragments to stitch: absorber per box (the fragment first in priority order), −1 otherwise.

    See the module documentation for the rule. Pairs come from an ``STRtree`` query, in blocks, of
    the bounding boxes (grown by the tolerance) of the boxes that reach an edge of their tile: every
    stitched pair holds one. Components are found with a union–find, so the result does not depend on
    the input order.
    """
    n = len(corners)
    absorber = np.full(n, -1, dtype=np.int64)
    tol = config.stitch_tolerance * np.minimum(win[:, 2], win[:, 3])
    ext = _stitch_extents(corners, areas, bounds)
    # Only a box that reaches an edge of its tile can be a fragment, and only if tiles differ.
    near_edge = (
        (ext[:, 0] <= win[:, 0] + tol)
        | (ext[:, 1] <= win[:, 1] + tol)
        | (ext[:, 2] >= win[:, 0] + win[:, 2] - tol)
        | (ext[:, 3] >= win[:, 1] + win[:, 3] - tol)
    )
    single_tile = (rows == rows[0]).all() and (cols == cols[0]).all()
    # Pairs are found from the boxes near an edge (every stitched pair holds one: the cut rule).
    cand_idx = np.flatnonzero(active & near_edge)
    if not len(cand_idx) or single_tile:
        return absorber
    queried = active & near_edge
    lo = np.minimum(bounds[cand_idx, :2], ext[cand_idx, :2]) - tol[cand_idx, None]
    hi = np.maximum(bounds[cand_idx, 2:], ext[cand_idx, 2:]) + tol[cand_idx, None]
    grown = shapely.box(lo[:, 0], lo[:, 1], hi[:, 0], hi[:, 1])
    parent = np.arange(n)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = int(parent[i])
        return i

    block = 4096
    for start in range(0, len(cand_idx), block):
        qi, j = tree.query(grown[start : start + block])
        i = cand_idx[start + qi]
        keep = active[j] & (groups[i] == groups[j]) & ((i < j) | ~queried[j])  # each pair once
        dr, dc = rows[j] - rows[i], cols[j] - cols[i]
        keep &= (np.abs(dr) <= 1) & (np.abs(dc) <= 1) & ((dr != 0) | (dc != 0))  # neighbour tiles
        i, j = i[keep], j[keep]
        if not len(i):
            continue
        t = np.minimum(tol[i], tol[j])
        cut = np.ones(len(i), dtype=bool)
        part_i, part_j = ext[i].copy(), ext[j].copy()
        for ax, idx in ((0, cols), (1, rows)):  # x across column seams, y across row seams
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
        # Inside the shared band both tiles see the same thing: the parts of the two boxes there
        # must agree.
        iw = np.clip(
            np.minimum(part_i[:, 2], part_j[:, 2]) - np.maximum(part_i[:, 0], part_j[:, 0]), 0.0, None
        )
        ih = np.clip(
            np.minimum(part_i[:, 3], part_j[:, 3]) - np.maximum(part_i[:, 1], part_j[:, 1]), 0.0, None
        )
        inter = iw * ih
        area_i = (part_i[:, 2] - part_i[:, 0]) * (part_i[:, 3] - part_i[:, 1])
        area_j = (part_j[:, 2] - part_j[:, 0]) * (part_j[:, 3] - part_j[:, 1])
        union = area_i + area_j - inter
        with np.errstate(divide="ignore", invalid="ignore"):
            band_iou = np.where(union > 0, inter / union, 0.0)
        good = cut & (band_iou >= config.stitch_band_iou)
        for x, y in zip(i[good].tolist(), j[good].tolist(), strict=True):
            rx, ry = find(x), find(y)
            if rx != ry:
                parent[max(rx, ry)] = min(rx, ry)
    touched = np.flatnonzero(parent != np.arange(n))
    if not len(touched):
        return absorber
    cand_idx = np.union1d(touched, parent[touched])
    roots = np.array([find(int(k)) for k in cand_idx])
    # Survivor of a component: its member first in priority order.
    rank = np.empty(n, dtype=np.int64)
    rank[order] = np.arange(n)
    by = np.lexsort((rank[cand_idx], roots))
    members, comp = cand_idx[by], roots[by]
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
    reason = np.zeros(n, dtype=np.int8)
    absorbed_by = np.full(n, -1, dtype=np.int64)
    scores = edge_scores(corners, win) if n else np.empty(0)
    if n < 2:
        return MergeResult(np.arange(n, dtype=np.int64), absorbed_by, reason, scores)

    groups = phrase_groups(phrases)
    # One integer key per tile (only compared for equality).
    tiles = (rows - rows.min()) * (int(cols.max() - cols.min()) + 1) + (cols - cols.min())
    polys = shapely.polygons(corners)
    areas = shapely.area(polys)
    bounds = shapely.bounds(polys)
    order = priority_order(scores, rows, cols, corners)
    active = np.ones(n, dtype=bool)

    tree = shapely.STRtree(polys)

    def test_iou(h: np.ndarray, c: np.ndarray) -> np.ndarray:
        return _pair_test(corners, areas, bounds, h, c, iou_min=config.iou_threshold)

    def test_ios(h: np.ndarray, c: np.ndarray) -> np.ndarray:
        return _pair_test(corners, areas, bounds, h, c, ios_min=config.ios_threshold)

    if config.iou_threshold is not None:
        ab = _greedy(
            order, active, tree, polys, groups, tiles, allow_same_tile=config.same_tile_iou, test=test_iou
        )
        hit = ab >= 0
        absorbed_by[hit], reason[hit] = ab[hit], MergeReason.IOU
        active &= ~hit

    if config.ios_threshold is not None:
        rank = np.empty(n, dtype=np.int64)
        rank[order] = np.arange(n)
        order_ios = np.lexsort((rank, -areas))  # largest first, ties in priority order
        ab = _greedy(
            order_ios, active, tree, polys, groups, tiles, allow_same_tile=config.same_tile_ios, test=test_ios
        )
        hit = ab >= 0
        absorbed_by[hit], reason[hit] = ab[hit], MergeReason.IOS
        active &= ~hit

    if config.stitch:
        ab = _stitch(corners, win, areas, bounds, groups, rows, cols, order, active, tree, config)
        hit = ab >= 0
        absorbed_by[hit], reason[hit] = ab[hit], MergeReason.STITCH
        active &= ~hit

    # A box absorbed by a box that a later pass dropped: follow the chain to the survivor.
    for _ in range(4):
        idx = np.flatnonzero(absorbed_by >= 0)
        parent = absorbed_by[idx]
        chained = absorbed_by[parent] >= 0
        if not chained.any():
            break
        absorbed_by[idx[chained]] = absorbed_by[parent[chained]]

    kept = np.flatnonzero(active)
    log.debug("merge: %d boxes, %d kept", n, len(kept))
    return MergeResult(kept.astype(np.int64), absorbed_by, reason, scores)


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
