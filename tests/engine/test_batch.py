"""The batch job: real rasters, real polygons, real GeoPackage store and answer log; answers with
boxes come from the test-only BlobGenerator (a box around every bright blob of the tile it is shown),
because the tiny random model answers noise."""

from __future__ import annotations

import shutil
from dataclasses import replace

import numpy as np
import pyogrio
import pytest
import shapely
from batch_helpers import (
    BlobGenerator,
    blob_image,
    lattice,
    write_geotiff,
    write_plain,
    write_world_file,
)

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.engine.batch import (
    BatchConfig,
    ModelIdentity,
    model_fingerprint,
    run_batch,
    run_identity,
)
from rsvg_desktop.engine.detect import run_scene
from rsvg_desktop.engine.events import (
    BatchFinished,
    BatchProgress,
    BatchStarted,
    InputFinished,
    InputStarted,
    RunConfig,
)
from rsvg_desktop.engine.inputs import Query
from rsvg_desktop.errors import ConfigError

MODEL = ModelIdentity(model="blob-detector", model_id="0123456789abcdef", precision="fp32")


def _run(config, generator=None, **kw):
    events = list(run_batch(config, generator or BlobGenerator(), model=kw.pop("model", MODEL), **kw))
    assert isinstance(events[0], BatchStarted) and isinstance(events[-1], BatchFinished)
    return events, events[-1].summary


def _config(inputs, out, **kw):
    base = dict(
        inputs=tuple(str(i) for i in inputs),
        queries=(Query("refer", "car"),),
        output=str(out),
        tile_size=64,
        overlap=16,
        batch_size=4,
        max_new_tokens=16,
    )
    base.update(kw)
    return BatchConfig(**base)


def _layer(path, layer):
    return pyogrio.read_dataframe(path, layer=layer)


def _detection_rows(path, layer="detections"):
    df = _layer(path, layer)
    keys = ("run_id", "scene", "tile_row", "tile_col", "box_index", "phrase")
    return sorted((*(df[k].iloc[i] for k in keys), df.geometry.iloc[i].wkb_hex) for i in range(len(df)))


@pytest.fixture
def scene_folder(tmp_path):
    """Six single-tile GeoTIFFs (64 px) and one 160 px scene whose objects straddle tile seams."""
    folder = tmp_path / "tiles"
    folder.mkdir()
    for i in range(6):
        img = blob_image(64, 64, [(8 + 5 * i, 10, 10), (40, 40, 12)], seed=i)
        write_geotiff(folder / f"tile_{i}.tif", img, x0=500000.0 + 40 * i)
    write_geotiff(folder / "scene.tif", blob_image(160, 160, lattice(160, 160, 37, 11), seed=9), x0=501000.0)
    return folder


def test_single_scene_matches_the_scene_job(tmp_path, data_dir):
    """Over one scene the batch gives the same merged polygons as ``rsvg detect`` (same code path)."""
    scene = write_geotiff(tmp_path / "scene.tif", blob_image(160, 160, lattice(160, 160, 37, 11), seed=3))
    _, summary = _run(_config([scene], tmp_path / "b.gpkg"))
    assert summary.status == "complete" and summary.inputs_done == 1 and summary.tiles_done == 9
    det = _layer(tmp_path / "b.gpkg", "detections")

    list(
        run_scene(
            RunConfig(
                scene=str(scene),
                query="car",
                output=str(tmp_path / "d.gpkg"),
                tile_size=64,
                overlap=16,
                batch_size=4,
            ),
            BlobGenerator(),
            model="blob-detector",
            precision="fp32",
        )
    )
    ref = _layer(tmp_path / "d.gpkg", "detections")
    assert summary.raw_detections > len(det) > 0  # seams produced duplicates that were merged
    assert len(det) == len(ref) == 16  # the 4 × 4 lattice of objects
    key = lambda df: sorted(g.wkb for g in df.geometry)  # noqa: E731
    assert key(det) == key(ref)
    assert det.crs.to_epsg() == 32633 and (det["area_m2"] > 0).all()


