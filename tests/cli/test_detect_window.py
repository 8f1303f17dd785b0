"""``rsvg detect --window COL ROW WIDTH HEIGHT``: only the tiles that meet a pixel window are asked about
(the QGIS plugin's EXTENT), on the whole scene's grid."""

from __future__ import annotations

import json

import pytest
from cli_runner import run_rsvg

_RUN = ("--query", "cars", "--smoke", "--precision", "fp32", "--device", "cpu", "--max-new-tokens", "4")


@pytest.mark.usefixtures("test_model_dir")
def test_window_asks_only_the_tiles_that_meet_it(data_dir, tmp_path):
    out = tmp_path / "w.gpkg"
    # RGB.byte.tif (791 x 718 px) is 2 x 2 tiles of 504 px; a window inside the first column meets two.
    proc = run_rsvg(
        "detect", str(data_dir / "RGB.byte.tif"), *_RUN, "--window", "10", "10", "50", "600", "-o", str(out)
    )
    assert proc.returncode == 0, proc.stderr
    records = [json.loads(line) for line in (tmp_path / "w.answers.jsonl").read_text().splitlines()]
    assert sorted((r["tile_row"], r["tile_col"]) for r in records) == [(0, 0), (1, 0)]
    assert {r["tile_size"] for r in records} == {504}


def test_window_of_no_size_is_refused(data_dir, tmp_path):
    proc = run_rsvg(
        "detect",
        str(data_dir / "RGB.byte.tif"),
        *_RUN,
        "--window",
        "0",
        "0",
        "0",
        "5",
        "-o",
        str(tmp_path / "x.gpkg"),
    )
    assert proc.returncode == 2
    assert "window" in proc.stderr and "Traceback" not in proc.stderr
