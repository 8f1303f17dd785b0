"""``rsvg change --logs`` (:func:`change_from_logs`): two answer logs written by the real scene job on a
real raster with scripted answers (known objects at known ground places), compared without a model."""

from __future__ import annotations

from pathlib import Path

import fiona
import numpy as np
import pytest
import rasterio
import shapely
from rasterio.warp import Resampling, calculate_default_transform, reproject
from scripted_scene import Answer, scripted_scene
from shapely.geometry import shape

from rsvg_desktop.core.geo.boxes import reproject_xy
from rsvg_desktop.engine.change.from_logs import change_from_logs
from rsvg_desktop.engine.detect import answer_log_path
from rsvg_desktop.engine.events import RunConfig, RunFinished
from rsvg_desktop.errors import AnswerLogNotFoundError, ChangeInputError, OutputExistsError

#: Objects of cogeo.tif (1024 × 1024 px, EPSG:3857), as pixel boxes of the before scene: A and B are on
#: both dates (B moved 6 px), C only before, E only after, F only before but where the after run did not
#: look (its scope ends at x = 500 px: its tiles, at x 0 and 440 px, end at x = 944 px).
A, B, B_MOVED = (100, 100, 200, 200), (600, 150, 700, 250), (606, 156, 706, 256)
C, E, F = (150, 650, 250, 750), (600, 700, 700, 800), (955, 400, 1015, 500)


@pytest.fixture(scope="module")
def cogeo(data_dir: Path) -> Path:
    return data_dir / "cogeo.tif"


def _ground(scene: Path, boxes: list[tuple[int, int, int, int]]) -> list[shapely.Polygon]:
    """The pixel ``boxes`` of ``scene`` as polygons in its CRS."""
    with rasterio.open(scene) as ds:
        t = ds.transform
    return [shapely.box(*(t @ (x0, y0)), *(t @ (x1, y1))) for x0, y0, x1, y1 in boxes]


def _answer(scene: Path, ground: list[shapely.Polygon], ground_crs: str) -> Answer:
    """Scripted answers on ``scene``: every object of ``ground`` that lies whole in a tile, as an upright
    box in the tile's 0–100 grid (the bounding box of the object in the scene's pixels)."""
    with rasterio.open(scene) as ds:
        inverse, crs = ~ds.transform, ds.crs.to_wkt()
    boxes = []
    for poly in ground:
        xy = reproject_xy(np.asarray(poly.exterior.coords), ground_crs, crs)
        cols, rows = inverse @ (xy[:, 0], xy[:, 1])
        boxes.append((min(cols), min(rows), max(cols), max(rows)))

    def answer(config: RunConfig, tile) -> str:
        parts = []
        for x0, y0, x1, y1 in boxes:
            inside_x = tile.col_off <= x0 and x1 <= tile.col_off + tile.width
            if inside_x and tile.row_off <= y0 and y1 <= tile.row_off + tile.height:
                gx = [round((x - tile.col_off) / tile.width * 100) for x in (x0, x1)]
                gy = [round((y - tile.row_off) / tile.height * 100) for y in (y0, y1)]
                parts.append(f"{{<{gx[0]}><{gy[0]}><{gx[1]}><{gy[1]}>|<0>}}")
        return "".join(parts)

    return answer


def _run(scene: Path, output: Path, answer: Answer, **config) -> Path:
    """The scene job with scripted answers; returns its answer log."""
    run = RunConfig(scene=str(scene), query="buildings", task="refer", output=str(output), **config)
    events = list(scripted_scene(run, answer, model="scripted", precision="fp32"))
    assert isinstance(events[-1], RunFinished)
    return answer_log_path(output)


def _features(path: Path, layer: str) -> list:
    with fiona.open(path, layer=layer) as src:
        return list(src)


def test_counts_from_two_logs_and_no_change_where_one_date_did_not_look(tmp_path, cogeo):
    ground = _ground(cogeo, [A, B, C, F, B_MOVED, E])
    before = _run(cogeo, tmp_path / "before.gpkg", _answer(cogeo, ground[:4], "EPSG:3857"))
    after = _run(
        cogeo,
        tmp_path / "after.gpkg",
        _answer(cogeo, [ground[0], *ground[4:]], "EPSG:3857"),
        scope=(0, 0, 500, 1024),
    )
    out = tmp_path / "change.gpkg"
    summary = change_from_logs(before, after, out)
    assert (summary.before, summary.after) == (4, 3)
    assert (summary.appeared, summary.disappeared, summary.persisting) == (1, 1, 2)
    assert (summary.verified, summary.verification_removed, summary.shift_dx) == (0, 0, None)
    assert summary.as_dict()["outputs"] == [str(out)]
    (appeared,) = _features(out, "appeared")
    (disappeared,) = _features(out, "disappeared")
    assert shape(appeared.geometry).intersection(ground[5]).area > 0.8 * ground[5].area
    assert shape(disappeared.geometry).intersection(ground[2]).area > 0.8 * ground[2].area
    persisting = _features(out, "persisting")
    assert sorted(f.properties["iou"] for f in persisting)[0] > 0.7
    assert {f.properties["seen_on"] for f in persisting} == {"both"}
    (unknown,) = _features(out, "unknown_area")
    assert shape(unknown.geometry).contains(ground[3])  # F: only the before date looked there
    (run,) = _features(out, "run")
    assert run.properties["outside_compared"] == 1 and run.properties["verification_removed"] == 0
    assert run.properties["before_log"] == str(before) and run.properties["n_before"] == 4


