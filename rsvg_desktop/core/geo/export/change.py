"""The change export, :func:`write_change`: the layers of a two-date comparison as files.

* **GeoPackage** (``OUT.gpkg``) — one file: the spatial layers ``appeared``, ``disappeared``,
  ``persisting``, ``before``, ``after``, ``unknown_area`` (see
  :mod:`rsvg_desktop.core.geo.change.layers` for their columns) and the non-spatial ``run`` table, each
  spatial layer with a default QGIS style in ``layer_styles`` (appeared green, disappeared red,
  persisting grey, before blue and after yellow outlines labelled with the phrase, unknown area hatched
  grey), GeoPackage 1.2.
* **GeoJSON** (``OUT.geojson``) — one RFC 7946 file per spatial layer, named ``OUT.<layer>.geojson``,
  each with the run table in the foreign member ``rsvg_runs`` (as ``rsvg detect`` writes it). Pixel
  mode is refused, as for ``rsvg detect``.
* **Shapefile** (``OUT.shp``) — one set per spatial layer, ``OUT.<layer>.shp`` with its ``.qml`` style,
  and the run table beside them as ``OUT.run.csv`` (a Shapefile holds no table without geometry).

Every file is written atomically (a temporary name, then a rename). All targets are checked before
anything is written: an existing one is refused unless ``overwrite`` (:class:`OutputExistsError`
naming it).
"""

from __future__ import annotations

import logging
import os
from functools import partial
from pathlib import Path

import pandas as pd

from rsvg_desktop.core.geo.change.layers import CHANGE_LAYERS, ChangeLayers, change_layers
from rsvg_desktop.core.geo.change.types import ChangeSet
from rsvg_desktop.core.geo.export.files import (
    check_output,
    quiet_pixel_mode,
    replace_atomically,
    write_shapefile_set,
)
from rsvg_desktop.core.geo.export.formats import ExportFormat, check_geojson_source, format_for_path
from rsvg_desktop.core.geo.export.frames import FIELD_ALIASES, crs_text
from rsvg_desktop.core.geo.export.geojson import frame_to_wgs84, write_geojson
from rsvg_desktop.core.geo.export.geopackage import (
    describe_area_columns,
    write_attributes_layer,
    write_polygon_layer,
)
from rsvg_desktop.core.geo.export.shapefile import write_detections_shapefile
from rsvg_desktop.core.geo.styles import PolygonLook, detections_qml, detections_sld, write_layer_styles

__all__ = [
    "CHANGE_COLUMN_DESCRIPTIONS",
    "CHANGE_LOOKS",
    "change_output_paths",
    "check_change_output",
    "write_change",
]

log = logging.getLogger(__name__)

#: How QGIS draws each change layer by default.
CHANGE_LOOKS: dict[str, PolygonLook] = {
    "appeared": PolygonLook(color=(40, 200, 70), fill_opacity=0.35),
    "disappeared": PolygonLook(color=(225, 40, 40), fill_opacity=0.35),
    "persisting": PolygonLook(color=(150, 150, 150), fill_opacity=0.25),
    "before": PolygonLook(color=(60, 140, 255), fill_opacity=0.0, fill_style="no"),
    "after": PolygonLook(color=(255, 221, 0), fill_opacity=0.0, fill_style="no"),
    "unknown_area": PolygonLook(
        color=(128, 128, 128),
        fill_opacity=0.5,
        fill_style="b_diagonal",
        width_mm=0.3,
        outline_style="dash",
        labels=False,
    ),
}

_LAYER_DESCRIPTIONS = {
    "appeared": "objects found on the after date only (rsvg-desktop change)",
    "disappeared": "objects found on the before date only (rsvg-desktop change)",
    "persisting": "objects found on both dates, matched or confirmed by verification (rsvg-desktop change)",
    "before": "every object found on the before date (rsvg-desktop change)",
    "after": "every object found on the after date (rsvg-desktop change)",
    "unknown_area": "where the two dates were not both compared (rsvg-desktop change)",
}

#: What the change layers' own columns mean (GeoPackage column descriptions).
CHANGE_COLUMN_DESCRIPTIONS: dict[str, str] = {
    "before_id": "det_id of the object in the before layer (NULL: not seen on the before date)",
    "after_id": "det_id of the object in the after layer (NULL: not seen on the after date)",
    "iou": "rotated-polygon IoU of the matched pair (NULL for an object confirmed by verification)",
    "verified": "1: seen on one date only and confirmed by the other date's answer; 0: matched pair",
    "seen_on": "which date found it: both (a matched pair, drawn with the after polygon), before or after",
}

_GEOMETRY_TYPES = {"unknown_area": "MultiPolygon"}


def _stem_and_suffix(path: Path) -> tuple[str, str]:
    return (path.name[: -len(path.suffix)], path.suffix) if path.suffix else (path.name, "")


