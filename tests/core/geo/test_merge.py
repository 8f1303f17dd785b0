"""Seam-duplicate merging: expected survivors, phrase groups, the IoS pass, same-tile policy, determinism."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st

from rsvg_desktop.core.geo.box_overlap import quad_intersection_area
from rsvg_desktop.core.geo.boxes import (
    AngleConvention,
    boxes_to_pixel_corners,
    grid_boxes_to_polygons,
    grid_corners,
)
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.merge import (
    MergeConfig,
    MergeReason,
    apply_merge,
    edge_scores,
    merge_boxes,
    merge_detections,
    phrase_groups,
    priority_order,
    stitched_groups,
)
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import ConfigError

TILE_A = Tile(0, 0, 0, 0, 504, 504)
TILE_B = Tile(0, 1, 440, 0, 504, 504)  # 64 px overlap with A: columns 440..504
TILE_C = Tile(1, 0, 0, 440, 504, 504)
DEFAULT = MergeConfig()


def grid_of(px_box, tile, angle=0.0):
    """A scene-pixel rectangle (x0, y0, x1, y1) written on a tile's 0–100 grid."""
    x0, y0, x1, y1 = px_box
    c0, r0, w, h = tile.window
    return [(x0 - c0) / w * 100, (y0 - r0) / h * 100, (x1 - c0) / w * 100, (y1 - r0) / h * 100, angle]


def run(entries, config=DEFAULT):
    """entries: (tile, pixel box, phrase[, angle]) → MergeResult."""
    boxes = np.array([grid_of(e[1], e[0], e[3] if len(e) > 3 else 0.0) for e in entries])
    wins = np.array([e[0].window for e in entries], dtype=float)
    corners = boxes_to_pixel_corners(boxes, wins)
    return merge_boxes(
        corners,
        wins,
        [e[2] for e in entries],
        [e[0].row for e in entries],
        [e[0].col for e in entries],
        config,
    )


def test_seam_duplicate_keeps_the_copy_farther_from_its_tile_edge():
    # Object at x 445..485: 19 px from A's right edge, 5 px from B's left edge → A's copy survives.
    res = run([(TILE_B, (446, 201, 486, 241), "plane"), (TILE_A, (445, 200, 485, 240), "plane")])
    assert res.kept.tolist() == [1]
    assert res.absorbed_by.tolist() == [1, -1]
    assert res.reason.tolist() == [MergeReason.IOU, MergeReason.KEPT]
    # Object at x 495..503: 1 px from A's edge, 55 px from B's → B's copy survives.
    res = run([(TILE_A, (495, 300, 503, 310), "plane"), (TILE_B, (495, 300, 503, 310), "plane")])
    assert res.kept.tolist() == [1] and res.absorbed_by[0] == 1


def test_edge_score_uses_the_box_extent_normalised_by_window():
    corners = boxes_to_pixel_corners([[10, 40, 20, 60, 0]], [(0, 0, 200, 100)])
    assert edge_scores(corners, np.array([(0, 0, 200, 100)]))[0] == pytest.approx(0.10)
    corners = boxes_to_pixel_corners([[40, 5, 60, 60, 0]], [(0, 0, 200, 100)])
    assert edge_scores(corners, np.array([(0, 0, 200, 100)]))[0] == pytest.approx(0.05)


def test_different_phrases_are_not_merged_and_none_is_its_own_group():
    px = (445, 200, 485, 240)
    res = run([(TILE_A, px, "plane"), (TILE_B, px, "ship"), (TILE_B, px, None), (TILE_A, px, None)])
    assert sorted(res.kept.tolist()) == [0, 1, 3]
    assert res.absorbed_by[2] == 3
    # Case and spacing do not make a new phrase.
    res = run([(TILE_A, px, "Storage  tank"), (TILE_B, px, "storage tank")])
    assert res.kept.tolist() == [0]


def test_phrase_groups_normalise():
    assert phrase_groups(["A b", " a  B ", None, "c", None]).tolist() == [0, 0, 1, 2, 1]
    # The last word is made singular: one tile's "ships" merges with the next tile's "ship".
    groups = phrase_groups(["tennis courts", "Tennis court", "ships", "ship", "buses", "bus", "batteries"])
    assert groups.tolist() == [0, 0, 1, 1, 2, 2, 3]
    assert phrase_groups(["glass", "gas", "class"]).tolist() == [0, 1, 2]


