"""The scene job end to end: real rasters, real answer log, real exports; the tiny real model for the
flow, and a scripted generator (test-only) where the test needs answers with known boxes."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from scripted_scene import AnswerResult

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.engine.detect import answer_log_path, run_scene, tiles_in_scope
from rsvg_desktop.engine.events import RunConfig, RunFailed, RunFinished, RunStarted, TileDone, TileStarted
from rsvg_desktop.errors import OutputExistsError


class ScriptedGenerator:
    """Test double for GeoChatGenerator: answers from a function of the request's image."""

    def __init__(self, answer_for):
        self.answer_for = answer_for
        self.calls: list[int] = []

    def generate(self, requests, *, max_new_tokens, batch_size):
        self.calls.append(len(requests))
        out = []
        for r in requests:
            text = self.answer_for(r)
            out.append(AnswerResult.of(text))
        return out


def _events(config, generator, **kw):
    return list(run_scene(config, generator, model="scripted", precision="fp32", **kw))


def test_answer_log_named_after_output():
    assert answer_log_path("out/x.gpkg") == Path("out/x.answers.jsonl")
    assert answer_log_path("x.shp").name == "x.answers.jsonl"


def test_scope_keeps_intersecting_tiles(data_dir):
    from rsvg_desktop.core.geo.grid import plan_tiles
    from rsvg_desktop.core.geo.scene import open_scene

    with open_scene(data_dir / "cogeo.tif") as scene:
        plan = plan_tiles(scene)
    sub = tiles_in_scope(plan.kept, (0, 0, 100, 100))
    assert [(t.row, t.col) for t in sub] == [(0, 0)]
    assert len(tiles_in_scope(plan.kept, None)) == plan.n_kept


def test_boxes_become_map_polygons_in_every_tile(data_dir, tmp_path):
    """A box at grid (25,25)-(75,75) in every tile lands on the tile window's middle half, through the
    scene's affine; the export has the polygons, tile footprints, run row and the answer log lines."""
    gen = ScriptedGenerator(lambda r: "<p>car</p> {<25><25><75><75>|<0>}")
    out = tmp_path / "cars.gpkg"
    events = _events(RunConfig(scene=str(data_dir / "cogeo.tif"), query="car", output=str(out)), gen)
    started = events[0]
    assert isinstance(started, RunStarted) and started.total == 9
    done = [e for e in events if isinstance(e, TileDone)]
    assert len(done) == 9 and done[-1].done == 9
    assert any(isinstance(e, TileStarted) for e in events)
    finished = events[-1]
    assert isinstance(finished, RunFinished) and not finished.cancelled
    assert finished.raw_detections == 9

    with rasterio.open(data_dir / "cogeo.tif") as ds:
        t = ds.transform
    first = done[0]
    poly = shapely.from_wkb(first.polygons_wkb[0])
    tile = first.tile
    x0, y0 = tile.col_off + 0.25 * tile.width, tile.row_off + 0.25 * tile.height
    x1, y1 = tile.col_off + 0.75 * tile.width, tile.row_off + 0.75 * tile.height
    expected = shapely.box(t.a * x0 + t.c, t.e * y1 + t.f, t.a * x1 + t.c, t.e * y0 + t.f)
    assert (
        poly.equals_exact(shapely.orient_polygons(expected), 1e-6)
        or poly.symmetric_difference(expected).area < 1e-6
    )

    with fiona.open(out, layer="detections") as src:
        feats = list(src)
        assert {f["properties"]["phrase"] for f in feats} == {"car"}
        assert {f["properties"]["precision"] for f in feats} == {"fp32"}
        assert len(feats) == finished.detections
    with fiona.open(out, layer="tiles") as src:
        assert len(src) == 9
    recs = list(read_answer_log(answer_log_path(out)))
    assert len(recs) == 9
    assert {r.run_id for r in recs} == {finished.run_id}
    assert recs[0].transform == tuple(t)[:6]


