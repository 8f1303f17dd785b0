"""Rotated GeoChat boxes → pixel rectangles → map polygons, checked against arithmetic done by hand."""

from __future__ import annotations

import math
import pickle
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from hypothesis import given, settings
from hypothesis import strategies as st
from pyproj import Transformer

from rsvg_desktop.core.geo.boxes import (
    DEFAULT_ANGLE_CONVENTION,
    AngleConvention,
    apply_affine,
    boxes_to_array,
    boxes_to_pixel_corners,
    corners_to_polygons,
    grid_boxes_to_polygons,
    grid_corners,
    reproject_xy,
    tile_footprints,
)
from rsvg_desktop.core.geo.detections import Detection, DetectionTable, RunInfo, tile_records
from rsvg_desktop.core.types import GridBox, ParsedObject, Tile
from rsvg_desktop.errors import ConfigError

UNIT = (0.0, 0.0, 100.0, 100.0)  # a window in which grid units are pixels


def _rect_by_hand(x1, y1, x2, y2, win):
    """Unrotated pixel corners of a grid box, computed independently (TL, TR, BR, BL)."""
    c0, r0, w, h = win
    px = [c0 + x1 / 100 * w, c0 + x2 / 100 * w]
    py = [r0 + y1 / 100 * h, r0 + y2 / 100 * h]
    return [(px[0], py[0]), (px[1], py[0]), (px[1], py[1]), (px[0], py[1])]


def _affine_by_hand(t, pts):
    a, b, c, d, e, f = t
    return [(a * x + b * y + c, d * x + e * y + f) for x, y in pts]


def _same_ring(poly, pts, tol=1e-6):
    """Polygon has exactly these corners (any start, any direction)."""
    got = np.asarray(poly.exterior.coords)[:-1]
    exp = np.asarray(pts, dtype=float)
    assert got.shape == exp.shape
    for p in exp:
        assert np.min(np.hypot(*(got - p).T)) < tol, (p, got)


@pytest.fixture(scope="module")
def rgb_transform(data_dir: Path):
    with rasterio.open(data_dir / "RGB.byte.tif") as src:
        return tuple(src.transform)[:6], src.crs.to_epsg()


@pytest.fixture(scope="module")
def rotated_transform(data_dir: Path):
    with rasterio.open(data_dir / "rotated.tif") as src:
        return tuple(src.transform)[:6]


# --- placement ---------------------------------------------------------------------------------------
def test_axis_aligned_box_on_rgb_byte_matches_hand_arithmetic(rgb_transform):
    t, epsg = rgb_transform
    assert epsg == 32618
    win = (200, 100, 504, 504)
    poly = grid_boxes_to_polygons([[10, 70, 26, 82, 0]], [win], t, epsg)[0]
    expected = _affine_by_hand(t, _rect_by_hand(10, 70, 26, 82, win))
    _same_ring(poly, expected, tol=1e-6)
    # Spot values: x = 101985 + 300.0379…·(200 + 0.10·504).
    xs = sorted({round(x, 6) for x, _ in expected})
    assert xs[0] == pytest.approx(101985.0 + t[0] * (200 + 50.4))
    assert poly.area == pytest.approx((16 * 5.04 * t[0]) * (12 * 5.04 * -t[4]))


def test_rotated_geotransform_is_applied_in_full(rotated_transform):
    t = rotated_transform
    assert t[1] != 0 and t[3] != 0  # shear terms present
    win = (0, 0, 10, 15)
    poly = grid_boxes_to_polygons([[20, 40, 60, 80, None]], [win], t)[0]
    _same_ring(poly, _affine_by_hand(t, _rect_by_hand(20, 40, 60, 80, win)))


