"""Overlaps between boxes and the greedy suppression the merge passes are built on.

Boxes are convex quadrilaterals in scene pixels. :func:`quad_intersection_area` clips them against
each other with a vectorised Sutherland–Hodgman (about 30× faster than pairwise GEOS overlay);
:func:`pair_test` rules most pairs out with their bounding boxes first and computes exact
intersections for the rest, in chunks; :func:`greedy_absorb` visits boxes in an order and lets each
survivor absorb the later boxes of its phrase group that pass a pair test, in blocks of heads sized so
that memory stays bounded however dense the boxes are. Ratios exactly at a threshold pass (a relative
slack of 1e-9).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import shapely

__all__ = ["greedy_absorb", "pair_test", "quad_intersection_area"]

#: Candidate pairs one block of greedy heads may produce before the block size shrinks.
_PAIR_BUDGET = 200_000
#: Pairs whose exact intersection is computed at once.
_EXACT_CHUNK = 65_536


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


def pair_test(
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


def greedy_absorb(
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