def test_one_window_of_its_own_is_resampled_into_one_input(data_dir, tmp_path):
    """``RunConfig.tile``: that window alone (not the grid, the scope unused) is read and resampled to
    ``tile.size``; its boxes land on the window, and the answer log records it."""
    from rsvg_desktop.core.types import Tile

    shapes: list[tuple[int, ...]] = []

    def answer(request):
        shapes.append(request.image.shape)
        return "<p>field</p> {<25><25><75><75>|<0>}"

    window = Tile(1, 1, 300, 200, 900, 900, 504)  # larger than a 504 px tile, reaching past the edge
    out = tmp_path / "one.gpkg"
    config = RunConfig(
        scene=str(data_dir / "cogeo.tif"), query="field", output=str(out), tile=window, scope=(0, 0, 1, 1)
    )
    events = _events(config, ScriptedGenerator(answer))
    started = events[0]
    assert isinstance(started, RunStarted) and started.tiles == (window,) and started.total == 1
    done = [e for e in events if isinstance(e, TileDone)]
    assert [e.tile for e in done] == [window] and shapes == [(504, 504, 3)]
    with rasterio.open(data_dir / "cogeo.tif") as ds:
        t = ds.transform
    x0, y0, x1, y1 = 300 + 225, 200 + 225, 300 + 675, 200 + 675  # the window's middle half
    expected = shapely.box(t.a * x0 + t.c, t.e * y1 + t.f, t.a * x1 + t.c, t.e * y0 + t.f)
    assert shapely.from_wkb(done[0].polygons_wkb[0]).symmetric_difference(expected).area < 1e-6
    (record,) = read_answer_log(answer_log_path(out))
    assert record.window == (300, 200, 900, 900) and record.tile_size == 504 and record.tile == window


def test_seam_duplicates_are_merged(data_dir, tmp_path):
    """The same object seen by two overlapping tiles is exported once."""

    # cogeo.tif: 1024 px, tiles at 0, 440 (overlap 64) → columns 440..504 are shared by tiles c0 and c1.
    # A box over scene x 450..500 in tile c0 is grid 89.3..99.2; in tile c1 it is grid 2.0..11.9.
    def answer(req):
        return answer.script.pop(0)

    answer.script = [
        "{<89><40><99><50>|<0>}",
        "{<2><40><12><50>|<0>}",
        "",  # row 0: c0, c1, c2
        "",
        "",
        "",
        "",
        "",
        "",
    ]
    gen = ScriptedGenerator(answer)
    out = tmp_path / "m.gpkg"
    events = _events(
        RunConfig(scene=str(data_dir / "cogeo.tif"), query="x", output=str(out), batch_size=3), gen
    )
    finished = events[-1]
    assert finished.raw_detections == 2
    assert finished.detections == 1
    assert gen.calls == [3, 3, 3]


def test_refuses_to_overwrite_and_replaces_with_overwrite(data_dir, tmp_path):
    out = tmp_path / "o.gpkg"
    gen = ScriptedGenerator(lambda r: "")
    cfg = RunConfig(scene=str(data_dir / "cogeo.tif"), query="q", output=str(out), scope=(0, 0, 10, 10))
    _events(cfg, gen)
    with pytest.raises(OutputExistsError):
        _events(cfg, gen)
    from dataclasses import replace

    _events(replace(cfg, overwrite=True), gen)
    assert len(list(read_answer_log(answer_log_path(out)))) == 1


def test_cancel_keeps_finished_tiles(data_dir, tmp_path):
    gen = ScriptedGenerator(lambda r: "{<10><10><20><20>|<90>}")
    out = tmp_path / "c.gpkg"
    stop = {"now": False}
    events = []
    cfg = RunConfig(scene=str(data_dir / "cogeo.tif"), query="q", output=str(out), batch_size=2)
    for ev in run_scene(cfg, gen, cancel=lambda: stop["now"]):
        events.append(ev)
        if isinstance(ev, TileDone) and ev.done == 4:
            stop["now"] = True
    finished = events[-1]
    assert finished.cancelled and finished.done == 4 and finished.total == 9
    assert len(list(read_answer_log(answer_log_path(out)))) == 4
    with fiona.open(out, layer="detections") as src:
        assert len(src) == 4
    with fiona.open(out, layer="run") as src:
        props = next(iter(src))["properties"]
        assert props["x_cancelled"] is True and props["x_tiles_done"] == 4  # typed, not text


def test_closing_the_job_midway_still_writes_the_export(data_dir, tmp_path):
    gen = ScriptedGenerator(lambda r: "{<10><10><20><20>}")
    out = tmp_path / "k.gpkg"
    cfg = RunConfig(scene=str(data_dir / "cogeo.tif"), query="q", output=str(out), batch_size=1)
    job = run_scene(cfg, gen)
    for ev in job:
        if isinstance(ev, TileDone) and ev.done == 3:
            job.close()
            break
    assert out.exists()
    with fiona.open(out, layer="detections") as src:
        assert len(src) == 3


def test_corrupt_scene_fails_naming_window_and_keeps_finished(data_dir, tmp_path):
    gen = ScriptedGenerator(lambda r: "{<10><10><20><20>}")
    out = tmp_path / "bad.gpkg"
    events = _events(
        RunConfig(scene=str(data_dir / "corrupt.tif"), query="q", output=str(out), batch_size=1), gen
    )
    failed = [e for e in events if isinstance(e, RunFailed)]
    assert failed, "reading corrupt.tif must fail"
    assert "corrupt.tif" in failed[0].message and "window" in failed[0].message
    finished = events[-1]
    assert isinstance(finished, RunFinished) and finished.failed == 1
    assert out.exists()  # what finished before the failure is exported
    assert len(list(read_answer_log(answer_log_path(out)))) == finished.done


