"""The run store's spatial layers: which exist, their SRS, their extents (kept in memory, written to
``gpkg_contents`` at every commit), creating them, and their default QGIS styles."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import shapely

from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.export.frames import FIELD_ALIASES, FIELD_DESCRIPTIONS
from rsvg_desktop.core.geo.styles import (
    detections_qml,
    detections_sld,
    tiles_qml,
    tiles_sld,
    write_layer_styles,
)
from rsvg_desktop.engine.batch.store.schema import FOOTPRINT_COLUMNS, det_columns

#: The layers of georeferenced inputs (output CRS), created when the output CRS is fixed.
OUTPUT_CRS_LAYERS: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    ("detections", det_columns(False), "merged GeoChat detections (rsvg batch)"),
    ("tile_detections", det_columns(False), "every box of every tile, before merging"),
    ("tile_footprints", FOOTPRINT_COLUMNS, "tile windows: answered or skipped as nodata"),
)
#: The layers of inputs without CRS, created when the first such input comes.
PIXEL_LAYERS: tuple[tuple[str, tuple[tuple[str, str], ...], str], ...] = (
    ("detections_pixel", det_columns(True), "merged detections in pixel coordinates (no CRS)"),
    ("tile_detections_pixel", det_columns(True), "raw boxes in pixel coordinates (no CRS)"),
)


def extent_union(extent: Sequence[float] | None, other: Sequence[float]) -> list[float]:
    """The extent (min x, min y, max x, max y) covering both (``extent`` ``None``: ``other``)."""
    if extent is None:
        return list(other)
    return [
        min(extent[0], other[0]),
        min(extent[1], other[1]),
        max(extent[2], other[2]),
        max(extent[3], other[3]),
    ]


def _area_aliases(con: sqlite3.Connection, table: str) -> dict[str, str]:
    """The aliases QGIS shows for the area field ``table`` has (``area_m2`` or ``area_px``)."""
    present = {row[1] for row in con.execute(f'PRAGMA table_info("{table}")')}
    return {name: alias for name, alias in FIELD_ALIASES.items() if name in present}


@dataclass
class Layer:
    """One spatial layer: its SRS and its extent (``dirty``: changed since the last commit)."""

    name: str
    srs_id: int
    extent: list[float] | None = None
    dirty: bool = False

    def widen(self, extent: Sequence[float]) -> None:
        """Grow the extent to cover ``extent`` (min x, min y, max x, max y)."""
        self.extent = extent_union(self.extent, extent)
        self.dirty = True

    def widen_to_geometries(self, geoms: np.ndarray) -> None:
        """Grow the extent to cover ``geoms`` (nothing for none)."""
        if len(geoms) == 0:
            return
        b = shapely.bounds(geoms)
        lo_x, lo_y = float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1]))
        hi_x, hi_y = float(np.nanmax(b[:, 2])), float(np.nanmax(b[:, 3]))
        self.widen((lo_x, lo_y, hi_x, hi_y))


class Layers:
    """The spatial layers of a store, by name."""

    def __init__(self) -> None:
        self._by_name: dict[str, Layer] = {}

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __getitem__(self, name: str) -> Layer:
        return self._by_name[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self._by_name)

    def load(self, con: sqlite3.Connection) -> None:
        """Read the layers and their extents from ``gpkg_contents``."""
        rows = con.execute(
            "SELECT c.table_name, g.srs_id, c.min_x, c.min_y, c.max_x, c.max_y FROM gpkg_contents c "
            "JOIN gpkg_geometry_columns g ON g.table_name = c.table_name"
        ).fetchall()
        for name, srs_id, x0, y0, x1, y1 in rows:
            extent = None if x0 is None else [x0, y0, x1, y1]
            self._by_name[name] = Layer(name, srs_id, extent)

    def create(
        self, con: sqlite3.Connection, name: str, columns: Sequence[tuple[str, str]], srs_id: int, desc: str
    ) -> None:
        """Create a feature table with its key index (inside a transaction)."""
        gpkg.create_feature_table(con, name, columns, srs_id, desc)
        if name.startswith(("detections", "tile_detections")):
            con.execute(f'CREATE INDEX "ix_{name}_key" ON "{name}" (input_id, run_id)')
            gpkg.describe_columns(con, name, dict(FIELD_DESCRIPTIONS), titles=dict(FIELD_ALIASES))
        else:
            con.execute(
                f'CREATE UNIQUE INDEX "ux_{name}_key" ON "{name}" '
                "(run_id, input_id, col_off, row_off, width, height)"
            )
        self._by_name[name] = Layer(name, srs_id)

    def flush_extents(self, con: sqlite3.Connection, touched: set[str]) -> None:
        """Write the changed extents, and the time of change of every touched table, to ``gpkg_contents``."""
        now = utc_now_iso()
        for lay in self._by_name.values():
            if lay.dirty and lay.extent is not None:
                con.execute(
                    "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
                    "last_change = ? WHERE table_name = ?",
                    (*lay.extent, now, lay.name),
                )
                lay.dirty = False
        for name in touched:
            con.execute("UPDATE gpkg_contents SET last_change = ? WHERE table_name = ?", (now, name))

    def reload_extents(self, con: sqlite3.Connection) -> None:
        """Forget the extents widened since the last commit (after a rollback)."""
        for lay in self._by_name.values():
            row = con.execute(
                "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?", (lay.name,)
            ).fetchone()
            lay.extent = None if row is None or row[0] is None else list(row)
            lay.dirty = False

    def ensure_styles(self, con: sqlite3.Connection, path: Path) -> None:
        """Give every layer without a style the default QGIS style."""
        wanted: dict[str, tuple[str, str, str]] = {}
        have = set()
        if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'layer_styles'").fetchone():
            have = {r[0] for r in con.execute("SELECT f_table_name FROM layer_styles")}
        for name in self._by_name:
            if name in have:
                continue
            if name == "tile_footprints":
                wanted[name] = ("rsvg default", tiles_qml(), tiles_sld(name))
            else:
                qml = detections_qml(aliases=_area_aliases(con, name))
                wanted[name] = ("rsvg default", qml, detections_sld(name))
        if wanted:
            write_layer_styles(path, wanted)
