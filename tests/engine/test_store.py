"""The batch run store: a GeoPackage written in transactions that GDAL (pyogrio, fiona) reads as it is,
its R-tree index kept current, and an answer log that never loses or repeats a stored answer."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import time

import fiona
import numpy as np
import pyogrio
import pytest
import shapely
from pyproj import CRS

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.detections import DetectionTable, tile_records
from rsvg_desktop.core.types import GridBox, ParsedObject, Tile
from rsvg_desktop.engine.batch.store import (
    BatchStore,
    InputRecord,
    RunRecord,
    TileAnswer,
)
from rsvg_desktop.errors import ConfigError, ExportError, OutputExistsError

UTM = CRS.from_epsg(32633).to_wkt()
TRANSFORM = (0.5, 0.0, 500000.0, 0.0, -0.5, 4650000.0)


def _run(run_id="refer-test") -> RunRecord:
    return RunRecord(
        run_id=run_id,
        task="refer",
        query="cars",
        classes=(),
        prompt="p",
        prompt_sha256="s",
        model="m",
        model_id="id",
        precision="fp32",
        angle_convention="ccw",
        tile_size=64,
        overlap=0,
        target_gsd=None,
        max_new_tokens=8,
        assume_crs=None,
        random_weights=True,
    )


def _answer(store_input, tile, boxes, *, pixel=False, run_id="refer-test", scene="/data/a.tif"):
    objs = [(tile, ParsedObject("car", GridBox(*b, 0.0))) for b in boxes]
    table = DetectionTable.from_tile_objects(
        objs,
        task="refer",
        query="cars",
        model="m",
        precision="fp32",
        run_id=run_id,
        scene=scene,
        transform6=None if pixel else TRANSFORM,
        src_crs=None if pixel else UTM,
    )
    footprint = None if pixel else tile_records([tile], TRANSFORM, UTM)[0].geometry
    text = "".join(f"{{<{b[0]}><{b[1]}><{b[2]}><{b[3]}>|<0>}}" for b in boxes)
    return TileAnswer(
        run_id=run_id,
        input_id=store_input,
        scene=scene,
        tile=tile,
        answer=f"<p>car</p> {text}",
        detections=table,
        pixel_mode=pixel,
        input_tokens=10,
        output_tokens=5,
        seconds=0.1,
        batch_size=1,
        device="CPU",
        footprint=footprint,
    )


def _open(tmp_path, **kw) -> BatchStore:
    return BatchStore.open(tmp_path / "run.gpkg", tmp_path / "run.answers.jsonl", **kw)


def _fill(store, n_tiles=4, boxes=((10, 10, 30, 30), (60, 60, 90, 90))):
    store.add_run(_run())
    iid = store.add_input(
        InputRecord(
            "/data/a.tif",
            driver="GTiff",
            width=128,
            height=128,
            bands=3,
            dtype="uint8",
            crs="EPSG:32633",
            crs_wkt=UTM,
            transform=TRANSFORM,
            georef_source="file",
        )
    )
    tiles = [Tile(r, c, c * 64, r * 64, 64, 64, 64) for r in range(2) for c in range(2)][:n_tiles]
    for t in tiles:
        with store.transaction():
            store.add_answers([_answer(iid, t, boxes)], UTM)
    return iid, tiles


def test_blob_roundtrip_and_envelope():
    polys = np.asarray([shapely.box(1, 2, 3, 5), shapely.Polygon([(0, 0), (4, 1), (2, 6)])], dtype=object)
    blobs = gpkg.geometry_blobs(polys, 32633)
    assert [b[:2] for b in blobs] == [b"GP", b"GP"]
    back = [gpkg.geometry_from_blob(b) for b in blobs]
    assert all(a.equals_exact(b, 0) for a, b in zip(polys, back, strict=True))


def test_merged_layer_holds_one_polygon_for_an_object_cut_by_two_tiles(tmp_path):
    # Tiles of 64 px that touch (overlap 0); a car at x 40–90, y 10–30 px is cut by both.
    store = _open(tmp_path, crs_wkt=UTM)
    store.add_run(_run())
    iid = store.add_input(
        InputRecord(
            "/data/a.tif",
            driver="GTiff",
            width=128,
            height=64,
            bands=3,
            dtype="uint8",
            crs="EPSG:32633",
            crs_wkt=UTM,
            transform=TRANSFORM,
            georef_source="file",
        )
    )
    a, b = Tile(0, 0, 0, 0, 64, 64, 64), Tile(0, 1, 64, 0, 64, 64, 64)
    with store.transaction():
        store.add_answers([_answer(iid, a, [(62.5, 15.625, 100, 46.875)])], UTM)
        store.add_answers([_answer(iid, b, [(0, 15.625, 40.625, 46.875), (70, 70, 90, 90)])], UTM)
    with store.transaction():
        out = store.finish_input("refer-test", iid, "/data/a.tif", status="done", pixel_mode=False)
    assert (out.raw_detections, out.detections) == (3, 2)
    det = pyogrio.read_dataframe(tmp_path / "run.gpkg", layer="detections")
    areas = sorted(det.geometry.area)
    assert areas == pytest.approx([(12.8 * 0.5) ** 2, 50 * 20 * 0.25])
    x0, y0 = 500000.0, 4650000.0
    big = det.geometry[det.geometry.area.argmax()]
    assert big.bounds == pytest.approx((x0 + 20, y0 - 15, x0 + 45, y0 - 5))


def test_store_is_a_geopackage_gdal_reads_while_it_is_written(tmp_path):
    store = _open(tmp_path, crs_wkt=UTM)
    iid, _ = _fill(store)
    with store.transaction():
        out = store.finish_input(
            "refer-test", iid, "/data/a.tif", status="done", pixel_mode=False, tiles_planned=4
        )
    assert (out.status, out.tiles_done, out.raw_detections, out.detections) == ("done", 4, 8, 8)
    # Read by GDAL with the store still open (nothing is closed or flushed for readers).
    path = tmp_path / "run.gpkg"
    layers = dict(pyogrio.list_layers(path))
    assert {
        "detections",
        "tile_detections",
        "tile_footprints",
        "tiles",
        "inputs",
        "input_runs",
        "run",
        "sessions",
        "layer_styles",
    } <= set(layers)
    assert layers["detections"] == "Polygon" and layers["tiles"] is None
    det = pyogrio.read_dataframe(path, layer="detections")
    assert len(det) == 8 and det.crs.to_epsg() == 32633
    assert set(det["phrase"]) == {"car"} and det["pixel_mode"].eq(0).all() and (det["area_m2"] > 0).all()
    with contextlib.closing(sqlite3.connect(path)) as con:  # the area field says it is on the ground
        described = dict(con.execute("SELECT table_name, description FROM gpkg_data_columns"))
        (qml,) = con.execute("SELECT styleQML FROM layer_styles WHERE f_table_name = 'detections'").fetchone()
    assert {"detections", "tile_detections"} <= set(described)
    assert "on the ground" in described["detections"] and "area on the ground (m²)" in qml
    info = pyogrio.read_info(path, layer="tile_detections")
    assert info["features"] == 8
    # The R-tree answers spatial filters: only the boxes of the top-left tile.
    x0, y0 = 500000.0, 4650000.0
    hits = pyogrio.read_dataframe(path, layer="tile_detections", bbox=(x0 + 1, y0 - 31, x0 + 31, y0 - 1))
    assert len(hits) == 2 and set(hits["tile_id"]) == {"r0c0"}
    with fiona.open(path, layer="tile_footprints") as src:
        assert len(src) == 4 and src.crs.to_epsg() == 32633
    ledger = pyogrio.read_dataframe(path, layer="tiles")
    assert list(ledger["status"]) == ["done"] * 4 and ledger["answer"].str.startswith("<p>car</p>").all()
    con = sqlite3.connect(path)
    styles = {r[0] for r in con.execute("SELECT f_table_name FROM layer_styles WHERE useAsDefault")}
    extent = con.execute("SELECT min_x, max_y FROM gpkg_contents WHERE table_name = 'detections'").fetchone()
    n_rtree = con.execute("SELECT count(*) FROM rtree_tile_detections_geom").fetchone()[0]
    con.close()
    assert {"detections", "tile_detections", "tile_footprints"} <= styles
    assert extent[0] >= x0 and extent[1] <= y0 and n_rtree == 8
    store.close()


def test_pixel_layers_have_the_undefined_srs(tmp_path):
    with _open(tmp_path) as store:
        store.add_run(_run())
        iid = store.add_input(InputRecord("/data/p.png", pixel_mode=True))
        store.prepare_pixel_layers()
        with store.transaction():
            store.add_answers(
                [
                    _answer(
                        iid, Tile(0, 0, 0, 0, 64, 64, 64), [(0, 0, 50, 50)], pixel=True, scene="/data/p.png"
                    )
                ],
                None,
            )
            store.finish_input("refer-test", iid, "/data/p.png", status="done", pixel_mode=True)
        assert store.output_crs_wkt is None and "detections" not in store.layers()
    con = sqlite3.connect(tmp_path / "run.gpkg")
    assert con.execute(
        "SELECT srs_id FROM gpkg_geometry_columns WHERE table_name = 'detections_pixel'"
    ).fetchone() == (-1,)
    con.close()
    det = pyogrio.read_dataframe(tmp_path / "run.gpkg", layer="detections_pixel")
    assert len(det) == 1 and det["pixel_mode"].iloc[0] == 1 and det["area_px"].iloc[0] == pytest.approx(1024)
    assert det.geometry.iloc[0].bounds == pytest.approx((0, 0, 32, 32))


def test_a_failed_transaction_leaves_nothing(tmp_path):
    with _open(tmp_path, crs_wkt=UTM) as store:
        iid, _ = _fill(store, n_tiles=1)
        with pytest.raises(RuntimeError, match="boom"), store.transaction():
            store.add_answers([_answer(iid, Tile(1, 1, 64, 64, 64, 64, 64), [(1, 1, 9, 9)])], UTM)
            raise RuntimeError("boom")
        assert store.done_windows(iid, ["refer-test"]) == {("refer-test", (0, 0, 64, 64))}
        # Storing the same tile twice breaks the ledger's unique key: the store refuses, nothing doubles.
        with pytest.raises(ExportError), store.transaction():
            store.add_answers([_answer(iid, Tile(0, 0, 0, 0, 64, 64, 64), [(1, 1, 9, 9)])], UTM)
        assert store.totals(["refer-test"]).raw_detections == 2
    assert pyogrio.read_info(tmp_path / "run.gpkg", layer="tile_detections")["features"] == 2


def test_the_answer_log_is_repaired_from_the_store(tmp_path):
    with _open(tmp_path, crs_wkt=UTM) as store:
        _fill(store)
    log_path = tmp_path / "run.answers.jsonl"
    full = log_path.read_text(encoding="utf-8").splitlines(keepends=True)
    assert len(full) == 4 and [json.loads(x)["store_seq"] for x in full] == [1, 2, 3, 4]

    # Killed between the commit and the log lines, in the middle of a line: the next open finishes it.
    log_path.write_text("".join(full[:2]) + full[2][:40], encoding="utf-8")
    _open(tmp_path).close()
    assert log_path.read_text(encoding="utf-8") == "".join(full)
    recs = list(read_answer_log(log_path))
    assert [r.extra["store_seq"] for r in recs] == [1, 2, 3, 4]
    assert recs[0].crs == UTM and recs[0].transform == TRANSFORM
    assert recs[0].tile == Tile(0, 0, 0, 0, 64, 64, 64)

    # A lost log is rebuilt whole.
    log_path.unlink()
    _open(tmp_path).close()
    assert len(list(read_answer_log(log_path))) == 4


def test_what_the_store_refuses(tmp_path):
    other = tmp_path / "other.gpkg"
    pyogrio.write_dataframe(__import__("pandas").DataFrame({"a": [1]}), other, layer="x", driver="GPKG")
    with pytest.raises(ConfigError, match="not an rsvg batch run store"):
        BatchStore.open(other, tmp_path / "other.answers.jsonl")
    (tmp_path / "orphan.answers.jsonl").write_text('{"x": 1}\n')
    with pytest.raises(OutputExistsError, match="does not"):
        BatchStore.open(tmp_path / "orphan.gpkg", tmp_path / "orphan.answers.jsonl")
    with pytest.raises(ConfigError, match="GeoPackage"):
        BatchStore.open(tmp_path / "out.shp", tmp_path / "out.answers.jsonl")
    with _open(tmp_path, crs_wkt=UTM), pytest.raises(ConfigError, match="another rsvg batch"):
        _open(tmp_path)
    with pytest.raises(ConfigError, match="EPSG:32633"):
        _open(tmp_path, crs_wkt=CRS.from_epsg(4326).to_wkt())
    with _open(tmp_path, overwrite=True) as store:  # --overwrite: a new, empty store
        assert store.output_crs_wkt is None


def test_many_detections_stay_fast_and_consistent(tmp_path):
    """20,000 boxes in 400 tiles (one transaction per 8 tiles), then one merge; the benchmark measures
    a million."""
    rng = np.random.default_rng(0)
    with _open(tmp_path, crs_wkt=UTM) as store:
        store.add_run(_run())
        iid = store.add_input(InputRecord("/data/big.tif", crs_wkt=UTM, transform=TRANSFORM))
        tiles = [Tile(r, c, c * 64, r * 64, 64, 64, 64) for r in range(20) for c in range(20)]
        t0 = time.perf_counter()
        for start in range(0, len(tiles), 8):
            answers = []
            for t in tiles[start : start + 8]:
                xy = rng.integers(0, 90, size=(50, 2))
                answers.append(
                    _answer(iid, t, [(x, y, x + 8, y + 8) for x, y in xy.tolist()], scene="/data/big.tif")
                )
            with store.transaction():
                store.add_answers(answers, UTM)
        write_s = time.perf_counter() - t0
        with store.transaction():
            out = store.finish_input("refer-test", iid, "/data/big.tif", status="done", pixel_mode=False)
        assert out.raw_detections == 20_000 and 0 < out.detections <= 20_000
    assert write_s < 60
    info = pyogrio.read_info(tmp_path / "run.gpkg", layer="tile_detections")
    assert info["features"] == 20_000
    con = sqlite3.connect(tmp_path / "run.gpkg")
    assert con.execute("SELECT count(*) FROM rtree_tile_detections_geom").fetchone()[0] == 20_000
    assert con.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    con.close()


def test_a_store_of_an_earlier_version_is_brought_to_geopackage_1_2(tmp_path):
    """Stores written before issue 24 declared GeoPackage 1.4 and wrote microseconds in
    ``layer_styles.update_time``: opening one declares 1.2 and cuts the times to milliseconds."""
    store = _open(tmp_path, crs_wkt=UTM)
    _fill(store)
    store.close()
    path = tmp_path / "run.gpkg"
    con = sqlite3.connect(path)
    assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
    (count,) = con.execute("SELECT count(*) FROM layer_styles").fetchone()
    assert count > 0
    with con:
        con.execute("PRAGMA user_version = 10400")
        con.execute("UPDATE layer_styles SET update_time = '2026-01-02T03:04:05.123456Z'")
    con.close()
    _open(tmp_path).close()
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
        times = {r[0] for r in con.execute("SELECT update_time FROM layer_styles")}
        assert times == {"2026-01-02T03:04:05.123Z"}
    finally:
        con.close()
