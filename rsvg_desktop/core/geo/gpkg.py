"""GeoPackage plumbing for writing features straight through sqlite (GeoPackage 1.2).

The run store of ``rsvg batch`` writes many small transactions into one GeoPackage that QGIS and GDAL
may read while it grows; GDAL's writers would reopen the file per batch, so the store talks to sqlite
itself. This module holds what that takes and nothing about runs: geometry blobs (``GP`` header with an
XY envelope, then ISO WKB), the SQL functions the spec's R-tree triggers call (``ST_IsEmpty``,
``ST_MinX``…, registered on our own connection), spatial reference rows, feature tables with their
feature-count triggers, R-tree index and ``gpkg_contents``/``gpkg_geometry_columns`` rows, and column
descriptions (the spec's schema extension, which GDAL reads as field comments and QGIS shows).
"""

from __future__ import annotations

import sqlite3
import struct
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import shapely

from rsvg_desktop.core.answers import utc_now_iso

__all__ = [
    "DATASET_OPTIONS",
    "GPKG_USER_VERSION",
    "PIXEL_SRS_ID",
    "RTREE_EXTENSION",
    "conform_to_version",
    "connect",
    "create_feature_table",
    "describe_columns",
    "ensure_srs",
    "geometry_blobs",
    "geometry_from_blob",
    "register_spatial_functions",
]

#: The spec's "undefined Cartesian" SRS: features in pixel coordinates.
PIXEL_SRS_ID = -1
RTREE_EXTENSION = "http://www.geopackage.org/spec120/#extension_rtree"
#: GDAL's dataset creation options for every GeoPackage we write: declare the lowest version the
#: content needs (1.2, ``user_version`` 10200: nothing of 1.3/1.4 is used). Newer GDALs declare 1.4
#: by default, which the GDAL 3.6 of Debian's QGIS 3.22 reads with a warning.
DATASET_OPTIONS = {"VERSION": "1.2"}
GPKG_USER_VERSION = 10200

_HEADER = struct.Struct("<2sBBi4d")  # magic, version, flags (LE, XY envelope), srs_id, minx maxx miny maxy
_ENVELOPE_DOUBLES = {0: 0, 1: 4, 2: 6, 3: 6, 4: 8}


def geometry_blobs(geoms: np.ndarray | Sequence[Any], srs_id: int) -> list[bytes]:
    """GeoPackage binary geometries (header with XY envelope + ISO WKB, little endian) of ``geoms``."""
    arr = np.asarray(geoms, dtype=object)
    if len(arr) == 0:
        return []
    wkb = shapely.to_wkb(arr, byte_order=1, output_dimension=2, flavor="iso")
    bounds = shapely.bounds(arr)  # minx, miny, maxx, maxy
    pack = _HEADER.pack
    return [
        pack(b"GP", 0, 0b0000_0011, srs_id, b[0], b[2], b[1], b[3]) + w
        for b, w in zip(bounds.tolist(), wkb.tolist(), strict=True)
    ]


def _parse_header(blob: bytes) -> tuple[int, bool, tuple[float, ...] | None]:
    """``(header length, empty flag, envelope minx, maxx, miny, maxy or None)`` of a GPKG blob."""
    if len(blob) < 8 or blob[:2] != b"GP":
        raise ValueError("not a GeoPackage geometry blob")
    flags = blob[3]
    order = "<" if flags & 1 else ">"
    n = _ENVELOPE_DOUBLES.get((flags >> 1) & 0b111)
    if n is None:
        raise ValueError("bad GeoPackage envelope code")
    header = 8 + 8 * n
    env = struct.unpack(order + "4d", blob[8:40]) if n else None
    return header, bool(flags & 0b1_0000), env


def geometry_from_blob(blob: bytes | None) -> Any:
    """A shapely geometry from a GeoPackage binary geometry (``None`` stays ``None``)."""
    if blob is None:
        return None
    header, _, _ = _parse_header(bytes(blob))
    return shapely.from_wkb(bytes(blob)[header:])


