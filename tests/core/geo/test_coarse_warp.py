"""Decimated reads of a warped scene go through a coarser VRT of the same grid (``coarse_warp.py``): the
same picture and validity as the full-resolution warp, shrunk, without warping every pixel; reads at
full resolution (the model's tiles) stay on the full-resolution VRT."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import rasterio
from change_pairs import second_date
from rasterio.enums import Resampling
from rasterio.windows import Window

from rsvg_desktop.core.geo.change import choose_grid
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.geo.scene.coarse_warp import CoarseWarpedVRT, read_factor
from rsvg_desktop.core.types import Tile


def test_read_factor_is_the_whole_shrink_in_both_directions() -> None:
    size = (4096, 2048)
    assert read_factor(None, None, size) == 1
    assert read_factor(None, (3, 1024, 2048), size) == 2  # rows 2048/1024, cols 4096/2048
    assert read_factor(Window(0, 0, 504, 504), (3, 504, 504), size) == 1
    assert read_factor(Window(0, 0, 1000, 1000), (3, 300, 300), size) == 3
    assert read_factor(Window(0, 0, 1000, 1000), (300, 900), size) == 1  # shrunk in one direction only
    assert read_factor(Window(0, 0, 100, 100), (300, 300), size) == 1  # enlarged


@pytest.fixture(scope="module")
def warped_pair(data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    folder = tmp_path_factory.mktemp("coarse")
    after = second_date(data_dir / "RGB.byte.tif", folder / "after.tif", shift=(0.4, 0.3), crs="EPSG:3857")
    return data_dir / "RGB.byte.tif", after


def _full_resolution_only(scene) -> None:  # type: ignore[no-untyped-def]
    """Make the scene's warped dataset answer every read at full resolution (the reference)."""
    assert isinstance(scene._ds, CoarseWarpedVRT)
    scene._ds._route = lambda kwargs: scene._ds._vrt


def test_a_decimated_read_matches_the_full_resolution_warp_shrunk(warped_pair: tuple[Path, Path]) -> None:
    before, after = warped_pair
    with open_scene(before) as b:
        grid = choose_grid(b.info, b.info)
    with open_scene(after, warp_to=grid) as coarse, open_scene(after, warp_to=grid) as reference:
        _full_resolution_only(reference)
        for resampling in (Resampling.nearest, Resampling.average):
            size = (grid.width // 4, grid.height // 4)
            full = (0, 0, grid.width, grid.height)
            image, valid = coarse.read_window(full, size, resampling=resampling)
            ref_image, ref_valid = reference.read_window(full, size, resampling=resampling)
            assert image.shape == ref_image.shape and valid.shape == ref_valid.shape
            assert (valid == ref_valid).mean() > 0.98, resampling
            both = valid & ref_valid
            # The same picture: nearest samples other pixels of it, average the same area in another order.
            means, ref_means = image[both].mean(axis=0), ref_image[both].mean(axis=0)
            assert np.abs(means - ref_means).max() < 2, resampling
            if resampling == Resampling.average:  # pixel by pixel: in place (one cell off is much worse)
                inner = both[2:-2, 2:-2]
                cells = image[2:-2, 2:-2].astype(int)
                aligned = np.abs(cells - ref_image[2:-2, 2:-2])[inner].mean()
                one_off = np.abs(cells - np.roll(ref_image, 1, axis=1)[2:-2, 2:-2])[inner].mean()
                assert aligned < 8 and aligned < 0.7 * one_off, (aligned, one_off)
        assert {factor for factor, _ in coarse._ds._coarse} == {4}
        assert not reference._ds._coarse


def test_tiles_are_read_at_full_resolution_from_the_full_vrt(warped_pair: tuple[Path, Path]) -> None:
    before, after = warped_pair
    with open_scene(before) as b:
        grid = choose_grid(b.info, b.info)
    tile = Tile(0, 0, 100, 100, 504, 504, 504)
    with open_scene(after, warp_to=grid) as scene, open_scene(after, warp_to=grid) as reference:
        _full_resolution_only(reference)
        image, valid = scene.read_tile(tile)
        ref_image, ref_valid = reference.read_tile(tile)
        assert np.array_equal(image, ref_image) and np.array_equal(valid, ref_valid)
        assert not scene._ds._coarse  # no coarse VRT was made for a full-resolution read


def test_palette_data_stays_nearest_at_every_resolution(tmp_path: Path, data_dir: Path) -> None:
    """Class codes are never averaged: a coarse read of a palette scene holds only the codes it has."""
    with rasterio.open(data_dir / "RGB.byte.tif") as src:
        profile = src.profile | {"count": 1, "nodata": None, "photometric": None}
        band = src.read(1)
    codes = np.where(band > 100, 7, 3).astype(np.uint8)
    path = tmp_path / "classes.tif"
    with rasterio.open(path, "w", **profile) as dst:
        dst.write(codes, 1)
        dst.write_colormap(1, {3: (0, 0, 255, 255), 7: (255, 0, 0, 255)})
    other = second_date(data_dir / "RGB.byte.tif", tmp_path / "rgb_3857.tif", crs="EPSG:3857")
    with open_scene(other) as b, open_scene(path) as a:
        grid = choose_grid(b.info, a.info)  # the classes are warped onto a grid in another CRS
    with open_scene(path, warp_to=grid) as scene:
        raw = scene._ds.read(1, out_shape=(grid.height // 4, grid.width // 4), resampling=Resampling.average)
        assert set(np.unique(raw)) <= {0, 3, 7} and {3, 7} <= set(np.unique(raw))
        assert scene._ds._coarse  # it was a coarse read
