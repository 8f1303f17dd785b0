"""pixel_to_map / map_to_pixel through the full affine, vectorised."""

from __future__ import annotations

import math

import numpy as np
import pytest
from affine import Affine
from hypothesis import given, settings
from hypothesis import strategies as st

from rsvg_desktop.core.geo.transform import (
    as_transform6,
    is_identity,
    map_to_pixel,
    pixel_size,
    pixel_to_map,
    scale_transform,
    window_corners,
)

ROTATED = (17.320508075688775, 4.999999999999999, 100.0, 9.999999999999998, -8.660254037844387, 200.0)


def test_pixel_to_map_by_hand():
    a, b, c, d, e, f = ROTATED
    mx, my = pixel_to_map(ROTATED, 3, 7)
    assert mx == pytest.approx(a * 3 + b * 7 + c) and my == pytest.approx(d * 3 + e * 7 + f)


def test_vectorised_and_broadcasting():
    xs = np.arange(12, dtype=float).reshape(3, 4)
    X, Y = pixel_to_map(ROTATED, xs, 2.0)
    assert X.shape == Y.shape == (3, 4)
    X1, Y1 = pixel_to_map(ROTATED, xs.ravel(), np.full(12, 2.0))
    assert np.allclose(X.ravel(), X1) and np.allclose(Y.ravel(), Y1)


def test_accepts_a_rasterio_affine():
    affine = Affine(*ROTATED)
    assert as_transform6(affine) == pytest.approx(ROTATED)
    X, Y = pixel_to_map(affine, [0.5, 9.5], [0.5, 14.5])
    expected = [affine @ (0.5, 0.5), affine @ (9.5, 14.5)]
    assert np.allclose(np.column_stack([X, Y]), expected)


@settings(max_examples=200, deadline=None)
@given(
    coeffs=st.tuples(*(st.floats(-1e3, 1e3, allow_nan=False) for _ in range(6))),
    x=st.floats(-1e5, 1e5, allow_nan=False),
    y=st.floats(-1e5, 1e5, allow_nan=False),
)
def test_map_to_pixel_inverts(coeffs, x, y):
    a, b, _c, d, e, _f = coeffs
    if abs(a * e - b * d) < 1e-3:
        return
    X, Y = pixel_to_map(coeffs, x, y)
    x2, y2 = map_to_pixel(coeffs, X, Y)
    scale = 1e-6 * max(1.0, abs(x), abs(y)) * max(1.0, *(abs(v) for v in coeffs)) / abs(a * e - b * d)
    assert abs(float(x2) - x) <= max(1e-6, scale * 1e3)
    assert abs(float(y2) - y) <= max(1e-6, scale * 1e3)


def test_degenerate_transform():
    with pytest.raises(ValueError, match="cannot be inverted"):
        map_to_pixel((1.0, 2.0, 0.0, 2.0, 4.0, 0.0), 1.0, 1.0)


def test_pixel_size_of_a_rotated_affine():
    assert pixel_size(ROTATED) == pytest.approx((20.0, 10.0))
    assert pixel_size((0.5, 0.0, 0.0, 0.0, -0.5, 0.0)) == (0.5, 0.5)


def test_window_corners_and_scaling():
    corners = window_corners(ROTATED, 2, 3, 4, 5)
    assert corners.shape == (4, 2)
    a, b, c, d, e, f = ROTATED
    for (px, py), (mx, my) in zip([(2, 3), (6, 3), (6, 8), (2, 8)], corners, strict=True):
        assert (mx, my) == pytest.approx((a * px + b * py + c, d * px + e * py + f))
    scaled = scale_transform(ROTATED, 4, 2)
    assert pixel_to_map(scaled, 1, 1) == pytest.approx(pixel_to_map(ROTATED, 4, 2))
    assert is_identity((1, 0, 0, 0, 1, 0)) and not is_identity(ROTATED)
    assert math.isclose(pixel_size(scaled)[0], 80.0)
