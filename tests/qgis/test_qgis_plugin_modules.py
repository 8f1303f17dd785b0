"""The plugin's QGIS-free modules, under the project's Python: engine discovery, the child's clean
environment, the engine's arguments, EXTENT as a pixel window, the events, and the run loop's Cancel
(SIGTERM) against a stand-in engine."""

from __future__ import annotations

import ast
import json
import os
import signal
import sys
import textwrap
import time
from pathlib import Path

import pytest
from qgis_harness import PLUGIN_DIR
from rsvg_qgis import engine_cli
from rsvg_qgis.engine_cli import Box, EngineNotFoundError, clean_environment, find_engine, pixel_window
from rsvg_qgis.engine_run import run_engine
from rsvg_qgis.events import error_line, parse_event

# --- which engine ------------------------------------------------------------------------------------


def _program(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("#!/bin/sh\n", encoding="utf-8")
    path.chmod(0o755)
    return path


def test_the_setting_comes_first_then_path_then_the_installed_app(tmp_path):
    setting, on_path, app = (_program(tmp_path / d / "rsvg") for d in ("set", "path", "app"))
    which = {"rsvg": str(on_path)}.get
    assert find_engine(str(setting), which=which, candidates=[app]) == str(setting)
    assert find_engine(str(setting.parent), which=which, candidates=[app]) == str(setting)  # a folder
    assert find_engine("", which=which, candidates=[app]) == str(on_path)
    assert find_engine(None, which=lambda name: None, candidates=[tmp_path / "none", app]) == str(app)


def test_no_engine_is_one_line_saying_how_to_install(tmp_path):
    with pytest.raises(EngineNotFoundError) as err:
        find_engine("", which=lambda name: None, candidates=[tmp_path / "rsvg"])
    message = str(err.value)
    assert "\n" not in message and "install rsvg-desktop" in message and "Providers ▸ rsvg" in message


def test_a_setting_that_is_no_program_is_refused_not_replaced(tmp_path):
    on_path = _program(tmp_path / "path" / "rsvg")
    with pytest.raises(EngineNotFoundError, match="is not a program"):
        find_engine(str(tmp_path / "missing"), which={"rsvg": str(on_path)}.get, candidates=[])


def test_installed_app_candidates_follow_packaging():
    home = Path("/home/u")
    assert Path("/opt/rsvg-desktop/rsvg") in engine_cli.installed_app_candidates("linux", home, {})
    win = engine_cli.installed_app_candidates("win32", home, {"ProgramFiles": r"C:\PF"})
    assert win[0] == Path(r"C:\PF") / "rsvg-desktop" / "rsvg.exe"
    assert all(p.name == "rsvg" for p in engine_cli.installed_app_candidates("darwin", home, {}))


# --- the child's environment -------------------------------------------------------------------------


def test_clean_environment_drops_qgis_python_gdal_and_proj():
    env = clean_environment(
        {
            "PATH": "/usr/bin",
            "HOME": "/home/u",
            "LANG": "C.UTF-8",
            "RSVG_DATA_DIR": "/d",
            "PYTHONPATH": "/usr/share/qgis/python",
            "PYTHONHOME": "/x",
            "GDAL_DATA": "/usr/share/gdal",
            "GDAL_DRIVER_PATH": "/q",
            "PROJ_LIB": "/usr/share/proj",
            "PROJ_DATA": "/p",
            "QGIS_PREFIX_PATH": "/usr",
            "LD_LIBRARY_PATH": "/usr/lib/grass82/lib:/opt/cuda/lib64",
        }
    )
    assert env["PATH"] == "/usr/bin" and env["HOME"] == "/home/u" and env["LANG"] == "C.UTF-8"
    assert env["RSVG_DATA_DIR"] == "/d"
    assert not {"PYTHONPATH", "PYTHONHOME", "GDAL_DATA", "GDAL_DRIVER_PATH", "PROJ_LIB", "PROJ_DATA"} & set(
        env
    )
    assert "QGIS_PREFIX_PATH" not in env
    assert env["LD_LIBRARY_PATH"] == "/opt/cuda/lib64"
    assert env["PYTHONIOENCODING"] == "utf-8"
    assert "LD_LIBRARY_PATH" not in clean_environment({"LD_LIBRARY_PATH": "/usr/lib/qgis"})


# --- arguments -----------------------------------------------------------------------------------------


def test_detect_arguments_carry_every_parameter():
    args = engine_cli.detect_args(
        "s.tif",
        "o.gpkg",
        query="cars",
        task="classify",
        classes="a,b",
        test_model=True,
        precision="fp32",
        device="cpu",
        tile_size=256,
        overlap=0,
        window=(1, 2, 3, 4),
    )
    assert args[:2] == ["detect", "s.tif"]
    text = " ".join(args)
    for part in (
        "--query cars",
        "--task classify",
        "--classes a,b",
        "--smoke",
        "--precision fp32",
        "--device cpu",
        "--tile-size 256",
        "--overlap 0",
        "--window 1 2 3 4",
        "-o o.gpkg --overwrite",
        "--progress json",
    ):
        assert part in text
    model = engine_cli.detect_args("s.tif", "o.gpkg", query="q", model="/m")
    assert "--model /m" in " ".join(model) and "--smoke" not in model and "--window" not in model
    assert "--classes" not in engine_cli.detect_args("s.tif", "o.gpkg", query="q", classes=" ")


def test_batch_resumes_never_overwrites_and_export_tiles_do():
    batch = engine_cli.batch_args(["a.tif", "dir"], "store.gpkg", query="q")
    assert batch[:3] == ["batch", "a.tif", "dir"] and "--overwrite" not in batch
    assert engine_cli.export_args("a.answers.jsonl", "o.gpkg")[:2] == ["export", "a.answers.jsonl"]
    tiles = engine_cli.tiles_args("s.tif", "t.gpkg", tile_size=128, overlap=8)
    assert "--tile-size 128 --overlap 8" in " ".join(tiles) and "--overwrite" in tiles
    assert engine_cli.answer_log_of("/x/out.gpkg") == "/x/out.answers.jsonl"


def test_extent_becomes_the_pixel_window_it_meets():
    layer = Box(1000.0, 0.0, 2000.0, 500.0)  # 100 x 50 pixels of 10 map units
    assert pixel_window(Box(1000.0, 0.0, 2000.0, 500.0), layer, 100, 50) == (0, 0, 100, 50)
    assert pixel_window(Box(1015.0, 395.0, 1041.0, 480.0), layer, 100, 50) == (1, 2, 4, 9)
    assert pixel_window(Box(900.0, -50.0, 1005.0, 600.0), layer, 100, 50) == (0, 0, 1, 50)  # cut
    with pytest.raises(ValueError):
        pixel_window(Box(0.0, 0.0, 10.0, 10.0), layer, 100, 50)


def test_local_file_only_for_gdal_files(tmp_path):
    tif = tmp_path / "a.tif"
    tif.write_bytes(b"x")
    assert engine_cli.local_file("gdal", str(tif)) == str(tif)
    assert engine_cli.local_file("gdal", f"{tif}|option:x") == str(tif)
    assert engine_cli.local_file("wms", "type=xyz&url=https://t/{z}/{x}/{y}.png") is None
    assert engine_cli.local_file("gdal", "https://example.org/a.tif") is None
    assert engine_cli.local_file("gdal", "/vsicurl/https://example.org/a.tif") is None
    assert engine_cli.local_file("gdal", str(tmp_path / "missing.tif")) is None


# --- events --------------------------------------------------------------------------------------------


def test_events_parse_and_ignore_what_they_do_not_know():
    progress = parse_event('{"event": "progress", "command": "detect", "done": 3, "total": 12, "new": 1}')
    assert progress is not None and progress.percent() == 25.0 and progress.get("new") == 1
    assert parse_event("not json") is None and parse_event('{"event": "other"}') is None
    error = parse_event('{"event": "error", "command": "detect", "message": "bad", "exit_code": 2}')
    assert error is not None and error.message == "bad" and error.exit_code == 2
    assert error_line(["x", "rsvg: error: the one line", "y"], 2) == "the one line"
    assert error_line([], 9) == "the engine stopped with exit status 9"


# --- the run loop against a stand-in engine ----------------------------------------------------------

_STAND_IN = textwrap.dedent(
    """
    import json, signal, sys, time
    def stop(signum, frame):
        print(json.dumps({"event": "error", "command": "detect", "message": "stopped", "exit_code": 143}),
              flush=True)
        sys.exit(143)
    signal.signal(signal.SIGTERM, stop)
    print("rsvg: a log line", file=sys.stderr, flush=True)
    print(json.dumps({"event": "started", "command": "detect", "total": 100}), flush=True)
    for done in range(1, 101):
        time.sleep(0.05)
        print(json.dumps({"event": "progress", "command": "detect", "done": done, "total": 100}), flush=True)
    print(json.dumps({"event": "finished", "command": "detect", "exit_code": 0, "outputs": {}}), flush=True)
    """
)


def test_cancel_sends_sigterm_and_keeps_the_engines_last_events(tmp_path):
    script = tmp_path / "engine.py"
    script.write_text(_STAND_IN, encoding="utf-8")
    events, logs, pids = [], [], []
    run = run_engine(
        [sys.executable, str(script)],
        clean_environment(os.environ),
        on_event=events.append,
        on_log=logs.append,
        is_canceled=lambda: any(e.kind == "progress" for e in events),
        on_start=pids.append,
    )
    assert run.cancelled and run.exit_code == 143 and run.pid == pids[0]
    assert events[-1].kind == "error" and events[-1].message == "stopped"
    assert 1 <= sum(e.kind == "progress" for e in events) < 100
    assert logs == ["rsvg: a log line"]
    assert not Path(f"/proc/{run.pid}").exists()


def test_an_engine_that_ignores_sigterm_is_killed(tmp_path):
    script = tmp_path / "stubborn.py"
    script.write_text(
        "import signal, time\nsignal.signal(signal.SIGTERM, signal.SIG_IGN)\nprint('ready', flush=True)\n"
        "time.sleep(60)\n",
        encoding="utf-8",
    )
    started = time.monotonic()
    run = run_engine(
        [sys.executable, str(script)],
        dict(os.environ),
        on_event=lambda e: None,
        on_log=lambda line: None,
        is_canceled=lambda: time.monotonic() - started > 0.5,
        kill_after=0.5,
    )
    assert run.cancelled and run.exit_code == -signal.SIGKILL


def test_a_failed_run_reports_the_engines_line(tmp_path):
    script = tmp_path / "fails.py"
    event = {"event": "error", "command": "detect", "message": "x.txt: not a raster", "exit_code": 2}
    script.write_text(f"import sys\nprint({json.dumps(json.dumps(event))})\nsys.exit(2)\n", encoding="utf-8")
    run = run_engine(
        [sys.executable, str(script)], dict(os.environ), on_event=lambda e: None, on_log=lambda line: None,
        is_canceled=lambda: False,
    )  # fmt: skip
    assert run.exit_code == 2 and not run.cancelled and run.error == "x.txt: not a raster"


# --- what the plugin may import ----------------------------------------------------------------------


def test_the_plugin_imports_only_qgis_qt_processing_and_the_standard_library():
    allowed = {"qgis", "processing", "__future__"} | set(sys.stdlib_module_names)
    for path in (PLUGIN_DIR / "rsvg_qgis").glob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module]
            for name in names:
                assert name.split(".")[0] in allowed, f"{path.name} imports {name}"
    assert "qgis" not in sys.modules  # engine_cli, engine_run and events run without QGIS


def test_change_arguments_resume_unless_the_output_exists():
    args = engine_cli.change_args(
        "b.tif",
        "a.tif",
        "c.gpkg",
        query="ships",
        task="grounding",
        test_model=True,
        precision="fp32",
        device="cpu",
        grid="after",
        match_iou=0.25,
        verify=False,
        tile_size=256,
        overlap=0,
    )
    assert args[:3] == ["change", "b.tif", "a.tif"]
    text = " ".join(args)
    for part in (
        "--query ships",
        "--task grounding",
        "--smoke",
        "--precision fp32",
        "--device cpu",
        "--grid after",
        "--match-iou 0.25",
        "--no-verify",
        "--tile-size 256 --overlap 0",
        "-o c.gpkg --progress json",
    ):
        assert part in text
    # An interrupted comparison (no output yet) resumes from its answer logs; a finished one is replaced.
    assert "--overwrite" not in args
    replaced = engine_cli.change_args("b.tif", "a.tif", "c.gpkg", query="q", replace=True)
    assert "--overwrite" in replaced and "--no-verify" not in replaced and "--smoke" not in replaced
