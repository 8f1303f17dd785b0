"""``bench agree``'s comparison: tiles answered by one side only are counted; inputs in different CRSs
are written each in its own CRS."""

from __future__ import annotations

from pathlib import Path

import pytest
from pyproj import CRS

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
from rsvg_desktop.engine.bench.agree import _write_layers, compare_answer_logs

UTM33 = CRS.from_epsg(32633).to_wkt()
UTM34 = CRS.from_epsg(32634).to_wkt()


def _write(path: Path, rows: list[tuple[str, int, str, str]]) -> Path:
    with AnswerLogWriter(path) as w:
        for scene, k, crs, answer in rows:
            w.write(
                AnswerRecord(scene, 100 * k, 0, 100, 100, "refer", "cars", answer, crs=crs,
                             transform=(1.0, 0.0, 500000.0, 0.0, -1.0, 4000000.0))
            )  # fmt: skip
    return path


def test_unanswered_tiles_are_counted_and_crss_kept_apart(tmp_path: Path) -> None:
    box = "{<0><0><50><50>|<0>}"
    ref = _write(
        tmp_path / "ref.jsonl", [("a.tif", 0, UTM33, box), ("a.tif", 1, UTM33, box), ("b.tif", 0, UTM34, box)]
    )
    # nf4 stopped early: tile a.tif/1 not answered; and it answered a tile the reference did not.
    other = _write(
        tmp_path / "nf4.jsonl", [("a.tif", 0, UTM33, box), ("b.tif", 0, UTM34, box), ("b.tif", 1, UTM34, box)]
    )
    metrics, layers, scene_crs = compare_answer_logs("bf16", [ref], {"bf16": [ref], "nf4": [other]}, "refer")
    got = {m.metric: (m.value, m.n) for m in metrics}
    assert got["tiles"] == (2.0, 2)
    assert got["tiles_unanswered"] == (1.0, 1)
    assert got["tiles_unanswered_reference"] == (1.0, 1)
    kinds = sorted(r["kind"] for r in layers["disagreements"])
    assert kinds == ["not answered by bf16", "not answered by nf4"]
    written = _write_layers(tmp_path / "agreement.gpkg", layers, scene_crs)
    assert set(written) >= {"bf16_EPSG32633", "bf16_EPSG32634", "nf4_EPSG32633", "nf4_EPSG32634"}
    import geopandas as gpd

    for layer, epsg in (("bf16_EPSG32633", 32633), ("nf4_EPSG32634", 32634)):
        frame = gpd.read_file(tmp_path / "agreement.gpkg", layer=layer)
        assert frame.crs.to_epsg() == epsg
    assert len(gpd.read_file(tmp_path / "agreement.gpkg", layer="bf16_EPSG32633")) == 2
    assert pytest.approx(frame.total_bounds[0]) == 500000.0


def test_one_crs_keeps_the_layer_names(tmp_path: Path) -> None:
    box = "{<0><0><50><50>|<0>}"
    ref = _write(tmp_path / "ref.jsonl", [("a.tif", 0, UTM33, box)])
    _, layers, scene_crs = compare_answer_logs("bf16", [ref], {"bf16": [ref], "nf4": [ref]}, "refer")
    assert _write_layers(tmp_path / "agreement.gpkg", layers, scene_crs) == ["bf16", "disagreements", "nf4"]
