"""The two-date comparison job end to end on real pixels: a before scene and an after scene reprojected
into another CRS and displaced by a known sub-pixel amount, with objects at known places; answers from
a stand-in detector (:class:`change_scenes.SquareFinder`), so counts are checked exactly."""

from __future__ import annotations

from dataclasses import replace

import pyogrio
import pytest
import rasterio
import shapely
from change_scenes import A1, D1, P1, P2, P3_STRONG, U1, Square, SquareFinder, make_pair

from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.engine.change import (
    ChangeConfig,
    ChangeFinished,
    ChangeStarted,
    ChangeWarning,
    DateStarted,
    VerifyStarted,
    date_answer_log,
    run_change,
    verify_log_path,
)
from rsvg_desktop.engine.events import RunStarted, TileDone
from rsvg_desktop.errors import ChangeInputError, ConfigError, OutputExistsError

LAYERS = {"appeared", "disappeared", "persisting", "unknown_area", "before", "after", "run"}


@pytest.fixture(scope="module")
def pair(data_dir, tmp_path_factory):
    return make_pair(data_dir, tmp_path_factory.mktemp("pair"))


def _config(pair, out, **kw) -> ChangeConfig:
    before, after = pair
    kw.setdefault("batch_size", 2)
    return ChangeConfig(before=str(before), after=str(after), query="car", output=str(out), **kw)


def _run(config, finder=None, **kw):
    finder = finder or SquareFinder()
    events = list(run_change(config, finder, model="scripted", precision="fp32", **kw))
    return events, finder


def _centre_px(square: Square) -> tuple[float, float]:
    return square.x + square.size / 2, square.y + square.size / 2


def _to_map(before_path, xy):
    with rasterio.open(before_path) as ds:
        return ds.transform @ xy


def test_appeared_disappeared_persisting_with_verification(pair, tmp_path):
    """Exact counts: P1, P2 persist; P3 is missed on the before date (faint, small) and recovered by
    verification; D1 disappeared, A1 appeared; U1 lies where the after scene has no pixels: no change."""
    out = tmp_path / "change.gpkg"
    events, _finder = _run(_config(pair, out))
    started = events[0]
    assert isinstance(started, ChangeStarted) and started.grid == "before"
    assert 0.5 < started.compared_fraction < 0.85  # the after scene covers columns 0-650 of 800
    dates = [e.date for e in events if isinstance(e, DateStarted)]
    assert dates == ["before", "after"]
    finished = events[-1]
    assert isinstance(finished, ChangeFinished) and finished.summary is not None
    s = finished.summary
    assert (s.appeared, s.disappeared, s.persisting) == (1, 1, 3)
    assert (s.verified, s.verification_removed) == (1, 1)
    assert (s.before, s.after) == (4, 4)  # P3 missed on before; U1 stays in the before layer
    assert finished.outside_compared == 1  # U1
    assert not any(isinstance(e, ChangeWarning) for e in events)  # 0.5 px of shift: under the limit

    assert set(pyogrio.list_layers(out)[:, 0]) >= LAYERS
    before_path = pair[0]
    for layer, square in (("appeared", A1), ("disappeared", D1)):
        (geom,) = pyogrio.read_dataframe(out, layer=layer).geometry
        assert geom.contains(shapely.Point(_to_map(before_path, _centre_px(square))))
    persisting = pyogrio.read_dataframe(out, layer="persisting").geometry
    for square in (P1, P2, P3_STRONG):
        point = shapely.Point(_to_map(before_path, _centre_px(square)))
        assert sum(g.contains(point) for g in persisting) == 1
    unknown = shapely.union_all(pyogrio.read_dataframe(out, layer="unknown_area").geometry)
    assert unknown.contains(shapely.Point(_to_map(before_path, _centre_px(U1))))
    for layer in ("appeared", "disappeared", "persisting"):
        for geom in pyogrio.read_dataframe(out, layer=layer).geometry:
            assert not unknown.contains(geom.centroid)

    (run,) = pyogrio.read_dataframe(out, layer="run").to_dict("records")
    assert (run["grid"], run["model"], run["precision"], run["match_iou"]) == (
        "before",
        "scripted",
        "fp32",
        0.3,
    )
    assert (run["before"], run["after"]) == tuple(map(str, pair))
    assert abs(run["shift_dx"] - 0.4) < 0.15 and abs(run["shift_dy"] - 0.3) < 0.15  # the known shift
    assert (run["verification_removed"], run["outside_compared"]) == (1, 1)

    verify_records = list(read_answer_log(verify_log_path(out)))
    assert len(verify_records) == 3  # one per unmatched object: P3 (after), A1 (after), D1 (before)
    assert {r.extra["verifies"].split(":")[0] for r in verify_records} == {"before", "after"}
    assert date_answer_log(out, "before").is_file() and date_answer_log(out, "after").is_file()
    assert not (tmp_path / "change.before.gpkg").exists()  # the dates write their answer logs only


def test_no_verify_reports_the_raw_candidates(pair, tmp_path):
    events, finder = _run(_config(pair, tmp_path / "raw.gpkg", verify=False))
    s = events[-1].summary
    assert (s.appeared, s.disappeared, s.persisting, s.verified) == (2, 1, 2, 0)
    assert not any(isinstance(e, VerifyStarted) for e in events)
    tiles = sum(1 for e in events if isinstance(e, TileDone))
    assert len(finder.requests) == tiles  # no question besides the tiles'
    assert not verify_log_path(tmp_path / "raw.gpkg").exists()


