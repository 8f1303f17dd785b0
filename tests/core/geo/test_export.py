"""Exports reopened with readers other than the writer (fiona, json, sqlite3, raw dBase bytes)."""

from __future__ import annotations

import json
import logging
import re
import shutil
import sqlite3
import struct
import subprocess
import xml.etree.ElementTree as ET
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from pyproj import CRS, Geod, Transformer

from rsvg_desktop.core.geo.boxes import AngleConvention, boxes_to_pixel_corners
from rsvg_desktop.core.geo.detections import DetectionTable, RunInfo, tile_records
from rsvg_desktop.core.geo.export import (
    SHAPEFILE_FIELDS,
    ExportFormat,
    export_detections,
    format_for_path,
)
from rsvg_desktop.core.geo.export import geopackage as gpkg_writer
from rsvg_desktop.core.types import GridBox, ParsedObject, Tile
from rsvg_desktop.errors import ConfigError, ExportError, OutputExistsError

LAYER_STYLES_COLUMNS = [
    "id",
    "f_table_catalog",
    "f_table_schema",
    "f_table_name",
    "f_geometry_column",
    "styleName",
    "styleQML",
    "styleSLD",
    "useAsDefault",
    "description",
    "owner",
    "ui",
    "update_time",
]
ATTRIBUTES = ["phrase", "task", "query", "tile_row", "tile_col", "angle", "model", "precision", "run_id"]


@pytest.fixture(scope="module")
def scene(data_dir: Path):
    with rasterio.open(data_dir / "RGB.byte.tif") as src:
        return tuple(src.transform)[:6], src.crs.to_epsg()


TILES = [Tile(0, 0, 0, 0, 504, 504), Tile(0, 1, 287, 0, 504, 504), Tile(1, 0, 0, 214, 504, 504)]
OBJECTS = [
    (0, ParsedObject("airplane", GridBox(10, 70, 26, 82, 90))),
    (0, ParsedObject("airplane", GridBox(21, 70, 37, 82, 90))),
    (1, ParsedObject("Flugzeug ✈ Überflug", GridBox(14, 68, 28, 84, 20))),
    (2, ParsedObject(None, GridBox(30, 58, 46, 74, None))),
]


def _pyproj_ground_area(polygon, crs) -> float:
    """The reference: the polygon taken to WGS 84 longitude/latitude, measured by pyproj's Geod."""
    tr = Transformer.from_crs(crs, "EPSG:4326", always_xy=True)
    lon, lat = tr.transform(*np.asarray(polygon.exterior.coords).T)
    return abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])


def make_table(scene, convention=AngleConvention.CCW, pixel=False):
    t, epsg = scene
    items = [(TILES[i], o) for i, o in OBJECTS]
    return DetectionTable.from_tile_objects(
        items,
        task="grounding",
        query="[grounding] where are the airplanes?",
        model="geochat-7b",
        precision="nf4",
        run_id="run-42",
        scene="RGB.byte.tif",
        transform6=None if pixel else t,
        src_crs=None if pixel else epsg,
        angle_convention=convention,
    )


def make_tiles(scene, pixel=False):
    t, epsg = scene
    return tile_records(
        TILES, None if pixel else t, None if pixel else epsg, skipped={(1, 0): "all nodata"}, run_id="run-42"
    )


def make_run(convention=AngleConvention.CCW):
    return RunInfo(
        run_id="run-42",
        scene="RGB.byte.tif",
        model="geochat-7b",
        precision="nf4",
        device="CPU",
        angle_convention=convention,
        tile_size=504,
        overlap=64,
        random_weights=True,
    )