class _Envelopes:
    """Envelope of a GPKG blob for the R-tree triggers' SQL functions. A trigger asks for the same
    blob five times in a row (``ST_IsEmpty``, ``ST_MinX``, ...): the last answer is kept."""

    __slots__ = ("_blob", "_env")

    def __init__(self) -> None:
        self._blob: bytes | None = None
        self._env: tuple[float, ...] | None = None

    def get(self, blob: bytes | None) -> tuple[float, ...] | None:
        if blob is None:
            return None
        if blob == self._blob:
            return self._env
        try:
            header, empty, env = _parse_header(blob)
        except ValueError:
            env, empty = None, True
        if not empty and env is None:
            geom = shapely.from_wkb(bytes(blob)[header:])
            if not geom.is_empty:
                x0, y0, x1, y1 = geom.bounds
                env = (x0, x1, y0, y1)
        self._blob, self._env = blob, (None if empty else env)
        return self._env

    def register(self, con: sqlite3.Connection) -> None:
        get = self.get
        con.create_function(
            "ST_IsEmpty", 1, lambda b: None if b is None else int(get(b) is None), deterministic=True
        )
        for i, name in enumerate(("ST_MinX", "ST_MaxX", "ST_MinY", "ST_MaxY")):
            con.create_function(
                name, 1, lambda b, i=i: None if (e := get(b)) is None else e[i], deterministic=True
            )


def register_spatial_functions(con: sqlite3.Connection) -> None:
    """Register the SQL functions the R-tree triggers call on ``con``."""
    _Envelopes().register(con)


def connect(path: Path) -> sqlite3.Connection:
    """An autocommit connection to ``path`` with the spatial functions, rollback journal, full sync."""
    con = sqlite3.connect(str(path), isolation_level=None, timeout=30.0)
    register_spatial_functions(con)
    con.execute("PRAGMA journal_mode = DELETE")
    con.execute("PRAGMA synchronous = FULL")
    return con


def conform_to_version(con: sqlite3.Connection) -> None:
    """Bring a GeoPackage written by an earlier version of this tool to what it writes now: declared
    GeoPackage 1.2 (it declared the 1.4 of GDAL's default; the content is the same) and the spec's
    millisecond datetimes in ``layer_styles.update_time`` (it wrote microseconds)."""
    if con.execute("PRAGMA user_version").fetchone()[0] > GPKG_USER_VERSION:
        con.execute(f"PRAGMA user_version = {GPKG_USER_VERSION}")
    if con.execute("SELECT 1 FROM sqlite_master WHERE name = 'layer_styles'").fetchone():
        con.execute(
            "UPDATE layer_styles SET update_time = substr(update_time, 1, 23) || 'Z' "
            "WHERE update_time GLOB '????-??-??T??:??:??.??????Z'"
        )


def create_feature_table(
    con: sqlite3.Connection, name: str, columns: Sequence[tuple[str, str]], srs_id: int, desc: str
) -> None:
    """A polygon feature table ``name`` (``fid``, ``geom``, then ``columns``) registered in the
    GeoPackage's contents and geometry columns, with feature-count triggers and an R-tree index.
    Runs inside the caller's transaction."""
    cols = ", ".join(f'"{c}" {t}' for c, t in columns)
    con.execute(
        f'CREATE TABLE "{name}" ("fid" INTEGER PRIMARY KEY AUTOINCREMENT NOT NULL, "geom" POLYGON, {cols})'
    )
    con.execute(
        "INSERT INTO gpkg_contents (table_name, data_type, identifier, description, last_change,"
        " srs_id) VALUES (?, 'features', ?, ?, ?, ?)",
        (name, name, desc, utc_now_iso(), srs_id),
    )
    con.execute(
        "INSERT INTO gpkg_geometry_columns (table_name, column_name, geometry_type_name, srs_id,"
        " z, m) VALUES (?, 'geom', 'POLYGON', ?, 0, 0)",
        (name, srs_id),
    )
    _count_triggers(con, name)
    _rtree(con, name)


