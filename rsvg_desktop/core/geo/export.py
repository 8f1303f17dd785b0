"""Export detections for QGIS and other GIS tools: GeoPackage (primary), GeoJSON (RFC 7946), Shapefile.

One entry point, :func:`export_detections`. Every format carries the same attributes on every feature
(full names; Shapefile abbreviates to ≤ 10 characters with :data:`SHAPEFILE_FIELDS`):

``det_id`` (row number in the exported table), ``phrase``, ``task``, ``query``, ``tile_row``,
``tile_col``, ``tile_id``, ``angle`` (as written by the model, NULL when none), ``box_x1, box_y1, box_x2,
box_y2`` (the grid box as written), ``model``, ``precision``, ``run_id``, ``scene``,
``angle_convention`` and ``area_m2`` (planar area in the CRS's linear unit converted to m², geodesic
on the ellipsoid when the CRS is geographic) — ``area_px`` (square scene pixels) in pixel mode.

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
"""

from __future__ import annotations

import json
import logging
import os
import shutil
import tempfile
import uuid
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio
import shapely
from pyproj import CRS, Transformer

from rsvg_desktop import __version__
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import Detection, DetectionTable, RunInfo, TileRecord
from rsvg_desktop.core.geo.styles import (
    detections_qml,
    detections_sld,
    tiles_qml,
    tiles_sld,
    write_layer_styles,
)
from rsvg_desktop.errors import ConfigError, ExportError, OutputExistsError, RsvgError

__all__ = [
    "DETECTION_FIELDS",
    "SHAPEFILE_FIELDS",
    "SHAPEFILE_SIDECARS",
    "ExportFormat",
    "ExportResult",
    "detections_frame",
    "export_detections",
    "format_for_path",
    "run_frame",
    "tiles_frame",
]

log = logging.getLogger(__name__)

WGS84 = CRS.from_epsg(4326)
GEOJSON_DECIMALS = 7


class ExportFormat(StrEnum):
    """Vector formats :func:`export_detections` writes."""

    GPKG = "gpkg"
    GEOJSON = "geojson"
    SHAPEFILE = "shp"


_SUFFIXES = {
    ".gpkg": ExportFormat.GPKG,
    ".geojson": ExportFormat.GEOJSON,
    ".json": ExportFormat.GEOJSON,
    ".shp": ExportFormat.SHAPEFILE,
}
_FORMAT_NAMES = {
    ExportFormat.GPKG: "GeoPackage",
    ExportFormat.GEOJSON: "GeoJSON",
    ExportFormat.SHAPEFILE: "Shapefile",
}
_FORMAT_EXTS = {ExportFormat.GPKG: ".gpkg", ExportFormat.GEOJSON: ".geojson", ExportFormat.SHAPEFILE: ".shp"}
_ALIASES = {
    "gpkg": "gpkg",
    "geopackage": "gpkg",
    "geojson": "geojson",
    "json": "geojson",
    "shp": "shp",
    "shapefile": "shp",
    "esri shapefile": "shp",
}

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

#: Full attribute name → Shapefile (dBase) field name, at most 10 characters.
SHAPEFILE_FIELDS: Mapping[str, str] = {
    "det_id": "det_id",
    "phrase": "phrase",
    "task": "task",
    "query": "query",
    "tile_row": "tile_row",
    "tile_col": "tile_col",
    "tile_id": "tile_id",
    "angle": "angle",
    "box_x1": "box_x1",
    "box_y1": "box_y1",
    "box_x2": "box_x2",
    "box_y2": "box_y2",
    "model": "model",
    "precision": "precision",
    "run_id": "run_id",
    "scene": "scene",
    "angle_convention": "angle_conv",
    "area_m2": "area_m2",
    "area_px": "area_px",
}

#: Files that belong to a Shapefile ``name.shp`` (checked before writing, replaced or removed on overwrite).
SHAPEFILE_SIDECARS: tuple[str, ...] = (
    ".shp",
    ".shx",
    ".dbf",
    ".prj",
    ".cpg",
    ".qml",
    ".qix",
    ".sbn",
    ".sbx",
    ".shp.xml",
    ".qmd",
    ".fix",
)
_DBF_TEXT_BYTES = 254