def test_ios_pass_removes_a_small_box_inside_a_large_one():
    # A sees the whole object; B only the part of it past its left edge (a fragment, IoU ≈ 0.3).
    big = (450, 100, 500, 200)
    small = (450, 120, 470, 170)
    res = run([(TILE_B, small, "building"), (TILE_A, big, "building")])
    assert res.kept.tolist() == [1]
    assert res.reason[0] == MergeReason.IOS and res.absorbed_by[0] == 1
    # Disabled IoS pass → both stay.
    res = run([(TILE_B, small, "building"), (TILE_A, big, "building")], MergeConfig(ios_threshold=None))
    assert res.kept.tolist() == [0, 1]


def test_same_tile_policy():
    a, b = (100, 100, 140, 140), (101, 101, 141, 141)
    # Near-duplicates in one answer are merged by default ...
    res = run([(TILE_A, a, "car"), (TILE_A, b, "car")])
    assert len(res.kept) == 1
    # ... unless same-tile IoU suppression is off.
    res = run([(TILE_A, a, "car"), (TILE_A, b, "car")], MergeConfig(same_tile_iou=False))
    assert len(res.kept) == 2
    # A small box inside a large one of the same answer is kept by default (a separate object) ...
    big, small = (100, 100, 200, 200), (120, 120, 150, 150)
    res = run([(TILE_A, big, "building"), (TILE_A, small, "building")])
    assert res.kept.tolist() == [0, 1]
    # ... and removed when same-tile IoS suppression is on.
    res = run([(TILE_A, big, "building"), (TILE_A, small, "building")], MergeConfig(same_tile_ios=True))
    assert res.kept.tolist() == [0] and res.reason[1] == MergeReason.IOS


def test_absorbed_by_follows_to_the_final_survivor():
    # A's copy (38 px from A's edge) absorbs B's (11 px from B's edge) by IoU; then a large box of
    # tile C contains A's copy, which the IoS pass drops: B's copy now belongs to C's box.
    a_copy = (450, 420, 466, 436)
    b_copy = (451, 420, 467, 436)
    big = (440, 410, 500, 470)  # in tile C (rows 440.. in C's window: partly above it, still a box)
    res = run([(TILE_A, a_copy, "x"), (TILE_B, b_copy, "x"), (TILE_C, big, "x")])
    assert res.kept.tolist() == [2]
    assert res.reason.tolist() == [MergeReason.IOS, MergeReason.IOU, MergeReason.KEPT]
    assert res.absorbed_by.tolist() == [2, 2, -1]
    assert res.absorbed_count.tolist() == [0, 0, 2]


def test_rotated_overlap_is_exact():
    # Two identical 30° boxes in different tiles: IoU 1 whatever the rotation.
    e = [(TILE_A, (445, 200, 485, 240), "p", 30.0), (TILE_B, (445, 200, 485, 240), "p", 30.0)]
    assert len(run(e).kept) == 1
    # Same rectangle as written, one turned by 90° around its centre: a 40×10 bar crosses itself → IoU 1/7.
    e = [(TILE_A, (445, 215, 485, 225), "p", 0.0), (TILE_B, (445, 215, 485, 225), "p", 90.0)]
    assert len(run(e).kept) == 2


def test_thresholds_are_validated():
    with pytest.raises(ConfigError):
        MergeConfig(iou_threshold=0.0)
    with pytest.raises(ConfigError):
        MergeConfig(ios_threshold=1.5)


def test_small_inputs():
    res = merge_boxes(np.empty((0, 4, 2)), np.empty((0, 4)), [], [], [])
    assert res.kept.size == 0
    res = run([(TILE_A, (1, 1, 5, 5), "x")])
    assert res.kept.tolist() == [0]


