"""Geometry helpers for the map and the results table (Qt-free).

The map's QGraphicsScene is in scene *pixel* coordinates (x right, y down), so polygons in the scene
CRS are brought back through the inverse of the full affine (rotated transforms included).
"""

from __future__ import annotations

import logging
from functools import lru_cache

import numpy as np
import shapely
from pyproj import CRS, Geod

from rsvg_desktop.core.geo.transform import map_to_pixel

__all__ = ["AreaCalculator", "format_area", "polygon_to_pixels"]

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


@lru_cache(maxsize=16)
def _crs_info(crs_wkt: str) -> tuple[str, float, Geod | None]:
    crs = CRS.from_wkt(crs_wkt)
    if crs.is_geographic:
        return ("geographic", 1.0, crs.get_geod())
    factor = 1.0
    try:
        factor = float(crs.axis_info[0].unit_conversion_factor)
    except (IndexError, AttributeError, TypeError):
        log.debug("no linear unit for %s; assuming metres", crs.name)
    return ("projected", factor, None)


class AreaCalculator:
    """Area of a polygon in m² (planar in projected CRSs, geodesic in geographic ones), or in px² in
    pixel mode (``crs_wkt`` None)."""

    def __init__(self, crs_wkt: str | None) -> None:
        self.crs_wkt = crs_wkt
        self.unit = "px²" if crs_wkt is None else "m²"
        self._kind, self._factor, self._geod = ("pixel", 1.0, None) if crs_wkt is None else _crs_info(crs_wkt)

    def area(self, polygon: shapely.Geometry) -> float:
        if polygon is None or polygon.is_empty:
            return 0.0
        if self._kind == "geographic" and self._geod is not None:
            area, _perimeter = self._geod.geometry_area_perimeter(polygon)
            return abs(float(area))
        return float(polygon.area) * self._factor * self._factor


def format_area(value: float, unit: str) -> str:
    if unit == "m²" and value >= 1e6:
        return f"{value / 1e6:.3g} km²"
    if value >= 100:
        return f"{value:,.0f} {unit}"
    return f"{value:.3g} {unit}"