@dataclass(frozen=True, slots=True)
class ExportResult:
    """What was written: the main ``path``, every file (``files``), the format and the feature count."""

    path: Path
    fmt: ExportFormat
    files: tuple[Path, ...]
    count: int
    crs: str | None


def format_for_path(path: str | os.PathLike[str], fmt: str | ExportFormat | None = None) -> ExportFormat:
    """The export format: ``fmt`` when given (name or alias), else from the file extension.

    A format and an extension that name different formats (``fmt="geojson"`` for ``out.shp``) are
    refused with :class:`ConfigError`: the file would lie about its content. An extension that names no
    format (``out.txt``, ``out``) is written in ``fmt`` as asked.
    """
    suffix = Path(path).suffix.lower()
    if fmt is not None:
        key = _ALIASES.get(str(fmt).strip().lower())
        if key is None:
            raise ConfigError(f"unknown export format {fmt!r} (use gpkg, geojson or shp)")
        chosen = ExportFormat(key)
        by_suffix = _SUFFIXES.get(suffix)
        if by_suffix is not None and by_suffix is not chosen:
            raise ConfigError(
                f"{os.fspath(path)}: the name ends in {suffix} ({_FORMAT_NAMES[by_suffix]}) but the format "
                f"asked for is {_FORMAT_NAMES[chosen]}; give the file a "
                f"{_FORMAT_EXTS[chosen]} name or choose {_FORMAT_NAMES[by_suffix]}"
            )
        return chosen
    if suffix not in _SUFFIXES:
        raise ConfigError(
            f"cannot tell the export format of {os.fspath(path)!r} from its extension "
            "(use .gpkg, .geojson/.json or .shp, or pass the format)"
        )
    return _SUFFIXES[suffix]


# --- frames ------------------------------------------------------------------------------------------
def _as_table(
    detections: DetectionTable | Sequence[Detection], convention: AngleConvention | None
) -> DetectionTable:
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


def _crs_or_none(crs: Any) -> CRS | None:
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


def _areas(geoms: np.ndarray, crs: CRS | None) -> tuple[str, np.ndarray]:
    if len(geoms) == 0:
        return ("area_px" if crs is None else "area_m2"), np.empty(0)
    if crs is None:
        return "area_px", shapely.area(geoms)
    if crs.is_geographic:
        geod = crs.get_geod()
        if geod is None:
            raise ConfigError(f"CRS {crs.name!r} has no ellipsoid: cannot compute areas")
        out = np.empty(len(geoms))
        for i, g in enumerate(geoms):
            lon, lat = np.asarray(g.exterior.coords).T
            out[i] = abs(geod.polygon_area_perimeter(lon, lat)[0])
        return "area_m2", out
    factor = 1.0
    if crs.axis_info:
        factor = crs.axis_info[0].unit_conversion_factor or 1.0
    return "area_m2", shapely.area(geoms) * factor * factor


def detections_frame(
    detections: DetectionTable | Sequence[Detection],
    *,
    crs: Any | None,
    angle_convention: AngleConvention | None = None,
) -> gpd.GeoDataFrame:
    """The detections as a GeoDataFrame with every exported attribute (full names), in ``crs``
    (``None`` = pixel mode, areas in ``area_px``)."""
    table = _as_table(detections, angle_convention)
    crs_obj = _crs_or_none(crs)
    geoms = np.asarray(table.geometry, dtype=object)
    _check_polygons(geoms, "detections")
    n = len(table)
    area_name, areas = _areas(geoms, crs_obj)
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
    crs_obj = _crs_or_none(crs)
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


def _crs_text(crs: CRS | None) -> str:
    if crs is None:
        return "pixel (no CRS; x right, y down, origin at the scene's top-left corner)"
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.to_wkt()


