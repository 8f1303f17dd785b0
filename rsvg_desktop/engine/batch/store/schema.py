"""The run store's schema: its tables and columns, creating a new store, checking and bringing an
older one up to date, and the internal key/value metadata (``rsvg_batch_meta``)."""

from __future__ import annotations

import contextlib
import os
import sqlite3
import uuid
from pathlib import Path

import pandas as pd

from rsvg_desktop import __version__
from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.errors import ConfigError, ExportError

STORE_FORMAT = 1
META_TABLE = "rsvg_batch_meta"

# --- column sets -------------------------------------------------------------------------------
DET_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT"),
    ("input_id", "INTEGER"),
    ("scene", "TEXT"),
    ("task", "TEXT"),
    ("query", "TEXT"),
    ("phrase", "TEXT"),
    ("tile_row", "INTEGER"),
    ("tile_col", "INTEGER"),
    ("tile_id", "TEXT"),
    ("box_index", "INTEGER"),
    ("angle", "REAL"),
    ("box_x1", "REAL"),
    ("box_y1", "REAL"),
    ("box_x2", "REAL"),
    ("box_y2", "REAL"),
    ("col_off", "INTEGER"),
    ("row_off", "INTEGER"),
    ("win_width", "INTEGER"),
    ("win_height", "INTEGER"),
    ("model", "TEXT"),
    ("precision", "TEXT"),
    ("angle_convention", "TEXT"),
    ("area", "REAL"),
    ("pixel_mode", "BOOLEAN"),
)
FOOTPRINT_COLUMNS: tuple[tuple[str, str], ...] = (
    ("run_id", "TEXT"),
    ("input_id", "INTEGER"),
    ("scene", "TEXT"),
    ("tile_id", "TEXT"),
    ("tile_row", "INTEGER"),
    ("tile_col", "INTEGER"),
    ("col_off", "INTEGER"),
    ("row_off", "INTEGER"),
    ("width", "INTEGER"),
    ("height", "INTEGER"),
    ("size", "INTEGER"),
    ("skipped", "BOOLEAN"),
    ("skip_reason", "TEXT"),
    ("n_boxes", "INTEGER"),
)


def det_columns(pixel: bool) -> tuple[tuple[str, str], ...]:
    """The columns of a detections layer: the area in m² (georeferenced) or in pixels (pixel mode)."""
    area = "area_px" if pixel else "area_m2"
    return tuple((area if name == "area" else name, kind) for name, kind in DET_COLUMNS)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


#: Attribute tables, created with GDAL (through pyogrio) when the store is created: name → columns.
ATTRIBUTE_TABLES: dict[str, dict[str, str]] = {
    "tiles": {
        "run_id": "object",
        "input_id": "int64",
        "scene": "object",
        "tile_id": "object",
        "tile_row": "int64",
        "tile_col": "int64",
        "col_off": "int64",
        "row_off": "int64",
        "width": "int64",
        "height": "int64",
        "size": "int64",
        "status": "object",
        "skip_reason": "object",
        "answer": "object",
        "n_boxes": "int64",
        "input_tokens": "int64",
        "output_tokens": "int64",
        "seconds": "float64",
        "batch_size": "int64",
        "device": "object",
        "pixel_mode": "bool",
        "time": "object",
    },
    "inputs": {
        "path": "object",
        "name": "object",
        "driver": "object",
        "width": "int64",
        "height": "int64",
        "bands": "int64",
        "dtype": "object",
        "crs": "object",
        "crs_wkt": "object",
        "transform": "object",
        "georef_source": "object",
        "pixel_mode": "bool",
        "size_bytes": "int64",
        "mtime_ns": "int64",
        "first_seen": "object",
        "content_id": "object",
        "rel_path": "object",
    },
    "input_runs": {
        "run_id": "object",
        "input_id": "int64",
        "path": "object",
        "status": "object",
        "stage": "object",
        "reason": "object",
        "tiles_planned": "int64",
        "tiles_done": "int64",
        "tiles_skipped": "int64",
        "raw_detections": "int64",
        "detections": "int64",
        "pixel_mode": "bool",
        "updated": "object",
    },
    "run": {
        "run_id": "object",
        "task": "object",
        "query": "object",
        "classes": "object",
        "prompt": "object",
        "prompt_sha256": "object",
        "model": "object",
        "model_id": "object",
        "precision": "object",
        "angle_convention": "object",
        "angle_convention_doc": "object",
        "tile_size": "int64",
        "overlap": "int64",
        "target_gsd": "float64",
        "max_new_tokens": "int64",
        "assume_crs": "object",
        "random_weights": "bool",
        "tool_version": "object",
        "created": "object",
        "nodata": "object",
    },
    "sessions": {
        "started": "object",
        "finished": "object",
        "status": "object",
        "pid": "int64",
        "command": "object",
        "summary": "object",
    },
}