def test_synthetic_rotated_affine_and_rotated_box():
    t = (math.cos(0.3) * 2, -math.sin(0.3) * 2, 5000.0, -math.sin(0.3) * 2, -math.cos(0.3) * 2, 9000.0)
    win = (1000, 2000, 504, 504)
    theta = math.radians(30)
    # CCW on screen (y down): (dx, dy) -> (dx cos + dy sin, -dx sin + dy cos), in grid units.
    cx, cy, hw, hh = 18.0, 76.0, 8.0, 6.0
    grid = []
    for dx, dy in [(-hw, -hh), (hw, -hh), (hw, hh), (-hw, hh)]:
        grid.append(
            (
                cx + dx * math.cos(theta) + dy * math.sin(theta),
                cy - dx * math.sin(theta) + dy * math.cos(theta),
            )
        )
    px = [(win[0] + gx / 100 * win[2], win[1] + gy / 100 * win[3]) for gx, gy in grid]
    poly = grid_boxes_to_polygons([[10, 70, 26, 82, 30]], [win], t)[0]
    _same_ring(poly, _affine_by_hand(t, px), tol=1e-6)


def test_affine_Affine_object_is_accepted(rgb_transform):
    t, _ = rgb_transform
    aff = rasterio.Affine(*t)
    pts = np.array([[[1.5, 2.5]]])
    assert np.allclose(apply_affine(aff, pts), apply_affine(t, pts))


# --- angle facts -------------------------------------------------------------------------------------
@pytest.mark.parametrize("convention", list(AngleConvention))
def test_angle_90_swaps_width_and_height(convention):
    poly = grid_boxes_to_polygons([[10, 70, 26, 82, 90]], [UNIT], convention=convention)[0]
    minx, miny, maxx, maxy = poly.bounds
    assert (maxx - minx, maxy - miny) == pytest.approx((12.0, 16.0))
    assert (poly.centroid.x, poly.centroid.y) == pytest.approx((18.0, 76.0))
    assert poly.bounds == pytest.approx((12.0, 68.0, 24.0, 84.0), abs=1e-12)


@pytest.mark.parametrize("angle", [0, 90, 180, None])
def test_0_and_90_do_not_depend_on_direction(angle):
    ccw = grid_boxes_to_polygons([[10, 70, 26, 82, angle]], [UNIT], convention=AngleConvention.CCW)[0]
    cw = grid_boxes_to_polygons([[10, 70, 26, 82, angle]], [UNIT], convention=AngleConvention.CW)[0]
    assert shapely.equals(ccw, cw)


def test_none_angle_is_zero():
    a = boxes_to_array([GridBox(10, 70, 26, 82, None)])
    assert np.isnan(a[0, 4])
    assert np.allclose(grid_corners(a), grid_corners([[10, 70, 26, 82, 0]]))


def test_cw_and_ccw_differ_at_30_and_mirror_each_other():
    box = [[10, 70, 26, 82, 30]]
    ccw = grid_boxes_to_polygons(box, [UNIT], convention=AngleConvention.CCW)[0]
    cw = grid_boxes_to_polygons(box, [UNIT], convention=AngleConvention.CW)[0]
    assert not shapely.equals(ccw, cw)
    # Mirroring about the vertical line through the centre (x -> 36 - x) turns one into the other.
    mirrored = shapely.transform(ccw, lambda xy: np.column_stack([36.0 - xy[:, 0], xy[:, 1]]))
    assert shapely.equals_exact(shapely.normalize(mirrored), shapely.normalize(cw), tolerance=1e-9)
    assert ccw.area == pytest.approx(16 * 12) and cw.area == pytest.approx(16 * 12)


def test_default_direction_is_counter_clockwise_on_screen():
    assert DEFAULT_ANGLE_CONVENTION is AngleConvention.CCW
    # A flat box turned by 30° CCW on screen (y down): its right end rises (smaller y) on screen.
    c = grid_corners([[40, 49, 60, 51, 30]])[0]
    tl, tr = c[0], c[1]
    assert tr[1] < tl[1]
    assert tr[0] - tl[0] == pytest.approx(20 * math.cos(math.radians(30)))
    assert tl[1] - tr[1] == pytest.approx(20 * math.sin(math.radians(30)))
    c_cw = grid_corners([[40, 49, 60, 51, 30]], AngleConvention.CW)[0]
    assert c_cw[1][1] > c_cw[0][1]  # clockwise: the right end goes down


