"""The tile grid: full coverage, inward-shifted last row/column, padding, stable ids, nodata skipping,
resampling to a target GSD, placement through the full affine, and the lazy tile reader."""

from __future__ import annotations

import itertools
import logging
import math
import pickle
import types

import numpy as np
import pytest
import rasterio
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st
from rasterio.enums import Resampling

from rsvg_desktop.core.geo.grid import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    axis_offsets,
    iter_grid,
    iter_tile_images,
    plan_tiles,
    tile_corners,
    tile_footprint_pixels,
)
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.geo.stretch import FILL_RGB
from rsvg_desktop.core.geo.transform import map_to_pixel
from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import ConfigError, EmptySceneError, RasterReadError


def in_window(array: np.ndarray, t: Tile) -> np.ndarray:
    return array[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width]


# --- pure grid arithmetic -----------------------------------------------------------------------------
def test_defaults():
    assert (DEFAULT_TILE_SIZE, DEFAULT_OVERLAP) == (504, 64)


@pytest.mark.parametrize(
    ("length", "window", "stride", "expected"),
    [
        (1024, 504, 440, (0, 440, 520)),  # last shifted inward to end at 1024
        (944, 504, 440, (0, 440)),  # exact fit: no extra tile
        (504, 504, 440, (0,)),
        (100, 504, 440, (0,)),  # smaller than a tile: one padded tile
        (10, 4, 4, (0, 4, 6)),
        (1, 1, 1, (0,)),
    ],
)
def test_axis_offsets(length, window, stride, expected):
    assert axis_offsets(length, window, stride) == expected


@settings(max_examples=300, deadline=None)
@given(length=st.integers(1, 20_000), window=st.integers(1, 700), data=st.data())
def test_axis_offsets_cover_every_pixel(length, window, data):
    overlap = data.draw(st.integers(0, window - 1))
    stride = window - overlap
    offs = axis_offsets(length, window, stride)
    assert offs[0] == 0
    assert all(b > a for a, b in itertools.pairwise(offs))  # strictly increasing
    assert all(b - a <= stride for a, b in itertools.pairwise(offs))  # no gap, overlap kept
    if length <= window:
        assert offs == (0,)  # padded single tile
    else:
        assert offs[-1] + window == length  # last shifted inward
        assert all(o + window <= length for o in offs)  # none past the edge
        assert len(offs) == math.ceil((length - window) / stride) + 1


@settings(max_examples=50, deadline=None)
@given(width=st.integers(1, 300), height=st.integers(1, 300), tile=st.integers(6, 120), data=st.data())
def test_grid_covers_every_pixel_once_or_more(width, height, tile, data):
    overlap = data.draw(st.integers(0, tile - 1))
    tiles = list(iter_grid(width, height, tile_size=tile, overlap=overlap))
    count = np.zeros((height, width), dtype=np.int32)
    for t in tiles:
        count[t.row_off : t.row_off + t.height, t.col_off : t.col_off + t.width] += 1
        assert (t.width, t.height, t.size) == (tile, tile, tile)
        assert t.col_off >= 0 and t.row_off >= 0
        if width >= tile:
            assert t.col_off + t.width <= width
        if height >= tile:
            assert t.row_off + t.height <= height
    assert (count >= 1).all()
    ids = [(t.row, t.col) for t in tiles]
    n_rows, n_cols = ids[-1][0] + 1, ids[-1][1] + 1
    assert ids == [(r, c) for r in range(n_rows) for c in range(n_cols)]  # row-major, dense


def test_small_scene_is_padded():
    (tile,) = iter_grid(100, 50)
    assert tile.window == (0, 0, 504, 504) and tile.size == 504
    tiles = list(iter_grid(100, 2000, tile_size=504, overlap=64))
    assert {t.window[0] for t in tiles} == {0} and all(t.width == 504 for t in tiles)
    assert tiles[-1].row_off + 504 == 2000