# --- GeoPackage ------------------------------------------------------------------------------------
def test_geopackage_layers_attributes_and_geometry(tmp_path, scene):
    table = make_table(scene)
    out = tmp_path / "result.gpkg"
    res = export_detections(out, table, crs=scene[1], tiles=make_tiles(scene), run=make_run())
    assert res.fmt is ExportFormat.GPKG and res.count == 4 and res.files == (out,)
    layers = fiona.listlayers(out)
    assert {"detections", "tiles", "run", "layer_styles"} <= set(layers)

    with fiona.open(out, layer="detections") as src:
        assert src.schema["geometry"] == "Polygon"
        assert CRS.from_user_input(src.crs.to_wkt()).to_epsg() == 32618
        feats = list(src)
    assert len(feats) == 4
    for feat, det in zip(feats, table, strict=True):
        props = dict(feat.properties)
        for name in (*ATTRIBUTES, "scene", "tile_id", "angle_convention", "area_m2"):
            assert name in props
        assert props["phrase"] == det.phrase
        assert props["angle"] == det.angle  # None stays NULL
        assert props["angle_convention"] == "ccw"
        geom = shapely.geometry.shape(feat.geometry)
        assert shapely.equals_exact(geom, det.geometry, tolerance=1e-6)
        # On the ground (pyproj's geodesic area), not the planar UTM area (~0.3 % more here)
        assert props["area_m2"] == pytest.approx(_pyproj_ground_area(det.geometry, scene[1]), rel=1e-9)
        assert props["area_m2"] != pytest.approx(det.geometry.area, rel=1e-3)
    assert feats[2].properties["phrase"] == "Flugzeug ✈ Überflug"

    with fiona.open(out, layer="tiles") as src:
        tiles = {(f.properties["tile_row"], f.properties["tile_col"]): f.properties for f in src}
    assert tiles[(1, 0)]["skipped"] is True and tiles[(0, 0)]["skipped"] is False
    assert tiles[(1, 0)]["skip_reason"] == "all nodata"

    con = sqlite3.connect(out)
    try:
        described = dict(
            con.execute(
                "SELECT column_name, description FROM gpkg_data_columns WHERE table_name = 'detections'"
            )
        )
        assert set(described) == {"area_m2"} and "on the ground" in described["area_m2"]
        (qml,) = con.execute("SELECT styleQML FROM layer_styles WHERE f_table_name = 'detections'").fetchone()
        assert '<alias field="area_m2" name="area on the ground (m²)"/>' in qml
        assert "geodesic" in described["area_m2"]
        assert con.execute(
            "SELECT count(*) FROM gpkg_extensions WHERE extension_name = 'gpkg_schema'"
        ).fetchone() == (2,)
        row = con.execute(
            "SELECT run_id, angle_convention, angle_convention_doc, tile_size, overlap, random_weights,"
            " device, tool_version, crs, n_detections FROM run"
        ).fetchone()
        assert row[:2] == ("run-42", "ccw") and "counter-clockwise" in row[2]
        assert row[3:7] == (504, 64, 1, "CPU") and row[7] and row[8] == "EPSG:32618" and row[9] == 4
        kinds = dict(con.execute("SELECT table_name, data_type FROM gpkg_contents"))
        assert kinds["run"] == "attributes" and kinds["detections"] == "features"
    finally:
        con.close()


def test_geopackage_layer_styles_for_qgis(tmp_path, scene):
    out = tmp_path / "styled.gpkg"
    export_detections(out, make_table(scene), crs=scene[1], tiles=make_tiles(scene))
    con = sqlite3.connect(out)
    try:
        cols = [r[1] for r in con.execute("PRAGMA table_info(layer_styles)")]
        assert cols == LAYER_STYLES_COLUMNS
        geom_col = dict(con.execute("SELECT table_name, column_name FROM gpkg_geometry_columns"))
        rows = con.execute(
            "SELECT f_table_name, f_geometry_column, styleQML, styleSLD, useAsDefault FROM layer_styles"
        ).fetchall()
    finally:
        con.close()
    styles = {r[0]: r for r in rows}
    assert set(styles) == {"detections", "tiles"}
    for name, (_, gcol, qml, sld, default) in styles.items():
        assert gcol == geom_col[name] and default == 1
        root = ET.fromstring(qml.split("\n", 1)[1])  # after the DOCTYPE line
        assert root.tag == "qgis"
        ET.fromstring(sld.encode())
    det_qml = ET.fromstring(styles["detections"][2].split("\n", 1)[1])
    assert det_qml.get("labelsEnabled") == "1"
    assert det_qml.find(".//labeling/settings/text-style").get("fieldName") == "phrase"
    tiles_qml = ET.fromstring(styles["tiles"][2].split("\n", 1)[1])
    rules = tiles_qml.findall(".//rules/rule")
    assert [r.get("filter") for r in rules] == ['"skipped"', "ELSE"]
    skipped_symbol = tiles_qml.find(".//symbols/symbol[@name='0']")
    opts = {o.get("name"): o.get("value") for o in skipped_symbol.iter("Option") if o.get("name")}
    assert opts["outline_style"] == "dash" and opts["style"] == "no"