def test_folder_of_tiles_fills_batches_across_inputs(tmp_path, scene_folder):
    gen = BlobGenerator()
    events, summary = _run(_config([scene_folder], tmp_path / "out.gpkg", batch_size=4), gen)
    assert summary.inputs_total == 7 and summary.inputs_done == 7 and summary.tiles_done == 6 + 9
    assert gen.calls == [4, 4, 4, 3]  # tiles of consecutive inputs share batches
    assert [type(e) for e in events].count(InputStarted) == 7
    assert [e.status for e in events if isinstance(e, InputFinished)] == ["done"] * 7
    progress = [e for e in events if isinstance(e, BatchProgress)]
    assert progress[-1].tiles_done == 15 and progress[-1].inputs_finished == 7
    assert summary.timings.keys() == {"load", "read", "model", "polygons", "store"}
    # Every stored answer is logged exactly once; the log exports like any answer log.
    recs = list(read_answer_log(tmp_path / "out.answers.jsonl"))
    assert len(recs) == 15 and len({(r.scene, r.window) for r in recs}) == 15
    assert {r.overlap for r in recs} == {16}  # the grid the run used travels with the answers
    assert summary.detections == len(_layer(tmp_path / "out.gpkg", "detections"))


def test_rerun_resumes_and_never_duplicates(tmp_path, scene_folder):
    out = tmp_path / "out.gpkg"
    gen = BlobGenerator()
    _, first = _run(_config([scene_folder], out), gen)
    rows = _detection_rows(out)
    _, again = _run(_config([scene_folder], out), gen)
    assert again.tiles_done == 0 and again.inputs_already_done == 7 and sum(gen.calls) == 15
    assert _detection_rows(out) == rows
    assert again.detections == first.detections

    # A new file in the folder: only its tile is asked.
    write_geotiff(scene_folder / "tile_new.tif", blob_image(64, 64, [(20, 20, 10)], seed=42), x0=499000.0)
    _, third = _run(_config([scene_folder], out), gen)
    assert third.tiles_done == 1 and third.inputs_done == 1 and third.inputs_already_done == 7
    assert len(list(read_answer_log(tmp_path / "out.answers.jsonl"))) == 16


def test_cancel_between_batches_then_resume_gives_the_uninterrupted_result(tmp_path, scene_folder):
    full = tmp_path / "full.gpkg"
    _run(_config([scene_folder], full, batch_size=2))
    part = tmp_path / "part.gpkg"
    calls = iter(range(100))
    _, cancelled = _run(_config([scene_folder], part, batch_size=2), cancel=lambda: next(calls) >= 3)
    assert cancelled.status == "cancelled" and cancelled.tiles_done == 8
    _, resumed = _run(_config([scene_folder], part, batch_size=2))
    assert resumed.status == "complete" and resumed.tiles_done == 7
    for layer in ("detections", "tile_detections", "tile_footprints"):
        assert (
            _detection_rows(part, layer) == _detection_rows(full, layer)
            if layer != "tile_footprints"
            else len(_layer(part, layer)) == len(_layer(full, layer)) == 15
        )
    ledger = _layer(part, "tiles")
    assert not ledger.duplicated(["run_id", "input_id", "col_off", "row_off", "width", "height"]).any()


