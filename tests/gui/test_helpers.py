"""The GUI's Qt-free helpers: run planning, progress, cursor text, model folder checks."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from pyproj import Geod, Transformer

from rsvg_desktop.core.geo.grid import iter_grid, plan_tiles
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.progress import RunProgress, format_duration
from rsvg_desktop.core.prompt.parser import format_box
from rsvg_desktop.core.prompt.templates import TASKS, build_query
from rsvg_desktop.engine.detect import tiles_in_scope
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.coords import CursorFormatter, format_latlon
from rsvg_desktop.gui.logic.geometry import AreaCalculator, format_area, polygon_to_pixels
from rsvg_desktop.gui.logic.modelinfo import check_model_folder, describe_loaded, format_bytes
from rsvg_desktop.gui.logic.runplan import (
    QueryRequest,
    build_run_config,
    clip_window,
    lower_precision,
    region_grid_box,
    region_in_tile,
    tile_probe_window,
)
from rsvg_desktop.gui.model_controller import explain_exit


@pytest.mark.parametrize("size", [(1024, 1024), (504, 504), (3000, 1200), (1300, 2000), (1900, 505)])
def test_probe_window_selects_exactly_its_tile(size: tuple[int, int]) -> None:
    tiles = tuple(iter_grid(*size))
    for tile in tiles:
        probe = tile_probe_window(tile, tiles)
        assert tiles_in_scope(tiles, probe) == (tile,), (tile, probe)


def test_probe_window_falls_back_when_a_tile_is_covered_by_its_neighbours() -> None:
    # length 945: offsets 0, 440 (last = 441): tile 1 at 440..944 and tile 2 at 441..945 overlap almost fully
    tiles = tuple(iter_grid(946, 504))
    cols = sorted({t.col_off for t in tiles})
    assert len(cols) == 3
    for tile in tiles:
        probe = tile_probe_window(tile, tiles)
        chosen = tiles_in_scope(tiles, probe)
        assert tile in chosen


def test_clip_window() -> None:
    assert clip_window((10.4, 20.6, 100.2, 50.0), 1024, 1024) == (10, 20, 91, 30)
    assert clip_window((-50, -50, 2000, 10), 1024, 1024) == (0, 0, 1024, 10)
    assert clip_window((100, 100, 10, 10), 1024, 1024) == (10, 10, 90, 90)  # corners in any order
    with pytest.raises(ConfigError):
        clip_window((2000, 2000, 3000, 3000), 1024, 1024)


def test_region_in_tile_and_grid_box() -> None:
    tiles = tuple(iter_grid(1024, 1024))
    region = (800.0, 800.0, 850.0, 900.0)  # inside tiles at 440.. and 520..: the most central wins
    tile = region_in_tile(region, tiles)
    assert (tile.col_off, tile.row_off) == (520, 520)
    box = region_grid_box(region, tile)
    assert box.angle == 90
    # turned a quarter about its centre, the written box covers the region: 50 px wide, 100 px tall
    cx, cy = (box.x1 + box.x2) / 2, (box.y1 + box.y2) / 2
    assert cx == pytest.approx((825 - 520) / 504 * 100, abs=0.6)
    assert cy == pytest.approx((850 - 520) / 504 * 100, abs=0.6)
    assert box.x2 - box.x1 == pytest.approx(100 / 504 * 100, abs=1.0)  # written width = region height
    assert box.y2 - box.y1 == pytest.approx(50 / 504 * 100, abs=1.0)
    with pytest.raises(ConfigError):
        region_in_tile((5000, 5000, 5100, 5100), tiles)
    with pytest.raises(ConfigError):
        region_in_tile((10, 10, 10, 50), tiles)


def _build(request: QueryRequest, **kw):
    tiles = tuple(iter_grid(1024, 1024))
    args = dict(
        scene="s.tif", scene_size=(1024, 1024), tiles=tiles, output="o.gpkg", tile_size=504, overlap=64
    )
    args.update(kw)
    return build_run_config(request, **args)


def test_build_run_config_scopes_and_tasks() -> None:
    config = _build(QueryRequest("refer", "airplanes"))
    assert (config.task, config.query, config.scope, config.output) == ("refer", "airplanes", None, "o.gpkg")
    config = _build(QueryRequest("refer", "cars", scope="visible"), visible=(100.5, 0, 300, 200))
    assert config.scope == (100, 0, 200, 200)
    config = _build(QueryRequest("vqa", "any water?", scope="rectangle"), rectangle=(0, 0, 10, 10))
    assert config.scope == (0, 0, 10, 10)
    with pytest.raises(ConfigError, match="draw a rectangle"):
        _build(QueryRequest("vqa", "any water?", scope="rectangle"))
    with pytest.raises(ConfigError, match="type a query"):
        _build(QueryRequest("refer", ""))
    config = _build(QueryRequest("grounding", ""))  # the task's default question is used
    assert build_query(config.task, config.query).startswith("[grounding]")
    config = _build(QueryRequest("classify", "", classes=("forest", " farm ")))
    assert config.classes == ("forest", "farm")
    assert "Classes: forest, farm." in build_query("classify", config.query, classes=config.classes)
    config = _build(QueryRequest("identify", "ignored", region=(600, 600, 650, 700)))
    assert config.region is not None and config.query == ""
    assert "[identify]" in build_query("identify", region=config.region)
    assert format_box(config.region).endswith("|<90>}")
    with pytest.raises(ConfigError, match="region"):
        _build(QueryRequest("identify"))


def test_follow_up_config_targets_one_tile_with_history() -> None:
    tiles = tuple(iter_grid(1024, 1024))
    tile = tiles[4]
    history = (("[refer] Give me the location of <p> cars </p>", "{<1><2><3><4>|<90>}"),)
    config = _build(QueryRequest("chat", "what colour are they?"), follow_up_tile=tile, history=history)
    assert config.history == history
    assert tiles_in_scope(tiles, config.scope) == (tile,)


def test_lower_precision_chain() -> None:
    assert lower_precision("bf16") == "int8"
    assert lower_precision("fp32") == "bf16"
    assert lower_precision("int8") == "nf4"
    assert lower_precision("nf4") is None


def test_every_task_is_offered() -> None:
    assert list(TASKS) == ["grounding", "refer", "identify", "classify", "vqa", "chat"]


def test_progress_rate_and_time_left() -> None:
    now = [100.0]
    p = RunProgress(clock=lambda: now[0])
    p.start(10)
    assert p.rate is None and "0 / 10 tiles" in p.text()
    now[0] = 104.0
    p.update(4)  # a batch of four tiles finishes together
    assert p.rate == pytest.approx(1.0)
    assert p.remaining == pytest.approx(6.0)
    assert p.text() == "4 / 10 tiles · 1.00 tiles/s · 0:06 left"
    assert format_duration(3725) == "1:02:05"


def test_cursor_formatter_on_the_sample_scene(sample_scene: Path) -> None:
    with open_scene(sample_scene) as scene:
        info = scene.info
    fmt = CursorFormatter(info)
    mx, my = fmt.map_xy(0, 0)
    assert (mx, my) == pytest.approx((info.transform[2], info.transform[5]))
    lon, lat = fmt.lonlat(0, 0)
    assert lon == pytest.approx(mx / 6378137.0 * 180 / math.pi, rel=1e-9)  # Web Mercator inverse
    assert -85 < lat < 85
    text = fmt.format(512.7, 10.2)
    assert text.startswith("px 512, 10")
    assert "EPSG:3857" in text and " m" in text and "° N" in text and "° E" in text
    assert format_latlon(-1.5, -2.25) == "1.50000° S, 2.25000° W"


def test_cursor_formatter_pixel_mode(data_dir: Path) -> None:
    path = data_dir / "float_nan.tif"
    with open_scene(path, pixel_mode=True) as scene:
        info = scene.info
    assert info.crs_wkt is None, "the test data's float_nan.tif should have no CRS"
    assert "no CRS" in CursorFormatter(info).format(1, 1)


def test_areas_and_pixels(sample_scene: Path) -> None:
    import shapely

    with open_scene(sample_scene) as scene:
        info = scene.info
    a, _b, c, _d, e, f = info.transform
    square = shapely.box(c, f + 20 * e, c + 10 * a, f)  # 10 × 20 px in the top-left corner
    px = polygon_to_pixels(square, info.transform)
    assert px[:, 0].min() == pytest.approx(0) and px[:, 0].max() == pytest.approx(10)
    assert px[:, 1].min() == pytest.approx(0) and px[:, 1].max() == pytest.approx(20)
    calc = AreaCalculator(info.crs_wkt)
    assert calc.unit == "m²"
    # On the ground, as pyproj measures it (the Web Mercator square is 1.6× that at 37.7° N)
    lon, lat = Transformer.from_crs(info.crs_wkt, "EPSG:4326", always_xy=True).transform(
        *np.asarray(square.exterior.coords).T
    )
    ground = abs(Geod(ellps="WGS84").polygon_area_perimeter(lon, lat)[0])
    assert calc.area(square) == pytest.approx(ground, rel=1e-9)
    assert calc.area(square) < 0.7 * 200 * a * a
    assert calc.areas([square, None, square]) == pytest.approx([ground, 0.0, ground], rel=1e-9)
    assert AreaCalculator(None).unit == "px²"
    assert format_area(2.5e6, "m²") == "2.5 km²"
    geo = AreaCalculator(
        shapely.Point(0, 0).wkt
        and 'GEOGCS["WGS 84",DATUM["WGS_1984",SPHEROID["WGS 84",'
        '6378137,298.257223563]],PRIMEM["Greenwich",0],UNIT["degree",0.0174532925199433]]'
    )
    assert geo.area(shapely.box(0, 0, 0.001, 0.001)) == pytest.approx(111_320**2 * 1e-6, rel=0.01)


def test_model_folder_checks(tmp_path: Path) -> None:
    assert not check_model_folder("").ok
    assert not check_model_folder(tmp_path / "missing").ok
    assert "config.json" in check_model_folder(tmp_path).message
    geochat = tmp_path / "geochat"
    geochat.mkdir()
    (geochat / "config.json").write_text(json.dumps({"model_type": "geochat"}))
    check = check_model_folder(geochat)
    assert not check.ok and check.needs_conversion and "convert" in check.message
    converted = tmp_path / "converted"
    converted.mkdir()
    (converted / "config.json").write_text(json.dumps({"model_type": "llava", "rsvg_random_weights": True}))
    check = check_model_folder(converted)
    assert check.ok and check.random_weights and "RANDOM WEIGHTS" in check.message
    other = tmp_path / "other"
    other.mkdir()
    (other / "config.json").write_text(json.dumps({"model_type": "bert"}))
    assert not check_model_folder(other).ok


def test_describe_loaded_and_exit_codes() -> None:
    from rsvg_desktop.engine.events import ModelInfo

    info = ModelInfo(
        model_dir="m",
        precision="nf4",
        device="cuda:0",
        device_name="NVIDIA H100",
        dtype="bfloat16",
        param_bytes=4 * 2**30,
        load_seconds=12.0,
        from_cache=True,
        random_weights=False,
        description="",
        notes=("cached",),
    )
    summary = describe_loaded(info)
    assert summary.headline == "NF4 on NVIDIA H100"
    assert "weights 4.0 GiB" in summary.details and "cached" in summary.details
    rnd = describe_loaded(
        ModelInfo(
            model_dir="m",
            precision="fp32",
            device="cpu",
            device_name="CPU",
            dtype="float32",
            param_bytes=1000,
            load_seconds=0.1,
            from_cache=False,
            random_weights=True,
            description="",
        )
    )
    assert rnd.random_weights and "RANDOM WEIGHTS" in rnd.headline and rnd.device_name == "CPU"
    assert format_bytes(1536) == "1.5 KiB"
    assert "SIGKILL" in explain_exit(-9) and "memory" in explain_exit(-9)
    assert explain_exit(3) == "exit code 3"
    assert explain_exit(None) == "exit code unknown"


def test_sample_plan_has_nine_tiles(sample_scene: Path) -> None:
    with open_scene(sample_scene) as scene:
        plan = plan_tiles(scene)
    assert (plan.n_rows, plan.n_cols, plan.n_kept, plan.n_skipped) == (3, 3, 9, 0)


# --- issue 21 §5: run size, map rules, messages --------------------------------------------------------
def test_large_run_question_and_tiles_in_scope() -> None:
    from rsvg_desktop.core.types import Tile
    from rsvg_desktop.gui.logic.runsize import LARGE_RUN_TILES, count_in_scope, large_run_question

    tiles = [Tile(r, c, c * 10, r * 10, 20, 20) for r in range(5) for c in range(5)]
    assert count_in_scope(tiles, None) == 25
    assert count_in_scope(tiles, (0, 0, 10, 10)) == 1
    assert count_in_scope(tiles, (5, 5, 10, 10)) == 4
    assert large_run_question(LARGE_RUN_TILES, 504, 64) is None
    question = large_run_question(44_100, 64, 60)
    assert question is not None and "44,100 tiles" in question and "overlap" in question
    assert "scope" in (large_run_question(5000, 504, 64) or "")


def test_result_view_rect_label_fits_and_outside_scene() -> None:
    import numpy as np

    from rsvg_desktop.gui.logic.viewrules import label_fits, outside_scene, result_view_rect

    x0, y0, x1, y1 = result_view_rect((100, 100, 110, 104))
    assert (x1 - x0, y1 - y0) == (256, 256) and ((x0 + x1) / 2, (y0 + y1) / 2) == (105, 102)
    x0, y0, x1, y1 = result_view_rect((0, 0, 400, 200))
    assert (x1 - x0, y1 - y0) == (800, 600)  # big boxes: half their size of margin on each side
    assert not label_fits(10, 40) and label_fits(30, 30)
    inside = np.array([[-5.0, -5.0], [5.0, 5.0]])
    far = np.array([[500.0, 500.0], [600.0, 650.0]])
    assert outside_scene([far], 100, 100) and not outside_scene([far, inside], 100, 100)
    assert outside_scene([], 100, 100)


def test_app_message_names_no_command() -> None:
    from rsvg_desktop.gui.logic.messages import app_message

    text = app_message(
        "/m: no q4cal calibration (absent); make one with `rsvg model calibrate /m [SCENE_OR_FOLDER...]` "
        "(or Model panel → Calibrate…), or choose nf4"
    )
    assert (
        text
        == "/m: no q4cal calibration (absent); make one with Model panel ▸ Calibrate q4cal…, or choose nf4"
    )
    assert app_message("geochat-7b: not downloaded yet (rsvg model download geochat-7b)") == (
        "geochat-7b: not downloaded yet (Model panel ▸ Get a model…)"
    )
    network = app_message("download failed: <urlopen error [Errno -2] Name or service not known>")
    assert "Errno" not in network and "network" in network
    assert (
        app_message("[Errno 2] No such file or directory: '/x.tif'") == "No such file or directory: '/x.tif'"
    )
    assert app_message("lower --max-new-tokens") == "lower max new tokens"
