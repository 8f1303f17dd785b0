"""GeoPackage writing through GDAL: layers ``detections`` (polygons), ``tiles`` (footprints with a
``skipped`` flag) and ``run`` (non-spatial run metadata), plus default QGIS styles in ``layer_styles``
and what the area fields mean in ``gpkg_data_columns``.
Pixel-mode layers get GeoPackage's undefined Cartesian SRS (``SRID=-1``)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import geopandas as gpd
import pandas as pd
import pyogrio

from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.export.frames import FIELD_ALIASES, FIELD_DESCRIPTIONS
from rsvg_desktop.core.geo.styles import (
    detections_qml,
    detections_sld,
    tiles_qml,
    tiles_sld,
    write_layer_styles,
)

__all__ = ["write_detections_gpkg", "write_tiles_gpkg"]

#: What :func:`write_layer_styles` adds: layer → (style name, QML, SLD).
Styles = dict[str, tuple[str, str, str]]


def _polygon_layer(
    tmp: Path, frame: gpd.GeoDataFrame, layer: str, description: str, pixel_mode: bool
) -> None:
    opts: dict[str, str] = {"DESCRIPTION": description}
    if pixel_mode:
        opts["SRID"] = "-1"  # undefined Cartesian SRS: scene pixel coordinates
    pyogrio.write_dataframe(
        frame,
        tmp,
        layer=layer,
        driver="GPKG",
        geometry_type="Polygon",
        layer_options=opts,
        dataset_options=gpkg.DATASET_OPTIONS,
    )


def _tiles_layer(tmp: Path, tiles: gpd.GeoDataFrame, pixel_mode: bool, styles: Styles) -> None:
    """The ``tiles`` layer, its style added to ``styles``."""
    _polygon_layer(tmp, tiles, "tiles", "tile grid footprints (rsvg-desktop)", pixel_mode)
    styles["tiles"] = ("rsvg default", tiles_qml(), tiles_sld())


def write_detections_gpkg(
    tmp: Path, det: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame | None, runs: pd.DataFrame, pixel_mode: bool
) -> None:
    """Layers ``detections``, ``tiles`` (when given) and ``run``, with their styles."""
    _polygon_layer(tmp, det, "detections", "GeoChat detections (rsvg-desktop)", pixel_mode)
    qml = detections_qml(aliases={k: v for k, v in FIELD_ALIASES.items() if k in det.columns})
    styles: Styles = {"detections": ("rsvg default", qml, detections_sld())}
    if tiles is not None:
        _tiles_layer(tmp, tiles, pixel_mode, styles)
    pyogrio.write_dataframe(
        runs,
        tmp,
        layer="run",
        driver="GPKG",
        layer_options={"DESCRIPTION": "run metadata (rsvg-desktop)"},
        dataset_options=gpkg.DATASET_OPTIONS,
    )
    write_layer_styles(tmp, styles)
    _describe_columns(tmp, "detections")


def _describe_columns(tmp: Path, layer: str) -> None:
    """What the area fields of ``layer`` mean, as GeoPackage column descriptions."""
    con = sqlite3.connect(str(tmp))
    try:
        with con:
            gpkg.describe_columns(con, layer, dict(FIELD_DESCRIPTIONS), titles=dict(FIELD_ALIASES))
    finally:
        con.close()


def write_tiles_gpkg(tmp: Path, tiles: gpd.GeoDataFrame, pixel_mode: bool) -> None:
    """The ``tiles`` layer alone, with its style."""
    styles: Styles = {}
    _tiles_layer(tmp, tiles, pixel_mode, styles)
    write_layer_styles(tmp, styles)
