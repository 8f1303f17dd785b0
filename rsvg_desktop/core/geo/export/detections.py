"""The detection export, :func:`export_detections`: checks, attribute tables, reprojection, writing."""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import geopandas as gpd
import pandas as pd
import shapely
from pyproj import CRS

from rsvg_desktop.core.geo.detections import Detection, DetectionTable, RunInfo, TileRecord
from rsvg_desktop.core.geo.export.files import check_output, quiet_pixel_mode, write_output
from rsvg_desktop.core.geo.export.formats import (
    ExportFormat,
    ExportResult,
    check_geojson_source,
    format_for_path,
)
from rsvg_desktop.core.geo.export.frames import (
    as_table,
    crs_or_none,
    crs_text,
    detections_frame,
    run_frame,
    tiles_frame,
)
from rsvg_desktop.core.geo.export.geojson import WGS84, frame_to_wgs84, write_geojson
from rsvg_desktop.core.geo.export.geopackage import write_detections_gpkg
from rsvg_desktop.core.geo.export.shapefile import write_detections_shapefile
from rsvg_desktop.errors import ConfigError

__all__ = ["export_detections"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class _Layers:
    """What one export writes: the detections, the tile footprints (or ``None``) and the run table,
    the spatial ones in ``crs`` (``None``: pixel mode)."""

    detections: gpd.GeoDataFrame
    tiles: gpd.GeoDataFrame | None
    runs: pd.DataFrame
    crs: CRS | None


def export_detections(
    path: str | os.PathLike[str],
    detections: DetectionTable | Sequence[Detection],
    *,
    crs: Any | None,
    tiles: Sequence[TileRecord] | None = None,
    run: RunInfo | Sequence[RunInfo] | Mapping[str, Any] | None = None,
    overwrite: bool = False,
    fmt: str | ExportFormat | None = None,
    to_crs: Any | None = None,
) -> ExportResult:
    """Write ``detections`` (geometries in ``crs``; ``None`` = pixel mode) to ``path``.

    The format comes from ``fmt`` or the extension. ``tiles`` (footprints in the same CRS) and ``run``
    go to the GeoPackage's ``tiles`` and ``run`` layers; without ``run`` the run table is derived from
    the detections. ``to_crs`` reprojects GeoPackage/Shapefile output (GeoJSON is always WGS 84).
    Raises :class:`OutputExistsError` if the output exists and ``overwrite`` is false,
    :class:`ConfigError` for bad arguments and :class:`ExportError` when writing fails.
    """
    path = Path(path)
    kind = format_for_path(path, fmt)
    table = as_table(detections, run.angle_convention if isinstance(run, RunInfo) else None)
    src_crs, out_crs = _source_and_output_crs(path, kind, crs, to_crs)
    check_output(path, kind, overwrite)

    layers = _in_output_crs(_build_layers(table, tiles, run, kind, src_crs), kind, out_crs)
    _log_output_limits(path, kind, tiles is not None, layers.crs)
    files = _write_layers(path, kind, overwrite, layers)

    count = len(layers.detections)
    log.info("exported %d detections to %s (%s, %s)", count, path, kind.value, crs_text(layers.crs))
    return ExportResult(
        path=path,
        fmt=kind,
        files=files,
        count=count,
        crs=None if layers.crs is None else crs_text(layers.crs),
    )


def _source_and_output_crs(
    path: Path, kind: ExportFormat, crs: Any | None, to_crs: Any | None
) -> tuple[CRS | None, CRS | None]:
    """The detections' CRS and the one asked for the output, refused where the format cannot hold
    them: pixel mode cannot be reprojected, and a GeoJSON is WGS 84 longitude/latitude."""
    src_crs = crs_or_none(crs)
    out_crs = crs_or_none(to_crs)
    if out_crs is not None and src_crs is None:
        raise ConfigError("pixel-mode detections (crs=None) cannot be reprojected")
    if kind is ExportFormat.GEOJSON:
        check_geojson_source(path, src_crs, "detections")
        if out_crs is not None and not out_crs.equals(WGS84):
            raise ConfigError("GeoJSON is always WGS 84 (RFC 7946): to_crs must be None or EPSG:4326")
    return src_crs, out_crs


def _build_layers(
    table: DetectionTable,
    tiles: Sequence[TileRecord] | None,
    run: RunInfo | Sequence[RunInfo] | Mapping[str, Any] | None,
    kind: ExportFormat,
    src_crs: CRS | None,
) -> _Layers:
    """The attribute tables in the detections' CRS (the run table of a GeoJSON already names WGS 84)."""
    det = detections_frame(table, crs=src_crs)
    runs = run_frame(run, table, crs=src_crs if kind is not ExportFormat.GEOJSON else WGS84)
    tiles_df = tiles_frame(tiles, crs=src_crs) if tiles is not None else None
    return _Layers(det, tiles_df, runs, src_crs)


def _in_output_crs(layers: _Layers, kind: ExportFormat, out_crs: CRS | None) -> _Layers:
    """The layers as written: a GeoJSON's detections in WGS 84, others in ``out_crs`` when given
    (exteriors counter-clockwise, the run table naming the new CRS)."""
    if kind is ExportFormat.GEOJSON:
        assert layers.crs is not None
        return replace(layers, detections=frame_to_wgs84(layers.detections, layers.crs), crs=WGS84)
    if out_crs is None:
        return layers
    det = layers.detections.to_crs(out_crs)
    det = det.set_geometry(shapely.orient_polygons(det.geometry.to_numpy(), exterior_cw=False), crs=out_crs)
    tiles_df = layers.tiles.to_crs(out_crs) if layers.tiles is not None else None
    layers.runs["crs"] = crs_text(out_crs)
    return _Layers(det, tiles_df, layers.runs, out_crs)


def _log_output_limits(path: Path, kind: ExportFormat, with_tiles: bool, crs: CRS | None) -> None:
    """Say what the output leaves out: tile footprints outside a GeoPackage, a CRS in pixel mode."""
    if kind is not ExportFormat.GPKG and with_tiles:
        log.info(
            "%s: the %s format holds one layer: tile footprints are only written to GeoPackage",
            path,
            kind.value,
        )
    if crs is None:
        log.warning("%s: pixel-mode export (no CRS): coordinates are scene pixels, y down", path)


def _write_layers(path: Path, kind: ExportFormat, overwrite: bool, layers: _Layers) -> tuple[Path, ...]:
    def write_file(tmp: Path) -> None:
        if kind is ExportFormat.GPKG:
            with quiet_pixel_mode():
                write_detections_gpkg(
                    tmp, layers.detections, layers.tiles, layers.runs, pixel_mode=layers.crs is None
                )
        else:
            write_geojson(tmp, layers.detections, layers.runs)

    return write_output(
        path,
        kind,
        overwrite,
        write_file=write_file,
        shapefile=(layers.detections, write_detections_shapefile),
    )
