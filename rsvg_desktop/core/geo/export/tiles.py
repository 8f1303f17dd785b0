"""The tile export, :func:`export_tiles`: tile footprints alone, with their ``skipped`` flag."""

from __future__ import annotations

import logging
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from rsvg_desktop.core.geo.detections import TileRecord
from rsvg_desktop.core.geo.export.files import check_output, quiet_pixel_mode, write_output
from rsvg_desktop.core.geo.export.formats import (
    ExportFormat,
    ExportResult,
    check_geojson_source,
    format_for_path,
)
from rsvg_desktop.core.geo.export.frames import crs_or_none, crs_text, tiles_frame
from rsvg_desktop.core.geo.export.geojson import frame_to_wgs84, write_geojson
from rsvg_desktop.core.geo.export.geopackage import write_tiles_gpkg
from rsvg_desktop.core.geo.export.shapefile import write_tiles_shapefile

__all__ = ["export_tiles"]

log = logging.getLogger(__name__)


def export_tiles(
    path: str | os.PathLike[str],
    tiles: Sequence[TileRecord],
    *,
    crs: Any | None,
    overwrite: bool = False,
    fmt: str | ExportFormat | None = None,
) -> ExportResult:
    """Write tile footprints (``skipped`` flag included) alone: a ``tiles`` layer with its QGIS style in a
    GeoPackage, an RFC 7946 GeoJSON, or a Shapefile. Same checks, overwrite and atomicity rules as
    :func:`~rsvg_desktop.core.geo.export.export_detections`."""
    path = Path(path)
    kind = format_for_path(path, fmt)
    src_crs = crs_or_none(crs)
    frame = tiles_frame(tiles, crs=src_crs)
    if kind is ExportFormat.GEOJSON:
        frame = frame_to_wgs84(frame, check_geojson_source(path, src_crs, "tiles"))
    check_output(path, kind, overwrite)

    def write_file(tmp: Path) -> None:
        with quiet_pixel_mode():
            if kind is ExportFormat.GPKG:
                write_tiles_gpkg(tmp, frame, pixel_mode=src_crs is None)
            else:
                write_geojson(tmp, frame)

    files = write_output(
        path, kind, overwrite, write_file=write_file, shapefile=(frame, write_tiles_shapefile)
    )
    log.info("exported %d tile footprints to %s (%s)", len(frame), path, kind.value)
    return ExportResult(
        path=path,
        fmt=kind,
        files=files,
        count=len(frame),
        crs=None if src_crs is None else crs_text(src_crs),
    )
