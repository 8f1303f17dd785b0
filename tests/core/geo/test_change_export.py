"""The change layers and their files: every layer with the right rows and columns, default styles,
GeoPackage 1.2 that ``ogrinfo`` reads without a warning, one GeoJSON/Shapefile per layer, overwrite
refusal, pixel mode."""

from __future__ import annotations

import json
import sqlite3
import xml.etree.ElementTree as ET
from pathlib import Path

import fiona
import numpy as np
import pandas as pd
import pytest
import rasterio
import shapely
from gpkg_checks import assert_reads_cleanly

from rsvg_desktop.core.geo.change import ChangeSet, Matches, ShiftEstimate, TargetGrid
from rsvg_desktop.core.geo.change.layers import CHANGE_LAYERS, PERSISTING_FIELDS, change_counts, change_layers
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.export import DETECTION_FIELDS
from rsvg_desktop.core.geo.export.change import CHANGE_LOOKS, change_output_paths, write_change
from rsvg_desktop.core.types import GridBox, ParsedObject, Tile
from rsvg_desktop.errors import ExportError, OutputExistsError

TILE = Tile(0, 0, 0, 0, 504, 504)
#: Before: 4 ships; after: 4 ships, two of them where before had ships (pairs), one beside a before ship.
BEFORE_BOXES = [(10, 10, 20, 20), (30, 30, 40, 40), (60, 60, 70, 70), (80, 10, 90, 20)]
AFTER_BOXES = [(10, 10, 20, 21), (31, 30, 41, 40), (50, 80, 60, 90), (80, 80, 90, 90)]


@pytest.fixture(scope="module")
def georef(data_dir: Path) -> tuple[tuple[float, ...], str]:
    with rasterio.open(data_dir / "RGB.byte.tif") as src:
        return tuple(src.transform)[:6], src.crs.to_wkt()


def _table(boxes, georef, date: str, *, pixel: bool = False) -> DetectionTable:
    transform, wkt = georef
    return DetectionTable.from_tile_objects(
        [(TILE, ParsedObject("ship", GridBox(*b, 0))) for b in boxes],
        task="refer",
        query="ships",
        model="geochat-7b",
        precision="nf4",
        run_id=f"run-{date}",
        scene=f"{date}.tif",
        transform6=None if pixel else transform,
        src_crs=None if pixel else wkt,
    )


def make_changeset(georef, *, pixel: bool = False, unknown: bool = True) -> ChangeSet:
    """Pairs (0, 0) and (1, 1); after 2 and 3 unmatched, 3 confirmed by the before date; before 2 and
    3 unmatched, 2 confirmed by the after date."""
    before = _table(BEFORE_BOXES, georef, "before", pixel=pixel)
    after = _table(AFTER_BOXES, georef, "after", pixel=pixel)
    matches = Matches(pairs=((0, 0, 0.9), (1, 1, 0.8)), appeared=(2, 3), disappeared=(2, 3))
    area = None
    if unknown:
        x0, y0, x1, y1 = shapely.union_all(before.geometry).bounds
        area = shapely.MultiPolygon([shapely.box(x0, y0, x0 + (x1 - x0) / 4, y1)])
    return ChangeSet(
        before=before,
        after=after,
        matches=matches,
        verified_appeared=(3,),
        verified_disappeared=(2,),
        unknown_area=area,
        crs_wkt=None if pixel else georef[1],
        run={
            "before_scene": "before.tif",
            "after_scene": "after.tif",
            "grid": TargetGrid(None if pixel else georef[1], georef[0], 791, 718, "before"),
            "shift": ShiftEstimate(0.25, -0.5, 0.9),
            "model": "geochat-7b",
            "precision": "nf4",
            "match_iou": 0.3,
        },
    )


def test_layers_rows_and_columns(georef):
    cs = make_changeset(georef)
    layers = change_layers(cs)
    counts = change_counts(cs)
    assert (counts.appeared, counts.disappeared, counts.persisting, counts.verified) == (1, 1, 4, 2)
    assert layers.appeared["after_id"].tolist() == [2]
    assert layers.disappeared["before_id"].tolist() == [3]
    det_columns = [c for c in DETECTION_FIELDS if c != "area_px"]
    assert list(layers.before.columns) == [*det_columns, "geometry"]
    assert list(layers.appeared.columns) == ["after_id", *det_columns[1:], "geometry"]
    p = layers.persisting
    assert list(p.columns) == [*PERSISTING_FIELDS, "area_m2", "geometry"]
    assert p["seen_on"].tolist() == ["both", "both", "after", "before"]
    assert p["verified"].tolist() == [0, 0, 1, 1]
    assert p["before_id"].tolist()[:2] == [0, 1] and p["before_id"].isna().tolist() == [
        False,
        False,
        True,
        False,
    ]
    assert p["after_id"].isna().tolist() == [False, False, False, True]
    assert p.geometry.iloc[0].equals(cs.after.geometry[0])  # a pair carries the after polygon
    assert p.geometry.iloc[3].equals(cs.before.geometry[2])  # confirmed before-only: its own polygon
    assert np.isnan(p["iou"].iloc[2]) and p["iou"].iloc[0] == pytest.approx(0.9)
    assert len(layers.unknown_area) == 1 and layers.unknown_area["area_m2"].iloc[0] > 0
    run = layers.run.iloc[0]
    assert (run["shift_dx"], run["shift_dy"], run["grid_source"]) == (0.25, -0.5, "before")
    assert json.loads(run["grid_transform"]) == list(georef[0])
    assert (run["n_appeared"], run["n_disappeared"], run["n_persisting"], run["verification_removed"]) == (
        1,
        1,
        4,
        2,
    )


