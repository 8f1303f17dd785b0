"""Issue 24, "Files QGIS reads without a warning": every GeoPackage the engine writes opens without a
warning in the system GDAL (Debian's, 3.6 here: the GDAL of Debian's QGIS 3.22).

Each file declares the lowest GeoPackage version its content needs (1.2, ``user_version`` 10200; a
newer GDAL declares 1.4 by default, which GDAL 3.6 reads as "may only be partially supported") and
writes the spec's datetimes (``YYYY-MM-DDTHH:MM:SS.SSSZ``: milliseconds, Z).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from cli_runner import run_rsvg
from gpkg_checks import assert_reads_cleanly
from rasterio.transform import from_origin

_RUN = ("--smoke", "--query", "planes", "--tile-size", "64", "--overlap", "0", "--max-new-tokens", "4")


def _scene(folder: Path, name: str = "geo.tif") -> Path:
    folder.mkdir(exist_ok=True)
    path = folder / name
    with rasterio.open(
        path, "w", driver="GTiff", width=128, height=128, count=3, dtype="uint8", crs="EPSG:32633",
        transform=from_origin(500_000, 4_600_000, 10, 10),
    ) as dst:  # fmt: skip
        dst.write(np.full((3, 128, 128), 100, dtype="uint8"))
    return path


def test_tiles(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "in")
    out = tmp_path / "t.gpkg"
    proc = run_rsvg("tiles", str(scene), "--tile-size", "64", "--overlap", "0", "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_reads_cleanly(out)


@pytest.mark.usefixtures("test_model_dir")
def test_detect_and_export(tmp_path: Path) -> None:
    scene = _scene(tmp_path / "in")
    out = tmp_path / "o.gpkg"
    proc = run_rsvg("-q", "detect", str(scene), *_RUN, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_reads_cleanly(out)
    again = tmp_path / "e.gpkg"
    proc = run_rsvg("-q", "export", str(tmp_path / "o.answers.jsonl"), "-o", str(again))
    assert proc.returncode == 0, proc.stderr
    assert_reads_cleanly(again)


@pytest.mark.usefixtures("test_model_dir")
def test_batch_store(tmp_path: Path) -> None:
    folder = tmp_path / "in"
    _scene(folder, "a.tif")
    _scene(folder, "b.tif")
    out = tmp_path / "b.gpkg"
    proc = run_rsvg("-q", "batch", str(folder), *_RUN, "-o", str(out))
    assert proc.returncode == 0, proc.stderr
    assert_reads_cleanly(out)


@pytest.mark.usefixtures("test_model_dir")
def test_bench_agreement(tmp_path: Path) -> None:
    from rsvg_desktop.engine.model_files import ensure_test_model

    scene = _scene(tmp_path / "in")
    out = tmp_path / "agree"
    proc = run_rsvg(
        "-q", "bench", "agree", str(scene), "--model", str(ensure_test_model()), "--query", "planes",
        "--reference", "fp32", "--precisions", "bf16", "--device", "cpu", "--tile-size", "128",
        "--max-new-tokens", "2", "-o", str(out),
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr
    assert_reads_cleanly(out / "agreement.gpkg", styles=False)
    for run in sorted((out / "runs").rglob("*.gpkg")):
        assert_reads_cleanly(run)
