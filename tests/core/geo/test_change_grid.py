"""One grid for two dates: choosing it (refusals naming both files) and reading a scene warped onto it
(``open_scene(warp_to=...)``) with its validity carried over."""

from __future__ import annotations

import dataclasses
import math
import pickle
import warnings
from pathlib import Path

import numpy as np
import pytest
import rasterio
from change_pairs import second_date
from rasterio.crs import CRS
from rasterio.enums import Resampling
from rasterio.errors import NotGeoreferencedWarning
from rasterio.transform import Affine
from rasterio.warp import calculate_default_transform

from rsvg_desktop.core.geo.change import TargetGrid, choose_grid, scene_grid
from rsvg_desktop.core.geo.grid import plan_tiles
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.geo.scene.warping import grid_resampling, same_grid
from rsvg_desktop.errors import ChangeInputError, ConfigError


def info_of(path: Path, **kw):
    with open_scene(path, **kw) as scene:
        return scene.info


def grid_in(path: Path, crs: str) -> TargetGrid:
    """A grid covering ``path``'s scene in another CRS (GDAL's default resolution)."""
    with rasterio.open(path) as ds:
        t, w, h = calculate_default_transform(ds.crs, crs, ds.width, ds.height, *ds.bounds)
    return TargetGrid(CRS.from_string(crs).to_wkt(), tuple(t)[:6], w, h, "after")


# --- choosing the grid --------------------------------------------------------------------------------
def test_scene_grid_and_choice(data_dir, tmp_path):
    before = info_of(data_dir / "RGB.byte.tif")
    after = info_of(
        second_date(data_dir / "RGB.byte.tif", tmp_path / "after.tif", shift=(3, 2), crs="EPSG:32617")
    )
    g = scene_grid(before)
    assert (g.crs_wkt, g.transform, g.width, g.height, g.source) == (
        before.crs_wkt,
        before.transform,
        791,
        718,
        "before",
    )
    assert choose_grid(before, after) == g
    assert choose_grid(before, after, "after") == scene_grid(after, "after")
    with pytest.raises(ChangeInputError, match="--grid must be one of before, after"):
        choose_grid(before, after, "middle")


def test_refuses_scenes_that_do_not_overlap(data_dir):
    bahamas = info_of(data_dir / "RGB.byte.tif")
    atlanta = info_of(data_dir / "spacenet_uint16.tif")
    with pytest.raises(ChangeInputError) as err:
        choose_grid(bahamas, atlanta)
    msg = str(err.value)
    assert "\n" not in msg and "do not overlap" in msg
    assert str(data_dir / "RGB.byte.tif") in msg and str(data_dir / "spacenet_uint16.tif") in msg
    assert isinstance(err.value, ConfigError)  # exit status 2


def test_refuses_a_crs_on_one_side_only(data_dir):
    with_crs = info_of(data_dir / "RGB.byte.tif")
    without = info_of(data_dir / "float_nan.tif", pixel_mode=True)
    for b, a in ((with_crs, without), (without, with_crs)):
        with pytest.raises(ChangeInputError, match=r"has a CRS .* has none") as err:
            choose_grid(b, a)
        assert b.path in str(err.value) and a.path in str(err.value) and "\n" not in str(err.value)


def test_pixel_mode_needs_one_size(data_dir, tmp_path):
    small = info_of(data_dir / "float_nan.tif", pixel_mode=True)
    rotated = info_of(data_dir / "rotated.tif", pixel_mode=True)
    with pytest.raises(ChangeInputError, match="one size, got 3x2 and 10x15"):
        choose_grid(small, rotated)
    twin = tmp_path / "twin.tif"
    twin.write_bytes((data_dir / "float_nan.tif").read_bytes())
    grid = choose_grid(small, info_of(twin, pixel_mode=True), "after")
    assert grid.crs_wkt is None and (grid.width, grid.height) == (3, 2) and grid.source == "after"


# --- reading on the grid ------------------------------------------------------------------------------
def test_same_grid_reads_the_file_itself(data_dir):
    path = data_dir / "RGB.byte.tif"
    plain = info_of(path)
    with open_scene(path, warp_to=scene_grid(plain)) as scene:
        assert scene.info == plain and not scene.info.warped
        assert isinstance(scene._ds, rasterio.io.DatasetReader)
    assert same_grid(plain, scene_grid(plain))
    a, b, c, d, e, f = plain.transform
    nearly = dataclasses.replace(scene_grid(plain), transform=(a, b, c + 1e-5, d, e, f))  # 3e-8 px
    with open_scene(path, warp_to=nearly) as scene:
        assert not scene.info.warped and scene.info.transform == nearly.transform
    moved = dataclasses.replace(
        scene_grid(plain), transform=(300.0, 0, plain.transform[2] + 1, 0, -300.0, plain.transform[5])
    )
    assert not same_grid(plain, moved)