def test_tiny_model_runs_the_whole_flow(data_dir, tmp_path, test_model_dir):
    """The real tiny model (random weights) through the real loader and generator, nodata tiles skipped."""
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model

    loaded = load_model(LoadSpec(test_model_dir, "fp32", "cpu"))
    assert loaded.random_weights
    gen = GeoChatGenerator(loaded)
    out = tmp_path / "tiny.gpkg"
    cfg = RunConfig(
        scene=str(data_dir / "RGB.byte.tif"),
        query="boats",
        task="refer",
        output=str(out),
        tile_size=128,
        overlap=0,
        scope=(0, 0, 256, 256),
        max_new_tokens=8,
        batch_size=4,
    )
    events = list(run_scene(cfg, gen, model=str(test_model_dir), precision="fp32", random_weights=True))
    started, finished = events[0], events[-1]
    assert started.skipped == 1 and started.total == 3  # the corner tile is all nodata border
    assert isinstance(finished, RunFinished) and finished.done == started.total
    recs = list(read_answer_log(answer_log_path(out)))
    assert len(recs) == started.total
    assert all(r.output_tokens and r.output_tokens <= 8 for r in recs)
    assert all(r.extra.get("random_weights") is True for r in recs)
    with fiona.open(out, layer="run") as src:
        assert next(iter(src))["properties"]["random_weights"] in (1, True)
    with fiona.open(out, layer="tiles") as src:
        skipped = [f for f in src if f["properties"]["skipped"]]
        assert len(skipped) == started.skipped
    json.dumps([r.to_dict() for r in recs])  # every record is plain JSON
    assert np.isfinite([r.seconds for r in recs]).all()


def test_log_keeps_what_rebuilds_the_prompt(data_dir, tmp_path):
    from rsvg_desktop.core.types import GridBox

    gen = ScriptedGenerator(lambda r: "urban")
    out = tmp_path / "cls.gpkg"
    _events(
        RunConfig(
            scene=str(data_dir / "cogeo.tif"),
            query="what scene is this?",
            task="classify",
            classes=("rural", "urban"),
            output=str(out),
            scope=(0, 0, 10, 10),
        ),
        gen,
    )
    (rec,) = read_answer_log(answer_log_path(out))
    assert rec.extra["classes"] == ["rural", "urban"] and rec.answer == "urban"
    out2 = tmp_path / "idf.gpkg"
    _events(
        RunConfig(
            scene=str(data_dir / "cogeo.tif"),
            query="",
            task="identify",
            region=GridBox(10, 20, 30, 40, 90),
            output=str(out2),
            scope=(0, 0, 10, 10),
        ),
        gen,
    )
    (rec,) = read_answer_log(answer_log_path(out2))
    assert rec.extra["region"] == [10, 20, 30, 40, 90]


def test_a_run_without_a_file_name_is_refused(data_dir, tmp_path, monkeypatch):
    from rsvg_desktop.errors import ConfigError, ExportError

    monkeypatch.chdir(tmp_path)
    cfg = RunConfig(scene=str(data_dir / "cogeo.tif"), query="q", output=".")
    with pytest.raises(ConfigError, match=r"'\.' is not a file name"):
        _events(cfg, ScriptedGenerator(lambda r: ""))
    with pytest.raises(ExportError, match="is a folder"):
        _events(replace(cfg, output=str(tmp_path)), ScriptedGenerator(lambda r: ""))
    assert not list(tmp_path.iterdir())


def test_ctrl_c_inside_a_batch_is_recorded_as_an_interruption(data_dir, tmp_path):
    """Ctrl-C lands while the model answers (not between events): the run table still says so."""
    answered = {"n": 0}

    def answer(request):
        answered["n"] += 1
        if answered["n"] > 2:
            raise KeyboardInterrupt
        return "{<10><10><20><20>}"

    out = tmp_path / "i.gpkg"
    cfg = RunConfig(scene=str(data_dir / "cogeo.tif"), query="q", output=str(out), batch_size=1)
    with pytest.raises(KeyboardInterrupt):
        _events(cfg, ScriptedGenerator(answer))
    with fiona.open(out, layer="run") as src:
        props = next(iter(src))["properties"]
    assert props["x_cancelled"] is True and props["x_tiles_done"] == 2 and props["x_tiles_total"] == 9
