"""Batch inputs: folder/glob expansion, georeferencing of tiles (GeoTIFF, world files, .aux.xml, .prj,
nothing), and queries files. Real files, real rasterio/GDAL reads."""

from __future__ import annotations

import os
import shutil

import pytest
from batch_helpers import blob_image, write_geotiff, write_plain, write_world_file
from pyproj import CRS

from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.engine.inputs import (
    Query,
    expand_inputs,
    georeference,
    parse_crs,
    read_queries,
)
from rsvg_desktop.errors import ConfigError


def _touch_raster(path):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(b"x")
    return path


def test_folders_are_searched_recursively_sorted_without_sidecars(tmp_path):
    root = tmp_path / "archive"
    for rel in ("b.tif", "a.PNG", "sub/c.jpg", "sub/deeper/d.tiff", ".hidden/e.tif", "sub/.f.tif"):
        _touch_raster(root / rel)
    for rel in ("a.pgw", "a.PNG.aux.xml", "b.tfw", "sub/c.jgw", "notes.txt", "b.prj", "b.tif.ovr"):
        _touch_raster(root / rel)
    found = expand_inputs([root])
    rels = [os.path.relpath(p, root) for p in found]
    assert rels == ["a.PNG", "b.tif", os.path.join("sub", "c.jpg"), os.path.join("sub", "deeper", "d.tiff")]
    assert all(os.path.isabs(p) for p in found)


def test_files_globs_and_duplicates(tmp_path, monkeypatch):
    for rel in ("x/1.tif", "x/2.tif", "y/3.png"):
        _touch_raster(tmp_path / rel)
    odd = _touch_raster(tmp_path / "scene.data")  # a file named explicitly is taken whatever its extension
    monkeypatch.chdir(tmp_path)
    found = expand_inputs(["x/2.tif", "x/*.tif", "**/*.png", "scene.data", str(tmp_path / "x")])
    assert found == (
        str(tmp_path / "x/2.tif"),
        str(tmp_path / "x/1.tif"),
        str(tmp_path / "y/3.png"),
        str(odd),
    )


@pytest.mark.parametrize("arg", ["missing.tif", "nothing*.tif", "empty"])
def test_an_argument_that_matches_nothing_is_a_usage_error(tmp_path, monkeypatch, arg):
    (tmp_path / "empty").mkdir()
    (tmp_path / "empty" / "readme.txt").write_text("no rasters")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(ConfigError, match=arg.split("*")[0]):
        expand_inputs([arg])
    with pytest.raises(ConfigError):
        expand_inputs([])


def _georef(path, assume=None):
    with open_scene(path, pixel_mode=True) as scene:
        return georeference(scene.info, assume)


def test_georeferencing_of_each_kind_of_tile(tmp_path, data_dir):
    img = blob_image(64, 64, [(10, 10, 8)])
    tif = write_geotiff(tmp_path / "geo.tif", img, crs="EPSG:32633")
    g = _georef(tif)
    assert (g.source, g.pixel_mode) == ("file", False) and CRS.from_wkt(g.crs_wkt).to_epsg() == 32633

    # PNG + world file: GDAL reads the transform, but no CRS → pixel mode unless told the CRS.
    png = write_plain(tmp_path / "world.png", img)
    write_world_file(png, ".pgw", x0=500000.0, y0=4650000.0, pixel=0.5)
    g = _georef(png)
    assert (g.source, g.pixel_mode, g.has_transform) == ("none", True, True)
    assert g.transform == pytest.approx((0.5, 0.0, 500000.0, 0.0, -0.5, 4650000.0))
    g = _georef(png, parse_crs("EPSG:32633"))
    assert (g.source, g.pixel_mode) == ("assumed", False)

    # JPEG + .jgw + ESRI .prj: the .prj gives the CRS (GDAL does not read it for JPEG).
    jpg = write_plain(tmp_path / "prj.jpg", img, driver="JPEG")
    write_world_file(jpg, ".jgw", x0=500000.0, y0=4650000.0, pixel=0.5)
    jpg.with_suffix(".prj").write_text(CRS.from_epsg(32633).to_wkt("WKT1_ESRI"))
    g = _georef(jpg, parse_crs("EPSG:4326"))
    assert g.source == "prj" and CRS.from_wkt(g.crs_wkt).equals(CRS.from_epsg(32633), ignore_axis_order=True)

    # PNG + .aux.xml with an SRS and a geotransform: GDAL reads both.
    aux = write_plain(tmp_path / "aux.png", img)
    aux.with_name("aux.png.aux.xml").write_text(
        "<PAMDataset><SRS>EPSG:32633</SRS><GeoTransform>500000, 0.5, 0, 4650000, 0, -0.5</GeoTransform>"
        "</PAMDataset>"
    )
    g = _georef(aux)
    assert g.source == "file" and CRS.from_wkt(g.crs_wkt).to_epsg() == 32633

    # A plain demo image: pixel mode, identity transform.
    plain = tmp_path / "plain.jpg"
    shutil.copy(data_dir / "geochat_demo_tiles" / "11760.jpg", plain)
    g = _georef(plain, parse_crs("EPSG:32633"))  # --assume-crs needs a world file to apply
    assert (g.source, g.pixel_mode, g.has_transform) == ("none", True, False)


