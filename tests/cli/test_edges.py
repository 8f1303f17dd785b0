"""Issue 22: trust at the edges. GDAL messages that are not UTF-8 give one clean line, no traceback; a
closed stdout ends a command quietly."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from cli_runner import run_rsvg, run_rsvg_process

from rsvg_desktop.cli._common import EXIT_BROKEN_PIPE


def _undecodable_vrt(folder: Path) -> Path:
    """A VRT whose band type is not UTF-8: GDAL echoes the bytes in its error message."""
    path = folder / "undecodable.vrt"
    path.write_bytes(
        b'<VRTDataset rasterXSize="10" rasterYSize="10">'
        b'<VRTRasterBand dataType="By\xff\xfete" band="1"></VRTRasterBand></VRTDataset>'
    )
    return path


def _one_error_line(stderr: str) -> str:
    assert "Traceback" not in stderr and "Exception ignored" not in stderr, stderr
    assert "UnicodeDecodeError" not in stderr, stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsvg: error:"), stderr
    return lines[0]


def test_gdal_message_not_utf8_is_one_line_in_process(tmp_path: Path) -> None:
    path = _undecodable_vrt(tmp_path)
    for command in (("info", str(path)), ("tiles", str(path), "-o", str(tmp_path / "t.gpkg"))):
        proc = run_rsvg(*command)
        assert proc.returncode == 2
        line = _one_error_line(proc.stderr)
        assert str(path) in line and "Invalid dataType" in line


def test_gdal_message_not_utf8_is_one_line_in_a_process(tmp_path: Path) -> None:
    path = _undecodable_vrt(tmp_path)
    proc = run_rsvg_process("info", str(path), timeout=120)
    assert proc.returncode == 2
    assert "Invalid dataType" in _one_error_line(proc.stderr)
    # with -v, GDAL's own message is logged, its odd bytes replaced
    proc = run_rsvg_process("-v", "info", str(path), timeout=120)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr and "Exception ignored" not in proc.stderr
    assert "WARNING: Invalid dataType = By\ufffd\ufffdte" in proc.stderr


@pytest.mark.parametrize("args", [("info", "{scene}", "--json"), ("info", "{scene}")])
def test_closed_stdout_ends_quietly(data_dir: Path, args: tuple[str, ...]) -> None:
    """``rsvg info X --json | head -c 10`` where the reader leaves before rsvg writes: no "internal
    error", nothing on stderr, the status a shell reports for a tool that SIGPIPE ended."""
    argv = [a.format(scene=data_dir / "RGB.byte.tif") for a in args]
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsvg_desktop.cli.main", *argv], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away before the command has written anything
    stderr = proc.stderr.read().decode()
    proc.stderr.close()
    assert proc.wait(timeout=120) == EXIT_BROKEN_PIPE == 141
    assert stderr == ""


def test_closed_stdout_leaves_other_broken_pipes_to_the_error_report(monkeypatch: pytest.MonkeyPatch) -> None:
    """A broken pipe that is not stdout's (a socket) is still reported as an error."""
    from rsvg_desktop.cli._common import EXIT_INTERNAL, run_guarded

    def broken() -> int:
        raise BrokenPipeError(32, "Broken pipe")

    assert run_guarded(broken) == EXIT_INTERNAL


# --- paths someone else wrote: answer-log scenes that would be fetched over the network ------------
REMOTE = [
    "http://127.0.0.1:9/scene.tif",
    "https://example.invalid/scene.tif",
    "s3://bucket/scene.tif",
    "/vsicurl/http://127.0.0.1:9/scene.tif",
    "/vsicurl?url=http://127.0.0.1:9/scene.tif",
    "/vsis3/bucket/scene.tif",
    "/vsigs/bucket/scene.tif",
    "/vsiaz/container/scene.tif",
    "/vsicurl_streaming/http://127.0.0.1:9/scene.tif",
    "/vsizip//vsicurl/http://127.0.0.1:9/a.zip/scene.tif",
    "/vsistdin/",
    "WMS:http://127.0.0.1:9/wms",
    "EEDAI:projects/x/assets/y",
]
LOCAL = ["/data/scene.tif", "scene.tif", "C:\\data\\scene.tif", "/vsizip/a.zip/scene.tif", "file:///a.tif"]


@pytest.mark.parametrize("path", REMOTE)
def test_remote_paths_are_recognised(path: str) -> None:
    from rsvg_desktop.core.paths import is_remote_path

    assert is_remote_path(path)


