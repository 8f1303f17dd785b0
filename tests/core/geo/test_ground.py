"""Areas and pixel sizes on the ground, against pyproj's geodesic figures, on scenes in Web Mercator
(EPSG:3857), World Mercator (EPSG:3395), a UTM zone (EPSG:32618) and longitude/latitude (EPSG:4326)."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from affine import Affine
from pyproj import Geod, Transformer

from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.export import detections_frame
from rsvg_desktop.core.geo.grid import plan_tiles
from rsvg_desktop.core.geo.ground import ground_areas, ground_pixel_size, map_unit_name
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.types import GridBox, ParsedObject, Tile

WGS84_GEOD = Geod(ellps="WGS84")
SAMPLE_SCENE = Path(__file__).resolve().parents[3] / "resources" / "sample_scene.tif"


def _to_lonlat(crs, xs, ys):
    return Transformer.from_crs(crs, "EPSG:4326", always_xy=True).transform(xs, ys)


def pyproj_area(polygon: shapely.Polygon, crs) -> float:
    """The reference: the polygon taken to WGS 84 longitude/latitude and measured by pyproj's Geod."""
    lon, lat = _to_lonlat(crs, *np.asarray(polygon.exterior.coords).T)
    return abs(WGS84_GEOD.polygon_area_perimeter(lon, lat)[0])


def pyproj_pixel_size(info) -> tuple[float, float]:
    """The reference: geodesic lengths of one pixel step right and down from the scene's centre."""
    a, b, c, d, e, f = info.transform
    cx, cy = info.width / 2, info.height / 2
    px = np.array([cx, cx + 1, cx])
    py = np.array([cy, cy, cy + 1])
    lon, lat = _to_lonlat(info.crs_wkt, a * px + b * py + c, d * px + e * py + f)
    _f, _b, dx = WGS84_GEOD.inv(lon[0], lat[0], lon[1], lat[1])
    _f, _b, dy = WGS84_GEOD.inv(lon[0], lat[0], lon[2], lat[2])
    return dx, dy


@pytest.fixture
def geographic_scene(tmp_path: Path) -> Path:
    """A small EPSG:4326 scene at 45° N, 0.0001° pixels."""
    path = tmp_path / "lonlat.tif"
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=64,
        height=48,
        count=3,
        dtype="uint8",
        crs="EPSG:4326",
        transform=Affine(0.0001, 0.0, 7.0, 0.0, -0.0001, 45.0),
    ) as dst:
        dst.write(np.full((3, 48, 64), 100, dtype=np.uint8))
    return path


@pytest.fixture(params=["cogeo.tif", "sample_scene.tif", "manila_drone.tif", "RGB.byte.tif", "lonlat.tif"])
def scene_path(request, data_dir: Path) -> Path:
    name = request.param
    if name == "sample_scene.tif":
        return SAMPLE_SCENE
    if name == "lonlat.tif":
        return request.getfixturevalue("geographic_scene")
    return data_dir / name


EXPECTED_CRS = {
    "cogeo.tif": "EPSG:3857",
    "sample_scene.tif": "EPSG:3857",
    "manila_drone.tif": "EPSG:3395",
    "RGB.byte.tif": "EPSG:32618",
    "lonlat.tif": "EPSG:4326",
}


def _boxes_in_scene(info, n: int = 7) -> list[shapely.Polygon]:
    """Rotated boxes spread over the scene, in its CRS (through the full affine)."""
    a, b, c, d, e, f = info.transform
    out = []
    for k in range(n):
        cx, cy = info.width * (k + 0.5) / n, info.height * (n - k - 0.5) / n
        box = shapely.affinity.rotate(
            shapely.box(cx - 60, cy - 30, cx + 60, cy + 30), 17 * k, origin="center"
        )
        out.append(shapely.affinity.affine_transform(box, [a, b, d, e, c, f]))
    return out


def test_pixel_size_is_the_ground_distance_at_the_centre(scene_path: Path):
    with open_scene(scene_path) as scene:
        info = scene.info
    assert info.crs_name == EXPECTED_CRS[scene_path.name]
    assert info.gsd_m == pytest.approx(pyproj_pixel_size(info), rel=1e-9)
    assert info.gsd_unit == ("degree" if scene_path.name == "lonlat.tif" else "metre")