def test_warped_scene_describes_the_grid(data_dir):
    path = data_dir / "RGB.byte.tif"
    grid = grid_in(path, "EPSG:4326")
    plain = info_of(path)
    with open_scene(path, warp_to=grid) as scene:
        info = scene.info
        assert info.warped and info.path == str(path) and info.driver == "GTiff"
        assert (info.width, info.height, info.transform) == (grid.width, grid.height, grid.transform)
        assert info.crs_name == "EPSG:4326" and info.gsd_unit == "degree"
        assert info.display_bands == plain.display_bands and info.dtype == "uint8"
        assert info.mask_kind == "nodata" and info.nodata == 0.0
        assert pickle.loads(pickle.dumps(info)) == info
        image, valid = scene.read_window((0, 0, info.width, info.height))
        # the nodata border and the grid's corners outside the source are invalid; the middle is valid
        assert not valid[:5, :5].any() and valid[info.height // 2, info.width // 2]
        assert 0.6 < valid.mean() < plain_valid_fraction(path) + 0.01
        assert (image[valid].mean(axis=0) > 30).all()
        source = scene._source
    assert scene.closed and source is not None and source.closed


def plain_valid_fraction(path: Path) -> float:
    with open_scene(path) as scene:
        return float(scene.read_window((0, 0, scene.info.width, scene.info.height))[1].mean())


def test_warped_scene_plans_tiles_skipping_the_outside(data_dir):
    """The tile planner's coarse and exact validity work through the warp: corner tiles are skipped."""
    path = data_dir / "RGB.byte.tif"
    grid = grid_in(path, "EPSG:32617")
    with open_scene(path, warp_to=grid) as scene:
        plan = plan_tiles(scene, tile_size=128, overlap=16)
        assert plan.n_skipped > 0 and plan.n_kept > 0
        first = plan.tiles[0]
        assert first in plan.skipped and not scene.window_has_valid(first.window)
        assert not scene.coarse_validity(8).valid[0, 0]


def test_mask_band_scene_gets_an_alpha(data_dir):
    """A scene whose validity is a mask band (cogeo.tif) is warped with an alpha band: the grid's parts
    outside the file are invalid, the file's valid pixels stay valid."""
    path = data_dir / "cogeo.tif"
    grid = grid_in(path, "EPSG:32652")  # UTM 52N: the square turns, leaving empty corners
    with open_scene(path, warp_to=grid) as scene:
        assert scene.info.mask_kind == "alpha" and scene.info.display_bands == (1, 2, 3)
        _, valid = scene.read_window((0, 0, grid.width, grid.height))
        assert not valid[0, 0] and valid[grid.height // 2, grid.width // 2]
        assert 0.9 < valid.mean() < 1.0


def test_internal_mask_hole_carries_over(data_dir, tmp_path):
    """Pixels masked out by the source's mask band are invalid after the warp too."""
    path = tmp_path / "masked.tif"
    with rasterio.open(data_dir / "RGB.byte.tif") as ds:
        data, profile = ds.read(), ds.profile
    profile.update(nodata=None)
    data[data == 0] = 1  # no nodata any more: validity comes only from the mask band
    with rasterio.Env(GDAL_TIFF_INTERNAL_MASK=True), rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
        mask = np.full(data.shape[1:], 255, np.uint8)
        mask[300:400, 300:400] = 0
        dst.write_mask(mask)
    assert info_of(path).mask_kind == "per_dataset"
    grid = grid_in(path, "EPSG:32617")
    with open_scene(path, warp_to=grid) as scene:
        assert scene.info.mask_kind == "alpha"
        # the hole's centre, placed on the grid
        x, y = rasterio.transform.xy(Affine(*info_of(path).transform), 350, 350)
        with rasterio.open(path) as ds:
            X, Y = rasterio.warp.transform(ds.crs, "EPSG:32617", [x], [y])
        col, row = ~Affine(*grid.transform) @ (X[0], Y[0])
        _, valid = scene.read_window((int(col) - 10, int(row) - 10, 20, 20))
        assert not valid.any()
        _, valid = scene.read_window((grid.width // 2 - 10, grid.height // 4, 20, 20))
        assert valid.all()


def test_alpha_scene_and_user_nodata(data_dir):
    path = data_dir / "RGBA.uint16.tif"
    grid = grid_in(path, "EPSG:32613")
    with open_scene(path, warp_to=grid) as scene:
        assert scene.info.mask_kind == "alpha" and scene.info.count == 4
        _, valid = scene.read_window((0, 0, grid.width, grid.height))
        assert 0.3 < valid.mean() < 0.6
    path = data_dir / "RGB.byte.tif"
    grid = grid_in(path, "EPSG:32617")
    with open_scene(path, nodata=0, warp_to=grid) as scene:
        assert scene.info.nodata_given and scene.info.mask_kind == "nodata" and scene.info.nodata == 0.0
        _, valid = scene.read_window((0, 0, grid.width, grid.height))
        assert not valid[0, 0] and valid[grid.height // 2, grid.width // 2]


def test_palette_data_is_resampled_by_nearest(data_dir, tmp_path):
    path = tmp_path / "classes.tif"
    classes = np.repeat(np.repeat(np.array([[1, 5], [9, 13]], np.uint8), 50, 0), 50, 1)
    profile = dict(driver="GTiff", width=100, height=100, count=1, dtype="uint8", crs="EPSG:32618",
                   transform=Affine(10, 0, 500_000, 0, -10, 4_000_000))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(classes, 1)
        dst.write_colormap(1, {i: (i * 10, 0, 0, 255) for i in range(16)})
    info = info_of(path)
    assert info.colorinterp[0] == "palette" and grid_resampling(info) is Resampling.nearest
    assert grid_resampling(info_of(data_dir / "RGB.byte.tif")) is Resampling.bilinear
    moved = TargetGrid(info.crs_wkt, (7.0, 0, 500_003.0, 0, -7.0, 3_999_996.0), 130, 130)
    with open_scene(path, warp_to=moved) as scene:
        raw = scene._ds.read(1)
    assert set(np.unique(raw)) <= {0, 1, 5, 9, 13}


def test_pixel_mode_grid(data_dir, tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        small = info_of(data_dir / "float_nan.tif", pixel_mode=True)
        grid = dataclasses.replace(scene_grid(small), transform=(1.0, 0.0, 0.0, 0.0, 1.0, 0.0))
        with open_scene(data_dir / "float_nan.tif", pixel_mode=True, warp_to=grid) as scene:
            assert scene.info.transform == grid.transform and not scene.info.warped
        with pytest.raises(ChangeInputError, match="pixel mode needs one size"):
            open_scene(data_dir / "rotated.tif", pixel_mode=True, warp_to=grid)
        with pytest.raises(ChangeInputError, match="has a CRS and the other date does not"):
            open_scene(data_dir / "RGB.byte.tif", warp_to=grid)
    with pytest.raises(ChangeInputError, match="has no CRS and the other date does not"):
        open_scene(
            data_dir / "float_nan.tif",
            pixel_mode=True,
            warp_to=grid_in(data_dir / "RGB.byte.tif", "EPSG:4326"),
        )


@pytest.mark.parametrize(
    ("dtype", "count", "kind", "nodata"),
    [
        ("uint8", 1, "alpha", None),  # GDAL reads the added alpha band as the mask
        ("uint16", 3, "alpha", None),
        ("uint16", 5, "nodata", 65535.0),  # an alpha band after 5 bands is not a mask: nodata instead
        ("int16", 3, "nodata", -32768.0),
        ("float32", 1, "nodata", math.nan),
    ],
)
def test_outside_is_invalid_for_every_type(tmp_path, dtype, count, kind, nodata):
    """A source without nodata or mask, warped onto a turned grid: the grid's corners outside it are
    invalid (and their tiles skipped), whatever its type and number of bands; its own pixels stay valid."""
    path = tmp_path / f"{dtype}_{count}.tif"
    data = (np.random.default_rng(0).random((count, 100, 100)) * 200 + 1).astype(dtype)
    profile = dict(driver="GTiff", width=100, height=100, count=count, dtype=dtype, crs="EPSG:32618",
                   transform=Affine(10, 0, 500_000, 0, -10, 4_000_000))  # fmt: skip
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(data)
    assert info_of(path).mask_kind == "all_valid"
    grid = grid_in(path, "EPSG:3995")  # polar stereographic: the grid turns by about 75°
    with open_scene(path, warp_to=grid) as scene:
        assert scene.info.mask_kind == kind
        if nodata is not None:
            assert scene.info.nodata == nodata or (math.isnan(nodata) and math.isnan(scene.info.nodata))
        _, valid = scene.read_window((0, 0, grid.width, grid.height))
        assert not valid[0, 0] and not valid[-1, -1]
        assert valid[
            grid.height // 2 - 20 : grid.height // 2 + 20, grid.width // 2 - 20 : grid.width // 2 + 20
        ].all()
        assert 0.4 < valid.mean() < 0.9
        plan = plan_tiles(scene, tile_size=16, overlap=0)
        assert plan.n_skipped > 0
