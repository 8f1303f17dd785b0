"""One-to-one matching of two dates' objects by rotated-polygon IoU, per phrase.

Objects match only within one phrase key (:func:`phrase_key`: "Ships" and "ship" are one key; a missing
phrase and an empty one are the key ``""``). Among the pairs of one key whose IoU reaches ``min_iou``
(ratios exactly at the threshold pass, with a relative slack of 1e-9), the matching is the one-to-one
assignment of **maximum total IoU** — not greedy: greedy takes the best pair first and can leave two
objects unmatched that an optimal assignment pairs (A overlaps B1 0.8 and B2 0.6, A' overlaps only B1:
greedy pairs A–B1 and leaves A', B2; optimal pairs A–B2, A'–B1). Maximising total IoU rather than the
number of pairs keeps a clear match (0.9) over two weak ones (0.35 + 0.35) that it would break up.

**Scale.** Candidates come from a shapely ``STRtree`` (``intersects``) of the after date, queried with
the whole before date at once, filtered by key, and their IoU is computed with shapely's vectorised
``intersection``/``area``. The candidate graph (edges at or above ``min_iou``) falls apart into
connected components — almost all of them a single pair in practice — and only components with more
than one edge are solved with ``scipy.optimize.linear_sum_assignment``; the optimum of the whole is the
union of the components' optima. 10,000 objects a date match in well under a second
(``benchmarks/bench_change_match.py``).

**Unusable geometries.** A missing (``None``), empty, invalid or zero-area geometry cannot overlap
anything by area, so it takes no part in matching and stays unmatched (``appeared`` or
``disappeared``); a warning says how many there were. Refusing the whole comparison for one degenerate
box of a model's answer would throw away two scene runs; reporting it as a change lets verification
(or the user) look at it.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from typing import Any

import numpy as np
import shapely
from scipy.optimize import linear_sum_assignment
from scipy.sparse import coo_matrix
from scipy.sparse.csgraph import connected_components

from rsvg_desktop.core.geo.change.types import Matches
from rsvg_desktop.core.geo.merge import normalise_phrase, phrase_groups
from rsvg_desktop.errors import ConfigError

__all__ = ["DEFAULT_MIN_IOU", "match_objects", "phrase_key"]

log = logging.getLogger(__name__)

#: ``rsvg change --match-iou``'s default.
DEFAULT_MIN_IOU = 0.3
_SLACK = 1e-9


def phrase_key(phrase: Any) -> str:
    """The key two dates' objects must share to match: the phrase trimmed, whitespace collapsed,
    case-folded, last word singular (as seam merging groups them); ``None`` gives ``""``."""
    key = normalise_phrase(phrase)
    return "" if key is None else key


def _usable(geoms: Sequence[Any] | np.ndarray, n: int, side: str) -> tuple[np.ndarray, np.ndarray]:
    """The geometries as an object array and a mask of those that can take part (valid, area > 0)."""
    if len(geoms) != n:
        raise ConfigError(f"match_objects: {len(geoms)} {side} geometries but {n} phrases")
    arr = np.empty(n, dtype=object)
    arr[:] = list(geoms)
    present = np.array([g is not None for g in arr], dtype=bool)
    ok = present.copy()
    if present.any():
        g = arr[present]
        ok[present] = shapely.is_valid(g) & ~shapely.is_empty(g) & (shapely.area(g) > 0)
    if not ok.all():
        log.warning(
            "%d %s object(s) with no usable geometry (missing, empty, invalid or zero-area) stay unmatched",
            int((~ok).sum()),
            side,
        )
    return arr, ok


def _key_codes(before: Sequence[Any], after: Sequence[Any]) -> tuple[np.ndarray, np.ndarray]:
    """Integer codes of the phrase keys, shared by both dates."""
    codes = phrase_groups([*before, *after], key=phrase_key)
    return codes[: len(before)], codes[len(before) :]


def _candidate_edges(
    b_geoms: np.ndarray, b_ok: np.ndarray, b_key: np.ndarray,
    a_geoms: np.ndarray, a_ok: np.ndarray, a_key: np.ndarray,
    min_iou: float,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
    """Pairs ``(before row, after row, IoU)`` of one key whose IoU reaches ``min_iou``."""
    bi = np.flatnonzero(b_ok)
    ai = np.flatnonzero(a_ok)
    empty = (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.float64))
    if len(bi) == 0 or len(ai) == 0:
        return empty
    tree = shapely.STRtree(a_geoms[ai])
    qi, ti = tree.query(b_geoms[bi], predicate="intersects")
    b, a = bi[qi], ai[ti]
    same = b_key[b] == a_key[a]
    b, a = b[same], a[same]
    if len(b) == 0:
        return empty
    gb, ga = b_geoms[b], a_geoms[a]
    inter = shapely.area(shapely.intersection(gb, ga))
    union = shapely.area(gb) + shapely.area(ga) - inter
    iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
    keep = iou >= min_iou * (1 - _SLACK)
    return b[keep], a[keep], iou[keep]


def _assign(b: np.ndarray, a: np.ndarray, iou: np.ndarray, nb: int, na: int) -> np.ndarray:
    """Indices into the edges chosen by a maximum-total-IoU one-to-one assignment."""
    if len(b) == 0:
        return np.empty(0, np.int64)
    graph = coo_matrix((np.ones(len(b)), (b, nb + a)), shape=(nb + na, nb + na))
    _, labels = connected_components(graph, directed=False)
    comp = labels[b]
    edges_per_comp = np.bincount(comp)
    lone = edges_per_comp[comp] == 1  # a component of one edge: the pair is its own optimum
    chosen = [np.flatnonzero(lone)]
    multi = np.flatnonzero(~lone)
    order = multi[np.argsort(comp[multi], kind="stable")]
    bounds = np.flatnonzero(np.diff(comp[order])) + 1
    for edges in np.split(order, bounds) if len(order) else []:
        rows, r_idx = np.unique(b[edges], return_inverse=True)
        cols, c_idx = np.unique(a[edges], return_inverse=True)
        weight = np.zeros((len(rows), len(cols)))
        edge_at = np.full((len(rows), len(cols)), -1, dtype=np.int64)
        weight[r_idx, c_idx] = iou[edges]
        edge_at[r_idx, c_idx] = edges
        r, c = linear_sum_assignment(weight, maximize=True)
        picked = edge_at[r, c]
        chosen.append(picked[picked >= 0])
    return np.concatenate(chosen)


def match_objects(
    before_geoms: Sequence[Any] | np.ndarray,
    before_phrases: Sequence[Any],
    after_geoms: Sequence[Any] | np.ndarray,
    after_phrases: Sequence[Any],
    *,
    min_iou: float = DEFAULT_MIN_IOU,
) -> Matches:
    """Match the before date's objects to the after date's, one to one, per phrase key, maximising the
    total IoU among pairs with IoU ≥ ``min_iou``. Geometries must be in one CRS (the comparison grid's).

    Returns sorted tuples: ``pairs`` by before row, ``appeared`` (after rows unmatched) and
    ``disappeared`` (before rows unmatched). Raises :class:`ConfigError` for a threshold outside (0, 1]
    or geometries and phrases of different lengths.
    """
    if not 0 < min_iou <= 1:
        raise ConfigError(f"the match IoU (--match-iou) must be in (0, 1], got {min_iou!r}")
    nb, na = len(before_phrases), len(after_phrases)
    b_geoms, b_ok = _usable(before_geoms, nb, "before")
    a_geoms, a_ok = _usable(after_geoms, na, "after")
    b_key, a_key = _key_codes(before_phrases, after_phrases)
    b, a, iou = _candidate_edges(b_geoms, b_ok, b_key, a_geoms, a_ok, a_key, min_iou)
    picked = _assign(b, a, iou, nb, na)
    order = picked[np.lexsort((a[picked], b[picked]))]
    pairs = tuple((int(b[e]), int(a[e]), float(iou[e])) for e in order)
    b_matched = np.zeros(nb, dtype=bool)
    a_matched = np.zeros(na, dtype=bool)
    b_matched[b[picked]] = True
    a_matched[a[picked]] = True
    return Matches(
        pairs=pairs,
        appeared=tuple(int(i) for i in np.flatnonzero(~a_matched)),
        disappeared=tuple(int(i) for i in np.flatnonzero(~b_matched)),
    )