def test_mixed_folder_gives_the_documented_result_for_each_file(tmp_path, data_dir):
    """GeoTIFF tiles → georeferenced layers; PNG + world file → pixel mode, or georeferenced with
    --assume-crs; a plain image → pixel layers, flagged; a corrupt file → failed with its reason."""
    folder = tmp_path / "mixed"
    folder.mkdir()
    img = blob_image(64, 64, [(10, 10, 12), (40, 36, 10)])
    write_geotiff(folder / "a_geo.tif", img, crs="EPSG:32633", x0=500000.0)
    png = write_plain(folder / "b_world.png", img)
    write_world_file(png, ".pgw", x0=500100.0, y0=4650000.0, pixel=0.5)
    write_plain(folder / "c_plain.png", img)
    shutil.copy(data_dir / "corrupt.tif", folder / "d_corrupt.tif")

    out = tmp_path / "mixed.gpkg"
    _, s = _run(_config([folder], out, tile_size=256, overlap=32))
    assert s.status == "partial" and (s.inputs_done, s.inputs_failed, s.inputs_pixel_mode) == (3, 1, 2)
    (failure,) = s.failures
    assert failure.input.endswith("d_corrupt.tif") and failure.stage in ("plan", "read")
    assert "d_corrupt.tif" in failure.reason and "window" in failure.reason
    runs = _layer(out, "input_runs").set_index("path")
    assert runs.loc[str(folder / "d_corrupt.tif"), "status"] == "failed"
    inputs = _layer(out, "inputs").set_index("name")
    assert inputs.loc["a_geo.tif", "georef_source"] == "file"
    assert inputs.loc["b_world.png", "georef_source"] == "none" and inputs.loc["b_world.png", "pixel_mode"]
    assert inputs.loc["c_plain.png", "pixel_mode"]
    geo, pix = _layer(out, "detections"), _layer(out, "detections_pixel")
    # The corrupt file's readable tiles are kept (and merged) next to the GeoTIFF tile's boxes.
    assert str(folder / "a_geo.tif") in set(geo["scene"]) and geo.crs.to_epsg() == 32633
    assert set(geo["scene"]) <= {str(folder / "a_geo.tif"), str(folder / "d_corrupt.tif")}
    assert set(pix["scene"]) == {str(folder / "b_world.png"), str(folder / "c_plain.png")}
    assert pix["pixel_mode"].eq(1).all() and (pix["area_px"] > 0).all()
    # Pixel coordinates: x right, y down, within the 64 px image.
    bounds = shapely.bounds(pix.geometry.to_numpy())
    assert bounds.min() >= 0 and bounds.max() <= 64

    # With --assume-crs the world-file tile joins the georeferenced layer, at its world-file place.
    out2 = tmp_path / "assumed.gpkg"
    _, s2 = _run(_config([folder], out2, tile_size=256, overlap=32, assume_crs="EPSG:32633"))
    geo2 = _layer(out2, "detections")
    world = geo2[geo2["scene"] == str(folder / "b_world.png")]
    assert len(world) == 2 and s2.inputs_pixel_mode == 1
    assert world.total_bounds[0] >= 500100.0 and world.total_bounds[2] <= 500100.0 + 32


def test_inputs_in_another_crs_are_reprojected_to_the_output_crs(tmp_path):
    img = blob_image(64, 64, [(20, 20, 16)])
    a = write_geotiff(tmp_path / "a.tif", img, crs="EPSG:32633", x0=500000.0, y0=4650000.0)
    b = write_geotiff(tmp_path / "b.tif", img, crs="EPSG:4326", x0=15.0, y0=42.0, pixel=0.000005)
    out = tmp_path / "o.gpkg"
    _run(_config([a, b], out))
    det = _layer(out, "detections")
    assert det.crs.to_epsg() == 32633 and len(det) == 2
    lonlat = det[det["scene"] == str(b)].to_crs(4326).geometry.iloc[0].centroid
    assert lonlat.x == pytest.approx(15.0 + 28 * 0.000005, abs=1e-6)
    assert lonlat.y == pytest.approx(42.0 - 28 * 0.000005, abs=1e-6)
    out4326 = tmp_path / "wgs.gpkg"
    _run(_config([a, b], out4326, crs="EPSG:4326"))
    assert _layer(out4326, "detections").crs.to_epsg() == 4326


def test_run_ids_follow_model_precision_prompt_and_grid(tmp_path, scene_folder):
    cfg = _config([scene_folder], tmp_path / "o.gpkg")
    q = Query("refer", "car")
    base = run_identity(q, MODEL, cfg).run_id
    assert run_identity(q, MODEL, cfg).run_id == base  # deterministic
    others = {
        run_identity(q, replace(MODEL, precision="nf4"), cfg).run_id,
        run_identity(q, replace(MODEL, model_id="fedcba9876543210"), cfg).run_id,
        run_identity(Query("refer", "cars"), MODEL, cfg).run_id,
        run_identity(Query("grounding", "car"), MODEL, cfg).run_id,
        run_identity(q, MODEL, replace(cfg, tile_size=128)).run_id,
        run_identity(q, MODEL, replace(cfg, overlap=8)).run_id,
        run_identity(q, MODEL, replace(cfg, max_new_tokens=32)).run_id,
        run_identity(q, MODEL, replace(cfg, angle_convention="cw")).run_id,
    }
    assert base not in others and len(others) == 8
    assert run_identity(q, MODEL, replace(cfg, batch_size=1)).run_id == base  # batch size: same answers

    # Changing the precision in the same store starts a new run next to the old one.
    out = tmp_path / "o.gpkg"
    _run(cfg)
    _, s = _run(cfg, model=replace(MODEL, precision="nf4"))
    assert s.tiles_done == 15 and s.inputs_already_done == 0
    assert _layer(out, "run")["precision"].tolist() == ["fp32", "nf4"]
    assert _layer(out, "detections")["run_id"].nunique() == 2