INDEXES = (
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_tiles_key" ON "tiles" '
    "(run_id, input_id, col_off, row_off, width, height)",
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_inputs_path" ON "inputs" (path)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_input_runs_key" ON "input_runs" (run_id, input_id)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_run_id" ON "run" (run_id)',
    'CREATE INDEX IF NOT EXISTS "ix_inputs_content" ON "inputs" (content_id)',
)
#: Columns added after the first stores were written: added to an older store when it is opened.
LATER_COLUMNS = (("inputs", "content_id", "TEXT"), ("inputs", "rel_path", "TEXT"), ("run", "nodata", "TEXT"))
#: Tables whose ``scene`` (or ``path``) column names the input file, rewritten when an input moved.
PATH_COLUMNS = (
    ("tiles", "scene"),
    ("input_runs", "path"),
    ("detections", "scene"),
    ("tile_detections", "scene"),
    ("tile_footprints", "scene"),
    ("detections_pixel", "scene"),
    ("tile_detections_pixel", "scene"),
)


# --- creating, checking, migrating ------------------------------------------------------------
def create_store(path: Path) -> None:
    """A new, empty store: GDAL creates the GeoPackage and the attribute tables (in a temporary file
    renamed into place, so a kill never leaves a half-made store)."""
    import pyogrio

    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.gpkg")
    try:
        for name, columns in ATTRIBUTE_TABLES.items():
            pyogrio.write_dataframe(
                _empty(columns),
                tmp,
                layer=name,
                driver="GPKG",
                layer_options={"DESCRIPTION": f"rsvg batch: {name}"},
                dataset_options=gpkg.DATASET_OPTIONS,
            )
        con = gpkg.connect(tmp)
        try:
            con.execute("BEGIN")
            for sql in INDEXES:
                con.execute(sql)
            con.execute(f'CREATE TABLE "{META_TABLE}" (key TEXT PRIMARY KEY NOT NULL, value TEXT)')
            con.executemany(
                f'INSERT INTO "{META_TABLE}" (key, value) VALUES (?, ?)',
                [("format", str(STORE_FORMAT)), ("created", utc_now_iso()), ("tool_version", __version__)],
            )
            con.execute("COMMIT")
        finally:
            con.close()
        os.replace(tmp, path)
    except BaseException as exc:
        for p in (tmp, tmp.with_name(tmp.name + "-journal")):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
        if isinstance(exc, Exception) and not isinstance(exc, ConfigError):
            raise ExportError(f"creating the run store {path} failed: {exc}") from exc
        raise


def add_later_columns(con: sqlite3.Connection) -> None:
    """Bring a store written by an earlier version up to date (columns and indexes added since, the
    GeoPackage version it declares and its datetimes)."""
    for table, column, kind in LATER_COLUMNS:
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}
        if column not in have:
            con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {kind}')
    for sql in INDEXES:
        con.execute(sql)
    gpkg.conform_to_version(con)
    if con.in_transaction:
        con.commit()


def check_store(con: sqlite3.Connection, path: Path) -> None:
    """ConfigError (the connection closed) for a file that is not a run store this version reads."""
    try:
        row = con.execute(f'SELECT value FROM "{META_TABLE}" WHERE key = ?', ("format",)).fetchone()
    except sqlite3.DatabaseError:
        con.close()
        raise ConfigError(
            f"{path} exists and is not an rsvg batch run store (use another output, or "
            "--overwrite to replace it)"
        ) from None
    if row is None or int(row[0]) > STORE_FORMAT:
        con.close()
        raise ConfigError(f"{path}: run store format {row and row[0]} is not supported by this version")


def read_meta(con: sqlite3.Connection, key: str) -> str | None:
    """A value of the store's internal metadata (``None`` when unset)."""
    row = con.execute(f'SELECT value FROM "{META_TABLE}" WHERE key = ?', (key,)).fetchone()
    return None if row is None else row[0]


def write_meta(con: sqlite3.Connection, key: str, value: str) -> None:
    con.execute(f'INSERT OR REPLACE INTO "{META_TABLE}" (key, value) VALUES (?, ?)', (key, value))