def _warped(src_path: Path, dst_path: Path, crs: str) -> Path:
    """``src_path`` reprojected to ``crs`` (a second date on another grid)."""
    with rasterio.open(src_path) as src:
        transform, width, height = calculate_default_transform(
            src.crs, crs, src.width, src.height, *src.bounds
        )
        profile = src.profile | {
            "crs": crs,
            "transform": transform,
            "width": width,
            "height": height,
            "driver": "GTiff",
            "nodata": 0,
        }
        profile.pop("compress", None)
        profile.pop("photometric", None)
        with rasterio.open(dst_path, "w", **profile) as dst:
            for band in range(1, src.count + 1):
                reproject(rasterio.band(src, band), rasterio.band(dst, band), resampling=Resampling.bilinear)
    return dst_path


def test_after_log_in_another_crs_is_reprojected(tmp_path, cogeo):
    warped = _warped(cogeo, tmp_path / "after_utm.tif", "EPSG:32652")
    ground = _ground(cogeo, [A, B, C, B_MOVED, E])
    before = _run(cogeo, tmp_path / "before.gpkg", _answer(cogeo, ground[:3], "EPSG:3857"))
    after = _run(warped, tmp_path / "after.gpkg", _answer(warped, [ground[0], *ground[3:]], "EPSG:3857"))
    out = tmp_path / "change.gpkg"
    summary = change_from_logs(before, after, out)
    assert (summary.appeared, summary.disappeared, summary.persisting) == (1, 1, 2)
    with fiona.open(out, layer="after") as src:
        assert src.crs.to_epsg() == 3857  # the after objects in the before log's CRS
        boxes = [shape(f.geometry) for f in src]
    assert max(b.intersection(ground[0]).area for b in boxes) > 0.8 * ground[0].area


def test_refusals(tmp_path, cogeo, data_dir):
    ground = _ground(cogeo, [A])
    before = _run(cogeo, tmp_path / "before.gpkg", _answer(cogeo, ground, "EPSG:3857"))
    no_crs = data_dir / "geochat_demo_tiles" / "04133.png"
    pixels = _run(
        no_crs, tmp_path / "px.gpkg", lambda config, tile: "{<10><10><20><20>|<0>}", pixel_mode=True
    )
    with pytest.raises(ChangeInputError, match="pixel coordinates") as err:
        change_from_logs(before, pixels, tmp_path / "c.gpkg")
    assert str(before) in str(err.value) and str(pixels) in str(err.value) and "\n" not in str(err.value)
    with pytest.raises(AnswerLogNotFoundError, match="nowhere"):
        change_from_logs(before, tmp_path / "nowhere.answers.jsonl", tmp_path / "c.gpkg")
    empty = tmp_path / "empty.answers.jsonl"
    empty.write_text("")
    with pytest.raises(ChangeInputError, match="holds no records") as err:
        change_from_logs(empty, before, tmp_path / "c.gpkg")
    assert str(empty) in str(err.value) and str(before) in str(err.value)
    (tmp_path / "c.gpkg").write_bytes(b"")
    with pytest.raises(OutputExistsError, match=r"c\.gpkg"):
        change_from_logs(before, before, tmp_path / "c.gpkg")
    summary = change_from_logs(before, before, tmp_path / "c.gpkg", overwrite=True)
    assert (summary.appeared, summary.disappeared, summary.persisting) == (0, 0, 1)


def _first_tile(answer: str) -> Answer:
    """``answer`` on the first tile, nothing elsewhere."""
    return lambda config, tile: answer if (tile.row, tile.col) == (0, 0) else ""


def test_two_pixel_mode_logs(tmp_path, data_dir):
    scene = data_dir / "geochat_demo_tiles" / "04133.png"
    before = _run(scene, tmp_path / "b.gpkg", _first_tile("{<10><10><20><20>|<0>}"), pixel_mode=True)
    after = _run(
        scene, tmp_path / "a.gpkg", _first_tile("{<11><10><21><20>}{<50><50><60><60>}"), pixel_mode=True
    )
    summary = change_from_logs(before, after, tmp_path / "c.gpkg")
    assert (summary.appeared, summary.disappeared, summary.persisting) == (1, 0, 1)
    (run,) = _features(tmp_path / "c.gpkg", "run")
    assert run.properties["crs"].startswith("pixel")
