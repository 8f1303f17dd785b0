"""The plugin in real QGIS (headless), driving the real engine with the test model: ``rsvg:detect`` on
the sample scene, ``rsvg:export`` from its answer log, Cancel, an engine error, EXTENT, and the built
ZIP installed into a fresh profile and run by ``qgis_process``."""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from qgis_harness import PLUGIN_DIR, ROOT, run_in_qgis

from rsvg_desktop.core.geo.export import DETECTION_FIELDS

_MODEL = {"TEST_MODEL": True, "PRECISION": "fp32", "DEVICE": "cpu", "QUERY": "cars"}


def _answers(path: str | Path) -> list[dict]:
    return [json.loads(line) for line in Path(path).read_text(encoding="utf-8").splitlines() if line.strip()]


@pytest.mark.usefixtures("test_model_dir")
def test_detect_gives_the_projects_layer_and_export_rebuilds_it(data_dir, tmp_path, qgis_env, engine):
    out = tmp_path / "det.gpkg"
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:detect",
        "parameters": {"INPUT": str(data_dir / "RGB.byte.tif"), **_MODEL, "OUTPUT": str(out)},
        "layer": "{OUTPUT}|layername=detections",
        "load": True,
    }
    detect = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in detect, detect
    assert detect["results"] == {"OUTPUT": str(out), "ANSWER_LOG": str(tmp_path / "det.answers.jsonl")}
    layer = detect["layer"]
    assert layer["valid"] and set(DETECTION_FIELDS) - {"area_px"} <= set(layer["fields"])
    assert layer["labels"], "the stored default style (phrase labels) was not applied on load"
    with sqlite3.connect(out) as db:
        (run,) = db.execute("SELECT precision, model FROM run").fetchall()
        styles = db.execute("SELECT f_table_name FROM layer_styles WHERE useAsDefault").fetchall()
    assert run[0] == "fp32" and ("detections",) in styles
    assert len(_answers(detect["results"]["ANSWER_LOG"])) == 4  # the 2 x 2 tiles of 504 px
    assert any("RANDOM WEIGHTS" in line for line in detect["log"] if line.startswith("warning:"))
    assert not detect["children"]
    # What the toolbox loads on completion is the detections layer, with its stored style.
    assert detect["project"] == [{"source": f"{out}|layername=detections", "labels": True}]

    rebuilt = tmp_path / "rebuilt.gpkg"
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:export",
        "parameters": {"ANSWER_LOG": detect["results"]["ANSWER_LOG"], "OUTPUT": str(rebuilt)},
        "layer": "{OUTPUT}|layername=detections",
    }
    export = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in export, export
    assert export["layer"]["wkt"] == layer["wkt"] and export["layer"]["fields"] == layer["fields"]


@pytest.mark.usefixtures("test_model_dir")
def test_export_turns_answered_boxes_into_polygons(data_dir, tmp_path, qgis_env, engine):
    """The test model's random answers hold no boxes; an answer log whose answers do (the records as the
    engine wrote them, answers replaced) shows that the export through QGIS places them."""
    log = tmp_path / "boxes.answers.jsonl"
    detect = run_in_qgis(
        {
            "engine": str(engine),
            "algorithm": "rsvg:detect",
            "parameters": {
                "INPUT": str(data_dir / "RGB.byte.tif"),
                **_MODEL,
                "OUTPUT": str(tmp_path / "b.gpkg"),
            },
        },
        qgis_env,
        tmp_path,
    )
    records = _answers(detect["results"]["ANSWER_LOG"])
    for record in records:
        record["answer"] = "{<20><20><40><40>|<0>}"
    log.write_text("".join(json.dumps(r) + "\n" for r in records), encoding="utf-8")
    export = run_in_qgis(
        {
            "engine": str(engine),
            "algorithm": "rsvg:export",
            "parameters": {"ANSWER_LOG": str(log), "OUTPUT": str(tmp_path / "boxes.gpkg")},
            "layer": "{OUTPUT}|layername=detections",
        },
        qgis_env,
        tmp_path,
    )
    assert export["layer"]["count"] == len(records) and all(
        w.startswith("Polygon") for w in export["layer"]["wkt"]
    )


