"""The area two dates share and their residual shift, on pairs built from RGB.byte.tif: the second date
shifted by a known sub-pixel amount, in the same CRS or reprojected into another."""

from __future__ import annotations

import math
from contextlib import contextmanager
from pathlib import Path

import numpy as np
import pytest
import rasterio
import shapely
from change_pairs import second_date
from scipy.ndimage import fourier_shift

from rsvg_desktop.core.geo.change import (
    CommonArea,
    choose_grid,
    common_area,
    estimate_shift,
    shift_warning_px,
)
from rsvg_desktop.core.geo.change.overlap import decimated_size, grid_extent
from rsvg_desktop.core.geo.change.phase import phase_correlate, prepare
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.errors import ChangeInputError, ConfigError


@contextmanager
def on_one_grid(before: Path, after: Path, which: str = "before"):
    with open_scene(before) as b, open_scene(after) as a:
        grid = choose_grid(b.info, a.info, which)
    with open_scene(before, warp_to=grid) as b, open_scene(after, warp_to=grid) as a:
        yield b, a


@pytest.fixture
def rgb(data_dir) -> Path:
    return data_dir / "RGB.byte.tif"


# --- the common area ----------------------------------------------------------------------------------
def test_common_area_of_identical_dates(rgb):
    with on_one_grid(rgb, rgb) as (b, a):
        area = common_area(b, a)
        extent = grid_extent(b)
    with rasterio.open(rgb) as ds:
        valid_fraction = float((ds.dataset_mask() > 0).mean())
    assert area.compared_fraction == pytest.approx(valid_fraction, abs=1e-9)  # 791x718 < 1e6: not decimated
    assert area.compared.area == pytest.approx(extent.area * valid_fraction, rel=1e-9)
    assert area.compared.union(area.unknown).area == pytest.approx(extent.area, rel=1e-9)
    assert area.compared.intersection(area.unknown).area == pytest.approx(0, abs=extent.area * 1e-9)
    # the nodata border is unknown: the scene's corner, its centre compared
    x0, y0, x1, y1 = extent.bounds
    assert area.unknown.contains(shapely.Point(x0 + 500, y1 - 500))
    assert area.compared.contains(shapely.Point((x0 + x1) / 2, (y0 + y1) / 2))


def test_common_area_is_where_both_are_valid(rgb, tmp_path):
    """The after date shifted 100 px right: its valid area moves, the shared part shrinks."""
    after = second_date(rgb, tmp_path / "after.tif", shift=(100, 0))
    with on_one_grid(rgb, after) as (b, a):
        area = common_area(b, a)
        full = (0, 0, b.info.width, b.info.height)
        expected = (b.read_window(full)[1] & a.read_window(full)[1]).mean()
        coarse = common_area(b, a, max_pixels=20_000)
    assert area.compared_fraction == pytest.approx(expected, abs=1e-9)
    assert 0.3 < area.compared_fraction < 0.6
    assert coarse.compared_fraction == pytest.approx(expected, abs=0.02)
    assert coarse.compared.symmetric_difference(area.compared).area < 0.05 * area.compared.area


def test_common_area_in_another_crs(rgb, tmp_path):
    after = second_date(rgb, tmp_path / "after.tif", shift=(0.6, -1.3), crs="EPSG:32617")
    with on_one_grid(rgb, after) as (b, a):
        area = common_area(b, a)
        assert a.info.warped and not b.info.warped
    with rasterio.open(rgb) as ds:
        valid_fraction = float((ds.dataset_mask() > 0).mean())
    # warped twice (there and back), the edge loses a pixel or so: nearly the whole valid area
    assert valid_fraction - 0.02 < area.compared_fraction <= valid_fraction + 1e-9


def test_no_pixel_valid_on_both_dates(rgb, tmp_path):
    with rasterio.open(rgb) as ds:
        profile = ds.profile
    empty = tmp_path / "empty.tif"
    with rasterio.open(empty, "w", **profile) as dst:
        dst.write(np.zeros((3, profile["height"], profile["width"]), np.uint8))
    with on_one_grid(rgb, empty) as (b, a), pytest.raises(ChangeInputError) as err:
        common_area(b, a)
    assert "no pixel is valid on both dates" in str(err.value) and str(empty) in str(err.value)
    assert isinstance(err.value, ConfigError)


def test_no_valid_pixel_in_16_bit_data(data_dir, tmp_path):
    """16-bit dates need a stretch before reading; one without any valid pixel is the same refusal."""
    source = data_dir / "spacenet_uint16.tif"
    empty = second_date(source, tmp_path / "empty.tif", patches=[((0, 0, 900, 900), 0)])
    with on_one_grid(source, empty) as (b, a), pytest.raises(ChangeInputError, match="no pixel is valid"):
        common_area(b, a)


def test_scenes_must_share_the_grid(rgb, tmp_path):
    after = second_date(rgb, tmp_path / "after.tif", crs="EPSG:32617")
    with open_scene(rgb) as b, open_scene(after) as a, pytest.raises(ValueError, match="not on one grid"):
        common_area(b, a)


