"""Measures on the ground: geodesic areas of polygons and the ground size of a pixel, for any CRS.

A projected CRS's units are not ground metres: Web Mercator stretches both axes by ``1 / cos(latitude)``
(1.6× in area at 37.7° N), World Mercator likewise, a UTM zone by its scale factor. So areas and pixel
sizes are measured on the ellipsoid instead: coordinates are taken to longitude/latitude on the CRS's own
geodetic datum (WGS 84 for Web Mercator, World Mercator, UTM and EPSG:4326; one transformation per call,
no datum shift) and measured with :class:`pyproj.Geod` on that datum's ellipsoid.
"""

from __future__ import annotations

import logging
from functools import lru_cache
from typing import Any

import numpy as np
import shapely
from pyproj import CRS, Geod, Transformer

from rsvg_desktop.core.geo.transform import pixel_to_map

__all__ = ["ground_areas", "ground_pixel_size", "map_unit_name"]

log = logging.getLogger(__name__)


@lru_cache(maxsize=16)
def _lonlat(crs_text: str) -> tuple[Transformer, Geod] | None:
    """Transformer from the CRS (WKT or ``AUTHORITY:CODE``) to longitude/latitude on its own datum
    (``always_xy``) and that datum's :class:`Geod`; ``None`` for a CRS without an ellipsoid (a local
    engineering CRS)."""
    crs = CRS.from_user_input(crs_text)
    geodetic = crs.geodetic_crs
    geod = crs.get_geod()
    if geodetic is None or geod is None:
        return None
    return Transformer.from_crs(crs, geodetic, always_xy=True), geod


def _unit_factor(crs_text: str) -> float:
    """Metres per unit of the CRS's first axis (1 when it does not say)."""
    info = CRS.from_user_input(crs_text).axis_info
    factor = info[0].unit_conversion_factor if info else None
    return float(factor) if factor else 1.0


def _crs_text(crs: Any) -> str:
    """The CRS as text for the caches: a string as given (WKT, ``EPSG:3857``), anything else as WKT."""
    if isinstance(crs, str):
        return crs
    return crs.to_wkt() if isinstance(crs, CRS) else CRS.from_user_input(crs).to_wkt()


def ground_areas(geoms: np.ndarray | list[Any], crs: Any) -> np.ndarray:
    """Geodesic area in m² of each (Multi)Polygon of ``geoms`` (coordinates in ``crs``, anything pyproj
    reads), holes subtracted; 0 for a missing or empty geometry, NaN where a coordinate cannot be taken
    to longitude/latitude. All coordinates are transformed in one call. A CRS without an ellipsoid (a
    local engineering CRS) gets planar areas in its units converted to metres."""
    geoms = np.asarray(geoms, dtype=object)
    out = np.zeros(len(geoms))
    if len(geoms) == 0:
        return out
    text = _crs_text(crs)
    measure = _lonlat(text)
    if measure is None:  # nothing to measure on: the CRS's own units are taken as the ground's
        log.info("CRS without an ellipsoid: areas are planar, in its own units converted to metres")
        return np.nan_to_num(shapely.area(geoms)) * _unit_factor(text) ** 2
    transformer, geod = measure
    parts, part_of = shapely.get_parts(geoms, return_index=True)
    rings, ring_of = shapely.get_rings(parts, return_index=True)
    if len(rings) == 0:
        return out
    coords, coord_of = shapely.get_coordinates(rings, return_index=True)
    lon, lat = transformer.transform(coords[:, 0], coords[:, 1])
    lon, lat = np.asarray(lon, dtype=np.float64), np.asarray(lat, dtype=np.float64)
    bounds = np.searchsorted(coord_of, np.arange(len(rings) + 1))
    ring_areas = np.empty(len(rings))
    for i in range(len(rings)):  # pyproj measures one ring per call
        lo, hi = bounds[i], bounds[i + 1]
        ring_lon, ring_lat = lon[lo:hi], lat[lo:hi]
        if np.isfinite(ring_lon).all() and np.isfinite(ring_lat).all():
            ring_areas[i] = abs(geod.polygon_area_perimeter(ring_lon, ring_lat)[0])
        else:
            ring_areas[i] = np.nan
    exterior = np.ones(len(rings), dtype=bool)
    exterior[1:] = ring_of[1:] != ring_of[:-1]  # a part's first ring is its exterior
    signed = np.where(exterior, ring_areas, -ring_areas)
    np.add.at(out, part_of[ring_of], signed)
    bad = int(np.isnan(out).sum())
    if bad:
        log.warning("%d area(s) left empty: their coordinates cannot be taken to longitude/latitude", bad)
    return out


def ground_pixel_size(
    crs: Any, transform: tuple[float, ...], width: int, height: int
) -> tuple[float, float] | None:
    """Ground distance in metres of one pixel step along a row and down a column at the scene's centre
    (geodesic), or ``None`` when it cannot be measured (a CRS without an ellipsoid, a centre outside the
    projection's domain)."""
    try:
        measure = _lonlat(_crs_text(crs))
        if measure is None:
            return None
        transformer, geod = measure
        cx, cy = width / 2.0, height / 2.0
        xs, ys = pixel_to_map(transform, [cx, cx + 1.0, cx], [cy, cy, cy + 1.0])
        lon, lat = transformer.transform(np.asarray(xs, dtype=np.float64), np.asarray(ys, dtype=np.float64))
        _fwd, _back, dist = geod.inv([lon[0], lon[0]], [lat[0], lat[0]], [lon[1], lon[2]], [lat[1], lat[2]])
        dx, dy = float(dist[0]), float(dist[1])
    except Exception:  # unusual CRS: the ground size is a convenience, the map units remain
        log.debug("cannot measure the pixel size on the ground in %s", crs, exc_info=True)
        return None
    if not (np.isfinite(dx) and np.isfinite(dy) and dx > 0 and dy > 0):
        return None
    return (dx, dy)


def map_unit_name(crs: Any) -> str:
    """Name of the unit of the CRS's first axis (``metre``, ``degree``, ``US survey foot``…)."""
    try:
        info = CRS.from_user_input(_crs_text(crs)).axis_info
        return str(info[0].unit_name) if info else "unknown unit"
    except Exception:  # pragma: no cover - a CRS pyproj cannot read
        log.debug("no unit name for %s", crs, exc_info=True)
        return "unknown unit"
