"""The Qt-free logic behind issue 21 §5: deletions kept with their run, a query per task, and a region
larger than a tile fitted into one model input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rsvg_desktop.core.geo.grid import iter_grid
from rsvg_desktop.engine.detect import tiles_in_scope
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.deletions import deletions_path, read_deletions, write_deletions
from rsvg_desktop.gui.logic.runplan import (
    QueryRequest,
    build_run_config,
    fit_region,
    input_note,
    region_grid_box,
)
from rsvg_desktop.gui.logic.task_queries import TaskQueries


# --- deletions ---------------------------------------------------------------------------------------
def test_deletions_live_beside_the_answer_log(tmp_path: Path) -> None:
    log = tmp_path / "20260101-120000-refer.answers.jsonl"
    assert deletions_path(log) == tmp_path / "20260101-120000-refer.deleted.json"
    assert deletions_path(tmp_path / "plain.jsonl") == tmp_path / "plain.deleted.json"
    assert read_deletions(log, "run-a") == frozenset()

    write_deletions(log, "run-a", [(0, 1, 2), (0, 0, 1), (0, 1, 2)])
    data = json.loads(deletions_path(log).read_text())
    assert data["run_id"] == "run-a" and data["deleted"] == [[0, 0, 1], [0, 1, 2]]
    assert read_deletions(log, "run-a") == {(0, 0, 1), (0, 1, 2)}
    assert read_deletions(log, None) == {(0, 0, 1), (0, 1, 2)}
    # the file of another run (a log overwritten by a new run of the same name) is not applied
    assert read_deletions(log, "run-b") == frozenset()
    # nothing deleted any more: no file
    write_deletions(log, "run-a", [])
    assert not deletions_path(log).exists()


def test_an_unreadable_deletions_file_does_not_stop_the_run(tmp_path: Path) -> None:
    log = tmp_path / "r.answers.jsonl"
    deletions_path(log).write_text("{not json")
    assert read_deletions(log, "x") == frozenset()
    deletions_path(log).write_text('{"run_id": "x", "deleted": [[1, 2]]}')
    assert read_deletions(log, "x") == frozenset()


# --- the query of each task --------------------------------------------------------------------------
def test_each_task_keeps_its_own_query() -> None:
    queries = TaskQueries()
    assert queries.switch("refer", "") == ""
    assert queries.switch("grounding", "cars") == ""  # not "[grounding]cars": the task's default shows
    assert queries.switch("classify", "") == ""  # nor "cars Classes: …"
    assert queries.switch("refer", "") == "cars"
    assert queries.switch("vqa", "cars") == ""
    assert queries.switch("refer", "Is there a harbour?") == "cars"
    assert queries.text("vqa") == "Is there a harbour?" and queries.task == "refer"


# --- a region larger than a tile -------------------------------------------------------------------
def _tiles(size: tuple[int, int] = (4000, 4000)):
    return tuple(iter_grid(*size))


def test_a_region_inside_a_tile_stays_on_the_grid() -> None:
    tiles = _tiles()
    tile = fit_region((800.0, 800.0, 850.0, 900.0), tiles, scene_size=(4000, 4000), tile_size=504)
    assert tile in tiles and (tile.col_off, tile.row_off) == (440, 440)
    config = build_run_config(
        QueryRequest("identify", region=(800.0, 800.0, 850.0, 900.0)),
        scene="s.tif",
        scene_size=(4000, 4000),
        tiles=tiles,
        output="o.gpkg",
        tile_size=504,
        overlap=64,
    )
    assert config.tile is None and tiles_in_scope(tiles, config.scope) == (tile,)
    assert input_note(config) == ""


def test_a_region_larger_than_a_tile_is_fitted_into_one_input() -> None:
    tiles = _tiles()
    region = (1000.0, 1200.0, 2688.0, 2815.0)  # 1,688 × 1,615 px: no tile holds it
    tile = fit_region(region, tiles, scene_size=(4000, 4000), tile_size=504)
    assert tile not in tiles
    assert tile.size == 504 and tile.width == tile.height >= 1688
    # the whole region is inside the window, about its centre
    assert tile.col_off <= 1000 and tile.col_off + tile.width >= 2688
    assert tile.row_off <= 1200 and tile.row_off + tile.height >= 2815
    box = region_grid_box(region, tile)  # on the window's grid: not clamped to a tile
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    assert cx == pytest.approx((1844 - tile.col_off) / tile.width * 100, abs=0.6)
    assert cy == pytest.approx((2007.5 - tile.row_off) / tile.height * 100, abs=0.6)
    assert box.x2 - box.x1 == pytest.approx(1615 / tile.width * 100, abs=1.0)  # written width = height
    assert box.y2 - box.y1 == pytest.approx(1688 / tile.height * 100, abs=1.0)

    config = build_run_config(
        QueryRequest("identify", region=region),
        scene="s.tif",
        scene_size=(4000, 4000),
        tiles=tiles,
        output="o.gpkg",
        tile_size=504,
        overlap=64,
    )
    assert config.tile == tile and config.scope is None and config.region == box
    assert "one 504 px image" in input_note(config) and "scaled down 3.7×" in input_note(config)
    # a follow-up on that answer asks about the same window
    follow = build_run_config(
        QueryRequest("chat", "what is it?"),
        scene="s.tif",
        scene_size=(4000, 4000),
        tiles=tiles,
        output="o.gpkg",
        tile_size=504,
        overlap=64,
        follow_up_tile=tile,
        history=(("q", "a"),),
    )
    assert follow.tile == tile and follow.scope is None


def test_a_region_across_a_seam_gets_a_tile_sized_window() -> None:
    tiles = _tiles()
    region = (300.0, 100.0, 700.0, 200.0)  # 400 px wide across the seams at 440 and 504: no tile holds it
    tile = fit_region(region, tiles, scene_size=(4000, 4000), tile_size=504)
    assert tile not in tiles and tile.width == 504 == tile.size  # full resolution
    assert tile.col_off <= 300 and tile.col_off + 504 >= 700 and tile.row_off == 0  # kept in the scene


def test_a_window_larger_than_the_scene_is_centred_on_the_region() -> None:
    tiles = _tiles((1024, 1024))
    tile = fit_region((10.0, 10.0, 1014.0, 1000.0), tiles, scene_size=(1024, 1024), tile_size=504)
    assert tile.width > 1024 and tile.col_off < 0 and tile.row_off < 0  # padded outside the scene
    with pytest.raises(ConfigError):
        fit_region((5000.0, 5000.0, 6000.0, 6000.0), tiles, scene_size=(1024, 1024), tile_size=504)