def test_ids_are_stable_and_the_grid_is_a_generator():
    grid = iter_grid(2000, 1500)
    assert isinstance(grid, types.GeneratorType)
    first = list(grid)
    again = list(iter_grid(2000, 1500))
    assert first == again
    assert len({t.id for t in first}) == len(first)
    assert first[-1].id == "r3c4" and first[-1].window == (1496, 996, 504, 504)


@pytest.mark.parametrize(("tile_size", "overlap"), [(0, 0), (504, 504), (504, -1), (128, 200), (128.0, 0)])
def test_bad_grid_parameters(tile_size, overlap):
    with pytest.raises(ConfigError):
        list(iter_grid(1000, 1000, tile_size=tile_size, overlap=overlap))


# --- planning on real rasters -------------------------------------------------------------------------
def test_rgb_byte_nodata_border_tiles_are_skipped(data_dir):
    path = data_dir / "RGB.byte.tif"
    with open_scene(path) as scene:
        plan = plan_tiles(scene, tile_size=128, overlap=16)
    with rasterio.open(path) as ds:
        valid = ds.dataset_mask() > 0
    assert (plan.n_rows, plan.n_cols, plan.n_tiles) == (7, 7, 49)
    assert (plan.n_kept, plan.n_skipped) == (46, 3)
    assert set(plan.kept) | set(plan.skipped) == set(plan.tiles)
    assert not set(plan.kept) & set(plan.skipped)
    # skipped = exactly the tiles without a single valid pixel (checked at full resolution here)
    empty = {t for t in plan.tiles if not in_window(valid, t).any()}
    assert set(plan.skipped) == empty
    assert [t.id for t in plan.skipped] == ["r0c0", "r5c6", "r6c6"]
    # kept + skipped cover every pixel; kept alone cover every valid pixel
    every, kept_cover = np.zeros(valid.shape, bool), np.zeros(valid.shape, bool)
    for t in plan.tiles:
        in_window(every, t)[...] = True
    for t in plan.kept:
        in_window(kept_cover, t)[...] = True
    assert every.all() and kept_cover[valid].all()
    fractions = dict(zip(plan.tiles, plan.nodata_fractions, strict=True))
    assert all(fractions[t] == 1.0 for t in plan.skipped) and all(fractions[t] < 1.0 for t in plan.kept)
    assert pickle.loads(pickle.dumps(plan)) == plan


@pytest.mark.parametrize(("tile_size", "overlap"), [(64, 0), (100, 0), (128, 32), (300, 10)])
def test_only_tiles_without_valid_pixels_are_skipped(data_dir, tile_size, overlap):
    path = data_dir / "RGB.byte.tif"
    with open_scene(path) as scene:
        plan = plan_tiles(scene, tile_size=tile_size, overlap=overlap)
    with rasterio.open(path) as ds:
        valid = ds.dataset_mask() > 0
    empty = {t for t in plan.tiles if not in_window(valid, t).any()}
    assert set(plan.skipped) == empty


def test_nodata_fraction_threshold(data_dir):
    with open_scene(data_dir / "RGB.byte.tif") as scene:
        default = plan_tiles(scene, tile_size=128, overlap=16)
        half = plan_tiles(scene, tile_size=128, overlap=16, max_nodata_fraction=0.5)
        every = plan_tiles(scene, tile_size=128, overlap=16, max_nodata_fraction=None)
        for bad in (0.0, -0.1, 1.5):
            with pytest.raises(ConfigError):
                plan_tiles(scene, tile_size=128, max_nodata_fraction=bad)
    assert every.n_kept == every.n_tiles == 49
    assert half.n_kept < default.n_kept
    assert set(half.kept) <= set(default.kept)
    assert all(f < 0.5 for t, f in zip(half.tiles, half.nodata_fractions, strict=True) if t in half.kept)


def test_all_nodata_scene_plans_zero_tiles(data_dir):
    path = data_dir / "all-nodata.tif"
    with open_scene(path) as scene:
        with pytest.raises(EmptySceneError, match="no valid pixels") as info:
            plan_tiles(scene, tile_size=128, overlap=0)
        plan = plan_tiles(scene, tile_size=128, overlap=0, allow_empty=True)
    assert "all-nodata.tif" in str(info.value) and "20 tiles" in str(info.value)
    assert plan.n_kept == 0 and plan.n_skipped == plan.n_tiles == 20


