"""Matching two dates' objects: phrase keys, the IoU threshold, one-to-one, optimal (not greedy),
connected components, unusable geometries, empty inputs."""

from __future__ import annotations

import logging

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy.optimize import linear_sum_assignment
from shapely import affinity
from shapely.geometry import Polygon, box

from rsvg_desktop.core.geo.change import Matches
from rsvg_desktop.core.geo.change.matching import match_objects, phrase_key
from rsvg_desktop.core.geo.merge import normalise_phrase, phrase_groups
from rsvg_desktop.errors import ConfigError


def strip(x0: float, x1: float) -> Polygon:
    """A 10-px-high rectangle from x0 to x1: IoU of two strips is their 1-D overlap ratio."""
    return box(x0, 0, x1, 10)


def test_phrase_key_case_plural_whitespace() -> None:
    assert phrase_key("  Tennis   Courts ") == "tennis court"
    assert phrase_key("SHIPS") == phrase_key("ship") == "ship"
    assert phrase_key("storage tanks") == "storage tank"
    assert phrase_key("bus") == "bus"  # too short to strip
    assert phrase_key("glass") == "glass"
    assert phrase_key(None) == phrase_key("") == ""
    # one normalisation for merging and matching
    assert normalise_phrase("Tennis Courts") == phrase_key("tennis court")
    assert list(phrase_groups(["Ships", "ship", None])) == [0, 0, 1]


def test_matches_within_phrase_only() -> None:
    g = [box(0, 0, 10, 10)]
    m = match_objects(g, ["ship"], g, ["plane"])
    assert m == Matches(pairs=(), appeared=(0,), disappeared=(0,))
    m = match_objects(g, ["Ships"], g, ["ship "])
    assert m.pairs == ((0, 0, 1.0),)
    assert m.appeared == m.disappeared == ()


def test_phrase_groups_do_not_compete() -> None:
    """Two identical places, two phrases: each phrase matches its own object."""
    g = [box(0, 0, 10, 10), box(0, 0, 10, 10)]
    m = match_objects(g, ["car", "plane"], g[::-1], ["planes", "Car"])
    assert [(b, a) for b, a, _ in m.pairs] == [(0, 1), (1, 0)]


def test_threshold_inclusive_and_exclusive() -> None:
    before = [strip(0, 10)]
    after = [strip(5, 15)]  # overlap 5, union 15: IoU 1/3
    assert match_objects(before, ["x"], after, ["x"], min_iou=1 / 3).pairs[0][:2] == (0, 0)
    m = match_objects(before, ["x"], after, ["x"], min_iou=0.34)
    assert m.pairs == () and m.appeared == (0,) and m.disappeared == (0,)
    # default 0.3
    assert len(match_objects(before, ["x"], after, ["x"]).pairs) == 1
    # touching only: IoU 0
    assert match_objects([strip(0, 10)], ["x"], [strip(10, 20)], ["x"], min_iou=0.01).pairs == ()


def test_rotated_polygons() -> None:
    rect = box(-20, -5, 20, 5)
    before = [affinity.rotate(rect, 30, origin=(0, 0))]
    after = [affinity.rotate(rect, 35, origin=(0, 0))]
    expected = before[0].intersection(after[0]).area / before[0].union(after[0]).area
    assert 0.3 < expected < 0.9
    ((b, a, iou),) = match_objects(before, ["ship"], after, ["ship"]).pairs
    assert (b, a) == (0, 0) and iou == pytest.approx(expected, rel=1e-9)
    # at 90° apart the same rectangles overlap little: no match
    far = [affinity.rotate(rect, 120, origin=(0, 0))]
    assert match_objects(before, ["ship"], far, ["ship"]).pairs == ()


def test_one_to_one() -> None:
    """Two after copies of one before object: one pair, the better one; the other appeared."""
    before = [strip(0, 10)]
    after = [strip(1, 11), strip(0, 10)]
    m = match_objects(before, ["x"] * 1, after, ["x"] * 2)
    assert m.pairs == ((0, 1, 1.0),)
    assert m.appeared == (0,) and m.disappeared == ()
    m = match_objects(after, ["x"] * 2, before, ["x"])
    assert [(b, a) for b, a, _ in m.pairs] == [(1, 0)] and m.disappeared == (0,)


def greedy(before: list[Polygon], after: list[Polygon], min_iou: float) -> list[tuple[int, int, float]]:
    """The greedy matching (best pair first) that the optimal one must beat."""
    cand = []
    for i, p in enumerate(before):
        for j, q in enumerate(after):
            iou = p.intersection(q).area / p.union(q).area
            if iou >= min_iou:
                cand.append((iou, i, j))
    used_b: set[int] = set()
    used_a: set[int] = set()
    out = []
    for iou, i, j in sorted(cand, reverse=True):
        if i not in used_b and j not in used_a:
            used_b.add(i)
            used_a.add(j)
            out.append((i, j, iou))
    return out


def test_optimal_beats_greedy() -> None:
    """A overlaps B1 (0.82) and B2 (0.54); A' overlaps only B1 (0.67). Greedy pairs A–B1 and leaves
    A' and B2 alone; the optimum pairs A–B2 and A'–B1: two pairs, more total IoU."""
    before = [strip(1, 11), strip(-2, 8)]  # A, A'
    after = [strip(0, 10), strip(4, 14)]  # B1, B2
    g = greedy(before, after, 0.3)
    assert [(i, j) for i, j, _ in g] == [(0, 0)]
    m = match_objects(before, ["x", "x"], after, ["x", "x"])
    assert [(b, a) for b, a, _ in m.pairs] == [(0, 1), (1, 0)]
    assert m.appeared == m.disappeared == ()
    assert sum(i for *_, i in m.pairs) > sum(i for *_, i in g)
    assert sum(i for *_, i in m.pairs) == pytest.approx(7 / 13 + 8 / 12)