@pytest.mark.usefixtures("test_model_dir")
def test_cancel_keeps_finished_tiles_and_leaves_no_engine(data_dir, tmp_path, qgis_env, engine):
    out = tmp_path / "cancel.gpkg"
    params = {"INPUT": str(data_dir / "RGB.byte.tif"), **_MODEL, "TILE_SIZE": 96, "OVERLAP": 0}
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:detect",
        "parameters": {**params, "OUTPUT": str(out)},
        "cancel_after_progress": True,
    }
    result = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in result, result
    assert any(line.startswith("warning: cancelled") for line in result["log"]), result["log"]
    answered = _answers(tmp_path / "cancel.answers.jsonl")
    assert 1 <= len(answered) < 9 * 8  # the finished tiles of a 9 x 8 grid, not all of them
    assert result["engine_alive"] == [] and result["children"] == []
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT count(*) FROM run").fetchone()[0] == 1


def test_a_file_that_is_not_a_raster_gives_the_engines_line(tmp_path, qgis_env, engine):
    notes = tmp_path / "notes.txt"
    notes.write_text("not a raster\n", encoding="utf-8")
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:tiles",
        "parameters": {"INPUT": str(notes), "OUTPUT": str(tmp_path / "t.gpkg")},
    }
    result = run_in_qgis(job, qgis_env, tmp_path)
    message = result.get("exception", "")
    direct = subprocess.run(
        [str(engine), "tiles", str(notes), "-o", str(tmp_path / "d.gpkg")], capture_output=True, text=True
    )
    assert direct.returncode == 2
    assert message and "\n" not in message and f"rsvg: error: {message}" in direct.stderr


def test_a_missing_engine_says_how_to_install(data_dir, tmp_path, qgis_env):
    env = {**qgis_env, "PATH": "/usr/bin:/bin"}
    job = {
        "engine": "",
        "algorithm": "rsvg:tiles",
        "parameters": {"INPUT": str(data_dir / "RGB.byte.tif"), "OUTPUT": str(tmp_path / "t.gpkg")},
    }
    if shutil.which("rsvg", path=env["PATH"]) or Path("/opt/rsvg-desktop/rsvg").exists():
        pytest.skip("an rsvg engine is installed on this machine")
    result = run_in_qgis(job, env, tmp_path)
    assert "install rsvg-desktop" in result["exception"] and "\n" not in result["exception"]


@pytest.mark.usefixtures("test_model_dir")
def test_extent_asks_only_the_tiles_that_meet_it(data_dir, tmp_path, qgis_env, engine):
    # RGB.byte.tif: x 101985 … 339315, y 2611485 … 2826915 (300 m pixels, 791 x 718); a box in its
    # upper-left corner meets the first of its 2 x 2 tiles of 504 px only.
    extent = "102000,110000,2820000,2826000 [EPSG:32618]"
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:detect",
        "parameters": {
            "INPUT": str(data_dir / "RGB.byte.tif"),
            **_MODEL,
            "EXTENT": extent,
            "OUTPUT": str(tmp_path / "e.gpkg"),
        },
    }
    result = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in result, result
    assert [(r["tile_row"], r["tile_col"]) for r in _answers(result["results"]["ANSWER_LOG"])] == [(0, 0)]


def _qgis_process() -> str:
    """Debian's ``qgis_process`` is a shell wrapper that passes ``--noversioncheck``, which 3.22's
    ``qgis_process.bin`` refuses; run the binary where there is one."""
    found = shutil.which("qgis_process")
    if found is None:
        pytest.skip("qgis_process not found: apt-get install qgis")
    binary = Path(found).with_name("qgis_process.bin")
    return str(binary if binary.exists() else found)


