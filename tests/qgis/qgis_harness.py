"""Helpers of the QGIS plugin's tests: where the plugin and QGIS's Python are, the clean environment of a
QGIS child, and running ``qgis_child.py`` in it. The plugin's QGIS-free modules are importable
(``rsvg_qgis.events``, …) once this is imported."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PLUGIN_DIR = ROOT / "packaging" / "qgis"  # holds the rsvg_qgis package
QGIS_PYTHON = Path("/usr/bin/python3")
CHILD = Path(__file__).with_name("qgis_child.py")
INSTALL = "QGIS is not installed: apt-get install qgis python3-qgis (make test does it as root)"

if str(PLUGIN_DIR) not in sys.path:
    sys.path.insert(0, str(PLUGIN_DIR))


def base_env() -> dict[str, str]:
    """A clean environment for QGIS's Python: none of the project venv's Python or GDAL settings."""
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "RSVG_DATA_DIR", "RSVG_TEST_CACHE", "XDG_CACHE_HOME")
    env = {name: os.environ[name] for name in keep if name in os.environ}
    env["QT_QPA_PLATFORM"] = "offscreen"
    return env


def has_qgis() -> bool:
    if not QGIS_PYTHON.exists():
        return False
    probe = subprocess.run(
        [str(QGIS_PYTHON), "-c", "import qgis.core"], capture_output=True, env=base_env(), timeout=120
    )
    return probe.returncode == 0


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