def test_merge_detections_from_a_table_and_from_tiles():
    boxes = np.array([grid_of((445, 200, 485, 240), TILE_A), grid_of((446, 200, 486, 240), TILE_B)])
    wins = np.array([TILE_A.window, TILE_B.window], dtype=float)
    geoms = grid_boxes_to_polygons(boxes, wins)
    table = DetectionTable.from_columns(
        phrase=["plane", "plane"],
        task="grounding",
        query="q",
        tile_row=[0, 0],
        tile_col=[0, 1],
        boxes=boxes,
        windows=wins,
        geometry=geoms,
        model="m",
        precision="bf16",
        run_id="r",
        scene="s",
    )
    assert merge_detections(table).kept.tolist() == [0]
    no_windows = DetectionTable.from_detections([dataclasses.replace(d, window=None) for d in table])
    with pytest.raises(ConfigError):
        merge_detections(no_windows)
    assert merge_detections(no_windows, tiles=[TILE_A, TILE_B]).kept.tolist() == [0]


# --- properties ------------------------------------------------------------------------------------
TILES = [TILE_A, TILE_B, TILE_C, Tile(1, 1, 440, 440, 504, 504)]


@st.composite
def scenes(draw):
    n = draw(st.integers(2, 30))
    entries = []
    for _ in range(n):
        tile = draw(st.sampled_from(TILES))
        # Objects concentrated around the seams so that duplicates are common.
        x0 = draw(st.integers(400, 540))
        y0 = draw(st.integers(400, 540))
        w = draw(st.integers(4, 60))
        h = draw(st.integers(4, 60))
        phrase = draw(st.sampled_from(["plane", "ship", None]))
        angle = draw(st.sampled_from([0.0, 20.0, 45.0, 90.0]))
        entries.append((tile, (x0, y0, x0 + w, y0 + h), phrase, angle))
    # Exact repeats, as GeoChat produces them.
    for i in draw(st.lists(st.integers(0, n - 1), max_size=5)):
        entries.append(entries[i])
    # Objects cut by both tiles of a seam: each tile holds its fragment (the stitch pass's input).
    for _ in range(draw(st.integers(0, 4))):
        x0, x1 = draw(st.integers(380, 436)), draw(st.integers(508, 570))
        y0 = draw(st.integers(100, 300))
        y1 = y0 + draw(st.integers(8, 60))
        phrase = draw(st.sampled_from(["plane", "ship", None]))
        entries.append((TILE_A, (x0, y0, 504, y1), phrase, 0.0))
        entries.append((TILE_B, (440, y0, x1, y1), phrase, 0.0))
    return entries


def _kept_values(entries, res):
    return sorted((e[0].row, e[0].col, e[1], str(e[2]), e[3]) for e in (entries[i] for i in res.kept))


@settings(max_examples=40, deadline=None)
@given(entries=scenes(), seed=st.integers(0, 2**32 - 1))
def test_merge_is_deterministic_under_permutation(entries, seed):
    perm = np.random.default_rng(seed).permutation(len(entries))
    res = run(entries)
    res_p = run([entries[i] for i in perm])
    assert _kept_values(entries, res) == _kept_values([entries[i] for i in perm], res_p)


@settings(max_examples=40, deadline=None)
@given(entries=scenes())
def test_merge_invariants(entries):
    cfg = MergeConfig()
    res = run(entries, cfg)
    groups = phrase_groups([e[2] for e in entries])
    kept = set(res.kept.tolist())
    for i, a in enumerate(res.absorbed_by.tolist()):
        if a >= 0:
            assert a in kept and groups[a] == groups[i] and res.reason[i] != MergeReason.KEPT
        else:
            assert i in kept
    # No two survivors of one group overlap above the IoU threshold.
    boxes = np.array([grid_of(e[1], e[0], e[3]) for e in entries])
    polys = grid_boxes_to_polygons(boxes, np.array([e[0].window for e in entries], dtype=float))
    ks = sorted(kept)
    for x in ks:
        for y in ks:
            if x < y and groups[x] == groups[y]:
                inter = shapely.intersection(polys[x], polys[y]).area
                union = polys[x].area + polys[y].area - inter
                assert inter / union < cfg.iou_threshold + 1e-9
    # Merging the survivors again changes nothing.
    again = run([entries[i] for i in ks], cfg)
    assert len(again.kept) == len(ks)


# --- stitching seam fragments ----------------------------------------------------------------------
def _table(entries):
    boxes = np.array([grid_of(e[1], e[0], e[3] if len(e) > 3 else 0.0) for e in entries])
    wins = np.array([e[0].window for e in entries], dtype=float)
    return DetectionTable.from_columns(
        phrase=[e[2] for e in entries],
        task="grounding",
        query="q",
        tile_row=[e[0].row for e in entries],
        tile_col=[e[0].col for e in entries],
        boxes=boxes,
        windows=wins,
        geometry=grid_boxes_to_polygons(boxes, wins),
        model="m",
        precision="bf16",
        run_id="r",
        scene="s.tif",
    )