def _gpkg_rows(path: Path, sql: str) -> list[tuple]:
    con = sqlite3.connect(path)
    try:
        return con.execute(sql).fetchall()
    finally:
        con.close()


def test_geopackage_layers_styles_and_conformance(tmp_path, georef):
    out = tmp_path / "change.gpkg"
    assert write_change(out, make_changeset(georef)) == (out,)
    counts = {"appeared": 1, "disappeared": 1, "persisting": 4, "before": 4, "after": 4, "unknown_area": 1}
    assert set(fiona.listlayers(out)) >= {*CHANGE_LAYERS, "run"}
    for layer, n in counts.items():
        with fiona.open(out, layer=layer) as src:
            assert len(src) == n, layer
    with fiona.open(out, layer="unknown_area") as src:
        assert src.schema["geometry"] == "MultiPolygon"
    with fiona.open(out, layer="persisting") as src:
        props = [f.properties for f in src]
    assert [p["before_id"] for p in props] == [0, 1, None, 2]
    assert [p["verified"] for p in props] == [0, 0, 1, 1]
    styles = dict(_gpkg_rows(out, "SELECT f_table_name, styleQML FROM layer_styles WHERE useAsDefault"))
    assert set(styles) == set(CHANGE_LAYERS)
    for name, qml in styles.items():
        symbol = ET.fromstring(qml.split("\n", 1)[1]).find(".//symbols/symbol/layer/Option")
        opts = {o.get("name"): o.get("value") for o in symbol.iter("Option") if o.get("name")}
        r, g, b = CHANGE_LOOKS[name].color
        assert opts["outline_color"] == f"{r},{g},{b},255", name
    assert 'fieldName="phrase"' in styles["after"] and 'labelsEnabled="0"' in styles["unknown_area"]
    assert 'style" type="QString" value="b_diagonal"' in styles["unknown_area"]
    described = _gpkg_rows(out, "SELECT column_name FROM gpkg_data_columns WHERE table_name = 'persisting'")
    assert {"iou", "verified", "seen_on", "area_m2"} <= {c for (c,) in described}
    assert_reads_cleanly(out)


def test_geojson_and_shapefile_one_file_per_layer(tmp_path, georef):
    cs = make_changeset(georef)
    files = write_change(tmp_path / "c.geojson", cs)
    assert [f.name for f in files] == [f"c.{layer}.geojson" for layer in CHANGE_LAYERS]
    doc = json.loads((tmp_path / "c.appeared.geojson").read_text())
    assert len(doc["features"]) == 1 and "crs" not in doc
    assert doc["rsvg_runs"][0]["n_appeared"] == 1
    assert doc["features"][0]["properties"]["after_id"] == 2
    files = write_change(tmp_path / "c.shp", cs)
    shps = [f.name for f in files if f.suffix == ".shp"]
    assert shps == [f"c.{layer}.shp" for layer in CHANGE_LAYERS]
    assert (tmp_path / "c.persisting.qml").is_file() and (tmp_path / "c.persisting.prj").is_file()
    with fiona.open(tmp_path / "c.persisting.shp") as src:
        assert len(src) == 4 and {"before_id", "after_id", "iou", "verified", "seen_on"} <= set(
            src.schema["properties"]
        )
    with fiona.open(tmp_path / "c.unknown_area.shp") as src:
        assert len(src) == 1
    run = pd.read_csv(tmp_path / "c.run.csv")
    assert run["n_persisting"].tolist() == [4] and files[-1].name == "c.run.csv"


def test_existing_outputs_are_refused_unless_overwrite(tmp_path, georef):
    cs = make_changeset(georef)
    out = tmp_path / "c.gpkg"
    write_change(out, cs)
    with pytest.raises(OutputExistsError, match=r"c\.gpkg"):
        write_change(out, cs)
    write_change(out, cs, overwrite=True)
    (tmp_path / "g.disappeared.geojson").write_text("{}")
    with pytest.raises(OutputExistsError, match=r"g\.disappeared\.geojson"):
        write_change(tmp_path / "g.geojson", cs)
    assert not (tmp_path / "g.appeared.geojson").exists()  # nothing written before the refusal
    assert write_change(tmp_path / "g.geojson", cs, overwrite=True)[1].name == "g.disappeared.geojson"
    (tmp_path / "s.after.dbf").write_bytes(b"")
    with pytest.raises(OutputExistsError, match=r"s\.after\.dbf"):
        write_change(tmp_path / "s.shp", cs)


def test_pixel_mode(tmp_path, georef):
    cs = make_changeset(georef, pixel=True, unknown=False)
    out = tmp_path / "px.gpkg"
    write_change(out, cs)
    srs = dict(_gpkg_rows(out, "SELECT table_name, srs_id FROM gpkg_geometry_columns"))
    assert set(srs) == set(CHANGE_LAYERS) and set(srs.values()) == {-1}
    with fiona.open(out, layer="appeared") as src:
        feat = next(iter(src))
        assert "area_px" in feat.properties and "area_m2" not in feat.properties
    with fiona.open(out, layer="unknown_area") as src:
        assert len(src) == 0
    assert _gpkg_rows(out, "SELECT crs FROM run")[0][0].startswith("pixel")
    assert_reads_cleanly(out)
    with pytest.raises(ExportError, match="GeoJSON"):
        write_change(tmp_path / "px.geojson", cs)
    files = write_change(tmp_path / "px.shp", cs)
    assert not any(f.suffix == ".prj" for f in files)


def test_output_paths_follow_the_name():
    assert change_output_paths("a/out.gpkg") == (Path("a/out.gpkg"),)
    assert change_output_paths("out.json")[0] == Path("out.appeared.json")
    assert change_output_paths("o.shp")[-1] == Path("o.run.csv")