def test_shift_is_measured_and_a_large_one_warned(data_dir, tmp_path):
    events, _ = _run(_config(make_pair(data_dir, tmp_path, shift=(3.0, 0.0)), tmp_path / "s.gpkg"))
    started = events[0]
    assert abs(started.shift_dx - 3.0) < 0.5 and abs(started.shift_dy) < 0.5
    warnings = [e for e in events if isinstance(e, ChangeWarning)]
    assert len(warnings) == 1 and "px apart" in warnings[0].message


def test_interrupted_run_resumes_asking_only_the_missing_tiles(pair, tmp_path):
    """Cancelled after two batches of the before date: the rerun reuses those answers and asks only the
    tiles left (and the verification); the result is the uninterrupted one."""
    out = tmp_path / "resumed.gpkg"
    config = _config(pair, out, batch_size=1)
    first = SquareFinder()
    events, _ = _run(config, first, cancel=lambda: len(first.requests) >= 2)
    assert isinstance(events[-1], ChangeFinished) and events[-1].cancelled and events[-1].summary is None
    assert not out.exists()
    assert len(list(read_answer_log(date_answer_log(out, "before")))) == 2

    events, second = _run(config)
    reused = [e.reused for e in events if isinstance(e, RunStarted)]
    assert reused == [2, 0]
    _, fresh = _run(_config(pair, tmp_path / "fresh.gpkg", batch_size=1))
    assert len(second.requests) + 2 == len(fresh.requests)
    assert (events[-1].summary.appeared, events[-1].summary.persisting) == (1, 3)


def test_rerun_of_a_finished_comparison_is_refused_and_overwrite_starts_over(pair, tmp_path):
    out = tmp_path / "again.gpkg"
    _run(_config(pair, out))
    with pytest.raises(OutputExistsError):
        _run(_config(pair, out))
    events, _finder = _run(_config(pair, out, overwrite=True))
    assert [e.reused for e in events if isinstance(e, RunStarted)] == [0, 0]
    assert events[-1].summary.persisting == 3
    assert len(list(read_answer_log(verify_log_path(out)))) == 3  # the old questions are gone


def test_grid_after_reads_the_before_scene_warped(pair, tmp_path):
    events, _ = _run(_config(pair, tmp_path / "a.gpkg", grid="after"))
    assert events[0].grid == "after" and "UTM" in (events[0].crs_wkt or "")
    s = events[-1].summary
    assert (s.appeared, s.disappeared, s.persisting) == (1, 1, 3)


@pytest.mark.parametrize(
    ("change", "error"),
    [
        ({"match_iou": 0.0}, ConfigError),
        ({"match_iou": 1.5}, ConfigError),
        ({"grid": "sideways"}, ConfigError),
        ({"task": "vqa"}, ConfigError),
    ],
)
def test_bad_settings_are_refused_before_anything_is_written(pair, tmp_path, change, error):
    out = tmp_path / "bad.gpkg"
    with pytest.raises(error):
        _run(replace(_config(pair, out), **change))
    assert list(tmp_path.iterdir()) == []


def test_scenes_that_do_not_overlap_are_refused(pair, data_dir, tmp_path):
    config = replace(_config(pair, tmp_path / "x.gpkg"), after=str(data_dir / "RGB.byte.tif"))
    with pytest.raises(ChangeInputError):
        _run(config)
    assert list(tmp_path.iterdir()) == []


def test_interrupted_verification_resumes_from_its_log(pair, tmp_path):
    """Cancelled after the first verification question: the rerun asks no tile again and only the
    verification questions left."""
    out = tmp_path / "v.gpkg"
    config = _config(pair, out, batch_size=1)
    events, fresh = _run(_config(pair, tmp_path / "fresh.gpkg", batch_size=1))
    tiles = sum(1 for e in events if isinstance(e, TileDone))
    questions = len(fresh.requests) - tiles
    first = SquareFinder()
    events, _ = _run(config, first, cancel=lambda: len(first.requests) >= tiles + 1)
    assert events[-1].cancelled and any(isinstance(e, VerifyStarted) for e in events)
    events, second = _run(config)
    assert [e.reused for e in events if isinstance(e, VerifyStarted)] == [1]
    assert len(second.requests) == questions - 1
    assert events[-1].summary.verification_removed == 1


def _without_crs(path, out):
    with rasterio.open(path) as ds:
        data = ds.read()
    with rasterio.open(
        out, "w", driver="GTiff", width=data.shape[2], height=data.shape[1], count=3, dtype="uint8"
    ) as dst:
        dst.write(data)
    return out


@pytest.mark.filterwarnings("ignore::rasterio.errors.NotGeoreferencedWarning")
def test_two_scenes_without_a_crs_compare_in_pixel_mode(data_dir, tmp_path):
    """No CRS on either side, one size: the comparison runs in scene pixels (no warp)."""
    before, after = make_pair(data_dir, tmp_path, shift=(0.0, 0.0), after_crs=None, after_width=800)
    pair = (_without_crs(before, tmp_path / "b.tif"), _without_crs(after, tmp_path / "a.tif"))
    events, _ = _run(_config(pair, tmp_path / "px.gpkg", pixel_mode=True))
    assert events[0].crs_wkt is None
    s = events[-1].summary
    # U1 is inside the after scene now: it is seen on the before date only, so it disappeared
    assert (s.appeared, s.disappeared, s.persisting, s.verified) == (1, 2, 3, 1)