def run_frame(
    run: RunInfo | Sequence[RunInfo] | Mapping[str, Any] | None,
    table: DetectionTable,
    *,
    crs: CRS | None,
) -> pd.DataFrame:
    """One row per run: the given :class:`RunInfo` values, or (``run=None``) what the detections say."""
    if run is None:
        records = []
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
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "tool_version": __version__,
                }
            )
        if not records:  # nothing detected: still record how the run would be read
            records.append(
                {
                    "run_id": None,
                    "created": datetime.now(UTC).isoformat(timespec="seconds"),
                    "tool_version": __version__,
                }
            )
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
            rec["crs"] = _crs_text(crs)
        rid = rec.get("run_id")
        rec["n_detections"] = int(np.count_nonzero(table.run_id == rid)) if rid is not None else len(table)
    frame = pd.DataFrame.from_records(records)
    return frame


# --- atomic file handling --------------------------------------------------------------------------
def _temp_name(path: Path, suffix: str) -> Path:
    return path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp{suffix}")


def _remove_quietly(*paths: Path) -> None:
    for p in paths:
        for q in (
            p,
            p.with_name(p.name + "-journal"),
            p.with_name(p.name + "-wal"),
            p.with_name(p.name + "-shm"),
        ):
            if not os.path.lexists(q):
                continue  # never made (e.g. the folder is read-only): nothing to say
            try:
                q.unlink()
            except FileNotFoundError:
                pass
            except OSError as exc:  # pragma: no cover - best effort clean-up
                log.warning("could not remove temporary file %s: %s", q, exc)


def _check_target(path: Path, overwrite: bool, extra: Sequence[Path] = ()) -> None:
    if path.is_dir():
        raise ExportError(f"{path} is a folder, not a file name")
    if not path.parent.is_dir():
        raise ExportError(f"the folder of {path} does not exist")
    if not os.access(path.parent, os.W_OK | os.X_OK):
        raise ExportError(f"cannot write {path}: its folder {path.parent} is not writable")
    if overwrite:
        return
    for p in (path, *extra):
        if p.exists() or p.is_symlink():
            raise OutputExistsError(f"{p} exists (use --overwrite, or overwrite=True, to replace it)")


def _shapefile_set(path: Path) -> list[Path]:
    stem = path.name[: -len(path.suffix)] if path.suffix else path.name
    return [path.with_name(stem + ext) for ext in SHAPEFILE_SIDECARS]