def change_output_paths(
    path: str | os.PathLike[str], fmt: str | ExportFormat | None = None
) -> tuple[Path, ...]:
    """Every file :func:`write_change` writes for ``path`` (for a Shapefile: each set's ``.shp``, then the
    run table's ``.csv``)."""
    path = Path(path)
    kind = format_for_path(path, fmt)
    if kind is ExportFormat.GPKG:
        return (path,)
    stem, suffix = _stem_and_suffix(path)
    files = tuple(path.with_name(f"{stem}.{layer}{suffix}") for layer in CHANGE_LAYERS)
    if kind is ExportFormat.SHAPEFILE:
        files += (path.with_name(f"{stem}.run.csv"),)
    return files


def check_change_output(
    path: str | os.PathLike[str], *, overwrite: bool = False, fmt: str | ExportFormat | None = None
) -> ExportFormat:
    """The format of ``path``, once every file :func:`write_change` would write can be written and,
    unless ``overwrite``, none exists (call it before the work that makes the change set)."""
    path = Path(path)
    kind = format_for_path(path, fmt)
    check_output(path, kind, overwrite=True)  # a Shapefile path ends in .shp, the folder is writable
    for target in change_output_paths(path, kind):
        check_output(target, ExportFormat.GPKG if target.suffix == ".csv" else kind, overwrite)
    return kind


def write_change(
    path: str | os.PathLike[str],
    changeset: ChangeSet,
    *,
    overwrite: bool = False,
    fmt: str | ExportFormat | None = None,
) -> tuple[Path, ...]:
    """Write the change layers of ``changeset`` to ``path`` (.gpkg, .geojson or .shp; the format from
    ``fmt`` or the extension); returns every file written. Refuses existing outputs unless
    ``overwrite`` (:class:`OutputExistsError`), pixel mode in GeoJSON (:class:`ExportError`)."""
    path = Path(path)
    kind = check_change_output(path, overwrite=overwrite, fmt=fmt)
    layers = change_layers(changeset)
    if kind is ExportFormat.GEOJSON:
        check_geojson_source(path, layers.crs, "change layers")
    if layers.crs is None:
        log.warning("%s: pixel-mode export (no CRS): coordinates are scene pixels, y down", path)
    if kind is ExportFormat.GPKG:
        replace_atomically(path, ".gpkg", overwrite, partial(_write_gpkg, layers=layers))
        files: tuple[Path, ...] = (path,)
    elif kind is ExportFormat.GEOJSON:
        files = _write_geojson_files(path, layers, overwrite)
    else:
        files = _write_shapefiles(path, layers, overwrite)
    log.info(
        "wrote the change layers to %s (%s, %s): %d appeared, %d disappeared, %d persisting",
        path,
        kind.value,
        crs_text(layers.crs),
        len(layers.appeared),
        len(layers.disappeared),
        len(layers.persisting),
    )
    return files


def _write_gpkg(tmp: Path, *, layers: ChangeLayers) -> None:
    """Every layer, its default style and the descriptions of its columns, into the GeoPackage ``tmp``."""
    styles: dict[str, tuple[str, str, str]] = {}
    with quiet_pixel_mode():
        for name, frame in layers.spatial().items():
            geometry_type = _GEOMETRY_TYPES.get(name, "Polygon")
            write_polygon_layer(
                tmp, frame, name, _LAYER_DESCRIPTIONS[name], layers.crs is None, geometry_type
            )
            look = CHANGE_LOOKS[name]
            qml = detections_qml(aliases=_aliases(frame), look=look)
            styles[name] = ("rsvg default", qml, detections_sld(name, look=look))
        write_attributes_layer(tmp, layers.run, "run", "change run metadata (rsvg-desktop)")
    write_layer_styles(tmp, styles)
    describe_area_columns(tmp, *CHANGE_LAYERS, descriptions=CHANGE_COLUMN_DESCRIPTIONS)


def _aliases(frame: pd.DataFrame) -> dict[str, str]:
    return {k: v for k, v in FIELD_ALIASES.items() if k in frame.columns}


def _write_geojson_files(path: Path, layers: ChangeLayers, overwrite: bool) -> tuple[Path, ...]:
    assert layers.crs is not None  # refused before
    files = change_output_paths(path, ExportFormat.GEOJSON)
    for target, frame in zip(files, layers.spatial().values(), strict=True):
        wgs84 = frame_to_wgs84(frame, layers.crs)
        replace_atomically(
            target, path.suffix or ".geojson", overwrite, partial(write_geojson, frame=wgs84, runs=layers.run)
        )
    return files


def _write_shapefiles(path: Path, layers: ChangeLayers, overwrite: bool) -> tuple[Path, ...]:
    *sets, csv = change_output_paths(path, ExportFormat.SHAPEFILE)
    files: list[Path] = []
    for target, (name, frame) in zip(sets, layers.spatial().items(), strict=True):
        writer = partial(write_detections_shapefile, look=CHANGE_LOOKS[name])
        files.extend(write_shapefile_set(target, frame, overwrite, writer))
    replace_atomically(csv, ".csv", overwrite, lambda tmp: layers.run.to_csv(tmp, index=False))
    return (*files, csv)