def test_geopackage_with_ogrinfo(tmp_path, scene):
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        pytest.fail("ogrinfo is not installed: run `make sysdeps` (Debian package gdal-bin)")
    out = tmp_path / "ogr.gpkg"
    export_detections(out, make_table(scene), crs=scene[1], tiles=make_tiles(scene))
    proc = subprocess.run([ogrinfo, "-so", "-al", str(out)], capture_output=True, text=True, check=True)
    text = proc.stdout
    assert "Feature Count: 4" in text


def test_pixel_mode_geopackage(tmp_path, scene):
    table = make_table(scene, pixel=True)
    out = tmp_path / "pixels.gpkg"
    export_detections(out, table, crs=None, tiles=make_tiles(scene, pixel=True))
    con = sqlite3.connect(out)
    try:
        srs = dict(con.execute("SELECT table_name, srs_id FROM gpkg_geometry_columns"))
        assert srs["detections"] == -1
    finally:
        con.close()
    with fiona.open(out, layer="detections") as src:
        feat = next(iter(src))
        assert "area_px" in feat.properties
        # Tile (0, 0), box x 12..24 ×5.04 after the quarter turn.
        assert shapely.geometry.shape(feat.geometry).bounds == pytest.approx((60.48, 342.72, 120.96, 423.36))


def test_reprojected_geopackage(tmp_path, scene):
    out = tmp_path / "wgs.gpkg"
    res = export_detections(out, make_table(scene), crs=scene[1], to_crs=4326, tiles=make_tiles(scene))
    assert res.crs == "EPSG:4326"
    with fiona.open(out, layer="tiles") as src:
        x, y = next(iter(src)).geometry["coordinates"][0][0]
        assert -80 < x < -76 and 23 < y < 27


# --- GeoJSON -----------------------------------------------------------------------------------------
def _signed_area(ring):
    xy = np.asarray(ring, dtype=float)
    x, y = xy[:, 0] - xy[0, 0], xy[:, 1] - xy[0, 1]
    return 0.5 * float(np.sum(x[:-1] * y[1:] - x[1:] * y[:-1]))


def test_geojson_is_rfc7946(tmp_path, scene):
    table = make_table(scene)
    out = tmp_path / "result.geojson"
    export_detections(out, table, crs=scene[1], run=make_run())
    doc = json.loads(out.read_text(encoding="utf-8"))
    assert doc["type"] == "FeatureCollection"
    assert "crs" not in doc
    assert doc["rsvg_runs"][0]["angle_convention"] == "ccw"
    assert "on the ground" in doc["rsvg_fields"]["area_m2"] and set(doc["rsvg_fields"]) == {"area_m2"}
    feats = doc["features"]
    assert len(feats) == 4
    tr = Transformer.from_crs("EPSG:32618", "EPSG:4326", always_xy=True)
    t, _ = scene
    wins = np.asarray([TILES[i].window for i, _ in OBJECTS], dtype=float)
    corners = boxes_to_pixel_corners(table.boxes, wins)
    for k, feat in enumerate(feats):
        assert "crs" not in feat
        props = feat["properties"]
        for name in ATTRIBUTES:
            assert name in props
        assert props["area_m2"] == pytest.approx(_pyproj_ground_area(table.geometry[k], scene[1]), rel=1e-9)
        ring = feat["geometry"]["coordinates"][0]
        assert ring[0] == ring[-1]
        for lon, lat in ring:
            assert -180 <= lon <= 180 and -90 <= lat <= 90
            assert round(lon, 7) == lon and round(lat, 7) == lat
        assert _signed_area(ring) > 0  # counter-clockwise exterior
        # Against pyproj directly: the affine by hand, then EPSG:32618 → 4326.
        a, b, c, d, e, f = t
        expected = [tr.transform(a * x + b * y + c, d * x + e * y + f) for x, y in corners[k]]
        got = np.asarray(ring[:-1])
        for p in expected:
            assert np.min(np.hypot(*(got - p).T)) < 2e-7
    assert feats[3]["properties"]["phrase"] is None and feats[3]["properties"]["angle"] is None
    with fiona.open(out) as src:  # a second, GDAL-based reader
        assert len(src) == 4


def test_geojson_refuses_pixel_mode(tmp_path, scene):
    out = tmp_path / "pixels.geojson"
    with pytest.raises(ExportError, match="pixel"):
        export_detections(out, make_table(scene, pixel=True), crs=None)
    assert list(tmp_path.iterdir()) == []