def test_mask_band_scene_keeps_every_tile(data_dir):
    with open_scene(data_dir / "cogeo.tif") as scene:
        plan = plan_tiles(scene)
    assert plan.n_tiles == 9 and plan.n_kept == 9
    assert [t.col_off for t in plan.tiles[:3]] == [0, 440, 520]


def test_alpha_masked_tiles(data_dir):
    path = data_dir / "RGBA.uint16.tif"
    with open_scene(path) as scene:
        plan = plan_tiles(scene, tile_size=64, overlap=0)
    with rasterio.open(path) as ds:
        valid = ds.read(4) > 0
    empty = {t for t in plan.tiles if not in_window(valid, t).any()}
    assert empty and set(plan.skipped) == empty


# --- resampling to a target ground sample distance -----------------------------------------------------
def test_target_gsd_widens_the_window(data_dir):
    path = data_dir / "manila_drone.tif"
    with open_scene(path) as scene:
        plan = plan_tiles(scene, target_gsd=0.38)
        _tile, image, valid = next(iter_tile_images(scene, plan.kept))
    # The target is on the ground: the file's pixel is 0.1001 × 0.09998 World Mercator (EPSG:3395) metres
    # but 0.09689 × 0.09677 m on the ground at 14.6° N (tests/core/geo/test_ground.py checks against pyproj)
    gx, gy = 0.09688779932581205, 0.0967696429556065
    expected = (round(504 * 0.38 / gx), round(504 * 0.38 / gy))
    assert plan.window_size == expected == (1977, 1979)
    assert all((t.width, t.height, t.size) == (*expected, 504) for t in plan.tiles)
    assert plan.n_tiles == 4 and plan.tiles[-1].col_off + plan.tiles[-1].width == 2048
    assert image.shape == (504, 504, 3) and valid.all()


def test_finer_target_gsd_is_allowed_with_a_warning(data_dir, caplog):
    with open_scene(data_dir / "manila_drone.tif") as scene, caplog.at_level(logging.WARNING):
        plan = plan_tiles(scene, target_gsd=0.05)
    assert plan.window_size == (260, 260)  # 504 × 0.05 m over the ground pixel size (≈ 0.0968 m)
    assert any("upsampled" in r.getMessage() for r in caplog.records)
    with open_scene(data_dir / "manila_drone.tif") as scene, pytest.raises(ConfigError):
        plan_tiles(scene, target_gsd=0)


# --- placement through the full affine (rotated.tif, pixel mode) ------------------------------------------
def test_rotated_tiles_are_placed_through_the_full_affine(data_dir):
    with open_scene(data_dir / "rotated.tif", pixel_mode=True) as scene:
        plan = plan_tiles(scene, tile_size=4, overlap=1)
        transform = scene.info.transform
        images = {t: image for t, image, _ in iter_tile_images(scene, plan.kept)}
    # rotated.tif: 30° rotation, 20 map units per column step and 10 per row step, origin (100, 200)
    cos30, sin30 = math.cos(math.radians(30)), math.sin(math.radians(30))
    assert transform == pytest.approx((20 * cos30, 10 * sin30, 100.0, 20 * sin30, -10 * cos30, 200.0))
    for t in plan.tiles:
        corners = tile_corners(transform, t)
        pixels = tile_footprint_pixels(t)
        for (x, y), (mx, my) in zip(pixels, corners, strict=True):
            assert mx == pytest.approx(100.0 + 20 * cos30 * x + 10 * sin30 * y)
            assert my == pytest.approx(200.0 + 20 * sin30 * x - 10 * cos30 * y)
    last = plan.tiles[-1]
    assert last.window == (6, 11, 4, 4)
    x0, y0 = tile_corners(transform, last)[0]
    north_up = (100.0 + 20 * cos30 * 6, 200.0 - 10 * cos30 * 11)  # what a north-up shortcut would give
    assert abs(x0 - north_up[0]) > 10 and abs(y0 - north_up[1]) > 10
    # and back: the map position of a pixel centre finds that pixel, whose value is row * 10 + col
    cx, cy = 100.0 + 20 * cos30 * 7.5 + 10 * sin30 * 12.5, 200.0 + 20 * sin30 * 7.5 - 10 * cos30 * 12.5
    col, row = (int(np.floor(v)) for v in map_to_pixel(transform, cx, cy))
    assert (col, row) == (7, 12)
    assert images[last][row - last.row_off, col - last.col_off, 0] == 12 * 10 + 7


