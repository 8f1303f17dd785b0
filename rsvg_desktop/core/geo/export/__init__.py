"""Export detections for QGIS and other GIS tools: GeoPackage (primary), GeoJSON (RFC 7946), Shapefile.

Two entry points: :func:`export_detections`, and :func:`export_tiles` for tile footprints alone. Every
format carries the same attributes on every feature (full names; Shapefile abbreviates to ≤ 10
characters with :data:`SHAPEFILE_FIELDS`):

``det_id`` (row number in the exported table), ``phrase``, ``task``, ``query``, ``tile_row``,
``tile_col``, ``tile_id``, ``angle`` (as written by the model, NULL when none), ``box_x1, box_y1, box_x2,
box_y2`` (the grid box as written), ``model``, ``precision``, ``run_id``, ``scene``,
``angle_convention`` and ``area_m2`` (area on the ground in m²: geodesic, on the ellipsoid, whatever the
CRS) — ``area_px`` (square scene pixels) in pixel mode.

Formats:

* **GeoPackage** — layers ``detections`` (polygons), ``tiles`` (footprints with a ``skipped`` flag,
  when tiles are given) and ``run`` (non-spatial run metadata, one row per run, always written: it
  records the angle convention), plus default QGIS styles in ``layer_styles``.
* **GeoJSON** — RFC 7946: reprojected to WGS 84 longitude/latitude, counter-clockwise exteriors, no
  ``crs`` member, 7 decimals (≈ 1 cm). Detections only; the run table goes in a top-level foreign
  member ``rsvg_runs``. Pixel-mode results (no CRS) are **refused** with :class:`ExportError`: pixel
  coordinates in a GeoJSON would be read as degrees by every client — use GeoPackage or Shapefile.
* **Shapefile** — ``.shp/.shx/.dbf`` + ``.prj`` (when there is a CRS) + ``.cpg`` (``UTF-8``) + a ``.qml``
  default style QGIS loads automatically; detections only, one geometry type (Polygon); text values
  longer than 254 bytes are cut (logged).

Writing is atomic: the file is written under a temporary name in the destination folder and renamed
over the target (``os.replace``) only when complete, so a failure leaves neither half a file nor a
damaged old one. A Shapefile set is written in a temporary folder and its files moved one by one, the
``.shp`` last. Existing outputs (for a Shapefile: any of its sidecars) are refused unless
``overwrite=True`` (:class:`OutputExistsError`).

Modules: ``formats`` (format names, the rules of each format), ``frames`` (the attribute tables),
``files`` (target checks, atomic writing, Shapefile sets), ``geopackage``, ``geojson`` and
``shapefile`` (one writer each), ``detections`` (:func:`export_detections`) and ``tiles``
(:func:`export_tiles`).
"""

from rsvg_desktop.core.geo.export.detections import export_detections
from rsvg_desktop.core.geo.export.files import SHAPEFILE_SIDECARS
from rsvg_desktop.core.geo.export.formats import ExportFormat, ExportResult, format_for_path
from rsvg_desktop.core.geo.export.frames import DETECTION_FIELDS, detections_frame, run_frame, tiles_frame
from rsvg_desktop.core.geo.export.shapefile import SHAPEFILE_FIELDS
from rsvg_desktop.core.geo.export.tiles import export_tiles

__all__ = [
    "DETECTION_FIELDS",
    "SHAPEFILE_FIELDS",
    "SHAPEFILE_SIDECARS",
    "ExportFormat",
    "ExportResult",
    "detections_frame",
    "export_detections",
    "export_tiles",
    "format_for_path",
    "run_frame",
    "tiles_frame",
]
