"""GeoJSON writing (RFC 7946): WGS 84 longitude/latitude, counter-clockwise exteriors, no ``crs`` member,
:data:`GEOJSON_DECIMALS` decimals (≈ 1 cm), the run table in the foreign member ``rsvg_runs`` and what the
area fields mean in ``rsvg_fields``."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer

from rsvg_desktop.core.geo.export.frames import FIELD_DESCRIPTIONS
from rsvg_desktop.errors import ConfigError

__all__ = ["GEOJSON_DECIMALS", "WGS84", "frame_to_wgs84", "to_wgs84", "write_geojson"]

log = logging.getLogger(__name__)

WGS84 = CRS.from_epsg(4326)
GEOJSON_DECIMALS = 7


def to_wgs84(geoms: np.ndarray, crs: CRS) -> np.ndarray:
    """Polygons in ``crs`` reprojected to WGS 84 longitude/latitude, exteriors counter-clockwise."""
    if crs.equals(WGS84) or len(geoms) == 0:
        out = geoms
    else:
        tr = Transformer.from_crs(crs, WGS84, always_xy=True)

        def fn(xy: np.ndarray) -> np.ndarray:
            x, y = tr.transform(xy[:, 0], xy[:, 1])
            return np.column_stack([x, y])

        out = shapely.transform(geoms, fn)
        coords = shapely.get_coordinates(out)
        if not np.isfinite(coords).all():
            raise ConfigError(f"some detections cannot be expressed in WGS 84 from {crs.name!r}")
    return shapely.orient_polygons(out, exterior_cw=False)


def frame_to_wgs84(frame: gpd.GeoDataFrame, crs: CRS) -> gpd.GeoDataFrame:
    """``frame`` (geometries in ``crs``) with its geometries as :func:`to_wgs84` makes them."""
    return frame.set_geometry(gpd.GeoSeries(to_wgs84(frame.geometry.to_numpy(), crs), crs=WGS84), crs=WGS84)


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _geojson_options() -> dict[str, str]:
    """GDAL's GeoJSON layer options for RFC 7946 output."""
    return {
        "RFC7946": "YES",
        "COORDINATE_PRECISION": str(GEOJSON_DECIMALS),
        "WRITE_NAME": "NO",
    }


def write_geojson(tmp: Path, frame: gpd.GeoDataFrame, runs: pd.DataFrame | None = None) -> None:
    """Write ``frame`` (already in WGS 84) to ``tmp``; ``runs``, when given, as the foreign member
    ``rsvg_runs``, and what its area fields mean as ``rsvg_fields`` (field name → description)."""
    opts = _geojson_options()
    members: dict[str, Any] = {}
    if runs is not None:
        members["rsvg_runs"] = [
            {k: _json_safe(v) for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}
            for rec in runs.to_dict(orient="records")
        ]
    fields = {name: text for name, text in FIELD_DESCRIPTIONS.items() if name in frame.columns}
    if fields:
        members["rsvg_fields"] = fields
    if members:
        if pyogrio.__gdal_version__ >= (3, 9, 0):
            opts["FOREIGN_MEMBERS_COLLECTION"] = json.dumps(members, ensure_ascii=False)
        else:  # pragma: no cover - older GDAL
            log.warning(
                "GDAL %s cannot write GeoJSON foreign members: run metadata and field descriptions left out",
                pyogrio.__gdal_version_string__,
            )
    pyogrio.write_dataframe(frame, tmp, driver="GeoJSON", geometry_type="Polygon", layer_options=opts)
