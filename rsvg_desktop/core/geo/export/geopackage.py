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

__all__ = [
    "describe_area_columns",
    "write_attributes_layer",
    "write_detections_gpkg",
    "write_polygon_layer",
    "write_tiles_gpkg",
]

#: What :func:`write_layer_styles` adds: layer → (style name, QML, SLD).
Styles = dict[str, tuple[str, str, str]]


def write_polygon_layer(
    tmp: Path,
    frame: gpd.GeoDataFrame,
    layer: str,
    description: str,
    pixel_mode: bool,
    geometry_type: str = "Polygon",
) -> None:
    """Add the feature layer ``layer`` (one ``geometry_type``) to the GeoPackage ``tmp``."""
    opts: dict[str, str] = {"DESCRIPTION": description}
    if pixel_mode:
        opts["SRID"] = "-1"  # undefined Cartesian SRS: scene pixel coordinates
    pyogrio.write_dataframe(
        frame,
        tmp,
        layer=layer,
        driver="GPKG",
        geometry_type=geometry_type,
        layer_options=opts,
        dataset_options=gpkg.DATASET_OPTIONS,
    )


def _tiles_layer(tmp: Path, tiles: gpd.GeoDataFrame, pixel_mode: bool, styles: Styles) -> None:
    """The ``tiles`` layer, its style added to ``styles``."""
    write_polygon_layer(tmp, tiles, "tiles", "tile grid footprints (rsvg-desktop)", pixel_mode)
    styles["tiles"] = ("rsvg default", tiles_qml(), tiles_sld())


def write_detections_gpkg(
    tmp: Path, det: gpd.GeoDataFrame, tiles: gpd.GeoDataFrame | None, runs: pd.DataFrame, pixel_mode: bool
) -> None:
    """Layers ``detections``, ``tiles`` (when given) and ``run``, with their styles."""
    write_polygon_layer(tmp, det, "detections", "GeoChat detections (rsvg-desktop)", pixel_mode)
    qml = detections_qml(aliases={k: v for k, v in FIELD_ALIASES.items() if k in det.columns})
    styles: Styles = {"detections": ("rsvg default", qml, detections_sld())}
    if tiles is not None:
        _tiles_layer(tmp, tiles, pixel_mode, styles)
    write_attributes_layer(tmp, runs, "run", "run metadata (rsvg-desktop)")
    write_layer_styles(tmp, styles)
    describe_area_columns(tmp, "detections")


def write_attributes_layer(tmp: Path, frame: pd.DataFrame, layer: str, description: str) -> None:
    """Add the non-spatial table ``layer`` to the GeoPackage ``tmp``."""
    pyogrio.write_dataframe(
        frame,
        tmp,
        layer=layer,
        driver="GPKG",
        layer_options={"DESCRIPTION": description},
        dataset_options=gpkg.DATASET_OPTIONS,
    )


def describe_area_columns(
    tmp: Path, *layers: str, descriptions: dict[str, str] | None = None, titles: dict[str, str] | None = None
) -> None:
    """What the area fields of ``layers`` mean (and ``descriptions``/``titles`` of more columns), as
    GeoPackage column descriptions."""
    con = sqlite3.connect(str(tmp))
    try:
        with con:
            for layer in layers:
                gpkg.describe_columns(
                    con,
                    layer,
                    {**FIELD_DESCRIPTIONS, **(descriptions or {})},
                    titles={**FIELD_ALIASES, **(titles or {})},
                )
    finally:
        con.close()


def write_tiles_gpkg(tmp: Path, tiles: gpd.GeoDataFrame, pixel_mode: bool) -> None:
    """The ``tiles`` layer alone, with its style."""
    styles: Styles = {}
    _tiles_layer(tmp, tiles, pixel_mode, styles)
    write_layer_styles(tmp, styles)
