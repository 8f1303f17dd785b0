"""Issue 21, sections 2 and 3: the exit-code contract everywhere, and every check before work.

Every refusal is one line on stderr naming the file or the option, exit status 2, and nothing written
(no output, no answer log, no store, no stray ``.tmp``), so the corrected command runs. One case per
item goes through a real process (:func:`run_rsvg_process`); the rest of the matrix runs in process.

A read-only file system cannot be made here (no mount rights), and root ignores folder permissions:
an unwritable folder is simulated by making ``os.access`` say so, which is what the checks ask.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import rasterio
from cli_runner import CliResult, run_rsvg, run_rsvg_process
from rasterio.transform import from_origin

from rsvg_desktop.cli._common import run_guarded
from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.errors import ExportError


def _refused(proc: CliResult, needle: str, folder: Path | None = None) -> None:
    """Exit 2, one line naming the problem, no model loaded, nothing left in ``folder``."""
    assert proc.returncode == 2, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsvg: error:"), proc.stderr
    assert needle in lines[0], lines[0]
    assert "model:" not in proc.stderr and "Traceback" not in proc.stderr
    if folder is not None:
        assert not [p.name for p in folder.iterdir() if p.name != "in"], list(folder.iterdir())


def _scene(folder: Path, *, crs: bool = True, size: int = 64) -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / ("geo.tif" if crs else "pixels.tif")
    with rasterio.open(
        path, "w", driver="GTiff", width=size, height=size, count=3, dtype="uint8",
        crs="EPSG:32633" if crs else None,
        transform=from_origin(500_000, 4_600_000, 10, 10) if crs else rasterio.Affine.identity(),
    ) as dst:  # fmt: skip
        dst.write(np.full((3, size, size), 100, dtype="uint8"))
    return path


_RUN = ("--smoke", "--query", "planes", "--tile-size", "64", "--overlap", "0", "--max-new-tokens", "4")


def _unwritable(monkeypatch: pytest.MonkeyPatch, folder: Path) -> None:
    """``folder`` reads as not writable (root ignores the permission bits, so ``os.access`` answers)."""
    real_access = os.access
    monkeypatch.setattr(
        os, "access", lambda p, mode, **kw: False if Path(p) == folder else real_access(p, mode, **kw)
    )


# --- section 2: one line, exit 2 ----------------------------------------------------------------
@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize("command", ["detect", "batch"])
def test_model_runs_into_an_unwritable_folder(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, command: str
) -> None:
    scene = _scene(tmp_path / "in")
    _unwritable(monkeypatch, tmp_path)
    proc = run_rsvg(command, str(scene), *_RUN, "-o", str(tmp_path / "o.gpkg"))
    _refused(proc, "not writable", tmp_path)


@pytest.mark.usefixtures("test_model_dir")
def test_bench_agree_into_an_unwritable_folder(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    scene = _scene(tmp_path / "in")
    _unwritable(monkeypatch, tmp_path)
    from rsvg_desktop.engine.model_files import ensure_test_model

    proc = run_rsvg(
        "bench", "agree", str(scene), "--model", str(ensure_test_model()), "--query", "planes",
        "--reference", "fp32", "--precisions", "bf16", "--device", "cpu", "-o", str(tmp_path / "agree"),
    )  # fmt: skip
    _refused(proc, "not writable", tmp_path)


@pytest.mark.parametrize("code", [errno.EACCES, errno.EROFS, errno.ENOSPC])
def test_the_machine_refusing_a_write_is_one_line(code: int, capsys: pytest.CaptureFixture[str]) -> None:
    """Whatever write the checks could not foresee (a read-only file system, a full disk) is exit 2."""

    def fails() -> int:
        raise OSError(code, os.strerror(code), "/data/out.gpkg")

    assert run_guarded(fails) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"rsvg: error: /data/out.gpkg: {os.strerror(code)}"]


def test_output_dot_is_refused_in_a_process(tmp_path: Path, data_dir: Path) -> None:
    proc = run_rsvg_process("tiles", str(data_dir / "RGB.byte.tif"), "-o", ".", timeout=120)
    _refused(proc, "is not a file name")


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize("command", ["detect", "batch"])
def test_output_dot_is_refused(tmp_path: Path, command: str) -> None:
    scene = _scene(tmp_path / "in")
    proc = run_rsvg(command, str(scene), *_RUN, "-o", ".", cwd=tmp_path)
    _refused(proc, "'.' is not a file name", tmp_path)


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize(
    ("summary", "needle"),
    [(".", "a file name is needed"), ("nowhere/s.json", "does not exist"), ("ro/s.json", "not writable")],
)
def test_batch_summary_is_checked_before_the_batch(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, summary: str, needle: str
) -> None:
    scene = _scene(tmp_path / "in")
    (tmp_path / "ro").mkdir()
    _unwritable(monkeypatch, tmp_path / "ro")
    proc = run_rsvg("batch", str(scene), *_RUN, "-o", "b.gpkg", "--summary", summary, cwd=tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and needle in proc.stderr
    assert not (tmp_path / "b.gpkg").exists() and "model:" not in proc.stderr


def test_a_summary_that_fails_late_leaves_no_tmp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rsvg_desktop.cli.batch_cmd import _write_summary

    def refuse(src: object, dst: object) -> None:
        raise OSError(errno.EROFS, "Read-only file system", str(dst))

    monkeypatch.setattr(os, "replace", refuse)
    with pytest.raises(ExportError, match=r"--summary .*Read-only file system"):
        _write_summary(str(tmp_path / "s.json"), "{}")
    assert not list(tmp_path.iterdir())


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.skipif(
    "torch" in sys.modules and sys.modules["torch"].cuda.is_available(), reason="needs a machine without CUDA"
)
@pytest.mark.parametrize("command", ["detect", "batch"])
def test_compiled_without_cuda_is_a_bad_argument(tmp_path: Path, command: str) -> None:
    import torch

    if torch.cuda.is_available():
        pytest.skip("this machine has CUDA")
    scene = _scene(tmp_path / "in")
    proc = run_rsvg(command, str(scene), *_RUN, "--compiled", "-o", str(tmp_path / "o.gpkg"))
    _refused(proc, "needs a CUDA GPU", tmp_path)


def test_info_json_of_a_nan_nodata_is_json(data_dir: Path) -> None:
    """NaN is not JSON: a NaN nodata is written as the text "nan" (infinities as "inf"/"-inf")."""
    proc = run_rsvg_process("info", str(data_dir / "float_nan.tif"), "--pixel-mode", "--json", timeout=120)
    assert proc.returncode == 0, proc.stderr
    info = json.loads(proc.stdout, parse_constant=lambda c: pytest.fail(f"not JSON: {c}"))
    assert info["nodata"] == "nan"


def test_info_json_of_a_plain_nodata_is_a_number(data_dir: Path) -> None:
    proc = run_rsvg("info", str(data_dir / "RGB.byte.tif"), "--json")
    assert proc.returncode == 0 and json.loads(proc.stdout)["nodata"] == 0


# --- section 3: checked before work, nothing left behind ------------------------------------------
@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize(
    ("extra", "output", "needle"),
    [
        (("--max-new-tokens", "0"), "n1.gpkg", "--max-new-tokens must be at least 1"),
        (("--batch-size", "0"), "o.gpkg", "--batch-size must be at least 1"),
        (("--batch-size", "-3"), "o.gpkg", "--batch-size must be at least 1"),
        (("--tile-size", "1"), "o.gpkg", "--tile-size must be at least 32"),
        ((), "x.txt", "cannot tell the export format"),
        (("--device", "gpu"), "o.gpkg", "unknown device 'gpu'"),
        (("--pixel-mode",), "x.geojson", "pixel coordinates"),
    ],
)
def test_detect_checks_before_the_model_loads(
    tmp_path: Path, extra: tuple[str, ...], output: str, needle: str
) -> None:
    scene = _scene(tmp_path / "in", crs="--pixel-mode" not in extra)
    proc = run_rsvg("detect", str(scene), *_RUN, *extra, "-o", str(tmp_path / output))
    _refused(proc, needle, tmp_path)


@pytest.mark.usefixtures("test_model_dir")
def test_detect_refuses_a_folder_as_output_then_the_corrected_command_runs(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "in")
    (tmp_path / "o.gpkg").mkdir()
    proc = run_rsvg("detect", str(scene), *_RUN, "-o", str(tmp_path / "o.gpkg"))
    _refused(proc, "is a folder")
    assert not (tmp_path / "o.answers.jsonl").exists()
    bad = run_rsvg(
        "-q", "detect", str(scene), *_RUN, "--max-new-tokens", "0", "-o", str(tmp_path / "n1.gpkg")
    )
    assert bad.returncode == 2 and not (tmp_path / "n1.gpkg").exists()
    good = run_rsvg("-q", "detect", str(scene), *_RUN, "-o", str(tmp_path / "n1.gpkg"))
    assert good.returncode == 0, good.stderr


@pytest.mark.usefixtures("test_model_dir")
def test_detect_max_new_tokens_zero_in_a_process(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "in")
    proc = run_rsvg_process(
        "detect", str(scene), *_RUN, "--max-new-tokens", "0", "-o", str(tmp_path / "n1.gpkg")
    )
    _refused(proc, "--max-new-tokens", tmp_path)


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--device", "gpu"), "unknown device 'gpu'"),
        (("--batch-size", "0"), "--batch-size must be at least 1"),
        (("--tile-size", "8"), "--tile-size must be at least 32"),
    ],
)
def test_batch_checks_before_the_store_is_made(tmp_path: Path, extra: tuple[str, ...], needle: str) -> None:
    scene = _scene(tmp_path / "in")
    proc = run_rsvg("batch", str(scene), *_RUN, *extra, "-o", str(tmp_path / "b.gpkg"))
    _refused(proc, needle, tmp_path)
    assert "rerun" not in proc.stderr


@pytest.mark.usefixtures("test_model_dir")
def test_precision_the_machine_cannot_run_is_refused_before_work(tmp_path: Path) -> None:
    import torch

    if torch.cuda.is_available() and torch.cuda.get_device_capability(0) >= (8, 9):
        pytest.skip("this GPU runs fp8")
    scene = _scene(tmp_path / "in")
    for command in ("detect", "batch"):
        proc = run_rsvg(command, str(scene), *_RUN, "--precision", "fp8", "-o", str(tmp_path / "f.gpkg"))
        _refused(proc, "fp8 needs a CUDA GPU", tmp_path)


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize(
    ("extra", "needle"),
    [
        (("--tile-size", "0"), "--tile-size must be at least 32"),
        (("--tile-size", "40"), "overlap of 64"),
        (("--batch-size", "0"), "--batch-size must be at least 1"),
        (("--max-new-tokens", "0"), "--max-new-tokens must be at least 1"),
        (("--device", "gpu"), "unknown device"),
    ],
)
def test_bench_agree_checks_before_work(tmp_path: Path, extra: tuple[str, ...], needle: str) -> None:
    from rsvg_desktop.engine.model_files import ensure_test_model

    scene = _scene(tmp_path / "in")
    proc = run_rsvg(
        "bench", "agree", str(scene), "--model", str(ensure_test_model()), "--query", "planes",
        "--reference", "fp32", "--precisions", "bf16", *extra, "-o", str(tmp_path / "agree"),
    )  # fmt: skip
    _refused(proc, needle, tmp_path)


def test_bench_agree_output_must_be_a_folder(tmp_path: Path, data_dir: Path) -> None:
    (tmp_path / "file").write_text("x")
    proc = run_rsvg(
        "bench", "agree", str(data_dir / "RGB.byte.tif"), "--model", str(tmp_path), "--query", "planes",
        "--reference", "fp32", "--precisions", "bf16", "-o", str(tmp_path / "file"),
    )  # fmt: skip
    _refused(proc, "the output must be a folder")


@pytest.mark.parametrize("command", ["info", "tiles"])
def test_grid_numbers_are_checked_before_planning(tmp_path: Path, data_dir: Path, command: str) -> None:
    out = ("-o", str(tmp_path / "t.gpkg")) if command == "tiles" else ()
    proc = run_rsvg(command, str(data_dir / "RGB.byte.tif"), "--tile-size", "1", "--overlap", "0", *out)
    _refused(proc, "--tile-size must be at least 32", tmp_path)


def test_tiles_output_checked_before_the_scene_is_read(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    _unwritable(monkeypatch, tmp_path)
    proc = run_rsvg("tiles", str(tmp_path / "missing.tif"), "-o", str(tmp_path / "t.gpkg"))
    _refused(proc, "not writable", tmp_path)


def test_export_suggestion_can_succeed(tmp_path: Path) -> None:
    from rsvg_desktop.cli.model_cmds import export_command

    log = tmp_path / "o.answers.jsonl"
    assert export_command(log, tmp_path / "o.gpkg", pixel_mode=False).endswith("o.gpkg")
    (tmp_path / "o.gpkg").write_text("x")
    assert export_command(log, tmp_path / "o.gpkg", pixel_mode=False).endswith("o.gpkg --overwrite")
    assert export_command(log, tmp_path / "p.geojson", pixel_mode=True).endswith("p.gpkg")
    assert export_command(log, tmp_path / "p.geojson", pixel_mode=False).endswith("p.geojson")


# --- Ctrl-C --------------------------------------------------------------------------------------
def _interrupt_detect(tmp_path: Path, signals: int) -> tuple[subprocess.CompletedProcess[str], Path]:
    """Run ``rsvg detect`` in a process; send ``signals`` SIGINTs once the first tile is answered."""
    scene = _scene(tmp_path / "in", size=640)  # 100 tiles of 64 px
    out = tmp_path / "o.gpkg"
    log = tmp_path / "o.answers.jsonl"
    cmd = [
        sys.executable, "-m", "rsvg_desktop.cli.main", "detect", str(scene), *_RUN,
        "--batch-size", "1", "--precision", "fp32", "--device", "cpu", "-o", str(out),
    ]  # fmt: skip
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 240
    while not (log.exists() and log.stat().st_size > 0):
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.05)
    for _ in range(signals):
        proc.send_signal(signal.SIGINT)
        time.sleep(0.02)
    stdout, stderr = proc.communicate(timeout=120)
    return subprocess.CompletedProcess(cmd, proc.returncode, stdout, stderr), out


@pytest.mark.usefixtures("test_model_dir")
@pytest.mark.parametrize("signals", [1, 3])
def test_detect_interrupted_says_how_to_go_on(tmp_path: Path, signals: int) -> None:
    import fiona

    done, out = _interrupt_detect(tmp_path, signals)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("rsvg: interrupted after") and "rsvg export" in last, done.stderr
    tiles = len(list(read_answer_log(tmp_path / "o.answers.jsonl")))
    with fiona.open(out, layer="run") as src:  # what finished is written, even after more Ctrl-Cs
        run = next(iter(src))["properties"]
    assert run["x_cancelled"] is True and run["x_tiles_done"] == tiles and run["x_tiles_total"] == 100
    command = last.split("rebuild the output from it with: ")[1].split()
    assert command[:2] == ["rsvg", "export"] and command[-1] == "--overwrite"
    again = run_rsvg(*command[1:])
    assert again.returncode == 0, again.stderr