def test_parse_crs_rejects_nonsense():
    assert CRS.from_wkt(parse_crs("EPSG:4326")).to_epsg() == 4326
    with pytest.raises(ConfigError, match="not a usable CRS"):
        parse_crs("EPSG:nope")


def test_queries_file_plain_lines_and_json_lines(tmp_path):
    f = tmp_path / "q.txt"
    f.write_text(
        "# questions for the night\nairplanes\n\n"
        '{"task": "grounding", "query": ""}\n'
        '{"query": "storage tanks"}\n'
        '{"task": "classify", "query": "What is this?", "classes": ["forest", "urban"]}\n'
        "airplanes\n",
        encoding="utf-8",
    )
    qs = read_queries(f, default_task="refer")
    assert qs == (
        Query("refer", "airplanes"),
        Query("grounding", ""),
        Query("refer", "storage tanks"),
        Query("classify", "What is this?", ("forest", "urban")),
    )


@pytest.mark.parametrize(
    ("text", "needle"),
    [
        ('{"task": "teleport", "query": "x"}\n', "q.txt:1: unknown task"),
        ("ok\n{not json\n", "q.txt:2: not JSON"),
        ('{"query": "x", "colour": "red"}\n', "unknown key"),
        ('{"task": "refer", "query": ""}\n', "needs a query"),
        ("# only comments\n", "holds no questions"),
    ],
)
def test_queries_file_errors_name_the_line(tmp_path, text, needle):
    f = tmp_path / "q.txt"
    f.write_text(text, encoding="utf-8")
    with pytest.raises(ConfigError, match=needle):
        read_queries(f)
    with pytest.raises(ConfigError, match="not found"):
        read_queries(tmp_path / "absent.txt")


def test_content_id_reads_size_and_bytes_not_names(tmp_path):
    from rsvg_desktop.engine.inputs import WHOLE_FILE_LIMIT, batch_root, content_id

    small = tmp_path / "a.bin"
    small.write_bytes(b"x" * 1000)
    twin = tmp_path / "b.bin"
    twin.write_bytes(b"x" * 1000)
    assert content_id(small) == content_id(twin) and content_id(small).startswith("1000-")
    twin.write_bytes(b"x" * 999 + b"y")
    assert content_id(small) != content_id(twin)
    big = bytearray(WHOLE_FILE_LIMIT * 8)
    (tmp_path / "big.bin").write_bytes(big)
    before = content_id(tmp_path / "big.bin")
    big[len(big) // 2 - 100_000 : len(big) // 2 + 100_000] = b"\1" * 200_000  # a change in the middle
    (tmp_path / "big.bin").write_bytes(big)
    assert content_id(tmp_path / "big.bin") != before
    assert batch_root([str(tmp_path / "x" / "1.tif"), str(tmp_path / "y" / "z" / "2.tif")]) == str(tmp_path)
