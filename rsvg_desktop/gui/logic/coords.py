"""Cursor position text for the status bar: scene pixel, map coordinates in the scene CRS, latitude/longitude.

Qt-free (plain functions of a :class:`~rsvg_desktop.core.geo.scene.SceneInfo`), so it is tested without a
window. The transformer to WGS 84 is built once per scene (pyproj, ``always_xy``).
"""

from __future__ import annotations

import logging
import math

from pyproj import CRS, Transformer

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.geo.transform import pixel_to_map

__all__ = ["CursorFormatter", "format_latlon"]

log = logging.getLogger(__name__)


def format_latlon(lat: float, lon: float) -> str:
    """``12.34567° N, 98.76543° E`` (5 decimals ≈ 1 m)."""
    ns = "N" if lat >= 0 else "S"
    ew = "E" if lon >= 0 else "W"
    return f"{abs(lat):.5f}° {ns}, {abs(lon):.5f}° {ew}"


class CursorFormatter:
    """Formats a scene pixel position ``(x, y)`` (continuous, top-left corner origin) for display."""

    def __init__(self, info: SceneInfo) -> None:
        self.info = info
        self._to_wgs84: Transformer | None = None
        self._geographic = False
        self._units = ""
        if info.crs_wkt is not None:
            try:
                crs = CRS.from_wkt(info.crs_wkt)
                self._geographic = crs.is_geographic
                axis = crs.axis_info[0] if crs.axis_info else None
                self._units = "" if self._geographic or axis is None else _unit_abbrev(axis.unit_name)
                self._to_wgs84 = Transformer.from_crs(crs, CRS.from_epsg(4326), always_xy=True)
            except Exception:  # an exotic CRS pyproj cannot transform: keep the scene coordinates only
                log.warning("%s: no latitude/longitude for this CRS", info.path, exc_info=True)
                self._to_wgs84 = None

    def map_xy(self, x: float, y: float) -> tuple[float, float]:
        """Map coordinates (scene CRS) of a pixel position."""
        mx, my = pixel_to_map(self.info.transform, x, y)
        return float(mx), float(my)

    def lonlat(self, x: float, y: float) -> tuple[float, float] | None:
        """``(lon, lat)`` in degrees, or ``None`` in pixel mode or when the transformation fails."""
        if self._to_wgs84 is None:
            return None
        mx, my = self.map_xy(x, y)
        lon, lat = self._to_wgs84.transform(mx, my)
        if not (math.isfinite(lon) and math.isfinite(lat)):
            return None
        return float(lon), float(lat)

    def inside(self, x: float, y: float) -> bool:
        return 0 <= x < self.info.width and 0 <= y < self.info.height

    def format(self, x: float, y: float) -> str:
        """One line: ``px 512, 300 │ EPSG:3857 14322158.9, 4532842.4 m │ 37.77900° N, 128.65650° E``."""
        parts = [f"px {math.floor(x)}, {math.floor(y)}"]
        if self.info.crs_wkt is None:
            parts.append("no CRS (pixel mode)")
            return "  │  ".join(parts)
        mx, my = self.map_xy(x, y)
        name = self.info.crs_name or "scene CRS"
        if self._geographic:
            parts.append(f"{name} {mx:.6f}, {my:.6f}")
        else:
            unit = f" {self._units}" if self._units else ""
            parts.append(f"{name} {mx:.1f}, {my:.1f}{unit}")
        ll = self.lonlat(x, y)
        if ll is not None:
            parts.append(format_latlon(ll[1], ll[0]))
        return "  │  ".join(parts)


def _unit_abbrev(unit_name: str) -> str:
    name = (unit_name or "").lower()
    if name in ("metre", "meter", "metres", "meters"):
        return "m"
    if "foot" in name or "feet" in name:
        return "ft"
    return unit_name or ""
