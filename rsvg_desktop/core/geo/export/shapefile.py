"""Shapefile writing: dBase field names of at most 10 characters, text cut to 254 bytes, a ``.cpg``
(``UTF-8``) and a ``.qml`` default style QGIS loads automatically (with the area field's alias, e.g.
"area on the ground (m²)": dBase has no field descriptions); one geometry type (Polygon)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path

import geopandas as gpd
import numpy as np
import pandas as pd
import pyogrio

from rsvg_desktop.core.geo.export.files import quiet_pixel_mode
from rsvg_desktop.core.geo.export.frames import FIELD_ALIASES
from rsvg_desktop.core.geo.styles import DETECTIONS_LOOK, PolygonLook, detections_qml, tiles_qml
from rsvg_desktop.errors import ExportError

__all__ = [
    "SHAPEFILE_FIELDS",
    "TILE_SHAPEFILE_FIELDS",
    "write_detections_shapefile",
    "write_tiles_shapefile",
]

log = logging.getLogger(__name__)

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

#: Shapefile names of the tile columns (≤ 10 characters).
TILE_SHAPEFILE_FIELDS = {"skip_reason": "skip_reas"}

_DBF_TEXT_BYTES = 254


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


def _write_polygons(tmpdir: Path, stem: str, frame: gpd.GeoDataFrame, qml: str) -> None:
    """``tmpdir/stem.shp`` (UTF-8) and its default style ``tmpdir/stem.qml``."""
    with quiet_pixel_mode():
        pyogrio.write_dataframe(
            frame, tmpdir / f"{stem}.shp", driver="ESRI Shapefile", geometry_type="Polygon", encoding="UTF-8"
        )
    (tmpdir / f"{stem}.qml").write_text(qml, encoding="utf-8")


def write_detections_shapefile(
    tmpdir: Path, stem: str, det: gpd.GeoDataFrame, path: Path, *, look: PolygonLook = DETECTIONS_LOOK
) -> None:
    """The detections as ``tmpdir/stem.shp`` with :data:`SHAPEFILE_FIELDS` names (``path``: the final
    name, for messages), drawn with ``look`` by its ``.qml``; other columns keep their names (they must
    be short enough)."""
    shp = det.rename(columns=dict(SHAPEFILE_FIELDS))
    names = [c for c in shp.columns if c != shp.geometry.name]
    too_long = [c for c in names if len(c) > 10]
    if too_long or len(set(names)) != len(names):
        raise ExportError(f"bad Shapefile field names {too_long or names}")  # pragma: no cover - guarded
    shp = _truncate_text(shp, path)
    aliases = {SHAPEFILE_FIELDS[name]: alias for name, alias in FIELD_ALIASES.items() if name in det.columns}
    _write_polygons(tmpdir, stem, shp, detections_qml(SHAPEFILE_FIELDS["phrase"], aliases, look))


def write_tiles_shapefile(tmpdir: Path, stem: str, frame: gpd.GeoDataFrame, path: Path) -> None:
    """Tile footprints as ``tmpdir/stem.shp`` with :data:`TILE_SHAPEFILE_FIELDS` names."""
    shp = frame.rename(columns=TILE_SHAPEFILE_FIELDS)
    _write_polygons(tmpdir, stem, shp, tiles_qml())