def test_rotation_is_done_in_the_square_frame_for_non_square_windows():
    win = (100, 200, 200, 100)  # 2:1 window: grid x is stretched twice as much as grid y
    poly = grid_boxes_to_polygons([[10, 70, 26, 82, 90]], [win])[0]
    # The quarter-turned box is 12×16 grid units → 24 px wide, 16 px tall, centred at (136, 276).
    minx, miny, maxx, maxy = poly.bounds
    assert (minx, miny, maxx, maxy) == pytest.approx((124.0, 268.0, 148.0, 284.0))
    # At 45° the square box becomes a rhombus in scene pixels (the model's square frame, scaled).
    g = grid_corners([[40, 40, 60, 60, 45]])[0]
    px = boxes_to_pixel_corners([[40, 40, 60, 60, 45]], [win])[0]
    assert np.allclose(px[:, 0], 100 + g[:, 0] * 2) and np.allclose(px[:, 1], 200 + g[:, 1])


def test_swapped_corner_order_is_normalised():
    a = grid_corners([[26, 82, 10, 70, 30]])
    b = grid_corners([[10, 70, 26, 82, 30]])
    assert np.allclose(a, b)


# --- reprojection and orientation ------------------------------------------------------------------
def test_reprojection_to_wgs84_matches_pyproj(rgb_transform):
    t, epsg = rgb_transform
    win = (300, 200, 504, 504)
    boxes = np.array([[10, 70, 26, 82, 20], [50, 50, 60, 55, 90]], dtype=float)
    polys = grid_boxes_to_polygons(boxes, [win, win], t, epsg, 4326)
    tr = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    for poly, box in zip(polys, boxes, strict=True):
        utm = _affine_by_hand(t, [tuple(p) for p in boxes_to_pixel_corners([box], [win])[0]])
        lonlat = [tr.transform(x, y) for x, y in utm]
        _same_ring(poly, lonlat, tol=1e-9)
        assert -80 < poly.centroid.x < -76 and 23 < poly.centroid.y < 27  # the Bahamas


def test_exteriors_are_counter_clockwise_in_every_output(rgb_transform):
    t, epsg = rgb_transform
    rng = np.random.default_rng(1)
    boxes = np.column_stack(
        [rng.uniform(0, 50, (50, 2)), rng.uniform(50, 100, (50, 2)), rng.uniform(0, 90, 50)]
    )
    wins = np.tile([0, 0, 504, 504], (50, 1))
    for args in [(None, None, None), (t, epsg, None), (t, epsg, 4326)]:
        for conv in AngleConvention:
            polys = grid_boxes_to_polygons(boxes, wins, *args, convention=conv)
            assert all(p.exterior.is_ccw for p in polys)
            assert all(p.is_valid for p in polys)


def test_reproject_same_crs_is_a_copy_and_bad_points_raise():
    xy = np.array([[1.0, 2.0]])
    assert np.array_equal(reproject_xy(xy, 4326, "EPSG:4326"), xy)
    with pytest.raises(ConfigError):
        reproject_xy(np.array([[0.0, 91.0]]), 4326, 3857)  # latitude beyond the pole


def test_tile_footprints(rgb_transform):
    t, epsg = rgb_transform
    fp = tile_footprints([[0, 0, 504, 504]], t, epsg)[0]
    _same_ring(fp, _affine_by_hand(t, [(0, 0), (504, 0), (504, 504), (0, 504)]))
    assert fp.exterior.is_ccw


