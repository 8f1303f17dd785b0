"""Answers → merged detections → files: phrases from grounded descriptions and stitched seam objects
reach the exported ``phrase`` column and geometry; ``refer`` boxes carry the query."""

from __future__ import annotations

import fiona
import pytest
from pyproj import CRS
from shapely.geometry import shape

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.engine.results import Georef, detections_for_answer, export_answer_log

TRANSFORM = (0.3, 0.0, 580_000.0, 0.0, -0.3, 2_700_000.0)
WKT = CRS.from_epsg(32618).to_wkt()


def record(col_off: int, col: int, task: str, query: str, answer: str) -> AnswerRecord:
    return AnswerRecord(
        scene="synthetic.tif",
        col_off=col_off,
        row_off=0,
        width=504,
        height=504,
        task=task,
        query=query,
        answer=answer,
        tile_row=0,
        tile_col=col,
        crs=WKT,
        transform=TRANSFORM,
    )


def test_grounded_phrases_and_stitched_objects_reach_the_export(tmp_path):
    log = tmp_path / "a.answers.jsonl"
    with AnswerLogWriter(log) as w:
        # A court whole in tile A, and one cut by both tiles (x 403–561 px): A writes 80–100, B 0–24.
        w.write(
            record(
                0,
                0,
                "grounding",
                "describe",
                "there are two tennis courts {<10><10><20><20>}{<80><20><100><28>}",
            )
        )
        w.write(record(440, 1, "grounding", "describe", "I can see a tennis court {<0><20><24><28>|<0>}."))
        w.write(record(0, 0, "refer", "the red boat", "{<50><50><60><60>|<90>}"))
    out = tmp_path / "out.gpkg"
    summary = export_answer_log(log, out)
    assert summary.raw_detections == 4 and summary.detections == 3
    with fiona.open(out, layer="detections") as src:
        feats = list(src)
    by_task: dict[str, list] = {}
    for f in feats:
        by_task.setdefault(f["properties"]["task"], []).append(f)
    grounding = by_task["grounding"]
    assert len(grounding) == 2  # the two fragments of the cut court became one
    assert {f["properties"]["phrase"] for f in grounding} <= {"tennis courts", "tennis court"}
    areas = sorted(shape(f["geometry"]).area for f in grounding)
    court = (10 * 5.04 * 0.3) ** 2
    stitched = ((440 + 24 * 5.04 - 80 * 5.04) * 0.3) * (8 * 5.04 * 0.3)  # x 403.2–560.96, y 100.8–141.12 px
    assert areas == pytest.approx(sorted([court, stitched]), rel=1e-6)
    assert [f["properties"]["phrase"] for f in by_task["refer"]] == ["the red boat"]


def test_refer_keeps_a_tagged_phrase_and_otherwise_uses_the_query():
    georef = Georef(TRANSFORM, WKT)
    rec = record(0, 0, "refer", "  the  red boat ", "the boat {<1><2><3><4>} and <p>boat</p> {<5><6><7><8>}")
    table = detections_for_answer(rec, parse_answer(rec.answer), georef)
    assert table.phrase.tolist() == ["the red boat", "boat"]
    rec = record(0, 0, "grounding", "describe", rec.answer)
    table = detections_for_answer(rec, parse_answer(rec.answer), georef)
    assert table.phrase.tolist() == ["boat", "boat"]