def test_areas_are_geodesic(scene_path: Path):
    with open_scene(scene_path) as scene:
        info = scene.info
    boxes = _boxes_in_scene(info)
    expected = [pyproj_area(b, info.crs_wkt) for b in boxes]
    # abs: pyproj's area of a polygon of a few m² carries ~1e-5 m² of rounding (sums of large terms)
    got = ground_areas(np.asarray(boxes, dtype=object), info.crs_wkt)
    assert got == pytest.approx(expected, rel=1e-9, abs=1e-4)
    # In every export: the attribute table's area_m2 is the same ground area
    tile = Tile(0, 0, 0, 0, info.width, info.height)
    table = DetectionTable.from_tile_objects(
        [
            (tile, ParsedObject("car", GridBox(20, 30, 40, 45, 30))),
            (tile, ParsedObject("car", GridBox(60, 60, 70, 66))),
        ],
        task="grounding",
        query="cars",
        model="m",
        precision="fp16",
        run_id="r",
        scene=scene_path.name,
        transform6=info.transform,
        src_crs=info.crs_wkt,
    )
    frame = detections_frame(table, crs=info.crs_wkt)
    assert frame["area_m2"].to_numpy() == pytest.approx(
        [pyproj_area(g, info.crs_wkt) for g in table.geometry], rel=1e-9, abs=1e-4
    )


def test_web_mercator_is_measured_on_the_ground(data_dir: Path):
    """cogeo.tif (37.7° N): a map unit is 0.79 ground metres, an area 1.6× the ground's."""
    with open_scene(data_dir / "cogeo.tif") as scene:
        info = scene.info
    assert info.gsd == pytest.approx((0.597, 0.597), abs=1e-3)
    assert info.gsd_m == pytest.approx((0.473, 0.471), abs=1e-3)
    box = _boxes_in_scene(info, 1)[0]
    (area,) = ground_areas([box], info.crs_wkt)
    assert box.area / area == pytest.approx(1.6, abs=0.02)


def test_target_gsd_is_on_the_ground(data_dir: Path, caplog):
    """--target-gsd 0.5 on cogeo.tif (0.473 m on the ground) downsamples: no upsampling warning, and a
    tile covers 504 × 0.5 m of ground."""
    with open_scene(data_dir / "cogeo.tif") as scene, caplog.at_level(logging.WARNING):
        plan = plan_tiles(scene, target_gsd=0.5)
        gx, gy = pyproj_pixel_size(scene.info)
    assert not any("upsampled" in r.getMessage() for r in caplog.records)
    assert plan.window_size == (round(504 * 0.5 / gx), round(504 * 0.5 / gy)) == (532, 535)


def test_holes_parts_and_empty_geometries():
    crs = "EPSG:3857"
    outer = shapely.box(1_000_000, 4_000_000, 1_000_100, 4_000_050)
    hole = shapely.box(1_000_010, 4_000_010, 1_000_020, 4_000_020)
    holed = shapely.Polygon(outer.exterior, [hole.exterior])
    twice = shapely.MultiPolygon([outer, shapely.affinity.translate(outer, 1000)])
    got = ground_areas([outer, holed, twice, None, shapely.Polygon()], crs)
    a_outer, a_hole = pyproj_area(outer, crs), pyproj_area(hole, crs)
    a_moved = pyproj_area(shapely.affinity.translate(outer, 1000), crs)
    assert got == pytest.approx([a_outer, a_outer - a_hole, a_outer + a_moved, 0.0, 0.0], rel=1e-9)
    assert ground_areas([], crs).shape == (0,)


def test_a_crs_without_an_ellipsoid_keeps_its_own_units():
    local = 'LOCAL_CS["site grid",LOCAL_DATUM["site",0],UNIT["foot",0.3048],AXIS["X",EAST],AXIS["Y",NORTH]]'
    (area,) = ground_areas([shapely.box(0, 0, 10, 20)], local)
    assert area == pytest.approx(200 * 0.3048**2)
    assert ground_pixel_size(local, (1.0, 0.0, 0.0, 0.0, -1.0, 0.0), 10, 10) is None
    assert map_unit_name("EPSG:4326") == "degree" and map_unit_name("EPSG:2263") == "US survey foot"


def test_a_whole_table_of_rotated_boxes_is_measured():
    """Thousands of detections measured in one call (its speed is a benchmark's business)."""
    base = shapely.box(1_000_000, 4_000_000, 1_000_012, 4_000_005)
    boxes = np.asarray([shapely.affinity.rotate(base, k % 180) for k in range(5000)], dtype=object)
    areas = ground_areas(boxes, "EPSG:3857")
    expected = [pyproj_area(b, "EPSG:3857") for b in boxes[::250]]
    assert areas[::250] == pytest.approx(expected, rel=1e-9, abs=1e-4)
    assert np.isfinite(areas).all()