# --- validation --------------------------------------------------------------------------------------
@pytest.mark.parametrize(
    ("boxes", "windows", "kwargs"),
    [
        ([[1, 2, 3]], [UNIT], {}),
        ([[1, 2, 3, 4, 0]], [[0, 0, 0, 504]], {}),
        ([[1, 2, 3, 4, 0], [1, 2, 3, 4, 0]], [UNIT, UNIT, UNIT], {}),
        ([[1, 2, 3, 4, 0]], [UNIT], {"transform6": (1, 0, 0, 0, 0, 0)}),
        ([[1, 2, 3, 4, 0]], [UNIT], {"transform6": (1, 0, 0, 0, -1, 0), "dst_crs": 4326}),
        ([[1, 2, 3, 4, 0]], [UNIT], {"dst_crs": 4326}),
        ([[np.nan, 2, 3, 4, 0]], [UNIT], {}),
    ],
)
def test_bad_inputs_raise_config_error(boxes, windows, kwargs):
    with pytest.raises(ConfigError):
        grid_boxes_to_polygons(boxes, windows, **kwargs)


def test_empty_input():
    assert grid_boxes_to_polygons(np.empty((0, 5)), np.empty((0, 4))).shape == (0,)
    assert corners_to_polygons(np.empty((0, 4, 2))).shape == (0,)


# --- properties ------------------------------------------------------------------------------------
@settings(max_examples=60, deadline=None)
@given(
    x=st.floats(0, 80),
    y=st.floats(0, 80),
    w=st.floats(0.5, 20),
    h=st.floats(0.5, 20),
    angle=st.floats(0, 90),
    conv=st.sampled_from(list(AngleConvention)),
)
def test_rotation_keeps_area_and_centre(x, y, w, h, angle, conv):
    poly = grid_boxes_to_polygons([[x, y, x + w, y + h, angle]], [UNIT], convention=conv)[0]
    assert poly.area == pytest.approx(w * h, rel=1e-9)
    assert poly.centroid.x == pytest.approx(x + w / 2, abs=1e-9)
    assert poly.centroid.y == pytest.approx(y + h / 2, abs=1e-9)


# --- Detection values --------------------------------------------------------------------------------
def _table(rgb_transform):
    t, epsg = rgb_transform
    tiles = [Tile(0, 0, 0, 0, 504, 504), Tile(0, 1, 440, 0, 504, 504)]
    items = [
        (tiles[0], ParsedObject("airplane", GridBox(10, 70, 26, 82, 90))),
        (tiles[1], ParsedObject(None, GridBox(14, 68, 28, 84, None))),
    ]
    return DetectionTable.from_tile_objects(
        items,
        task="grounding",
        query="[grounding] where are the airplanes?",
        model="geochat-7b",
        precision="bf16",
        run_id="run-1",
        scene="RGB.byte.tif",
        transform6=t,
        src_crs=epsg,
    )


def test_detection_table_round_trip(rgb_transform):
    table = _table(rgb_transform)
    assert len(table) == 2
    dets = table.to_detections()
    assert dets[0].phrase == "airplane" and dets[0].angle == 90.0 and dets[0].window == (0, 0, 504, 504)
    assert dets[1].angle is None and dets[1].box.angle is None and dets[1].tile_id == "r0c1"
    again = DetectionTable.from_detections(dets)
    assert again.to_detections() == dets
    assert pickle.loads(pickle.dumps(dets[0])) == dets[0]
    sub = table.take([1])
    assert sub[0] == dets[1]
    both = DetectionTable.concat([table, sub])
    assert len(both) == 3 and both[2] == dets[1]


def test_detection_angle_must_match_box():
    with pytest.raises(ConfigError):
        Detection(
            "x", "t", "q", 0, 0, 30.0, GridBox(1, 2, 3, 4, 90), shapely.box(0, 0, 1, 1), "m", "p", "r", "s"
        )


def test_tile_records_and_run_info(rgb_transform):
    t, epsg = rgb_transform
    tiles = [Tile(0, 0, 0, 0, 504, 504), Tile(0, 1, 440, 0, 504, 504)]
    recs = tile_records(tiles, t, epsg, skipped={(0, 1): "all nodata"})
    assert [r.skipped for r in recs] == [False, True] and recs[1].skip_reason == "all nodata"
    run = RunInfo(run_id="r", scene="s", model="m", precision="nf4", angle_convention="cw")
    assert run.angle_convention is AngleConvention.CW
    rec = run.as_record()
    assert rec["angle_convention"] == "cw" and "clockwise" in rec["angle_convention_doc"]