def test_fragments_cut_by_both_tiles_become_one_polygon():
    # Object 400..560 × 200..240 across the A|B seam (band 440..504): A sees 400..504, B sees 440..560.
    entries = [(TILE_A, (400, 200, 504, 240), "ship"), (TILE_B, (440, 200, 560, 240), "ship")]
    assert len(run(entries, MergeConfig(stitch=False)).kept) == 2  # neither holds the other
    res = run(entries)
    assert len(res.kept) == 1
    dropped = res.dropped[0]
    assert res.reason[dropped] == MergeReason.STITCH and res.absorbed_by[dropped] == res.kept[0]
    assert {k: v.tolist() for k, v in stitched_groups(res).items()} == {
        int(res.kept[0]): [int(res.kept[0]), 1 - int(res.kept[0])]
    }
    table = _table(entries)
    merged = apply_merge(table, merge_detections(table))
    assert len(merged) == 1
    assert merged.geometry[0].bounds == pytest.approx((400, 200, 560, 240))
    assert merged.geometry[0].area == pytest.approx(160 * 40)


def test_fragments_at_a_four_tile_corner_become_one():
    d = Tile(1, 1, 440, 440, 504, 504)
    obj = (420, 410, 530, 520)
    entries = []
    for t in (TILE_A, TILE_B, TILE_C, d):
        c0, r0, w, h = t.window
        clip = (max(obj[0], c0), max(obj[1], r0), min(obj[2], c0 + w), min(obj[3], r0 + h))
        entries.append((t, clip, "tank"))
    res = run(entries)
    assert len(res.kept) == 1
    merged = apply_merge(_table(entries), res)
    assert merged.geometry[0].bounds == pytest.approx(obj)


def test_neighbouring_objects_across_a_seam_are_not_fused():
    # P 380..470 and Q 476..560 side by side, same phrase and height: A sees P whole and Q cut at 504,
    # B sees P cut at 440 and Q whole.
    p, q = (380, 200, 470, 240), (476, 200, 560, 240)
    entries = [
        (TILE_A, p, "car"),
        (TILE_A, (476, 200, 504, 240), "car"),
        (TILE_B, (440, 200, 470, 240), "car"),
        (TILE_B, q, "car"),
    ]
    res = run(entries)
    assert sorted(res.kept.tolist()) == [0, 3]
    assert res.absorbed_by[1] == 3 and res.absorbed_by[2] == 0


def test_stitching_needs_the_same_phrase_agreement_in_the_band_and_a_cut():
    a, b = (400, 200, 504, 240), (440, 200, 560, 240)
    assert len(run([(TILE_A, a, "ship"), (TILE_B, b, "plane")]).kept) == 2
    # In the band the two boxes disagree (different rows): two objects.
    assert len(run([(TILE_A, a, "ship"), (TILE_B, (440, 230, 560, 290), "ship")]).kept) == 2
    # Neither reaches its tile's seam-side edge: nothing was cut, nothing to stitch.
    assert (
        len(run([(TILE_A, (400, 200, 470, 240), "ship"), (TILE_B, (476, 200, 560, 240), "ship")]).kept) == 2
    )
    # Tiles that are not neighbours are never stitched.
    far = Tile(0, 3, 1320, 0, 504, 504)
    assert len(run([(TILE_A, a, "ship"), (far, (1320, 200, 1400, 240), "ship")]).kept) == 2


def test_stitch_config_is_validated():
    with pytest.raises(ConfigError):
        MergeConfig(stitch_band_iou=0.0)
    with pytest.raises(ConfigError):
        MergeConfig(stitch_tolerance=0.6)