@pytest.mark.parametrize("path", LOCAL)
def test_local_paths_are_not_remote(path: str) -> None:
    from rsvg_desktop.core.paths import is_remote_path

    assert not is_remote_path(path)


def _log_naming(tmp_path: Path, scene: str, name: str = "shared", **kw: object) -> Path:
    from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord

    log = tmp_path / f"{name}.answers.jsonl"
    fields: dict[str, object] = dict(
        scene=scene, col_off=0, row_off=0, width=100, height=100, task="refer", query="q",
        answer="{<10><10><40><40>|<0>}",
    )  # fmt: skip
    fields.update(kw)
    with AnswerLogWriter(log) as w:
        w.write(AnswerRecord(**fields))  # type: ignore[arg-type]
    return log


@pytest.mark.parametrize("scene", ["/vsicurl/http://127.0.0.1:9/scene.tif", "http://127.0.0.1:9/s.tif"])
def test_export_refuses_to_fetch_a_logs_remote_scene(tmp_path: Path, scene: str) -> None:
    log = _log_naming(tmp_path, scene)
    out = tmp_path / "out.geojson"
    proc = run_rsvg("export", str(log), "-o", str(out))
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert scene in line and "--allow-remote" in line and "network" in line
    assert not out.exists()


def test_export_allow_remote_hands_the_path_to_gdal(tmp_path: Path) -> None:
    """With ``--allow-remote`` the refusal is lifted: GDAL tries the (closed, local) port and fails."""
    log = _log_naming(tmp_path, "/vsicurl/http://127.0.0.1:9/scene.tif")
    proc = run_rsvg("export", str(log), "-o", str(tmp_path / "out.geojson"), "--allow-remote")
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "--allow-remote" not in line and "cannot be read" in line