def test_geojson_refuses_other_target_crs(tmp_path, scene):
    with pytest.raises(ConfigError):
        export_detections(tmp_path / "x.geojson", make_table(scene), crs=scene[1], to_crs=3857)


# --- Shapefile ---------------------------------------------------------------------------------------
def _dbf_field_names(path: Path) -> list[str]:
    raw = path.read_bytes()
    header_len = struct.unpack("<H", raw[8:10])[0]
    names = []
    for off in range(32, header_len - 1, 32):
        names.append(raw[off : off + 11].split(b"\x00", 1)[0].decode("ascii"))
    return names


def test_shapefile_set(tmp_path, scene):
    table = make_table(scene)
    out = tmp_path / "result.shp"
    res = export_detections(out, table, crs=scene[1], tiles=make_tiles(scene), run=make_run())
    exts = (".shp", ".shx", ".dbf", ".prj", ".cpg", ".qml")
    for ext in exts:
        assert (tmp_path / f"result{ext}").is_file()
    assert set(res.files) == {tmp_path / f"result{ext}" for ext in exts}
    assert (tmp_path / "result.cpg").read_text().strip().upper() in {"UTF-8", "UTF8"}
    prj = CRS.from_wkt((tmp_path / "result.prj").read_text())
    assert prj.equals(CRS.from_epsg(32618), ignore_axis_order=True)
    names = _dbf_field_names(tmp_path / "result.dbf")
    assert all(len(n) <= 10 for n in names) and len(set(names)) == len(names)
    expected = {"phrase", "tile_row", "precision", "run_id", "query", "model", "angle", "task", "angle_conv"}
    assert expected <= set(names)
    assert all(len(v) <= 10 for v in SHAPEFILE_FIELDS.values())
    assert len(set(SHAPEFILE_FIELDS.values())) == len(SHAPEFILE_FIELDS)
    with fiona.open(out) as src:
        assert src.schema["geometry"] == "Polygon"
        feats = list(src)
    assert feats[2].properties["phrase"] == "Flugzeug ✈ Überflug"
    assert feats[0].properties["angle_conv"] == "ccw"
    assert feats[0].properties["area_m2"] == pytest.approx(
        _pyproj_ground_area(table.geometry[0], scene[1]), rel=1e-9
    )
    qml = ET.fromstring((tmp_path / "result.qml").read_text(encoding="utf-8"))
    assert "Fields" in qml.get("styleCategories").split("|")
    assert {a.get("field"): a.get("name") for a in qml.iter("alias")} == {
        "area_m2": "area on the ground (m²)"
    }
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temporary leftovers


def test_shapefile_long_text_is_cut_with_a_warning(tmp_path, scene, caplog):
    table = make_table(scene)
    long_query = "é" * 200  # 400 bytes in UTF-8
    keep = (
        "phrase",
        "task",
        "tile_row",
        "tile_col",
        "boxes",
        "windows",
        "geometry",
        "model",
        "precision",
        "run_id",
        "scene",
    )
    table = DetectionTable.from_columns(**{name: getattr(table, name) for name in keep}, query=long_query)
    with caplog.at_level(logging.WARNING):
        export_detections(tmp_path / "long.shp", table, crs=scene[1])
    assert "longer than 254 bytes" in caplog.text
    with fiona.open(tmp_path / "long.shp") as src:
        assert next(iter(src)).properties["query"] == "é" * 127


def test_pixel_mode_shapefile_has_no_prj(tmp_path, scene):
    export_detections(tmp_path / "px.shp", make_table(scene, pixel=True), crs=None)
    assert not (tmp_path / "px.prj").exists() and (tmp_path / "px.shp").exists()


# --- overwrite and atomicity -----------------------------------------------------------------------
@pytest.mark.parametrize("name", ["a.gpkg", "a.geojson", "a.shp"])
def test_refuses_to_overwrite(tmp_path, scene, name):
    out = tmp_path / name
    export_detections(out, make_table(scene), crs=scene[1])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    with pytest.raises(OutputExistsError, match=re.escape(str(out))):
        export_detections(out, make_table(scene), crs=scene[1])
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before
    export_detections(out, make_table(scene), crs=scene[1], overwrite=True)


def test_shapefile_sidecar_counts_as_existing(tmp_path, scene):
    (tmp_path / "a.dbf").write_bytes(b"old")
    with pytest.raises(OutputExistsError, match=r"a\.dbf"):
        export_detections(tmp_path / "a.shp", make_table(scene), crs=scene[1])