@pytest.mark.usefixtures("test_model_dir")
def test_built_zip_installs_into_a_fresh_profile_and_runs_from_qgis_process(
    data_dir, tmp_path, qgis_env, engine
):
    archive = tmp_path / "rsvg_qgis.zip"
    subprocess.run([sys.executable, str(PLUGIN_DIR / "build.py"), "-o", str(archive)], check=True, cwd=ROOT)
    with zipfile.ZipFile(archive) as zf:
        names = zf.namelist()
        assert all(n.startswith("rsvg_qgis/") for n in names) and not any("__pycache__" in n for n in names)
        metadata = zf.read("rsvg_qgis/metadata.txt").decode()
        plugins = Path(qgis_env["QGIS_CUSTOM_CONFIG_PATH"]) / "profiles" / "default" / "python" / "plugins"
        zf.extractall(plugins)
    for field in ("name", "qgisMinimumVersion=3.22", "description", "about", "version=0.1.0", "author",
                  "email", "repository", "hasProcessingProvider=yes", "icon=icon.png"):  # fmt: skip
        assert field in metadata
    env = {**qgis_env, "PATH": f"{engine.parent}:{qgis_env['PATH']}"}  # the engine found on PATH
    program = _qgis_process()
    enable = subprocess.run(
        [program, "plugins", "enable", "rsvg_qgis"], capture_output=True, text=True, env=env
    )
    assert enable.returncode == 0, enable.stderr
    out = tmp_path / "cli.gpkg"
    run = subprocess.run(
        [
            program,
            "--json",
            "run",
            "rsvg:detect",
            "--",
            f"INPUT={data_dir / 'RGB.byte.tif'}",
            "QUERY=cars",
            "TEST_MODEL=true",
            "PRECISION=fp32",
            "DEVICE=cpu",
            f"OUTPUT={out}",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    results = json.loads(run.stdout[run.stdout.index("{") :])["results"]
    assert results["OUTPUT"] == str(out) and Path(results["ANSWER_LOG"]).exists()
    with sqlite3.connect(out) as db:
        assert db.execute("SELECT count(*) FROM tiles").fetchone()[0] == 4


def test_a_layer_that_is_not_a_local_file_goes_through_a_temporary_geotiff(
    data_dir, tmp_path, qgis_env, engine
):
    """A layer GDAL reads through a virtual file system (as a WMS or XYZ layer, not a file the engine can
    open) is written to a temporary GeoTIFF at its native resolution first, and the feedback says so."""
    archive = tmp_path / "scene.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.write(data_dir / "RGB.byte.tif", "RGB.byte.tif")
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:tiles",
        "parameters": {"INPUT": "@zipped", "OUTPUT": str(tmp_path / "t.gpkg")},
        "layers": {"zipped": [f"/vsizip/{archive}/RGB.byte.tif", "gdal"]},
    }
    result = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in result, result
    assert any("is not a local file" in line and "791 x 718" in line for line in result["log"]), result["log"]
    with sqlite3.connect(tmp_path / "t.gpkg") as db:
        assert db.execute("SELECT count(*) FROM tiles").fetchone()[0] == 4


@pytest.mark.usefixtures("test_model_dir")
def test_an_xyz_layer_is_written_at_its_native_resolution_for_the_extent(
    data_dir, tmp_path, qgis_env, engine
):
    """An XYZ tile layer (here tiles on disk, read by the same provider as a web one) becomes a temporary
    GeoTIFF of EXTENT at the finest zoom's resolution; the whole world at that resolution is refused."""
    tiles = tmp_path / "xyz"
    made = subprocess.run(
        ["gdal2tiles.py", "-q", "--xyz", "-z", "7-8", str(data_dir / "RGB.byte.tif"), str(tiles)],
        capture_output=True,
        text=True,
        env=qgis_env,
    )
    if made.returncode != 0:
        pytest.skip(f"gdal2tiles.py (python3-gdal) could not make the tiles: {made.stderr[-200:]}")
    layers = {"xyz": [f"type=xyz&url=file://{tiles}/{{z}}/{{x}}/{{y}}.png&zmin=7&zmax=8", "wms"]}
    whole = {"INPUT": "@xyz", "OUTPUT": str(tmp_path / "t.gpkg")}
    refused = run_in_qgis(
        {"engine": str(engine), "algorithm": "rsvg:tiles", "parameters": whole, "layers": layers},
        qgis_env,
        tmp_path,
    )
    assert "65536 x 65536 pixels: choose a smaller EXTENT" in refused["exception"]
    params = {
        "INPUT": "@xyz",
        **_MODEL,
        "EXTENT": "150000,250000,2650000,2750000 [EPSG:32618]",
        "OUTPUT": str(tmp_path / "d.gpkg"),
    }
    result = run_in_qgis(
        {"engine": str(engine), "algorithm": "rsvg:detect", "parameters": params, "layers": layers},
        qgis_env,
        tmp_path,
    )
    assert "exception" not in result, result
    notes = [line for line in result["log"] if "is not a local file (wms)" in line]
    assert notes and "native resolution" in notes[0], result["log"]
    records = _answers(result["results"]["ANSWER_LOG"])
    assert records and all(r["scene"].endswith(".tif") and r["scene"] in notes[0] for r in records)


def test_diagnostics_menu_entry_shows_rsvg_doctor(tmp_path, qgis_env, engine):
    result = run_in_qgis({"engine": str(engine), "diagnostics": True}, qgis_env, tmp_path)
    assert result["menu"] == [["&rsvg", "Diagnostics (rsvg doctor)…"]]
    assert result["window"] == "DiagnosticsDialog" and result["visible"]
    text = result["text"]
    assert text.startswith(f"engine: {engine}") and "torch" in text and "data folder" in text.lower()
    assert result["menu_after_unload"] == 0
    assert result["setting"] == {"group": "rsvg", "value": str(engine)}


@pytest.mark.usefixtures("test_model_dir")
def test_batch_writes_a_run_store_and_resumes(data_dir, tmp_path, qgis_env, engine):
    store = tmp_path / "store.gpkg"
    params = {"INPUTS": [str(data_dir / "RGB.byte.tif")], **_MODEL, "OUTPUT": str(store)}
    job = {"engine": str(engine), "algorithm": "rsvg:batch", "parameters": params}
    first = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in first, first
    assert first["results"]["OUTPUT"] == str(store)
    log = Path(first["results"]["ANSWER_LOG"])
    answered = len(_answers(log))
    with sqlite3.connect(store) as db:
        assert db.execute("SELECT count(*) FROM tiles WHERE status = 'done'").fetchone()[0] == answered == 4
    again = run_in_qgis(job, qgis_env, tmp_path)  # the same run: resumed, nothing asked twice
    assert "exception" not in again, again
    assert len(_answers(log)) == answered


@pytest.mark.usefixtures("test_model_dir")
def test_change_writes_the_change_geopackage_and_loads_its_three_layers(data_dir, tmp_path, qgis_env, engine):
    from change_pairs import second_date

    after = second_date(data_dir / "RGB.byte.tif", tmp_path / "after.tif", shift=(0.5, -0.5), crs="EPSG:3857")
    out = tmp_path / "change.gpkg"
    job = {
        "engine": str(engine),
        "algorithm": "rsvg:change",
        "parameters": {
            "BEFORE": str(data_dir / "RGB.byte.tif"),
            "AFTER": str(after),
            **_MODEL,
            "OUTPUT": str(out),
        },
        "load": True,
    }
    result = run_in_qgis(job, qgis_env, tmp_path)
    assert "exception" not in result, result
    results = result["results"]
    assert results["OUTPUT"] == str(out)
    assert results["BEFORE_ANSWER_LOG"] == str(tmp_path / "change.before.answers.jsonl")
    assert len(_answers(results["AFTER_ANSWER_LOG"])) >= 1
    with sqlite3.connect(out) as db:
        tables = {row[0] for row in db.execute("SELECT table_name FROM gpkg_contents")}
        (grid,) = db.execute("SELECT grid FROM run").fetchone()
        styled = {row[0] for row in db.execute("SELECT f_table_name FROM layer_styles WHERE useAsDefault")}
    layers = ("appeared", "disappeared", "persisting")
    assert {*layers, "before", "after", "unknown_area", "run"} <= tables
    assert grid == "before" and set(layers) <= styled
    loaded = {entry["source"] for entry in result["project"]}
    assert {f"{out}|layername={name}" for name in layers} <= loaded
    assert not result["children"]