def test_total_iou_prefers_one_clear_match_over_two_weak() -> None:
    """X–Y 0.905 against X–Z 0.351 + W–Y 0.316: the clear match stays (documented criterion)."""
    before = [strip(0.5, 10.5), strip(-5.2, 4.8)]  # X, W
    after = [strip(0, 10), strip(5.3, 15.3)]  # Y, Z
    m = match_objects(before, ["x", "x"], after, ["x", "x"])
    assert [(b, a) for b, a, _ in m.pairs] == [(0, 0)]
    assert m.appeared == (1,) and m.disappeared == (1,)


def test_components_solved_apart() -> None:
    """Three far-apart clusters (a lone pair, the greedy trap, a lone object) and a second phrase."""
    shift = 1000.0
    before = [strip(0, 10), strip(shift + 1, shift + 11), strip(shift - 2, shift + 8), strip(3000, 3010)]
    after = [strip(shift, shift + 10), strip(shift + 4, shift + 14), strip(0.5, 10.5), box(0, 0, 10, 10)]
    m = match_objects(before, ["car"] * 4, after, ["car", "car", "car", "ship"])
    assert [(b, a) for b, a, _ in m.pairs] == [(0, 2), (1, 1), (2, 0)]
    assert m.disappeared == (3,) and m.appeared == (3,)


def _square_scene(draw: st.DrawFn, n: int) -> tuple[list[Polygon], list[str]]:
    geoms, phrases = [], []
    for _ in range(n):
        x = draw(st.integers(0, 30))
        y = draw(st.integers(0, 30))
        w = draw(st.integers(4, 14))
        h = draw(st.integers(4, 14))
        angle = draw(st.sampled_from([0, 0, 20, 45]))
        geoms.append(affinity.rotate(box(x, y, x + w, y + h), angle))
        phrases.append(draw(st.sampled_from(["car", "Cars", "ship"])))
    return geoms, phrases


@st.composite
def scenes(draw: st.DrawFn) -> tuple[list[Polygon], list[str], list[Polygon], list[str]]:
    b = _square_scene(draw, draw(st.integers(0, 7)))
    a = _square_scene(draw, draw(st.integers(0, 7)))
    return (*b, *a)


@settings(max_examples=60, deadline=None)
@given(scenes())
def test_same_total_as_one_global_assignment(scene: tuple) -> None:
    """Splitting into components loses nothing: the total IoU equals one assignment over all objects."""
    bg, bp, ag, ap = scene
    min_iou = 0.3
    m = match_objects(bg, bp, ag, ap, min_iou=min_iou)
    weight = np.zeros((len(bg), len(ag)))
    for i, p in enumerate(bg):
        for j, q in enumerate(ag):
            if phrase_key(bp[i]) == phrase_key(ap[j]):
                iou = p.intersection(q).area / p.union(q).area
                weight[i, j] = iou if iou >= min_iou else 0.0
    r, c = linear_sum_assignment(weight, maximize=True) if weight.size else ([], [])
    best = float(weight[r, c].sum()) if weight.size else 0.0
    assert sum(i for *_, i in m.pairs) == pytest.approx(best, abs=1e-9)
    # one-to-one, partition of rows
    bs = [b for b, _, _ in m.pairs]
    as_ = [a for _, a, _ in m.pairs]
    assert len(set(bs)) == len(bs) and len(set(as_)) == len(as_)
    assert sorted(bs + list(m.disappeared)) == list(range(len(bg)))
    assert sorted(as_ + list(m.appeared)) == list(range(len(ag)))
    assert all(iou >= min_iou * (1 - 1e-9) for *_, iou in m.pairs)
    assert bs == sorted(bs)


def test_empty_inputs() -> None:
    assert match_objects([], [], [], []) == Matches((), (), ())
    g = [box(0, 0, 1, 1), box(5, 5, 6, 6)]
    assert match_objects(g, ["a", "b"], [], []) == Matches((), (), (0, 1))
    assert match_objects([], [], g, ["a", "b"]) == Matches((), (0, 1), ())
    assert match_objects(np.array(g, dtype=object), ["a", "b"], g, ["a", "b"]).pairs == (
        (0, 0, 1.0),
        (1, 1, 1.0),
    )


def test_unusable_geometries_stay_unmatched(caplog: pytest.LogCaptureFixture) -> None:
    # An in-process CLI test on the same worker may have left the root logger at ERROR (rsvg -q).
    caplog.set_level(logging.WARNING, logger="rsvg_desktop.core.geo.change.matching")
    bowtie = Polygon([(0, 0), (10, 10), (10, 0), (0, 10)])
    assert not shapely.is_valid(bowtie)
    before = [None, bowtie, Polygon(), box(0, 0, 0, 10), box(0, 0, 10, 10)]
    after = [box(0, 0, 10, 10)] * 4 + [box(0, 0, 10, 10)]
    m = match_objects(before, ["x"] * 5, after, ["x"] * 5)
    assert [(b, a) for b, a, _ in m.pairs] == [(4, 0)]
    assert m.disappeared == (0, 1, 2, 3) and m.appeared == (1, 2, 3, 4)
    assert "4 before object(s) with no usable geometry" in caplog.text


def test_bad_arguments() -> None:
    g = [box(0, 0, 1, 1)]
    with pytest.raises(ConfigError, match="2 before geometries but 1 phrases"):
        match_objects(g * 2, ["a"], g, ["a"])
    for bad in (0.0, -0.1, 1.5):
        with pytest.raises(ConfigError, match="match-iou"):
            match_objects(g, ["a"], g, ["a"], min_iou=bad)