def test_dense_single_answer_matches_pairwise_greedy():
    # Many overlapping boxes in one tile: the blocked greedy (small pair budget forces tiny blocks)
    # equals a plain pairwise greedy over every pair.
    rng = np.random.default_rng(3)
    n = 300
    x0, y0 = rng.uniform(0, 90, n), rng.uniform(0, 90, n)
    w, h = rng.uniform(2, 10, n), rng.uniform(2, 10, n)
    boxes = np.column_stack([x0, y0, x0 + w, y0 + h, np.full(n, 90.0)])
    boxes[::7] = boxes[::7][:, :]  # keep some exact repeats below
    boxes = np.concatenate([boxes, boxes[:40]])
    m = len(boxes)
    wins = np.tile(np.array(TILE_A.window, dtype=float), (m, 1))
    corners = boxes_to_pixel_corners(boxes, wins)
    cfg = MergeConfig(stitch=False, ios_threshold=None)
    res = merge_boxes(corners, wins, ["x"] * m, [0] * m, [0] * m, cfg)
    order = priority_order(res.score, np.zeros(m), np.zeros(m), corners)
    polys = shapely.polygons(corners)
    dropped = np.full(m, -1)
    for i in order:
        if dropped[i] >= 0:
            continue
        for j in order:
            if j == i or dropped[j] >= 0:
                continue
            if np.flatnonzero(order == j)[0] < np.flatnonzero(order == i)[0]:
                continue
            inter = shapely.intersection(polys[i], polys[j]).area
            if inter / (polys[i].area + polys[j].area - inter) >= 0.5 - 1e-12:
                dropped[j] = i
    assert res.kept.tolist() == np.flatnonzero(dropped < 0).tolist()
    assert len(res.kept) < m - 40 + 1


def test_convention_matters_only_through_geometry():
    # The table's angle convention is used to rebuild pixel corners (CW and CCW agree at 90°).
    boxes = np.array([grid_of((445, 200, 485, 240), TILE_A, 90), grid_of((445, 200, 485, 240), TILE_B, 90)])
    wins = np.array([TILE_A.window, TILE_B.window], dtype=float)
    for conv in AngleConvention:
        table = DetectionTable.from_columns(
            phrase=["p", "p"],
            task="t",
            query="q",
            tile_row=[0, 0],
            tile_col=[0, 1],
            boxes=boxes,
            windows=wins,
            geometry=grid_boxes_to_polygons(boxes, wins, convention=conv),
            model="m",
            precision="bf16",
            run_id="r",
            scene="s",
            angle_convention=conv,
        )
        assert merge_detections(table).kept.tolist() == [0]


# --- the vectorised convex clipper -----------------------------------------------------------------
quads = st.tuples(
    st.floats(0, 60),
    st.floats(0, 60),
    st.floats(0, 40),
    st.floats(0, 40),
    st.floats(0, 90),
    st.sampled_from(list(AngleConvention)),
)


@settings(max_examples=80, deadline=None)
@given(pairs=st.lists(st.tuples(quads, quads), min_size=1, max_size=20))
def test_quad_intersection_area_matches_geos(pairs):
    def corners(spec):
        x, y, w, h, angle, conv = spec
        return grid_corners([[x, y, x + w, y + h, angle]], conv)[0]

    p = np.array([corners(a) for a, _ in pairs])
    q = np.array([corners(b) for _, b in pairs])
    # Also a non-square window (parallelograms) and identical / shared-edge cases.
    p = np.concatenate([p, p * [2.0, 1.0], p, p])
    n = len(pairs)
    shift = np.zeros_like(p[:n])
    shift[..., 0] = (p[:n, 1, 0] - p[:n, 0, 0])[:, None]  # slide by one edge's x extent
    q = np.concatenate([q, q * [2.0, 1.0], p[:n], p[:n] + shift])
    got = quad_intersection_area(p, q)
    expected = shapely.area(shapely.intersection(shapely.polygons(p), shapely.polygons(q)))
    assert np.allclose(got, expected, rtol=1e-9, atol=1e-9)


def test_quad_intersection_area_simple_cases():
    sq = np.array([[[0, 0], [2, 0], [2, 2], [0, 2]]], dtype=float)
    assert quad_intersection_area(sq, sq + 1).tolist() == [1.0]
    assert quad_intersection_area(sq, sq + 5).tolist() == [0.0]
    assert quad_intersection_area(sq, sq[:, ::-1]).tolist() == [4.0]  # either vertex order
    assert quad_intersection_area(np.empty((0, 4, 2)), np.empty((0, 4, 2))).shape == (0,)
