"""The ``rsvg`` command line: outputs, exit codes, one-line errors without tracebacks."""

from __future__ import annotations

import json
import os

import fiona
import pytest
from cli_runner import run_rsvg

from rsvg_desktop.cli.main import main
from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord


def test_info_reports_scene_and_tiles(data_dir, capsys):
    assert main(["info", str(data_dir / "RGB.byte.tif"), "--json"]) == 0
    info = json.loads(capsys.readouterr().out)
    assert info["crs"] == "EPSG:32618"
    assert (info["width"], info["height"], info["bands"], info["dtype"]) == (791, 718, 3, "uint8")
    assert info["nodata"] == 0 and info["pixel_size"] == pytest.approx([300.04, 300.04], abs=0.01)
    assert info["tiles"] == 4 and info["tile_size"] == 504


def test_info_text_on_all_nodata_scene_warns(data_dir, capsys):
    assert main(["info", str(data_dir / "all-nodata.tif")]) == 0
    out = capsys.readouterr().out
    assert "0 to the model" in out and "no valid pixels" in out


@pytest.mark.parametrize(
    ("name", "needle"),
    [
        ("README.md", "not a raster"),
        ("rotated.tif", "--pixel-mode"),
        ("missing.tif", "missing.tif"),
    ],
)
def test_bad_input_gives_one_line_error(data_dir, name, needle):
    proc = run_rsvg("info", str(data_dir / name))
    assert proc.returncode == 2
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsvg: error:")
    assert needle in lines[0] and "Traceback" not in proc.stderr


def test_tiles_writes_footprints_and_refuses_overwrite(data_dir, tmp_path, capsys):
    out = tmp_path / "grid.gpkg"
    assert (
        main(
            ["tiles", str(data_dir / "RGB.byte.tif"), "--tile-size", "128", "--overlap", "0", "-o", str(out)]
        )
        == 0
    )
    with fiona.open(out, layer="tiles") as src:
        props = [f["properties"] for f in src]
        assert src.crs.to_epsg() == 32618
    assert len(props) == 42 and sum(p["skipped"] for p in props) == 2
    assert main(["tiles", str(data_dir / "RGB.byte.tif"), "-o", str(out)]) == 2
    assert "exists" in capsys.readouterr().err


def test_tiles_pixel_mode_shapefile(data_dir, tmp_path):
    out = tmp_path / "rot.shp"
    assert main(["tiles", str(data_dir / "rotated.tif"), "--pixel-mode", "-o", str(out)]) == 0
    assert out.exists() and (tmp_path / "rot.cpg").exists()


def test_export_rebuilds_from_log_and_excludes_nothing_by_default(data_dir, tmp_path, capsys):
    log = tmp_path / "a.answers.jsonl"
    with AnswerLogWriter(log) as w:
        # no transform/crs in the record: export reads the georeferencing from the scene itself
        w.write(
            AnswerRecord(
                scene=str(data_dir / "RGB.byte.tif"),
                col_off=0,
                row_off=0,
                width=504,
                height=504,
                task="refer",
                query="boat",
                answer="<p>boat</p>{<10><10><20><20>|<90>}",
                tile_row=0,
                tile_col=0,
            )
        )
    for ext in ("gpkg", "geojson", "shp"):
        out = tmp_path / f"r.{ext}"
        assert main(["export", str(log), "-o", str(out)]) == 0
        with fiona.open(out) as src:
            feats = list(src)
        assert len(feats) == 1 and feats[0]["properties"]["phrase"] == "boat"
    gj = json.loads((tmp_path / "r.geojson").read_text())
    assert "crs" not in gj
    lon, lat = gj["features"][0]["geometry"]["coordinates"][0][0]
    assert -80 < lon < -75 and 20 < lat < 30  # the Bahamas


def test_export_bad_log_names_file_and_line(tmp_path):
    log = tmp_path / "bad.jsonl"
    log.write_text('{"scene": "x"}\n{"also": 1}\n')
    proc = run_rsvg("export", str(log), "-o", str(tmp_path / "o.gpkg"))
    assert proc.returncode == 2
    assert "bad.jsonl:1" in proc.stderr and "Traceback" not in proc.stderr