def test_several_questions_share_each_tile_read(tmp_path, scene_folder):
    two = (Query("refer", "car"), Query("refer", "boat"))
    cfg = _config([scene_folder], tmp_path / "q.gpkg", queries=two)
    gen = BlobGenerator()
    _, s = _run(cfg, gen)
    assert s.tiles_done == 30 and len(s.runs) == 2
    det = _layer(tmp_path / "q.gpkg", "detections")
    assert set(det["phrase"]) == {"car", "boat"} and det.groupby("run_id").size().nunique() == 1


def test_model_failures_fail_inputs_then_abort(tmp_path, scene_folder):
    out = tmp_path / "f.gpkg"
    _, s = _run(_config([scene_folder], out, batch_size=2), BlobGenerator(fail=lambda n: n == 2))
    # Batch 2 holds tiles 3–4 of scene.tif (the first input): the scene fails, its other tiles are not
    # asked; the batch goes on with the single-tile inputs.
    assert s.status == "partial" and s.inputs_failed == 1 and s.inputs_done == 6
    assert [(f.input.rsplit("/", 1)[-1], f.stage) for f in s.failures] == [("scene.tif", "model")]
    assert s.tiles_failed == 7 and s.tiles_done == 8
    runs = _layer(out, "input_runs")
    assert runs.loc[runs["path"].str.endswith("scene.tif"), "tiles_done"].tolist() == [2]
    _, s = _run(_config([scene_folder], out, batch_size=2))  # the rerun retries it
    assert s.status == "complete" and s.tiles_done == 7 and s.inputs_done == 1 and s.tiles_already_done == 8

    out2 = tmp_path / "g.gpkg"
    _, s = _run(_config([scene_folder], out2, batch_size=2), BlobGenerator(fail=lambda n: n >= 2))
    assert s.status == "aborted" and "3 batches in a row" in s.message and s.tiles_done == 2


def test_an_empty_scene_is_done_with_every_tile_skipped(tmp_path, data_dir):
    _, s = _run(_config([data_dir / "all-nodata.tif"], tmp_path / "e.gpkg", tile_size=504, overlap=64))
    assert s.status == "complete" and s.tiles_done == 0 and s.tiles_skipped_nodata == 6
    ledger = _layer(tmp_path / "e.gpkg", "tiles")
    assert set(ledger["status"]) == {"skipped"} and len(_layer(tmp_path / "e.gpkg", "tile_footprints")) == 6


def test_bad_arguments_fail_before_anything_runs(tmp_path, scene_folder):
    gen = BlobGenerator()
    with pytest.raises(ConfigError, match="overlap"):
        _run(_config([scene_folder], tmp_path / "x.gpkg", overlap=64), gen)
    with pytest.raises(ConfigError, match="no question"):
        _run(_config([scene_folder], tmp_path / "x.gpkg", queries=()), gen)
    with pytest.raises(ConfigError, match="no such file"):
        _run(_config([tmp_path / "nope"], tmp_path / "x.gpkg"), gen)
    with pytest.raises(ConfigError, match="GeoPackage"):
        _run(_config([scene_folder], tmp_path / "x.geojson"), gen)
    assert gen.calls == [] and not (tmp_path / "x.gpkg").exists()


