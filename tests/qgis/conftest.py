"""The QGIS plugin's tests: plain ones of its QGIS-free modules (the project's Python), and real-QGIS
ones that run QGIS's own Python (``/usr/bin/python3`` with Debian's ``python3-qgis``) in a child process
with the plugin registered and the real engine. Those skip, saying how to install QGIS, where it is
absent."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "packaging" / "qgis"  # holds the rsvg_qgis package
QGIS_PYTHON = Path("/usr/bin/python3")
CHILD = Path(__file__).with_name("qgis_child.py")
INSTALL = "QGIS is not installed: apt-get install qgis python3-qgis (make test does it as root)"

sys.path.insert(0, str(PLUGIN_DIR))  # `import rsvg_qgis.events` etc. without QGIS


def _has_qgis() -> bool:
    if not QGIS_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(QGIS_PYTHON), "-c", "import qgis.core"], capture_output=True, env=_base_env(), timeout=120
    )
    return probe.returncode == 0


def _base_env() -> dict[str, str]:
    """A clean environment for QGIS's Python: none of the project venv's Python or GDAL settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "RSVG_DATA_DIR", "RSVG_TEST_CACHE", "XDG_CACHE_HOME")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


@pytest.fixture(scope="session")
def qgis_available() -> None:
    if not _has_qgis():
        pytest.skip(INSTALL)


@pytest.fixture
def qgis_env(qgis_available: None, tmp_path: Path) -> dict[str, str]:
    """The environment of a QGIS child: offscreen, a fresh profile folder, the session's data folder
    (where the ``test_model_dir`` fixture puts the test model for ``--smoke``)."""
    env = _base_env()
    env["QGIS_CUSTOM_CONFIG_PATH"] = str(tmp_path / "qgis-profile")
    runtime = tmp_path / "xdg-runtime"
    runtime.mkdir(mode=0o700)
    env["XDG_RUNTIME_DIR"] = str(runtime)
    return env


@pytest.fixture
def engine(tmp_path: Path) -> Path:
    """The real ``rsvg`` engine of this checkout: the project's Python running ``rsvg_desktop.cli.main``
    from this tree (the venv's ``rsvg`` script runs whatever tree the venv was installed from). The
    wrapper ``exec``s, so its process is the engine's."""
    script = tmp_path / "bin" / "rsvg"
    script.parent.mkdir()
    script.write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m rsvg_desktop.cli.main "$@"\n',
        encoding="utf-8",
    )
    script.chmod(0o755)
    return script


def run_in_qgis(job: dict, env: dict[str, str], tmp_path: Path, timeout: float = 600) -> dict:
    """Run ``qgis_child.py`` with ``job`` under QGIS's Python; its ``RESULT`` object."""
    job = {"plugin_dir": str(PLUGIN_DIR), **job}
    path = tmp_path / f"job-{len(list(tmp_path.glob('job-*')))}.json"
    path.write_text(json.dumps(job), encoding="utf-8")
    proc = subprocess.run(
        [str(QGIS_PYTHON), str(CHILD), str(path)], capture_output=True, text=True, env=env, timeout=timeout
    )
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line.removeprefix("RESULT "))
    raise AssertionError(f"QGIS child failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}")
