"""The QGIS plugin's tests: plain ones of its QGIS-free modules (the project's Python), and real-QGIS
ones that run QGIS's own Python (``/usr/bin/python3`` with Debian's ``python3-qgis``) in a child process
with the plugin registered and the real engine. Those skip, saying how to install QGIS, where it is
absent. Helpers live in :mod:`qgis_harness`."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from qgis_harness import INSTALL, ROOT, base_env, has_qgis


@pytest.fixture(scope="session")
def qgis_available() -> None:
    if not has_qgis():
        pytest.skip(INSTALL)


@pytest.fixture
def qgis_env(qgis_available: None, tmp_path: Path) -> dict[str, str]:
    """The environment of a QGIS child: offscreen, a fresh profile folder, the session's data folder
    (where the ``test_model_dir`` fixture puts the test model for ``--smoke``)."""
    env = base_env()
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