def ensure_srs(con: sqlite3.Connection, crs: Any) -> int:
    """The ``srs_id`` of ``crs`` in ``con``, inserting a row when needed (EPSG codes as themselves,
    anything else from 100000 up, matched by its WKT)."""
    auth = crs.to_authority()
    definition = crs.to_wkt("WKT1_GDAL") or crs.to_wkt()
    if auth and auth[0] == "EPSG":
        srs_id = int(auth[1])
        if con.execute("SELECT 1 FROM gpkg_spatial_ref_sys WHERE srs_id = ?", (srs_id,)).fetchone():
            return srs_id
        org, org_id = "EPSG", srs_id
    else:
        rows = con.execute("SELECT srs_id, definition FROM gpkg_spatial_ref_sys WHERE srs_id >= 100000")
        for sid, wkt in rows:
            if wkt == definition:
                return int(sid)
        (top,) = con.execute("SELECT max(srs_id) FROM gpkg_spatial_ref_sys").fetchone()
        srs_id = max(100000, int(top or 0) + 1)
        org, org_id = "NONE", srs_id
    con.execute(
        "INSERT INTO gpkg_spatial_ref_sys (srs_name, srs_id, organization, organization_coordsys_id,"
        " definition, description) VALUES (?, ?, ?, ?, ?, NULL)",
        (crs.name, srs_id, org, org_id, definition),
    )
    return srs_id


def _count_triggers(con: sqlite3.Connection, name: str) -> None:
    con.execute("INSERT OR REPLACE INTO gpkg_ogr_contents (table_name, feature_count) VALUES (?, 0)", (name,))
    con.execute(
        f'CREATE TRIGGER "trigger_insert_feature_count_{name}" AFTER INSERT ON "{name}" BEGIN UPDATE '
        f"gpkg_ogr_contents SET feature_count = feature_count + 1 WHERE lower(table_name) = "
        f"lower('{name}'); END"
    )
    con.execute(
        f'CREATE TRIGGER "trigger_delete_feature_count_{name}" AFTER DELETE ON "{name}" BEGIN UPDATE '
        f"gpkg_ogr_contents SET feature_count = feature_count - 1 WHERE lower(table_name) = "
        f"lower('{name}'); END"
    )


def _rtree(con: sqlite3.Connection, t: str) -> None:
    """The spec's R-tree spatial index on ``t.geom`` and the triggers that keep it current."""
    r = f"rtree_{t}_geom"
    con.execute(
        "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,"
        " extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,"
        " CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"
    )
    con.execute(f'CREATE VIRTUAL TABLE "{r}" USING rtree(id, minx, maxx, miny, maxy)')
    env = 'ST_MinX(NEW."geom"), ST_MaxX(NEW."geom"), ST_MinY(NEW."geom"), ST_MaxY(NEW."geom")'
    new_ok = 'NEW."geom" NOTNULL AND NOT ST_IsEmpty(NEW."geom")'
    old_ok = 'OLD."geom" NOTNULL AND NOT ST_IsEmpty(OLD."geom")'
    new_no = 'NEW."geom" ISNULL OR ST_IsEmpty(NEW."geom")'
    old_no = 'OLD."geom" ISNULL OR ST_IsEmpty(OLD."geom")'
    statements = (
        f'CREATE TRIGGER "{r}_insert" AFTER INSERT ON "{t}" WHEN ({new_ok}) BEGIN '
        f'INSERT OR REPLACE INTO "{r}" VALUES (NEW."fid", {env}); END',
        f'CREATE TRIGGER "{r}_update6" AFTER UPDATE OF "geom" ON "{t}" WHEN OLD."fid" = NEW."fid" AND '
        f'({new_ok}) AND ({old_ok}) BEGIN UPDATE "{r}" SET minx = ST_MinX(NEW."geom"), maxx = '
        f'ST_MaxX(NEW."geom"), miny = ST_MinY(NEW."geom"), maxy = ST_MaxY(NEW."geom") '
        f'WHERE id = NEW."fid"; END',
        f'CREATE TRIGGER "{r}_update7" AFTER UPDATE OF "geom" ON "{t}" WHEN OLD."fid" = NEW."fid" AND '
        f'({new_ok}) AND ({old_no}) BEGIN INSERT INTO "{r}" VALUES (NEW."fid", {env}); END',
        f'CREATE TRIGGER "{r}_update2" AFTER UPDATE OF "geom" ON "{t}" WHEN OLD."fid" = NEW."fid" AND '
        f'({new_no}) BEGIN DELETE FROM "{r}" WHERE id = OLD."fid"; END',
        f'CREATE TRIGGER "{r}_update5" AFTER UPDATE ON "{t}" WHEN OLD."fid" != NEW."fid" AND ({new_ok}) '
        f'BEGIN DELETE FROM "{r}" WHERE id = OLD."fid"; '
        f'INSERT OR REPLACE INTO "{r}" VALUES (NEW."fid", {env}); END',
        f'CREATE TRIGGER "{r}_update4" AFTER UPDATE ON "{t}" WHEN OLD."fid" != NEW."fid" AND ({new_no}) '
        f"BEGIN "
        f'DELETE FROM "{r}" WHERE id IN (OLD."fid", NEW."fid"); END',
        f'CREATE TRIGGER "{r}_delete" AFTER DELETE ON "{t}" WHEN OLD."geom" NOT NULL BEGIN '
        f'DELETE FROM "{r}" WHERE id = OLD."fid"; END',
    )
    for sql in statements:
        con.execute(sql)
    con.execute(
        "INSERT OR REPLACE INTO gpkg_extensions (table_name, column_name, extension_name, definition,"
        " scope) VALUES (?, 'geom', 'gpkg_rtree_index', ?, 'write-only')",
        (t, RTREE_EXTENSION),
    )