# --- writers -------------------------------------------------------------------------------------
@contextmanager
def _quiet_pixel_mode() -> Iterator[None]:
    """pyogrio warns about a missing CRS; pixel mode is deliberate and logged once by us."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="'crs' was not provided", category=UserWarning)
        yield


def _write_gpkg(
    tmp: Path, det: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame | None, runs: pd.DataFrame, pixel_mode: bool
) -> None:
    opts: dict[str, str] = {"DESCRIPTION": "GeoChat detections (rsvg-desktop)"}
    if pixel_mode:
        opts["SRID"] = "-1"  # undefined Cartesian SRS: scene pixel coordinates
    pyogrio.write_dataframe(
        det, tmp, layer="detections", driver="GPKG", geometry_type="Polygon", layer_options=opts
    )
    styles = {"detections": ("rsvg default", detections_qml(), detections_sld())}
    if tiles is not None:
        topts = {"DESCRIPTION": "tile grid footprints (rsvg-desktop)"}
        if pixel_mode:
            topts["SRID"] = "-1"
        pyogrio.write_dataframe(
            tiles, tmp, layer="tiles", driver="GPKG", geometry_type="Polygon", layer_options=topts
        )
        styles["tiles"] = ("rsvg default", tiles_qml(), tiles_sld())
    pyogrio.write_dataframe(
        runs, tmp, layer="run", driver="GPKG", layer_options={"DESCRIPTION": "run metadata (rsvg-desktop)"}
    )
    write_layer_styles(tmp, styles)


def _to_wgs84(geoms: np.ndarray, crs: CRS) -> np.ndarray:
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


def _json_safe(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, float) and not np.isfinite(value):
        return None
    return value


def _write_geojson(tmp: Path, det: gpd.GeoDataFrame, runs: pd.DataFrame) -> None:
    run_records = [
        {k: _json_safe(v) for k, v in rec.items() if not (isinstance(v, float) and np.isnan(v))}
        for rec in runs.to_dict(orient="records")
    ]
    opts = {
        "RFC7946": "YES",
        "COORDINATE_PRECISION": str(GEOJSON_DECIMALS),
        "WRITE_NAME": "NO",
    }
    if pyogrio.__gdal_version__ >= (3, 9, 0):
        opts["FOREIGN_MEMBERS_COLLECTION"] = json.dumps({"rsvg_runs": run_records}, ensure_ascii=False)
    else:  # pragma: no cover - older GDAL
        log.warning(
            "GDAL %s cannot write GeoJSON foreign members: run metadata left out",
            pyogrio.__gdal_version_string__,
        )
    pyogrio.write_dataframe(det, tmp, driver="GeoJSON", geometry_type="Polygon", layer_options=opts)


def _truncate_text(frame: pd.DataFrame, path: Path) -> pd.DataFrame:
    frame = frame.copy()
    for col in frame.columns:
        if col == frame.geometry.name or not pd.api.types.is_string_dtype(frame[col].dtype):
            continue
        # A character takes at most 4 bytes in UTF-8: only longer strings need a byte count.
        chars = frame[col].str.len().fillna(0).to_numpy()
        maybe = np.flatnonzero(chars > _DBF_TEXT_BYTES // 4)
        if not len(maybe):
            continue
        vals = frame[col].to_numpy(dtype=object, na_value=None)
        long = [i for i in maybe.tolist() if len(vals[i].encode("utf-8")) > _DBF_TEXT_BYTES]
        if not long:
            continue
        log.warning(
            "%s: %d value(s) of %r longer than %d bytes were cut", path, len(long), col, _DBF_TEXT_BYTES
        )
        vals = vals.copy()
        for i in long:
            vals[i] = vals[i].encode("utf-8")[:_DBF_TEXT_BYTES].decode("utf-8", errors="ignore")
        frame[col] = vals
    return frame


def _write_shapefile(tmpdir: Path, stem: str, det: gpd.GeoDataFrame, path: Path) -> None:
    shp = det.rename(columns=dict(SHAPEFILE_FIELDS))
    names = [c for c in shp.columns if c != shp.geometry.name]
    too_long = [c for c in names if len(c) > 10]
    if too_long or len(set(names)) != len(names):
        raise ExportError(f"bad Shapefile field names {too_long or names}")  # pragma: no cover - guarded
    shp = _truncate_text(shp, path)
    with _quiet_pixel_mode():
        pyogrio.write_dataframe(
            shp, tmpdir / f"{stem}.shp", driver="ESRI Shapefile", geometry_type="Polygon", encoding="UTF-8"
        )
    (tmpdir / f"{stem}.qml").write_text(detections_qml(SHAPEFILE_FIELDS["phrase"]), encoding="utf-8")


# --- entry point ---------------------------------------------------------------------------------
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
    convention = None
    if isinstance(run, RunInfo):
        convention = run.angle_convention
    table = _as_table(detections, convention)
    src_crs = _crs_or_none(crs)
    out_crs = _crs_or_none(to_crs)
    if out_crs is not None and src_crs is None:
        raise ConfigError("pixel-mode detections (crs=None) cannot be reprojected")

    if kind is ExportFormat.GEOJSON:
        if src_crs is None:
            raise ExportError(
                f"cannot write {path}: GeoJSON (RFC 7946) needs WGS 84 longitude/latitude and these "
                "detections are in pixel coordinates (no CRS); export to GeoPackage or Shapefile instead"
            )
        if out_crs is not None and not out_crs.equals(WGS84):
            raise ConfigError("GeoJSON is always WGS 84 (RFC 7946): to_crs must be None or EPSG:4326")
    if kind is ExportFormat.SHAPEFILE and path.suffix.lower() != ".shp":
        raise ConfigError(f"a Shapefile path must end in .shp, not {path.name!r}")

    sidecars = _shapefile_set(path)[1:] if kind is ExportFormat.SHAPEFILE else []
    _check_target(path, overwrite, sidecars)

    det = detections_frame(table, crs=src_crs)
    runs = run_frame(run, table, crs=src_crs if kind is not ExportFormat.GEOJSON else WGS84)
    tiles_df = tiles_frame(tiles, crs=src_crs) if tiles is not None else None
    final_crs = src_crs
    if kind is ExportFormat.GEOJSON:
        assert src_crs is not None
        det = det.set_geometry(
            gpd.GeoSeries(_to_wgs84(det.geometry.to_numpy(), src_crs), crs=WGS84), crs=WGS84
        )
        final_crs = WGS84
    elif out_crs is not None:
        det = det.to_crs(out_crs)
        det = det.set_geometry(
            shapely.orient_polygons(det.geometry.to_numpy(), exterior_cw=False), crs=out_crs
        )
        tiles_df = tiles_df.to_crs(out_crs) if tiles_df is not None else None
        runs["crs"] = _crs_text(out_crs)
        final_crs = out_crs

    if kind is not ExportFormat.GPKG and tiles is not None:
        log.info(
            "%s: the %s format holds one layer: tile footprints are only written to GeoPackage",
            path,
            kind.value,
        )
    if final_crs is None:
        log.warning("%s: pixel-mode export (no CRS): coordinates are scene pixels, y down", path)

    files: tuple[Path, ...]
    if kind is ExportFormat.SHAPEFILE:
        files = _export_shapefile(path, det, overwrite)
    else:

        def write(tmp: Path) -> None:
            if kind is ExportFormat.GPKG:
                with _quiet_pixel_mode():
                    _write_gpkg(tmp, det, tiles_df, runs, pixel_mode=final_crs is None)
            else:
                _write_geojson(tmp, det, runs)

        _replace_atomically(path, ".gpkg" if kind is ExportFormat.GPKG else ".geojson", overwrite, write)
        files = (path,)
    log.info("exported %d detections to %s (%s, %s)", len(det), path, kind.value, _crs_text(final_crs))
    return ExportResult(
        path=path,
        fmt=kind,
        files=files,
        count=len(det),
        crs=None if final_crs is None else _crs_text(final_crs),
    )


def _replace_atomically(path: Path, suffix: str, overwrite: bool, write: Callable[[Path], None]) -> None:
    """Write a one-file format to a temporary sibling with ``write(tmp)``, then rename it over ``path``:
    a failure never leaves half a file, and an existing file stays intact until the new one is complete."""
    tmp = _temp_name(path, suffix)
    try:
        write(tmp)
        if not overwrite and path.exists():
            raise OutputExistsError(f"{path} exists (use --overwrite, or overwrite=True, to replace it)")
        os.replace(tmp, path)
    except BaseException as exc:
        _remove_quietly(tmp)
        if isinstance(exc, RsvgError) or not isinstance(exc, Exception):
            raise
        raise ExportError(f"writing {path} failed: {exc}") from exc


def _export_shapefile(
    path: Path,
    det: gpd.GeoDataFrame,
    overwrite: bool,
    write: Callable[[Path, str, gpd.GeoDataFrame, Path], None] | None = None,
) -> tuple[Path, ...]:
    stem = path.name[: -len(path.suffix)]
    try:
        tmpdir = Path(tempfile.mkdtemp(prefix=f".{stem}.", suffix=".tmp", dir=path.parent))
    except OSError as exc:
        raise ExportError(f"cannot write {path}: {exc.strerror or exc} in {path.parent}") from exc
    try:
        try:
            (write or _write_shapefile)(tmpdir, stem, det, path)
        except Exception as exc:
            if isinstance(exc, RsvgError):
                raise
            raise ExportError(f"writing {path} failed: {exc}") from exc
        written = sorted(tmpdir.iterdir(), key=lambda p: p.suffix.lower() == ".shp")  # .shp last
        names = {p.name for p in written}
        if not overwrite:
            for p in _shapefile_set(path):
                if p.exists():
                    raise OutputExistsError(f"{p} exists (use --overwrite, or overwrite=True, to replace it)")
        try:
            for p in written[:-1]:
                os.replace(p, path.with_name(p.name))
            for old in _shapefile_set(path):  # stale sidecars of the replaced set (old index, old .prj)
                if old.name not in names and old.exists():
                    old.unlink()
            os.replace(written[-1], path.with_name(written[-1].name))
        except OSError as exc:
            raise ExportError(f"moving the Shapefile set into place as {path} failed: {exc}") from exc
        return tuple(path.with_name(p.name) for p in written)
    finally:
        shutil.rmtree(tmpdir, ignore_errors=True)


# --- tile grids ----------------------------------------------------------------------------------
#: Shapefile names of the tile columns (≤ 10 characters).
TILE_SHAPEFILE_FIELDS = {"skip_reason": "skip_reas"}


def _write_tiles_shapefile(tmpdir: Path, stem: str, frame: gpd.GeoDataFrame, path: Path) -> None:
    shp = frame.rename(columns=TILE_SHAPEFILE_FIELDS)
    with _quiet_pixel_mode():
        pyogrio.write_dataframe(
            shp, tmpdir / f"{stem}.shp", driver="ESRI Shapefile", geometry_type="Polygon", encoding="UTF-8"
        )
    (tmpdir / f"{stem}.qml").write_text(tiles_qml(), encoding="utf-8")


def export_tiles(
    path: str | os.PathLike[str],
    tiles: Sequence[TileRecord],
    *,
    crs: Any | None,
    overwrite: bool = False,
    fmt: str | ExportFormat | None = None,
) -> ExportResult:
    """Write tile footprints (``skipped`` flag included) alone: a ``tiles`` layer with its QGIS style in a
    GeoPackage, an RFC 7946 GeoJSON, or a Shapefile. Same overwrite and atomicity rules as
    :func:`export_detections`."""
    path = Path(path)
    kind = format_for_path(path, fmt)
    src_crs = _crs_or_none(crs)
    frame = tiles_frame(tiles, crs=src_crs)
    if kind is ExportFormat.GEOJSON:
        if src_crs is None:
            raise ExportError(
                f"cannot write {path}: GeoJSON (RFC 7946) needs WGS 84 and these tiles are in "
                "pixel coordinates (no CRS); use GeoPackage or Shapefile"
            )
        frame = frame.set_geometry(
            gpd.GeoSeries(_to_wgs84(frame.geometry.to_numpy(), src_crs), crs=WGS84), crs=WGS84
        )
    if kind is ExportFormat.SHAPEFILE and path.suffix.lower() != ".shp":
        raise ConfigError(f"a Shapefile path must end in .shp, not {path.name!r}")
    _check_target(path, overwrite, _shapefile_set(path)[1:] if kind is ExportFormat.SHAPEFILE else [])

    def write(tmp: Path) -> None:
        with _quiet_pixel_mode():
            if kind is ExportFormat.GPKG:
                opts = {"DESCRIPTION": "tile grid footprints (rsvg-desktop)"}
                if src_crs is None:
                    opts["SRID"] = "-1"
                pyogrio.write_dataframe(
                    frame, tmp, layer="tiles", driver="GPKG", geometry_type="Polygon", layer_options=opts
                )
                write_layer_styles(tmp, {"tiles": ("rsvg default", tiles_qml(), tiles_sld())})
            else:
                pyogrio.write_dataframe(
                    frame,
                    tmp,
                    driver="GeoJSON",
                    geometry_type="Polygon",
                    layer_options={
                        "RFC7946": "YES",
                        "WRITE_NAME": "NO",
                        "COORDINATE_PRECISION": str(GEOJSON_DECIMALS),
                    },
                )

    if kind is ExportFormat.SHAPEFILE:
        files = _export_shapefile(path, frame, overwrite, _write_tiles_shapefile)
    else:
        _replace_atomically(path, ".gpkg" if kind is ExportFormat.GPKG else ".geojson", overwrite, write)
        files = (path,)
    log.info("exported %d tile footprints to %s (%s)", len(frame), path, kind.value)
    return ExportResult(
        path=path,
        fmt=kind,
        files=files,
        count=len(frame),
        crs=None if src_crs is None else _crs_text(src_crs),
    )