def test_shapefile_overwrite_removes_stale_sidecars(tmp_path, scene):
    export_detections(tmp_path / "a.shp", make_table(scene), crs=scene[1])
    (tmp_path / "a.qix").write_bytes(b"stale index")
    export_detections(tmp_path / "a.shp", make_table(scene, pixel=True), crs=None, overwrite=True)
    assert not (tmp_path / "a.qix").exists() and not (tmp_path / "a.prj").exists()


def _failing_writer(real):
    def write(df, path, *args, **kwargs):
        if kwargs.get("layer") in (None, "detections"):
            real(df.iloc[:1], path, *args, **kwargs)  # something lands on disk, then the failure
        raise RuntimeError("disk full (simulated)")

    return write


@pytest.mark.parametrize("name", ["a.gpkg", "a.geojson", "a.shp"])
def test_failure_leaves_no_file(tmp_path, scene, monkeypatch, name):
    real = gpkg_writer.pyogrio.write_dataframe
    monkeypatch.setattr(gpkg_writer.pyogrio, "write_dataframe", _failing_writer(real))
    with pytest.raises(ExportError, match="disk full"):
        export_detections(tmp_path / name, make_table(scene), crs=scene[1], tiles=make_tiles(scene))
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("name", ["a.gpkg", "a.geojson", "a.shp"])
def test_failure_keeps_the_old_file_on_overwrite(tmp_path, scene, monkeypatch, name):
    out = tmp_path / name
    export_detections(out, make_table(scene), crs=scene[1])
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    real = gpkg_writer.pyogrio.write_dataframe
    monkeypatch.setattr(gpkg_writer.pyogrio, "write_dataframe", _failing_writer(real))
    with pytest.raises(ExportError):
        export_detections(out, make_table(scene), crs=scene[1], overwrite=True)
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


def test_failure_while_adding_styles_leaves_no_file(tmp_path, scene, monkeypatch):
    def boom(*_a, **_k):
        raise sqlite3.OperationalError("database is locked (simulated)")

    monkeypatch.setattr(gpkg_writer, "write_layer_styles", boom)
    with pytest.raises(ExportError, match="locked"):
        export_detections(tmp_path / "a.gpkg", make_table(scene), crs=scene[1])
    assert list(tmp_path.iterdir()) == []


# --- formats and arguments -------------------------------------------------------------------------
def test_format_from_extension_or_explicit(tmp_path, scene):
    assert format_for_path("x.GPKG") is ExportFormat.GPKG
    assert format_for_path("x.json") is ExportFormat.GEOJSON
    assert format_for_path("x.shp") is ExportFormat.SHAPEFILE
    assert format_for_path("x.dat", "GeoPackage") is ExportFormat.GPKG
    with pytest.raises(ConfigError):
        format_for_path("x.kml")
    with pytest.raises(ConfigError):
        format_for_path("x.gpkg", "kml")
    out = tmp_path / "result.data"
    export_detections(out, make_table(scene), crs=scene[1], fmt="gpkg")
    assert "detections" in fiona.listlayers(out)
    with pytest.raises(ConfigError):
        export_detections(tmp_path / "x.dat", make_table(scene), crs=scene[1], fmt="shp")


def test_list_of_detections_and_empty_input(tmp_path, scene):
    dets = make_table(scene).to_detections()
    export_detections(tmp_path / "list.gpkg", dets, crs=scene[1], run=make_run())
    with fiona.open(tmp_path / "list.gpkg", layer="detections") as src:
        assert len(src) == 4
    export_detections(tmp_path / "empty.gpkg", [], crs=scene[1])
    with fiona.open(tmp_path / "empty.gpkg", layer="detections") as src:
        assert len(src) == 0 and src.schema["geometry"] == "Polygon"


def test_angle_convention_must_agree(tmp_path, scene):
    with pytest.raises(ConfigError, match="angle convention"):
        export_detections(tmp_path / "a.gpkg", make_table(scene), crs=scene[1], run=make_run("cw"))
    out = tmp_path / "cw.gpkg"
    export_detections(out, make_table(scene, AngleConvention.CW), crs=scene[1], run=make_run("cw"))
    with fiona.open(out, layer="detections") as src:
        assert next(iter(src)).properties["angle_convention"] == "cw"


def test_missing_folder_is_an_export_error(tmp_path, scene):
    with pytest.raises(ExportError):
        export_detections(tmp_path / "nope" / "a.gpkg", make_table(scene), crs=scene[1])
