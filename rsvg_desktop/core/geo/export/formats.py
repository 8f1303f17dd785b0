"""The export formats, how a path and a format name choose one, and the rules each format sets.

Rules shared by :func:`~rsvg_desktop.core.geo.export.export_detections` and
:func:`~rsvg_desktop.core.geo.export.export_tiles`: GeoJSON (RFC 7946) needs a CRS to reproject to WGS 84
longitude/latitude (pixel coordinates would be read as degrees), and a Shapefile path ends in ``.shp``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

from pyproj import CRS

from rsvg_desktop.errors import ConfigError, ExportError

__all__ = [
    "ExportFormat",
    "ExportResult",
    "check_geojson_source",
    "check_shapefile_path",
    "format_for_path",
]


class ExportFormat(StrEnum):
    """Vector formats the exports write."""

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
#: The extension each format's files are named with (and a temporary file of one-file formats ends in).
FORMAT_EXTS = {ExportFormat.GPKG: ".gpkg", ExportFormat.GEOJSON: ".geojson", ExportFormat.SHAPEFILE: ".shp"}
_ALIASES = {
    "gpkg": "gpkg",
    "geopackage": "gpkg",
    "geojson": "geojson",
    "json": "geojson",
    "shp": "shp",
    "shapefile": "shp",
    "esri shapefile": "shp",
}


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
                f"{FORMAT_EXTS[chosen]} name or choose {_FORMAT_NAMES[by_suffix]}"
            )
        return chosen
    if suffix not in _SUFFIXES:
        raise ConfigError(
            f"cannot tell the export format of {os.fspath(path)!r} from its extension "
            "(use .gpkg, .geojson/.json or .shp, or pass the format)"
        )
    return _SUFFIXES[suffix]


def check_geojson_source(path: Path, src_crs: CRS | None, what: str) -> CRS:
    """``src_crs``, the CRS of the ``what`` to write as GeoJSON, refused when ``None`` (pixel mode): RFC
    7946 coordinates are WGS 84 longitude/latitude, and pixel coordinates would be read as degrees."""
    if src_crs is None:
        raise ExportError(
            f"cannot write {path}: GeoJSON (RFC 7946) needs WGS 84 longitude/latitude and these {what} "
            "are in pixel coordinates (no CRS); export to GeoPackage or Shapefile instead"
        )
    return src_crs


def check_shapefile_path(path: Path, kind: ExportFormat) -> None:
    """A Shapefile's main file must end in ``.shp`` (its sidecars are named from it)."""
    if kind is ExportFormat.SHAPEFILE and path.suffix.lower() != ".shp":
        raise ConfigError(f"a Shapefile path must end in .shp, not {path.name!r}")