SCHEMA_EXTENSION = "http://www.geopackage.org/spec/#extension_schema"

_CREATE_DATA_COLUMNS = """
CREATE TABLE IF NOT EXISTS gpkg_data_columns (
    table_name TEXT NOT NULL,
    column_name TEXT NOT NULL,
    name TEXT,
    title TEXT,
    description TEXT,
    mime_type TEXT,
    constraint_name TEXT,
    CONSTRAINT pk_gdc PRIMARY KEY (table_name, column_name),
    CONSTRAINT gdc_tn UNIQUE (table_name, name)
)
"""

_CREATE_DATA_COLUMN_CONSTRAINTS = """
CREATE TABLE IF NOT EXISTS gpkg_data_column_constraints (
    constraint_name TEXT NOT NULL,
    constraint_type TEXT NOT NULL,
    value TEXT,
    min NUMERIC,
    min_is_inclusive BOOLEAN,
    max NUMERIC,
    max_is_inclusive BOOLEAN,
    description TEXT,
    CONSTRAINT gdcc_ntv UNIQUE (constraint_name, constraint_type, value)
)
"""


def describe_columns(
    con: sqlite3.Connection, table: str, descriptions: dict[str, str], titles: dict[str, str] | None = None
) -> None:
    """Record what columns of ``table`` mean (``descriptions``, and short ``titles``) in
    ``gpkg_data_columns``, created and registered as the schema extension when missing; columns the
    table lacks are left out. Call inside a transaction."""
    present = {row[1] for row in con.execute(f'PRAGMA table_info("{table}")')}
    titles = titles or {}
    rows = [(table, col, col, titles.get(col), desc) for col, desc in descriptions.items() if col in present]
    if not rows:
        return
    con.execute(_CREATE_DATA_COLUMNS)
    con.execute(_CREATE_DATA_COLUMN_CONSTRAINTS)
    con.execute(
        "CREATE TABLE IF NOT EXISTS gpkg_extensions (table_name TEXT, column_name TEXT,"
        " extension_name TEXT NOT NULL, definition TEXT NOT NULL, scope TEXT NOT NULL,"
        " CONSTRAINT ge_tce UNIQUE (table_name, column_name, extension_name))"
    )
    for name in ("gpkg_data_columns", "gpkg_data_column_constraints"):
        con.execute(
            "INSERT INTO gpkg_extensions (table_name, column_name, extension_name, definition, scope)"
            " SELECT ?, NULL, 'gpkg_schema', ?, 'read-write' WHERE NOT EXISTS (SELECT 1 FROM"
            " gpkg_extensions WHERE table_name = ? AND extension_name = 'gpkg_schema')",
            (name, SCHEMA_EXTENSION, name),
        )
    con.executemany(
        "INSERT OR REPLACE INTO gpkg_data_columns (table_name, column_name, name, title, description)"
        " VALUES (?, ?, ?, ?, ?)",
        rows,
    )
