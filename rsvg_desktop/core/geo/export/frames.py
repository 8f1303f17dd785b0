"""The attribute tables the exports write: detections, tile footprints and runs, as (Geo)DataFrames.

Every format carries the same detection attributes (full names here; a Shapefile abbreviates them, see
``shapefile.py``): :data:`DETECTION_FIELDS`, with ``area_m2`` (area on the ground: geodesic, on the
ellipsoid, whatever the CRS) or ``area_px`` (square scene pixels) in pixel mode; what each area field
means is in :data:`FIELD_DESCRIPTIONS`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS

from rsvg_desktop import __version__
from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import Detection, DetectionTable, RunInfo, TileRecord
from rsvg_desktop.core.geo.ground import ground_areas
from rsvg_desktop.errors import ConfigError

__all__ = [
    "DETECTION_FIELDS",
    "FIELD_ALIASES",
    "FIELD_DESCRIPTIONS",
    "area_column",
    "as_table",
    "crs_or_none",
    "crs_text",
    "detections_frame",
    "run_frame",
    "tiles_frame",
]

DETECTION_FIELDS: tuple[str, ...] = (
    "det_id",
    "phrase",
    "task",
    "query",
    "tile_row",
    "tile_col",
    "tile_id",
    "angle",
    "box_x1",
    "box_y1",
    "box_x2",
    "box_y2",
    "model",
    "precision",
    "run_id",
    "scene",
    "angle_convention",
    "area_m2",
    "area_px",
)

#: What the exported area fields mean, written with the exports (GeoPackage column descriptions, the
#: GeoJSON's ``rsvg_fields`` member, field aliases in the QGIS styles).
FIELD_DESCRIPTIONS: Mapping[str, str] = {
    "area_m2": (
        "area on the ground in square metres: geodesic, measured on the ellipsoid (not the planar area "
        "in the map projection's units)"
    ),
    "area_px": "area in square scene pixels (pixel mode: no CRS)",
}

#: The names QGIS shows for the area fields (aliases in the default QGIS styles).
FIELD_ALIASES: Mapping[str, str] = {"area_m2": "area on the ground (m²)", "area_px": "area (px²)"}


def as_table(
    detections: DetectionTable | Sequence[Detection], convention: AngleConvention | None
) -> DetectionTable:
    """The detections as a :class:`DetectionTable` built with ``convention`` (refused when a given table
    was built with another one)."""
    if isinstance(detections, DetectionTable):
        if convention is not None and AngleConvention(convention) is not detections.angle_convention:
            raise ConfigError(
                f"the run says angle convention {AngleConvention(convention).value!r} but the detections "
                f"were built with {detections.angle_convention.value!r}"
            )
        return detections
    if convention is None:
        return DetectionTable.from_detections(list(detections))
    return DetectionTable.from_detections(list(detections), AngleConvention(convention))


def crs_or_none(crs: Any) -> CRS | None:
    """``crs`` (anything pyproj reads) as a :class:`CRS`; ``None`` stays ``None`` (pixel mode)."""
    if crs is None:
        return None
    try:
        return CRS.from_user_input(crs)
    except Exception as exc:  # pyproj raises CRSError, a ValueError subclass; keep the message
        raise ConfigError(f"not a usable CRS: {crs!r} ({exc})") from exc


def _check_polygons(geoms: np.ndarray, what: str) -> None:
    if len(geoms) == 0:
        return
    types = shapely.get_type_id(geoms)
    bad = np.flatnonzero(types != shapely.GeometryType.POLYGON)
    if len(bad):
        first = geoms[bad[0]]
        kind = "missing" if first is None else first.geom_type
        raise ConfigError(f"{what}: {len(bad)} geometries are not Polygons (row {bad[0]} is {kind})")


def area_column(geoms: np.ndarray, crs: CRS | None) -> tuple[str, np.ndarray]:
    """The area column of ``geoms``: ``area_m2`` (geodesic) in a CRS, ``area_px`` in pixel mode."""
    if crs is None:
        return "area_px", shapely.area(geoms) if len(geoms) else np.empty(0)
    return "area_m2", ground_areas(geoms, crs)


def detections_frame(
    detections: DetectionTable | Sequence[Detection],
    *,
    crs: Any | None,
    angle_convention: AngleConvention | None = None,
) -> gpd.GeoDataFrame:
    """The detections as a GeoDataFrame with every exported attribute (full names), in ``crs``
    (``None`` = pixel mode, areas in ``area_px``)."""
    table = as_table(detections, angle_convention)
    crs_obj = crs_or_none(crs)
    geoms = np.asarray(table.geometry, dtype=object)
    _check_polygons(geoms, "detections")
    n = len(table)
    area_name, areas = area_column(geoms, crs_obj)
    rows, cols = table.tile_row.astype(np.int64), table.tile_col.astype(np.int64)
    data: dict[str, Any] = {
        "det_id": np.arange(n, dtype=np.int64),
        "phrase": table.phrase,
        "task": table.task,
        "query": table.query,
        "tile_row": rows,
        "tile_col": cols,
        "tile_id": np.asarray(
            [f"r{r}c{c}" for r, c in zip(rows.tolist(), cols.tolist(), strict=True)], dtype=object
        ),
        "angle": table.boxes[:, 4],
        "box_x1": table.boxes[:, 0],
        "box_y1": table.boxes[:, 1],
        "box_x2": table.boxes[:, 2],
        "box_y2": table.boxes[:, 3],
        "model": table.model,
        "precision": table.precision,
        "run_id": table.run_id,
        "scene": table.scene,
        "angle_convention": np.full(n, table.angle_convention.value, dtype=object),
        area_name: areas,
    }
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs_obj), crs=crs_obj)


def tiles_frame(tiles: Sequence[TileRecord], *, crs: Any | None) -> gpd.GeoDataFrame:
    """Tile footprints with their ids, windows and the ``skipped`` flag."""
    crs_obj = crs_or_none(crs)
    recs = list(tiles)
    geoms = np.empty(len(recs), dtype=object)
    geoms[:] = [r.geometry for r in recs]
    _check_polygons(geoms, "tiles")
    data = {
        "tile_id": [r.tile.id for r in recs],
        "tile_row": np.asarray([r.tile.row for r in recs], dtype=np.int64),
        "tile_col": np.asarray([r.tile.col for r in recs], dtype=np.int64),
        "col_off": np.asarray([r.tile.col_off for r in recs], dtype=np.int64),
        "row_off": np.asarray([r.tile.row_off for r in recs], dtype=np.int64),
        "width": np.asarray([r.tile.width for r in recs], dtype=np.int64),
        "height": np.asarray([r.tile.height for r in recs], dtype=np.int64),
        "size": np.asarray([r.tile.size for r in recs], dtype=np.int64),
        "skipped": np.asarray([bool(r.skipped) for r in recs], dtype=bool),
        "skip_reason": np.asarray([r.skip_reason for r in recs], dtype=object),
        "run_id": np.asarray([r.run_id for r in recs], dtype=object),
    }
    return gpd.GeoDataFrame(data, geometry=gpd.GeoSeries(geoms, crs=crs_obj), crs=crs_obj)


def crs_text(crs: CRS | None) -> str:
    """How the run table names a CRS: ``AUTHORITY:CODE`` when it has one, else its WKT."""
    if crs is None:
        return "pixel (no CRS; x right, y down, origin at the scene's top-left corner)"
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


def _records_from_detections(table: DetectionTable) -> list[dict[str, Any]]:
    """One run record per run id of the detections (first row's values), or one that only says how
    the run would be read when nothing was detected."""
    records: list[dict[str, Any]] = []
    seen: dict[str, int] = {}
    for i, rid in enumerate(table.run_id.tolist()):
        seen.setdefault(rid, i)
    for rid, i in seen.items():
        records.append(
            {
                "run_id": rid,
                "scene": table.scene[i],
                "model": table.model[i],
                "precision": table.precision[i],
                "device": "",
                "angle_convention": table.angle_convention.value,
                "angle_convention_doc": table.angle_convention.description,
                "task": table.task[i],
                "query": table.query[i],
                "created": utc_now_iso(),
                "tool_version": __version__,
            }
        )
    if not records:  # nothing detected: still record how the run would be read
        records.append(
            {
                "run_id": None,
                "created": utc_now_iso(),
                "tool_version": __version__,
            }
        )
    return records


def run_frame(
    run: RunInfo | Sequence[RunInfo] | Mapping[str, Any] | None,
    table: DetectionTable,
    *,
    crs: CRS | None,
) -> pd.DataFrame:
    """One row per run: the given :class:`RunInfo` values, or (``run=None``) what the detections say."""
    if run is None:
        records = _records_from_detections(table)
    elif isinstance(run, RunInfo):
        records = [run.as_record()]
    elif isinstance(run, Mapping):
        records = [dict(run)]
    else:
        records = [r.as_record() if isinstance(r, RunInfo) else dict(r) for r in run]
    for rec in records:
        conv = rec.get("angle_convention")
        if conv is not None and AngleConvention(conv) is not table.angle_convention:
            raise ConfigError(
                f"run {rec.get('run_id')!r} says angle convention {AngleConvention(conv).value!r} but the "
                f"detections were built with {table.angle_convention.value!r}"
            )
        rec.setdefault("angle_convention", table.angle_convention.value)
        rec.setdefault("angle_convention_doc", table.angle_convention.description)
        if not rec.get("crs"):
            rec["crs"] = crs_text(crs)
        rid = rec.get("run_id")
        rec["n_detections"] = int(np.count_nonzero(table.run_id == rid)) if rid is not None else len(table)
    frame = pd.DataFrame.from_records(records)
    return frame