def test_decimated_size():
    assert decimated_size(791, 718, 1_000_000) == (791, 718)
    w, h = decimated_size(40_000, 30_000, 1_000_000)
    assert w * h <= 1_000_000 and w / h == pytest.approx(4 / 3, rel=0.01)
    with pytest.raises(ValueError):
        decimated_size(10, 10, 0)


# --- the residual shift -------------------------------------------------------------------------------
def test_phase_correlation_recovers_a_fourier_shift(rgb):
    with rasterio.open(rgb) as ds:
        grey = ds.read().mean(axis=0)
    ref = grey[150:550, 200:600]
    for dx, dy in [(0.6, -1.3), (-7.25, 3.5), (0.0, 0.0)]:
        moved = np.real(np.fft.ifft2(fourier_shift(np.fft.fft2(grey), (dy, dx))))[150:550, 200:600]
        t = phase_correlate(prepare(ref, ref > 0), prepare(moved, ref > 0))
        assert (t.dx, t.dy) == pytest.approx((dx, dy), abs=0.05)
        assert t.peak > 0.9
    noise = np.random.default_rng(0).normal(size=ref.shape)
    assert phase_correlate(prepare(ref, ref > 0), prepare(noise, ref > 0)).peak < 0.2
    with pytest.raises(ValueError, match="one shape"):
        phase_correlate(ref, ref[:-1])


@pytest.mark.parametrize(
    ("shift", "crs"),
    [
        ((0.6, -1.3), None),
        ((0.6, -1.3), "EPSG:32617"),
        ((-12.4, 7.7), "EPSG:3857"),
        ((0.0, 0.0), "EPSG:32617"),
    ],
)
def test_estimate_recovers_a_known_shift(rgb, tmp_path, shift, crs):
    after = second_date(rgb, tmp_path / "after.tif", shift=shift, crs=crs)
    with on_one_grid(rgb, after) as (b, a):
        estimate = estimate_shift(b, a, common_area(b, a))
    assert (estimate.dx, estimate.dy) == pytest.approx(shift, abs=0.2)
    assert estimate.confidence > 0.5
    assert estimate.magnitude == pytest.approx(math.hypot(*shift), abs=0.25)


def test_identical_dates_have_no_shift(rgb):
    with on_one_grid(rgb, rgb) as (b, a):
        estimate = estimate_shift(b, a, common_area(b, a))
    assert (estimate.dx, estimate.dy) == pytest.approx((0.0, 0.0), abs=1e-6)
    assert estimate.confidence == pytest.approx(1.0, abs=1e-6)


def test_shift_on_the_after_grid(rgb, tmp_path):
    """On the after date's grid the before date is warped (by whole pixels here, so exactly) and the
    shift is the same displacement of the content on the map."""
    after = second_date(rgb, tmp_path / "after.tif", shift=(2.0, 1.0))
    with on_one_grid(rgb, after, "after") as (b, a):
        assert b.info.warped and not a.info.warped
        assert b.info.transform == a.info.transform
        estimate = estimate_shift(b, a, common_area(b, a))
    assert (estimate.dx, estimate.dy) == pytest.approx((2.0, 1.0), abs=0.05)


def test_thin_common_area_falls_back_to_coarse(rgb, tmp_path, monkeypatch):
    """A common area too thin for any fine window still gets the decimated estimate."""
    from rsvg_desktop.core.geo.change import shift as shift_module

    after = second_date(
        rgb,
        tmp_path / "after.tif",
        shift=(1.0, 0.0),
        patches=[((0, 0, 791, 330), 0), ((0, 390, 791, 718), 0)],
    )
    monkeypatch.setattr(shift_module, "COARSE_SIZE", 300)
    monkeypatch.setattr(shift_module, "_fine", None)  # never called: no window fits
    with on_one_grid(rgb, after) as (b, a):
        area = common_area(b, a)
        estimate = estimate_shift(b, a, area)
    assert isinstance(area, CommonArea) and area.compared_fraction < 0.1
    assert (estimate.dx, estimate.dy) == pytest.approx((1.0, 0.0), abs=0.3)


def test_shift_warning_threshold():
    assert shift_warning_px() == pytest.approx(504 / 300)
    assert 1.6 < shift_warning_px(504) < 1.7
    assert shift_warning_px(336) == pytest.approx(1.12)


def test_decimated_coarse_step(rgb, tmp_path, monkeypatch):
    """With the coarse read decimated 4× the coarse estimate is within a decimated pixel or so, and
    the full-resolution window still brings it to a fraction of a pixel."""
    from rsvg_desktop.core.geo.change import shift as shift_module

    after = second_date(rgb, tmp_path / "after.tif", shift=(-12.4, 7.7), crs="EPSG:32617")
    monkeypatch.setattr(shift_module, "COARSE_SIZE", 200)
    with on_one_grid(rgb, after) as (b, a):
        area = common_area(b, a)
        estimate = estimate_shift(b, a, area)
        assert (estimate.dx, estimate.dy) == pytest.approx((-12.4, 7.7), abs=0.2)
        monkeypatch.setattr(shift_module, "MIN_PEAK", 1.01)  # no fine peak is clear enough: coarse only
        coarse = estimate_shift(b, a, area)
    assert (coarse.dx, coarse.dy) == pytest.approx((-12.4, 7.7), abs=2.0)
    assert (coarse.dx, coarse.dy) != (estimate.dx, estimate.dy)
