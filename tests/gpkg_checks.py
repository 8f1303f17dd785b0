"""Checks that a GeoPackage the tool wrote opens cleanly in the system GDAL (``ogrinfo``, Debian's 3.6
here: the GDAL of Debian's QGIS 3.22): no warning, GeoPackage 1.2 declared, the spec's datetimes."""

from __future__ import annotations

import re
import shutil
import sqlite3
import subprocess
from pathlib import Path

import pytest

_DATETIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")


def _ogrinfo(*args: str) -> str:
    """stdout and stderr of the system ``ogrinfo`` (it must be installed: ``make sysdeps``)."""
    ogrinfo = shutil.which("ogrinfo")
    if ogrinfo is None:
        pytest.fail("ogrinfo is not installed: run `make sysdeps` (Debian package gdal-bin)")
    proc = subprocess.run([ogrinfo, *args], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    return proc.stdout + proc.stderr


def assert_reads_cleanly(path: Path, *, styles: bool = True) -> None:
    """No warning from ``ogrinfo`` on ``path`` (its layers, and every row of ``layer_styles``), version
    1.2 declared, and the spec's datetimes in ``gpkg_contents`` and ``layer_styles``."""
    assert path.is_file(), path
    for args in (("-al", "-so"), ("-al",)):  # the summary, then every feature of every layer
        text = _ogrinfo(*args, str(path))
        assert "Warning" not in text, text
    con = sqlite3.connect(path)
    try:
        assert con.execute("PRAGMA application_id").fetchone()[0] == 0x47504B47  # "GPKG"
        assert con.execute("PRAGMA user_version").fetchone()[0] == 10200
        times = [r[0] for r in con.execute("SELECT last_change FROM gpkg_contents")]
        if styles:
            times += [r[0] for r in con.execute("SELECT update_time FROM layer_styles")]
    finally:
        con.close()
    assert times and all(_DATETIME.match(t) for t in times), times
    if styles:
        text = _ogrinfo(str(path), "layer_styles")
        assert "Warning" not in text, text
        assert "Feature Count: 0" not in text, text