# --- lazy reading -------------------------------------------------------------------------------------
def test_iter_tile_images_is_lazy_and_exact(data_dir):
    path = data_dir / "RGB.byte.tif"
    with open_scene(path) as scene, rasterio.open(path) as ds:
        plan = plan_tiles(scene, tile_size=256, overlap=32)
        gen = iter_tile_images(scene, plan.kept)
        assert isinstance(gen, types.GeneratorType)
        seen = []
        for tile, image, valid in gen:
            seen.append(tile)
            assert image.shape == (256, 256, 3) and image.dtype == np.uint8 and valid.dtype == bool
            win = ((tile.row_off, tile.row_off + 256), (tile.col_off, tile.col_off + 256))
            assert np.array_equal(valid, ds.dataset_mask(window=win) > 0)
            assert (image[~valid] == FILL_RGB).all()
    assert seen == list(plan.kept)


def test_corrupt_scene_fails_on_the_bad_tile_after_yielding_the_good_ones(data_dir):
    path = data_dir / "corrupt.tif"
    with open_scene(path) as scene:
        plan = plan_tiles(scene)  # the decimated mask read goes through intact overviews
        gen = iter_tile_images(scene, plan.kept)  # nothing read yet
        done = []
        with pytest.raises(RasterReadError) as info:
            for tile, _image, _valid in gen:
                done.append(tile.id)
    assert done == ["r0c0", "r0c1", "r0c2", "r1c0"]
    message = str(info.value)
    assert str(path) in message and "col_off=440, row_off=440, width=504, height=504" in message
    assert info.value.window == (440, 440, 504, 504)


def test_padding_of_a_small_scene_does_not_count_as_nodata(data_dir):
    with open_scene(data_dir / "OSBS_029.tif") as scene:  # 400 × 400 px, smaller than a tile
        plan = plan_tiles(scene, max_nodata_fraction=0.5)
    assert plan.n_tiles == 1 and plan.n_kept == 1 and plan.nodata_fractions[0] < 0.5
    assert plan.tiles[0].window == (0, 0, 504, 504)


@pytest.mark.parametrize("kind", ["mask", "nodata"])
def test_small_valid_features_lost_by_overviews_are_not_skipped(tmp_path, kind):
    """Nearest-neighbour overviews drop a 2×2 valid speck; planning must still keep its tile."""
    path = tmp_path / f"speck_{kind}.tif"
    profile = {
        "driver": "GTiff",
        "width": 1024,
        "height": 1024,
        "count": 3,
        "dtype": "uint8",
        "crs": "EPSG:32618",
        "transform": Affine(1.0, 0.0, 500000.0, 0.0, -1.0, 0.0),
        "tiled": True,
        "blockxsize": 256,
        "blockysize": 256,
        "compress": "deflate",
    }
    data = np.zeros((3, 1024, 1024), dtype=np.uint8)
    data[:, 601:603, 701:703] = 200
    if kind == "nodata":
        profile["nodata"] = 0
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        if kind == "mask":
            dst.write(np.full_like(data, 50))
            dst.write_mask(np.where(data[0] > 0, 255, 0).astype(np.uint8))
        else:
            dst.write(data)
        dst.build_overviews([2, 4, 8, 16], Resampling.nearest)
    with rasterio.open(path) as ds:  # the premise: the decimated read through the overview lost it
        assert not ds.read_masks(1, out_shape=(128, 128), resampling=Resampling.average).any()
    with open_scene(path) as scene:
        plan = plan_tiles(scene, tile_size=256, overlap=0)
    assert [t.id for t in plan.kept] == ["r2c2"]
    assert plan.n_skipped == 15
