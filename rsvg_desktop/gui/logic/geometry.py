"""Geometry helpers for the map and the results table (Qt-free).

The map's QGraphicsScene is in scene *pixel* coordinates (x right, y down), so polygons in the scene
CRS are brought back through the inverse of the full affine (rotated transforms included).
"""

from __future__ import annotations

import logging
from collections.abc import Sequence

import numpy as np
import shapely

from rsvg_desktop.core.geo.ground import ground_areas
from rsvg_desktop.core.geo.transform import map_to_pixel

__all__ = ["AreaCalculator", "format_area", "polygon_to_pixels", "view_orientation"]

log = logging.getLogger(__name__)


def polygon_to_pixels(polygon: shapely.Geometry, transform: tuple[float, ...] | None) -> np.ndarray:
    """Exterior ring of ``polygon`` (scene CRS; pixels when ``transform`` is None) as ``(n, 2)`` pixels.

    For a MultiPolygon the largest part is used."""
    if polygon is None or polygon.is_empty:
        return np.empty((0, 2))
    if polygon.geom_type == "MultiPolygon":
        polygon = max(polygon.geoms, key=lambda g: g.area)
    xy = np.asarray(polygon.exterior.coords, dtype=np.float64)
    if transform is None:
        return xy
    px, py = map_to_pixel(transform, xy[:, 0], xy[:, 1])
    return np.column_stack([px, py])


class AreaCalculator:
    """Areas of polygons on the ground in m² (geodesic whatever the CRS: see
    :mod:`rsvg_desktop.core.geo.ground`), or in px² in pixel mode (``crs_wkt`` None)."""

    def __init__(self, crs_wkt: str | None) -> None:
        self.crs_wkt = crs_wkt
        self.unit = "px²" if crs_wkt is None else "m²"

    def areas(self, polygons: Sequence[shapely.Geometry]) -> np.ndarray:
        """The area of each polygon (0 for a missing or empty one), all measured in one go."""
        geoms = np.empty(len(polygons), dtype=object)
        geoms[:] = list(polygons)
        if self.crs_wkt is None:
            return np.nan_to_num(shapely.area(geoms)) if len(geoms) else np.empty(0)
        return ground_areas(geoms, self.crs_wkt)

    def area(self, polygon: shapely.Geometry) -> float:
        return float(self.areas([polygon])[0])


def format_area(value: float, unit: str) -> str:
    if unit == "m²" and value >= 1e6:
        return f"{value / 1e6:.3g} km²"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"


def view_orientation(
    transform: tuple[float, ...] | None, georeferenced: bool
) -> tuple[float, float, float, float]:
    """How scene pixels are turned on screen: the 2×2 matrix ``(m11, m12, m21, m22)`` of a QTransform
    (``screen_x = m11*x + m21*y``, ``screen_y = m12*x + m22*y``, pixels ``x`` right and ``y`` down).

    The one convention for everything drawn on the map (display tiles, tile grid, detections, drawn
    scopes and identify regions, the pixel readout): items stay in scene *pixel* coordinates and the
    view turns them so the map is **north-up**: the geotransform's linear part ``(a, b, d, e)``, with map
    ``Y`` (north) pointing up the screen, normalised to unit area (zoom is applied on top). A plain
    north-up scene with square pixels gives the identity; a rotated or sheared one is turned so it lines
    up with QGIS. A scene in pixel mode (no CRS) has no north: when its transform would mirror the
    image (a positive-y transform such as GDAL reports for local, y-down files) the view keeps the
    file's rows top-down, so row 0 is drawn at the top, where the readout and the model put it.
    """
    if transform is None:
        return (1.0, 0.0, 0.0, 1.0)
    a, b, _c, d, e, _f = (float(v) for v in tuple(transform)[:6])
    m11, m21, m12, m22 = a, b, -d, -e
    det = m11 * m22 - m12 * m21
    if not np.isfinite(det) or abs(det) < 1e-300:
        return (1.0, 0.0, 0.0, 1.0)
    if det < 0 and not georeferenced:
        return (1.0, 0.0, 0.0, 1.0)
    s = float(np.sqrt(abs(det)))
    return (m11 / s, m12 / s, m21 / s, m22 / s)