def test_model_info_for_published_geochat(capsys):
    assert main(["model", "info", "--precision", "bf16", "--precision", "int8", "--precision", "nf4"]) == 0
    out = capsys.readouterr().out
    sizes = {}
    for line in out.splitlines():
        parts = line.split()
        if parts and parts[0] in ("bf16", "int8", "nf4"):
            sizes[parts[0]] = float(parts[2])
    assert 13 < sizes["bf16"] < 15.5 and 6.5 < sizes["int8"] < 8.5 and 3.5 < sizes["nf4"] < 5


@pytest.mark.usefixtures("test_model_dir")
def test_detect_smoke_end_to_end(data_dir, tmp_path):
    out = tmp_path / "d.gpkg"
    proc = run_rsvg(
        "detect",
        str(data_dir / "cogeo.tif"),
        "--query",
        "cars",
        "--smoke",
        "--precision",
        "nf4",
        "--device",
        "cpu",
        "--max-new-tokens",
        "4",
        "--tile-size",
        "504",
        "-o",
        str(out),
    )
    assert proc.returncode == 0, proc.stderr
    assert "RANDOM WEIGHTS" in proc.stderr
    assert "9/9 tiles" in proc.stdout
    assert (tmp_path / "d.answers.jsonl").read_text().count("\n") == 9
    with fiona.open(out, layer="run") as src:
        assert next(iter(src))["properties"]["precision"] == "nf4"


def test_download_offline_is_one_clear_line(tmp_path):
    env_proc = run_rsvg(
        "model", "download", "-o", str(tmp_path / "m"), env={**os.environ, "HF_HUB_OFFLINE": "1"}
    )
    assert env_proc.returncode == 2
    lines = env_proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "geochat-7B" in lines[0] and "Traceback" not in env_proc.stderr


@pytest.mark.usefixtures("test_model_dir")
def test_detect_on_empty_scene_fails_before_loading_the_model(data_dir, tmp_path):
    proc = run_rsvg(
        "detect",
        str(data_dir / "all-nodata.tif"),
        "--query",
        "x",
        "--smoke",
        "--precision",
        "fp32",
        "-o",
        str(tmp_path / "n.gpkg"),
    )
    assert proc.returncode == 2
    assert "no valid pixels" in proc.stderr and "model:" not in proc.stderr
    assert not (tmp_path / "n.gpkg").exists()


def test_model_list_download_verify_through_a_manifest(tmp_path):
    """A user's own manifest (a fine-tune on a mirror), downloaded by name, listed and verified."""
    from hub_server import serve_hub

    hub_root = tmp_path / "hub"
    hub_root.mkdir()
    (hub_root / "config.json").write_text('{"architectures": ["GeoChatLlamaForCausalLM"]}')
    (hub_root / "weights.bin").write_bytes(b"w" * 300_000)
    data_home = tmp_path / "data"
    (data_home / "models").mkdir(parents=True)
    env = {**os.environ, "RSVG_DATA_DIR": str(data_home)}
    env.pop("HF_HUB_OFFLINE", None)
    with serve_hub(hub_root, "me/geochat-ft") as (url, _):
        manifest = {
            "format": 1,
            "id": "geochat-ft",
            "name": "GeoChat fine-tune",
            "hub": {"endpoint": url, "repository": "me/geochat-ft", "revision": "main"},
            "files": [{"name": "config.json"}, {"name": "weights.bin", "bytes": 300_000}],
        }
        (data_home / "models" / "geochat-ft.json").write_text(json.dumps(manifest))
        listed = run_rsvg("model", "list", "--json", env=env)
        assert listed.returncode == 0, listed.stderr
        rows = {m["id"]: m for m in json.loads(listed.stdout)}
        assert set(rows) >= {"geochat-7b", "geochat-ft"} and not rows["geochat-ft"]["downloaded"]
        got = run_rsvg("-q", "model", "download", "geochat-ft", env=env)
        assert got.returncode == 0, got.stderr
    folder = data_home / "models" / "geochat-ft" / "download"
    assert (folder / "weights.bin").stat().st_size == 300_000
    ok = run_rsvg("model", "verify", "geochat-ft", env=env)
    assert ok.returncode == 0 and "every file matches" in ok.stdout
    (folder / "config.json").write_text('{"architectures": ["Tampered"]}')
    bad = run_rsvg("model", "verify", "geochat-ft", env=env)
    assert bad.returncode == 2 and "config.json" in bad.stderr and "Traceback" not in bad.stderr
    listed = run_rsvg("model", "list", env=env)
    assert "geochat-ft: GeoChat fine-tune" in listed.stdout and "downloaded" in listed.stdout