def test_model_fingerprint_ignores_where_and_when_it_was_converted(tmp_path, test_model_dir):
    copy = tmp_path / "copy"
    shutil.copytree(test_model_dir, copy)
    assert model_fingerprint(copy) == model_fingerprint(test_model_dir)
    import json

    manifest = json.loads((copy / "rsvg_manifest.json").read_text())
    manifest["created"] = "2000-01-01T00:00:00+00:00"
    (copy / "rsvg_manifest.json").write_text(json.dumps(manifest))
    assert model_fingerprint(copy) == model_fingerprint(test_model_dir)
    manifest["versions"] = {"rsvg_desktop": "9.9"}
    (copy / "rsvg_manifest.json").write_text(json.dumps(manifest))
    assert model_fingerprint(copy) != model_fingerprint(test_model_dir)


def test_crs_of_the_store_is_kept(tmp_path, scene_folder):
    out = tmp_path / "c.gpkg"
    _run(_config([scene_folder], out))
    with pytest.raises(ConfigError, match="EPSG:32633"):
        _run(_config([scene_folder], out, crs="EPSG:4326"))
    det = _layer(out, "detections")
    assert det.crs.to_epsg() == 32633 and np.isfinite(det.total_bounds).all()


def test_a_moved_archive_resumes_instead_of_starting_again(tmp_path, scene_folder):
    """Inputs are known by content and by path below the batch root: a moved folder (also a renamed
    file in it) resumes; a cancelled half is finished, the rest is not redone."""
    out = tmp_path / "out.gpkg"
    calls = iter(range(100))
    _, part = _run(_config([scene_folder], out, batch_size=2), cancel=lambda: next(calls) >= 3)
    assert part.status == "cancelled" and 0 < part.tiles_done < 15
    moved = tmp_path / "elsewhere" / "archive"
    moved.parent.mkdir()
    shutil.move(scene_folder, moved)
    (moved / "tile_0.tif").rename(moved / "renamed_0.tif")
    gen = BlobGenerator()
    _, resumed = _run(_config([moved], out, batch_size=2), gen)
    assert resumed.status == "complete" and resumed.tiles_done == 15 - part.tiles_done
    assert sum(gen.calls) == 15 - part.tiles_done
    inputs = _layer(out, "inputs")
    assert len(inputs) == 7 and all(p.startswith(str(moved)) for p in inputs["path"])
    assert "renamed_0.tif" in set(inputs["rel_path"])
    # Every row now names the new paths: the store reads as if the archive had always been there.
    for layer in ("detections", "tile_detections", "tiles"):
        assert all(s.startswith(str(moved)) for s in _layer(out, layer)["scene"])
    full = tmp_path / "full.gpkg"
    _run(_config([moved], full))
    assert _detection_rows(out) == _detection_rows(full)


def test_same_content_at_two_places_keeps_two_inputs(tmp_path):
    """Identical files (e.g. blank tiles) are told apart by their relative path."""
    folder = tmp_path / "a"
    (folder / "x").mkdir(parents=True)
    (folder / "y").mkdir()
    img = blob_image(64, 64, [(20, 20, 10)], seed=1)
    write_geotiff(folder / "x" / "t.tif", img)
    write_geotiff(folder / "y" / "t.tif", img)
    out = tmp_path / "out.gpkg"
    _, first = _run(_config([folder], out))
    assert first.inputs_done == 2
    shutil.move(folder, tmp_path / "b")
    _, again = _run(_config([tmp_path / "b"], out))
    assert again.inputs_already_done == 2 and again.tiles_done == 0
    assert len(_layer(out, "inputs")) == 2


def test_the_store_inside_an_input_folder_is_not_an_input(tmp_path, scene_folder):
    """``rsvg batch tiles/ -o tiles/out.gpkg``: the store and its log live among the inputs; a rerun
    must not take them for inputs (they would fail as rasters, or worse, be read)."""
    out = scene_folder / "out.gpkg"
    _, first = _run(_config([scene_folder], out))
    _, again = _run(_config([scene_folder], out))
    assert first.inputs_total == again.inputs_total == 7
    assert again.inputs_failed == 0 and again.inputs_already_done == 7


def test_an_output_named_as_an_input_is_refused(tmp_path):
    from rsvg_desktop.core.paths import SameFileError

    scene = write_geotiff(tmp_path / "scene.tif", blob_image(64, 64, [(20, 20, 8)], seed=1))
    before = scene.read_bytes()
    with pytest.raises(SameFileError, match="same file as the input"):
        _run(_config([scene], scene, overwrite=True))
    assert scene.read_bytes() == before