def test_export_of_a_georeferenced_log_reads_no_scene(tmp_path: Path) -> None:
    """A log that carries its georeferencing never opens the scene: nothing to fetch, nothing refused."""
    from pyproj import CRS

    wkt = CRS.from_epsg(4326).to_wkt()
    log = _log_naming(
        tmp_path, "/vsicurl/http://127.0.0.1:9/scene.tif", crs=wkt, transform=(0.001, 0, 10, 0, -0.001, 50)
    )
    out = tmp_path / "out.geojson"
    proc = run_rsvg("export", str(log), "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert out.exists()


def test_the_app_refuses_to_reopen_a_run_of_a_remote_scene(tmp_path: Path) -> None:
    from rsvg_desktop.core.paths import RemotePathError
    from rsvg_desktop.gui.logic.replay import scene_of_log

    log = _log_naming(tmp_path, "/vsis3/bucket/scene.tif")
    with pytest.raises(RemotePathError, match="network") as info:
        scene_of_log(log)
    assert isinstance(info.value, ValueError)  # the window's open_run shows it as a message
    local = _log_naming(tmp_path, "/data/scene.tif", name="local")
    assert scene_of_log(local) == "/data/scene.tif"


def test_bench_agree_refuses_remote_inputs(tmp_path: Path) -> None:
    proc = run_rsvg(
        "bench", "agree", "/vsicurl/http://127.0.0.1:9/scene.tif", "--smoke", "-o", str(tmp_path / "out")
    )
    assert proc.returncode == 2
    line = _one_error_line(proc.stderr)
    assert "--allow-remote" in line and not (tmp_path / "out").exists()


# --- --nodata VALUE: a black collar without a nodata flag --------------------------------------------
def _collared(tmp_path: Path, dtype: str = "uint16") -> Path:
    """A 3-band scene with no nodata flag: a 300-pixel collar of 0 on the left, data 1000..2000 elsewhere
    (one tile of 256 is all collar)."""
    import numpy as np
    import rasterio
    from rasterio.transform import from_origin

    path = tmp_path / f"collar_{dtype}.tif"
    data = np.zeros((3, 256, 768), dtype=dtype)
    rng = np.random.default_rng(0)
    data[:, :, 300:] = rng.integers(1000, 2000, size=(3, 256, 468)).astype(dtype)
    profile = dict(driver="GTiff", width=768, height=256, count=3, dtype=dtype, crs="EPSG:32633",
                   photometric="RGB", transform=from_origin(500000, 4000000, 1.0, 1.0))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    return path


def test_nodata_value_is_pixels_equal_in_every_band(tmp_path: Path) -> None:
    import numpy as np

    from rsvg_desktop.core.geo.scene import FILL_RGB, open_scene

    path = _collared(tmp_path)
    with open_scene(path) as scene:
        assert not scene.info.nodata_given and scene.info.mask_kind == "all_valid"
        plain_low = scene.stretch.low  # type: ignore[union-attr]
    with open_scene(path, nodata=0) as scene:
        info = scene.info
        assert info.nodata == 0.0 and info.nodata_given and info.mask_kind == "nodata"
        # the stretch ignores the collar: its low end is in the data, not 0
        assert min(scene.stretch.low) >= 1000 > max(plain_low)  # type: ignore[union-attr]
        image, valid = scene.read_window((250, 0, 100, 10))
        assert not valid[:, :50].any() and valid[:, 50:].all()
        assert (image[:, :50] == np.array(FILL_RGB, dtype=np.uint8)).all()  # the padding colour


def test_a_pixel_zero_in_only_some_bands_stays_valid(tmp_path: Path) -> None:
    import rasterio

    from rsvg_desktop.core.geo.scene import open_scene

    path = _collared(tmp_path)
    with rasterio.open(path, "r+") as ds:
        band = ds.read(1)
        band[:, 400] = 0  # band 1 only
        ds.write(band, 1)
    with open_scene(path, nodata=0) as scene:
        _, valid = scene.read_window((390, 0, 20, 4))
    assert valid.all()


def test_info_and_tiles_with_nodata(tmp_path: Path) -> None:
    import json

    path = _collared(tmp_path)
    grid = ("--tile-size", "256", "--overlap", "0")
    plain = json.loads(run_rsvg("info", str(path), *grid, "--json").stdout)
    proc = run_rsvg("info", str(path), *grid, "--nodata", "0", "--json")
    assert proc.returncode == 0, proc.stderr
    given = json.loads(proc.stdout)
    assert plain["tiles_skipped_nodata"] == 0 and plain["nodata"] is None and not plain["nodata_given"]
    assert given["tiles_skipped_nodata"] == 1 and given["tiles_kept"] == 2
    assert given["nodata"] == 0 and given["nodata_given"] and given["mask"] == "nodata"
    text = run_rsvg("info", str(path), *grid, "--nodata", "0")
    assert "given with --nodata" in text.stdout and "2 to the model, 1 skipped as nodata" in text.stdout
    out = tmp_path / "tiles.geojson"
    t = run_rsvg("tiles", str(path), *grid, "--nodata", "0", "-o", str(out))
    assert t.returncode == 0 and "(2 kept, 1 skipped as nodata)" in t.stdout


@pytest.mark.parametrize(("value", "needle"), [("abc", "not a number"), ("inf", "finite")])
def test_bad_nodata_values_are_usage_errors(tmp_path: Path, value: str, needle: str) -> None:
    proc = run_rsvg("info", str(_collared(tmp_path)), "--nodata", value)
    assert proc.returncode == 2 and needle in proc.stderr


def test_nodata_nan_needs_float_data(tmp_path: Path) -> None:
    proc = run_rsvg("info", str(_collared(tmp_path)), "--nodata", "nan")
    assert proc.returncode == 2
    assert "floating-point" in _one_error_line(proc.stderr)


@pytest.mark.usefixtures("test_model_dir")
def test_detect_records_the_nodata_it_used(tmp_path: Path) -> None:
    import fiona

    path = _collared(tmp_path, "uint8")
    out = tmp_path / "d.gpkg"
    proc = run_rsvg(
        "detect", str(path), "--query", "cars", "--smoke", "--precision", "nf4", "--device", "cpu",
        "--max-new-tokens", "2", "--tile-size", "256", "--overlap", "0", "--nodata", "0", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    lines = (tmp_path / "d.answers.jsonl").read_text().splitlines()
    assert len(lines) == 2  # the all-collar tile did not go to the model
    assert all(json.loads(line)["nodata"] == 0 for line in lines)
    with fiona.open(out, layer="run") as src:
        assert next(iter(src))["properties"]["x_nodata"] == 0
    again = tmp_path / "again.gpkg"
    assert run_rsvg("export", str(tmp_path / "d.answers.jsonl"), "-o", str(again)).returncode == 0
    with fiona.open(again, layer="run") as src:
        assert next(iter(src))["properties"]["x_nodata"] == 0
