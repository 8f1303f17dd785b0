"""Vector overlays: a GeoPackage / GeoJSON / Shapefile layer read and placed on a scene's pixels.

:func:`read_overlay` reads one layer (pyogrio through geopandas), reprojects it to the scene's CRS and
turns every geometry into scene pixel coordinates through the inverse of the full affine (rotated
transforms included), so the map draws it in the same pixel space as the raster and the detections.

Placing rules:

* scene with a CRS, layer with a CRS: reprojected (pyproj, through geopandas);
* scene with a CRS, layer without one: its coordinates are taken to be in the scene's CRS (logged);
* scene in pixel mode, layer without a CRS (e.g. a pixel-mode export of this app): its coordinates
  are scene pixels;
* scene in pixel mode, layer with a CRS: refused (:class:`~rsvg_desktop.errors.OverlayError`): there
  is nothing to place it against.

Parts are plain numpy arrays in a frozen value, so the result crosses threads and layers freely.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import shapely

from rsvg_desktop.core.geo.transform import Transform6, map_to_pixel
from rsvg_desktop.errors import OverlayError

__all__ = ["OverlayPart", "VectorOverlay", "read_overlay"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class OverlayPart:
    """One ring, line or point set in scene pixels: ``kind`` is ``polygon``, ``line`` or ``point``."""

    kind: str
    xy: np.ndarray = field(repr=False)  # (n, 2) float64


@dataclass(frozen=True, slots=True)
class VectorOverlay:
    """A vector layer placed on a scene: its file, layer name, feature count and pixel parts."""

    path: str
    layer: str
    features: int
    parts: tuple[OverlayPart, ...]
    crs_name: str | None


def _parts(geom: shapely.Geometry) -> list[OverlayPart]:
    out: list[OverlayPart] = []
    if geom is None or geom.is_empty:
        return out
    kind = geom.geom_type
    if kind in ("MultiPolygon", "MultiLineString", "MultiPoint", "GeometryCollection"):
        for g in geom.geoms:
            out.extend(_parts(g))
    elif kind == "Polygon":
        out.append(OverlayPart("polygon", np.asarray(geom.exterior.coords, dtype=np.float64)[:, :2]))
        for ring in geom.interiors:
            out.append(OverlayPart("polygon", np.asarray(ring.coords, dtype=np.float64)[:, :2]))
    elif kind in ("LineString", "LinearRing"):
        out.append(OverlayPart("line", np.asarray(geom.coords, dtype=np.float64)[:, :2]))
    elif kind == "Point":
        out.append(OverlayPart("point", np.asarray(geom.coords, dtype=np.float64)[:, :2]))
    return out


def read_overlay(
    path: str | os.PathLike[str],
    *,
    crs_wkt: str | None,
    transform: Transform6 | None,
    layer: str | None = None,
) -> VectorOverlay:
    """Read ``layer`` of ``path`` (default: the first layer with geometries) placed on a scene whose
    CRS is ``crs_wkt`` (``None``: pixel mode) and whose affine is ``transform`` (see the module doc)."""
    import geopandas as gpd
    import pyogrio

    path = os.fspath(path)
    if not Path(path).exists():
        raise OverlayError(f"{path}: no such file")
    try:
        layers = pyogrio.list_layers(path)
    except Exception as exc:
        raise OverlayError(f"{path}: not a vector file GDAL can read ({str(exc).splitlines()[0]})") from exc
    with_geometry = [str(name) for name, gtype in layers if gtype is not None]
    if layer is None:
        if not with_geometry:
            raise OverlayError(f"{path}: the file has no layer with geometries")
        layer = with_geometry[0]
    elif layer not in with_geometry:
        raise OverlayError(f"{path}: no layer {layer!r} with geometries (layers: {', '.join(with_geometry)})")
    try:
        frame = gpd.read_file(path, layer=layer, engine="pyogrio")
    except Exception as exc:
        raise OverlayError(f"{path}: cannot read layer {layer!r} ({str(exc).splitlines()[0]})") from exc

    crs_name: str | None = None
    if frame.crs is not None:
        crs_name = frame.crs.to_string()
        if crs_wkt is None:
            raise OverlayError(
                f"{path}: the layer is in {crs_name} but the scene has no coordinate reference system "
                "(pixel mode): it cannot be placed on the scene"
            )
        frame = frame.to_crs(crs_wkt)
    elif crs_wkt is not None:
        log.warning("%s: the layer has no CRS; taking its coordinates to be in the scene's CRS", path)

    parts: list[OverlayPart] = []
    for geom in frame.geometry:
        for part in _parts(geom):
            if crs_wkt is not None and transform is not None:
                px, py = map_to_pixel(transform, part.xy[:, 0], part.xy[:, 1])
                part = OverlayPart(part.kind, np.column_stack([px, py]))
            parts.append(part)
    return VectorOverlay(path, layer, len(frame), tuple(parts), crs_name)
