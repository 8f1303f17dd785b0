"""The desktop package: desktop integration files validate, and the frozen app (built by
``make package``, cached between runs) runs its CLI and its window without the source checkout."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINUX = ROOT / "packaging" / "linux"
DIST = ROOT / "dist" / "rsvg-desktop"
SAMPLE = ROOT / "resources" / "sample_scene.tif"


def _tool(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        pytest.fail(f"{name} is not installed (make test installs it on Debian: see the Makefile's sysdeps)")
    return path


def test_desktop_entry_validates() -> None:
    entries = list(LINUX.glob("*.desktop"))
    assert len(entries) == 1
    proc = subprocess.run([_tool("desktop-file-validate"), str(entries[0])], capture_output=True, text=True)
    assert proc.returncode == 0 and "error" not in proc.stdout.lower(), proc.stdout + proc.stderr
    text = entries[0].read_text()
    assert "Exec=rsvg-desktop %f" in text and f"Icon={entries[0].stem}" in text


def test_appstream_metainfo_validates() -> None:
    (meta,) = LINUX.glob("*.metainfo.xml")
    proc = subprocess.run(
        [_tool("appstreamcli"), "validate", "--no-net", str(meta)], capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_icons_exist_in_every_size() -> None:
    assert (ROOT / "resources" / "rsvg-desktop.svg").is_file()
    for size in (16, 32, 48, 64, 128, 256, 512):
        png = ROOT / "resources" / "icons" / f"rsvg-desktop-{size}.png"
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def frozen() -> Path:
    """The frozen app folder, built (or found up to date) by ``make package``."""
    proc = subprocess.run(["make", "-s", "package"], cwd=ROOT, capture_output=True, text=True, timeout=1800)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert (DIST / "rsvg-desktop").is_file() and (DIST / "rsvg").exists()
    return DIST


def _env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV"))}
    env.update(QT_QPA_PLATFORM="offscreen", RSVG_DATA_DIR=str(tmp_path / "data"), HF_HUB_OFFLINE="1")
    env["RSVG_DESKTOP_SETTINGS"] = str(tmp_path / "settings.ini")
    return env


@pytest.mark.slow
@pytest.mark.package
def test_frozen_cli(frozen: Path, tmp_path: Path) -> None:
    rsvg = str(frozen / "rsvg")
    env = _env(tmp_path)
    version = subprocess.run([rsvg, "--version"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert version.returncode == 0 and version.stdout.startswith("rsvg "), version.stderr
    info = subprocess.run([rsvg, "info", str(SAMPLE)], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert info.returncode == 0 and "EPSG" in info.stdout, info.stderr
    # One run per precision family the app offers on the CPU: plain dtype, bitsandbytes 8-bit and
    # 4-bit, torchao int8 and int4 weight-only, and q4cal (bitsandbytes on calibrated weights). Each
    # imports its own libraries (and their data files: bitsandbytes' CPU ops import `kernels`).
    for precision in ("bf16", "int8", "nf4", "int8wo", "int4wo", "q4cal"):
        if precision == "q4cal":
            model = next((tmp_path / "data" / "test-model").iterdir())  # built by the first --smoke run
            cal = subprocess.run(
                [rsvg, "-q", "model", "calibrate", str(model), str(SAMPLE), "--samples", "2"],
                capture_output=True, text=True, env=env, cwd=tmp_path, timeout=600,
            )  # fmt: skip
            assert cal.returncode == 0, cal.stderr[-2000:]
        out = tmp_path / f"smoke-{precision}.gpkg"
        # int4wo: the tiny model's linears have 64 inputs, which a group of 128 does not divide
        group = ["--group-size", "32"] if precision == "int4wo" else []
        smoke = subprocess.run(
            [rsvg, "-q", "detect", str(SAMPLE), "--query", "cars", "--smoke", "--precision", precision,
             *group, "--max-new-tokens", "4", "-o", str(out)],
            capture_output=True, text=True, env=env, cwd=tmp_path, timeout=900,
        )  # fmt: skip
        assert smoke.returncode == 0, f"{precision}: {smoke.stderr[-2000:]}"
        assert "Traceback" not in smoke.stderr, smoke.stderr[-2000:]
        log = out.with_suffix(".answers.jsonl")
        assert out.is_file() and log.is_file(), precision
        first = json.loads(log.read_text().splitlines()[0])
        assert first["precision"].split("@")[0] == precision and first["device"] == "CPU", first
    listed = subprocess.run([rsvg, "model", "list"], capture_output=True, text=True, env=env, cwd=tmp_path)
    assert listed.returncode == 0 and "geochat-7b" in listed.stdout  # the manifests travel with the app
    bad = subprocess.run([rsvg, "info", str(tmp_path / "nope.tif")], capture_output=True, text=True, env=env)
    assert bad.returncode == 2 and "Traceback" not in bad.stderr


@pytest.mark.slow
@pytest.mark.package
@pytest.mark.gui
def test_frozen_app_starts_loads_a_model_and_stays_up(frozen: Path, tmp_path: Path) -> None:
    """The frozen window starts on the sample scene, spawns its model worker (a frozen child process:
    ``freeze_support``) and loads the test model, and stays up."""
    env = _env(tmp_path)
    log = tmp_path / "app.log"
    with open(log, "w") as out:
        app = subprocess.Popen(
            [str(frozen / "rsvg-desktop"), str(SAMPLE), "--test-model", "--load"],
            stdout=out, stderr=subprocess.STDOUT, env=env, cwd=tmp_path, start_new_session=True,
        )  # fmt: skip
    try:
        deadline = time.monotonic() + 300
        while "Model loaded" not in log.read_text() and app.poll() is None and time.monotonic() < deadline:
            time.sleep(1)
        text = log.read_text()
        assert "Model loaded: NF4 on CPU — RANDOM WEIGHTS" in text, text[-3000:]
        time.sleep(3)
        assert app.poll() is None, log.read_text()[-3000:]
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(app.pid, signal.SIGKILL)  # the app and its worker
        app.wait(timeout=20)
    assert "Traceback" not in log.read_text()
    quick = subprocess.run(
        [str(frozen / "rsvg-desktop"), str(SAMPLE), "--exit-after-start"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=120,
    )  # fmt: skip
    assert quick.returncode == 0 and "window shown" in quick.stderr, quick.stderr[-2000:]
