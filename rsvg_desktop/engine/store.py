"""The run store of ``rsvg batch``: one GeoPackage, written incrementally in sqlite transactions, plus
its answer log (``OUT.answers.jsonl``).

Why it survives ``kill -9``
    Every model batch is stored in **one transaction**: the ledger rows of the answered (tile,
    question) pairs, their raw detections, the tile footprints and, for every input whose last tile
    was in the batch, its seam-merged detections and its status. SQLite's rollback journal makes the
    transaction all or nothing, so a killed process leaves the file as it was after the last commit
    (the next open rolls back a half-written one). The ledger (``tiles``), not the log, says what is
    done. The answer log is written **after** the commit, from the ledger rows, each line carrying the
    row's ``store_seq`` (``extra`` key): when the process dies between the commit and the log lines,
    the next open repairs a cut-off last line and appends the rows whose ``store_seq`` is past the last
    one logged. So every stored answer is logged exactly once, and a logged answer is always stored.

Layout (GeoPackage 1.4; QGIS and GDAL read it as it is being written)
    ``detections``            merged detections of georeferenced inputs (output CRS), per (run, input)
    ``tile_detections``       every box of every answered tile, before merging (output CRS)
    ``tile_footprints``       tile windows of georeferenced inputs: answered, or skipped as nodata
    ``detections_pixel``      merged detections of inputs without CRS, in their pixel coordinates
                              (undefined Cartesian SRS, ``pixel_mode`` = 1), one layer for all of them
    ``tile_detections_pixel`` raw boxes of inputs without CRS
    ``tiles``                 the ledger: one row per (run, input, tile window), the raw answer, tokens,
                              time, device; ``status`` ``done`` or ``skipped`` (nodata)
    ``inputs``                one row per input file: size, CRS, where its georeferencing came from
    ``input_runs``            one row per (run, input): ``done`` or ``failed`` with the reason
    ``run``                   one row per run id: model, precision, task, query, prompt, grid, ...
    ``sessions``              one row per invocation, with its JSON summary
    ``layer_styles``          default QGIS styles; ``rsvg_batch_meta`` internal key/value metadata

    Spatial layers are created when first needed (the pixel layers only when an input without CRS
    comes). Their tables, SRS entry, R-tree index and triggers are created in one transaction.

Output CRS
    One per store: ``crs`` when given at creation, else the CRS of the first georeferenced input;
    every other georeferenced input is reprojected to it (see :func:`BatchStore.set_output_crs`).

Geometries are written as GeoPackage binary (``GP`` header with an XY envelope, then ISO WKB). The
R-tree triggers GDAL and the spec define call ``ST_IsEmpty``/``ST_MinX``/...;
:mod:`rsvg_desktop.core.geo.gpkg` registers those SQL functions on the store's own connection.
``gpkg_contents`` extents are widened at every commit.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import shapely

from rsvg_desktop import __version__
from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord, utc_now_iso
from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import DetectionTable, TileRecord
from rsvg_desktop.core.geo.export import detections_frame
from rsvg_desktop.core.geo.merge import stitched_geometry
from rsvg_desktop.core.geo.styles import (
    detections_qml,
    detections_sld,
    tiles_qml,
    tiles_sld,
    write_layer_styles,
)
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.results import merge_table_stitched
from rsvg_desktop.errors import ConfigError, ExportError, OutputExistsError

try:  # POSIX advisory lock: one writer per store
    import fcntl
except ImportError:  # pragma: no cover - Windows
    fcntl = None  # type: ignore[assignment]

__all__ = [
    "STORE_FORMAT",
    "BatchStore",
    "InputRecord",
    "RunRecord",
    "StoreTotals",
    "TileAnswer",
]

log = logging.getLogger(__name__)

STORE_FORMAT = 1
META_TABLE = "rsvg_batch_meta"

# --- column sets -------------------------------------------------------------------------------
_DET_COLUMNS: tuple[tuple[str, str], ...] = (
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
_FOOTPRINT_COLUMNS: tuple[tuple[str, str], ...] = (
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


def _det_columns(pixel: bool) -> tuple[tuple[str, str], ...]:
    area = "area_px" if pixel else "area_m2"
    return tuple((area if name == "area" else name, kind) for name, kind in _DET_COLUMNS)


def _empty(columns: dict[str, str]) -> pd.DataFrame:
    return pd.DataFrame({name: pd.Series([], dtype=dtype) for name, dtype in columns.items()})


#: Attribute tables, created with GDAL (through pyogrio) when the store is created: name → columns.
_ATTRIBUTE_TABLES: dict[str, dict[str, str]] = {
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

_INDEXES = (
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_tiles_key" ON "tiles" '
    "(run_id, input_id, col_off, row_off, width, height)",
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_inputs_path" ON "inputs" (path)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_input_runs_key" ON "input_runs" (run_id, input_id)',
    'CREATE UNIQUE INDEX IF NOT EXISTS "ux_run_id" ON "run" (run_id)',
    'CREATE INDEX IF NOT EXISTS "ix_inputs_content" ON "inputs" (content_id)',
)
#: Columns added after the first stores were written: added to an older store when it is opened.
_LATER_COLUMNS = (("inputs", "content_id", "TEXT"), ("inputs", "rel_path", "TEXT"))
#: Tables whose ``scene`` (or ``path``) column names the input file, rewritten when an input moved.
_PATH_COLUMNS = (
    ("tiles", "scene"),
    ("input_runs", "path"),
    ("detections", "scene"),
    ("tile_detections", "scene"),
    ("tile_footprints", "scene"),
    ("detections_pixel", "scene"),
    ("tile_detections_pixel", "scene"),
)


# --- values --------------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run id: everything that decides the answers (see ``engine.batch.run_identity``)."""

    run_id: str
    task: str
    query: str
    classes: tuple[str, ...]
    prompt: str
    prompt_sha256: str
    model: str
    model_id: str
    precision: str
    angle_convention: str
    tile_size: int
    overlap: int
    target_gsd: float | None
    max_new_tokens: int
    assume_crs: str | None
    random_weights: bool


@dataclass(frozen=True, slots=True)
class InputRecord:
    """What the store keeps about an input file."""

    path: str
    driver: str | None = None
    width: int | None = None
    height: int | None = None
    bands: int | None = None
    dtype: str | None = None
    crs: str | None = None
    crs_wkt: str | None = None
    transform: tuple[float, ...] | None = None
    georef_source: str | None = None
    pixel_mode: bool = False
    size_bytes: int | None = None
    mtime_ns: int | None = None
    content_id: str | None = None
    rel_path: str | None = None


@dataclass(frozen=True, eq=False)
class TileAnswer:
    """One answered (tile, question) to store: the ledger row, its raw detections (in the output CRS,
    or pixels) and, for georeferenced inputs, the tile footprint (output CRS)."""

    run_id: str
    input_id: int
    scene: str
    tile: Tile
    answer: str
    detections: DetectionTable
    pixel_mode: bool
    input_tokens: int | None = None
    output_tokens: int | None = None
    seconds: float | None = None
    batch_size: int | None = None
    device: str = ""
    footprint: Any | None = None


@dataclass(frozen=True, slots=True)
class InputOutcome:
    """What :meth:`BatchStore.finish_input` recorded for one (run, input)."""

    status: str
    tiles_done: int
    tiles_skipped: int
    raw_detections: int
    detections: int


@dataclass(frozen=True, slots=True)
class StoreTotals:
    """Counts in the store for some run ids."""

    tiles_done: int
    tiles_skipped: int
    raw_detections: int
    detections: int
    inputs_done: int
    inputs_failed: int


@dataclass
class _Layer:
    name: str
    srs_id: int
    extent: list[float] | None = None
    dirty: bool = False


@dataclass
class _Txn:
    touched: set[str] = field(default_factory=set)


# --- the store -----------------------------------------------------------------------------------
class BatchStore:
    """The GeoPackage run store and its answer log (see the module doc). Open with :meth:`open`."""

    def __init__(self, path: Path, answer_log: Path, con: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self.answer_log = answer_log
        self._con = con
        self._lock_fd = lock_fd
        self._txn: _Txn | None = None
        self._layers: dict[str, _Layer] = {}
        self._writer: AnswerLogWriter | None = None
        self._logged_seq = 0
        self._out_crs: tuple[str, Any] | None = None
        self._load_layers()

    # --- opening ----------------------------------------------------------------------------------
    @classmethod
    def open(
        cls,
        path: str | os.PathLike[str],
        answer_log: str | os.PathLike[str],
        *,
        overwrite: bool = False,
        crs_wkt: str | None = None,
    ) -> BatchStore:
        """Open the store at ``path`` to resume it, or create it (``overwrite`` starts afresh).

        ``crs_wkt`` fixes the output CRS of a new store (an existing one must agree). Raises
        :class:`ConfigError` for a file that is not a batch store or a store another process is
        writing, :class:`OutputExistsError` for an answer log without its store.
        """
        path, log_path = Path(path), Path(answer_log)
        if path.suffix.lower() != ".gpkg":
            raise ConfigError(f"{path}: the run store of a batch is a GeoPackage: use a .gpkg name")
        if path.is_dir():
            raise ConfigError(f"{path} is a folder, not a file name")
        if not path.parent.is_dir():
            raise ConfigError(f"the folder of {path} does not exist")
        lock_fd = _lock(log_path, path)
        try:
            if overwrite:
                for p in (path, path.with_name(path.name + "-journal"), log_path):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            if path.exists():
                con = gpkg.connect(path)
                _check_store(con, path)
                _add_later_columns(con)
            else:
                if log_path.exists() and log_path.stat().st_size > 0:
                    raise OutputExistsError(
                        f"{log_path} exists but its run store {path} does not: move the log away, or pass "
                        "--overwrite to start a new run store"
                    )
                _create(path)
                con = gpkg.connect(path)
            store = cls(path, log_path, con, lock_fd)
        except BaseException:
            _unlock(lock_fd)
            raise
        try:
            if crs_wkt is not None:
                store.set_output_crs(crs_wkt)
            store._ensure_styles()
            store._open_log()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the log and the database and release the lock (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._con is not None:
            if self._txn is not None:
                self._con.execute("ROLLBACK")
                self._txn = None
            self._con.close()
            self._con = None  # type: ignore[assignment]
        _unlock(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- metadata ---------------------------------------------------------------------------------
    def _meta(self, key: str) -> str | None:
        row = self._con.execute(f'SELECT value FROM "{META_TABLE}" WHERE key = ?', (key,)).fetchone()
        return None if row is None else row[0]

    def _set_meta(self, key: str, value: str) -> None:
        self._con.execute(f'INSERT OR REPLACE INTO "{META_TABLE}" (key, value) VALUES (?, ?)', (key, value))

    @property
    def output_crs_wkt(self) -> str | None:
        """The CRS of the georeferenced layers (``None`` until the first georeferenced input)."""
        return self._meta("output_crs_wkt")

    @property
    def output_crs(self) -> Any | None:
        """:attr:`output_crs_wkt` as a pyproj CRS (parsed once)."""
        wkt = self.output_crs_wkt
        if wkt is None:
            return None
        if self._out_crs is None or self._out_crs[0] != wkt:
            from pyproj import CRS

            self._out_crs = (wkt, CRS.from_wkt(wkt))
        return self._out_crs[1]

    def set_output_crs(self, crs_wkt: str) -> None:
        """Fix the output CRS and create the georeferenced layers; a store that has one must agree."""
        from pyproj import CRS

        current = self.output_crs_wkt
        wanted = CRS.from_user_input(crs_wkt)
        if current is not None:
            if not CRS.from_wkt(current).equals(wanted):
                raise ConfigError(
                    f"{self.path} holds results in {_crs_label(CRS.from_wkt(current))}, not "
                    f"{_crs_label(wanted)}: resume without --crs, or use another output"
                )
            return
        with self._transaction_raw():
            srs_id = gpkg.ensure_srs(self._con, wanted)
            self._set_meta("output_crs_wkt", wanted.to_wkt())
            self._set_meta("output_crs", _crs_label(wanted))
            for name, cols, desc in (
                ("detections", _det_columns(False), "merged GeoChat detections (rsvg batch)"),
                ("tile_detections", _det_columns(False), "every box of every tile, before merging"),
                ("tile_footprints", _FOOTPRINT_COLUMNS, "tile windows: answered or skipped as nodata"),
            ):
                self._create_layer(name, cols, srs_id, desc)
        self._ensure_styles()
        log.info("%s: output CRS %s", self.path, _crs_label(wanted))

    def _ensure_pixel_layers(self) -> None:
        if "detections_pixel" in self._layers:
            return
        with self._transaction_raw():
            for name, desc in (
                ("detections_pixel", "merged detections in pixel coordinates (no CRS)"),
                ("tile_detections_pixel", "raw boxes in pixel coordinates (no CRS)"),
            ):
                self._create_layer(name, _det_columns(True), gpkg.PIXEL_SRS_ID, desc)
        self._ensure_styles()

    def _create_layer(self, name: str, columns: Sequence[tuple[str, str]], srs_id: int, desc: str) -> None:
        con = self._con
        gpkg.create_feature_table(con, name, columns, srs_id, desc)
        if name.startswith(("detections", "tile_detections")):
            con.execute(f'CREATE INDEX "ix_{name}_key" ON "{name}" (input_id, run_id)')
        else:
            con.execute(
                f'CREATE UNIQUE INDEX "ux_{name}_key" ON "{name}" '
                "(run_id, input_id, col_off, row_off, width, height)"
            )
        self._layers[name] = _Layer(name, srs_id)

    def _load_layers(self) -> None:
        rows = self._con.execute(
            "SELECT c.table_name, g.srs_id, c.min_x, c.min_y, c.max_x, c.max_y FROM gpkg_contents c "
            "JOIN gpkg_geometry_columns g ON g.table_name = c.table_name"
        ).fetchall()
        for name, srs_id, x0, y0, x1, y1 in rows:
            extent = None if x0 is None else [x0, y0, x1, y1]
            self._layers[name] = _Layer(name, srs_id, extent)

    def _ensure_styles(self) -> None:
        wanted: dict[str, tuple[str, str, str]] = {}
        have = set()
        if self._con.execute("SELECT 1 FROM sqlite_master WHERE name = 'layer_styles'").fetchone():
            have = {r[0] for r in self._con.execute("SELECT f_table_name FROM layer_styles")}
        for name in self._layers:
            if name in have:
                continue
            if name == "tile_footprints":
                wanted[name] = ("rsvg default", tiles_qml(), tiles_sld(name))
            else:
                wanted[name] = ("rsvg default", detections_qml(), detections_sld(name))
        if wanted:
            write_layer_styles(self.path, wanted)

    # --- transactions -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def _transaction_raw(self) -> Iterator[None]:
        if self._txn is not None:
            yield
            return
        self._con.execute("BEGIN IMMEDIATE")
        self._txn = _Txn()
        try:
            yield
            self._flush_extents()
            self._con.execute("COMMIT")
        except BaseException:
            if self._con is not None:
                self._con.execute("ROLLBACK")
            self._reload_extents()
            raise
        finally:
            self._txn = None

    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside are committed together, or (on an exception or a kill) not at all. The
        answer log is brought up to date after the commit."""
        try:
            with self._transaction_raw():
                yield
        except sqlite3.Error as exc:
            raise ExportError(f"writing the run store {self.path} failed: {exc}") from exc
        self.sync_log()

    def _require_txn(self) -> _Txn:
        if self._txn is None:
            raise RuntimeError("store writes must happen inside store.transaction()")
        return self._txn

    def _widen(self, layer: str, geoms: np.ndarray) -> None:
        if len(geoms) == 0:
            return
        b = shapely.bounds(geoms)
        lo_x, lo_y = float(np.nanmin(b[:, 0])), float(np.nanmin(b[:, 1]))
        hi_x, hi_y = float(np.nanmax(b[:, 2])), float(np.nanmax(b[:, 3]))
        lay = self._layers[layer]
        if lay.extent is None:
            lay.extent = [lo_x, lo_y, hi_x, hi_y]
        else:
            e = lay.extent
            lay.extent = [min(e[0], lo_x), min(e[1], lo_y), max(e[2], hi_x), max(e[3], hi_y)]
        lay.dirty = True

    def _flush_extents(self) -> None:
        now = utc_now_iso()
        for lay in self._layers.values():
            if lay.dirty and lay.extent is not None:
                self._con.execute(
                    "UPDATE gpkg_contents SET min_x = ?, min_y = ?, max_x = ?, max_y = ?, "
                    "last_change = ? WHERE table_name = ?",
                    (*lay.extent, now, lay.name),
                )
                lay.dirty = False
        for name in self._txn.touched if self._txn is not None else ():
            self._con.execute("UPDATE gpkg_contents SET last_change = ? WHERE table_name = ?", (now, name))

    def _reload_extents(self) -> None:
        for lay in self._layers.values():
            row = self._con.execute(
                "SELECT min_x, min_y, max_x, max_y FROM gpkg_contents WHERE table_name = ?", (lay.name,)
            ).fetchone()
            lay.extent = None if row is None or row[0] is None else list(row)
            lay.dirty = False

    # --- runs and inputs --------------------------------------------------------------------------
    def add_run(self, run: RunRecord) -> None:
        """Record a run id (nothing happens when it is already there)."""
        with self._transaction_raw():
            self._con.execute(
                "INSERT OR IGNORE INTO run (run_id, task, query, classes, prompt, prompt_sha256, model,"
                " model_id, precision, angle_convention, angle_convention_doc, tile_size, overlap,"
                " target_gsd, max_new_tokens, assume_crs, random_weights, tool_version, created) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    run.run_id,
                    run.task,
                    run.query,
                    json.dumps(list(run.classes)),
                    run.prompt,
                    run.prompt_sha256,
                    run.model,
                    run.model_id,
                    run.precision,
                    run.angle_convention,
                    AngleConvention(run.angle_convention).description,
                    run.tile_size,
                    run.overlap,
                    run.target_gsd,
                    run.max_new_tokens,
                    run.assume_crs,
                    int(run.random_weights),
                    __version__,
                    utc_now_iso(),
                ),
            )

    def input_id(self, path: str) -> int | None:
        row = self._con.execute("SELECT fid FROM inputs WHERE path = ?", (path,)).fetchone()
        return None if row is None else int(row[0])

    def find_input(self, path: str, rel_path: str | None, content: Callable[[], str | None]) -> int | None:
        """The id of a stored input: by ``path``; else (a moved or renamed archive) by ``rel_path`` and
        content id, then by content id alone when exactly one stored input has it and its old path is
        gone. ``content`` computes the content id, called only when the path is not known. A match
        under another path is moved to ``path`` (see :meth:`relocate_input`)."""
        found = self.input_id(path)
        if found is not None:
            return found
        if self._con.execute("SELECT fid FROM inputs LIMIT 1").fetchone() is None:
            return None  # a new store: nothing to match, no file to hash
        cid = content()
        if cid is None:
            return None
        rows = self._con.execute(
            "SELECT fid, path, rel_path FROM inputs WHERE content_id = ? ORDER BY fid", (cid,)
        ).fetchall()
        match = [r for r in rows if rel_path is not None and r[2] == rel_path]
        if not match:
            gone = [r for r in rows if not os.path.exists(r[1])]
            match = gone if len(gone) == 1 else []
        if len(match) != 1:
            return None
        fid, old, _ = match[0]
        self.relocate_input(int(fid), path, rel_path)
        log.info("%s: resuming the input stored as %s (same content)", path, old)
        return int(fid)

    def relocate_input(self, input_id: int, path: str, rel_path: str | None) -> None:
        """Record that input ``input_id`` is now at ``path``: the input row and every row naming it."""
        with self._transaction_raw():
            self._con.execute(
                "UPDATE inputs SET path = ?, name = ?, rel_path = ? WHERE fid = ?",
                (path, os.path.basename(path), rel_path, input_id),
            )
            present = {r[0] for r in self._con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            for table, column in _PATH_COLUMNS:
                if table in present:
                    self._con.execute(
                        f'UPDATE "{table}" SET "{column}" = ? WHERE input_id = ?', (path, input_id)
                    )

    def add_input(self, rec: InputRecord) -> int:
        """The input's id, recording (or refreshing) what is known about the file."""
        values = (
            rec.driver,
            rec.width,
            rec.height,
            rec.bands,
            rec.dtype,
            rec.crs,
            rec.crs_wkt,
            None if rec.transform is None else json.dumps(list(rec.transform)),
            rec.georef_source,
            int(rec.pixel_mode),
            rec.size_bytes,
            rec.mtime_ns,
            rec.content_id,
            rec.rel_path,
        )
        with self._transaction_raw():
            found = self.input_id(rec.path)
            if found is None:
                cur = self._con.execute(
                    "INSERT INTO inputs (path, name, driver, width, height, bands, dtype, crs, crs_wkt,"
                    " transform, georef_source, pixel_mode, size_bytes, mtime_ns, content_id, rel_path,"
                    " first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (rec.path, os.path.basename(rec.path), *values, utc_now_iso()),
                )
                return _rowid(cur)
            if rec.driver is not None:
                self._con.execute(
                    "UPDATE inputs SET driver = ?, width = ?, height = ?, bands = ?, dtype = ?, crs = ?,"
                    " crs_wkt = ?, transform = ?, georef_source = ?, pixel_mode = ?, size_bytes = ?,"
                    " mtime_ns = ?, content_id = coalesce(?, content_id), rel_path = coalesce(?, rel_path)"
                    " WHERE fid = ?",
                    (*values, found),
                )
            return found

    def input_fingerprint(self, input_id: int) -> tuple[int | None, int | None]:
        row = self._con.execute(
            "SELECT size_bytes, mtime_ns FROM inputs WHERE fid = ?", (input_id,)
        ).fetchone()
        return (None, None) if row is None else (row[0], row[1])

    def input_status(self, input_id: int, run_ids: Sequence[str]) -> dict[str, str]:
        """``{run_id: status}`` of the input for those runs that have a row."""
        q = ",".join("?" * len(run_ids))
        rows = self._con.execute(
            f"SELECT run_id, status FROM input_runs WHERE input_id = ? AND run_id IN ({q})",
            (input_id, *run_ids),
        ).fetchall()
        return dict(rows)

    def input_tiles_done(self, input_id: int, run_ids: Sequence[str]) -> int:
        """Answered (tile, run) pairs of an input, over the given runs."""
        q = ",".join("?" * len(run_ids))
        (n,) = self._con.execute(
            f"SELECT count(*) FROM tiles WHERE input_id = ? AND run_id IN ({q}) AND status = 'done'",
            (input_id, *run_ids),
        ).fetchone()
        return int(n)

    def done_windows(
        self, input_id: int, run_ids: Sequence[str]
    ) -> set[tuple[str, tuple[int, int, int, int]]]:
        """``(run_id, window)`` of the tiles of an input already answered."""
        q = ",".join("?" * len(run_ids))
        rows = self._con.execute(
            f"SELECT run_id, col_off, row_off, width, height FROM tiles WHERE input_id = ?"
            f" AND run_id IN ({q}) AND status = 'done'",
            (input_id, *run_ids),
        ).fetchall()
        return {(r[0], (r[1], r[2], r[3], r[4])) for r in rows}

    # --- writing results (inside a transaction) ---------------------------------------------------
    def add_answers(self, answers: Sequence[TileAnswer], output_crs: Any | None) -> list[int]:
        """Store answered tiles: ledger rows, raw detections, footprints. Returns the ledger seqs."""
        txn = self._require_txn()
        now = utc_now_iso()
        seqs: list[int] = []
        for a in answers:
            t = a.tile
            cur = self._con.execute(
                "INSERT INTO tiles (run_id, input_id, scene, tile_id, tile_row, tile_col, col_off, row_off,"
                " width, height, size, status, skip_reason, answer, n_boxes, input_tokens, output_tokens,"
                " seconds, batch_size, device, pixel_mode, time) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'done', NULL, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (
                    a.run_id,
                    a.input_id,
                    a.scene,
                    t.id,
                    t.row,
                    t.col,
                    t.col_off,
                    t.row_off,
                    t.width,
                    t.height,
                    t.size,
                    a.answer,
                    len(a.detections),
                    a.input_tokens,
                    a.output_tokens,
                    a.seconds,
                    a.batch_size,
                    a.device,
                    int(a.pixel_mode),
                    now,
                ),
            )
            seqs.append(_rowid(cur))
        txn.touched.add("tiles")
        for pixel in (False, True):
            group = [a for a in answers if a.pixel_mode is pixel and len(a.detections)]
            if group:
                layer = "tile_detections_pixel" if pixel else "tile_detections"
                if pixel:
                    self._ensure_layer_in_txn_pixel()
                self._insert_detections(layer, group, None if pixel else output_crs)
        footprints = [a for a in answers if a.footprint is not None]
        if footprints:
            self._insert_footprints(
                [
                    (a.run_id, a.input_id, a.scene, a.tile, a.footprint, False, None, len(a.detections))
                    for a in footprints
                ]
            )
        return seqs

    def _ensure_layer_in_txn_pixel(self) -> None:
        if "tile_detections_pixel" not in self._layers:
            raise RuntimeError("call prepare_pixel_layers() before storing pixel-mode answers")

    def prepare_pixel_layers(self) -> None:
        """Create the pixel-mode layers (outside a transaction) if they do not exist yet."""
        self._ensure_pixel_layers()

    def _insert_detections(self, layer: str, answers: Sequence[TileAnswer], crs: Any | None) -> None:
        txn = self._require_txn()
        table = DetectionTable.concat([a.detections for a in answers])
        frame = detections_frame(table, crs=crs)
        area_name = "area_px" if "area_px" in frame.columns else "area_m2"
        input_ids = np.concatenate([np.full(len(a.detections), a.input_id, dtype=np.int64) for a in answers])
        box_index = np.concatenate([np.arange(len(a.detections), dtype=np.int64) for a in answers])
        pixel = layer.endswith("_pixel")
        geoms = table.geometry
        blobs = gpkg.geometry_blobs(geoms, self._layers[layer].srs_id)
        boxes, wins = table.boxes, table.windows
        angles = [None if math.isnan(a) else a for a in boxes[:, 4].tolist()]
        tile_rows, tile_cols = table.tile_row.tolist(), table.tile_col.tolist()
        tile_ids = [f"r{r}c{c}" for r, c in zip(tile_rows, tile_cols, strict=True)]
        w = wins.astype(np.int64)
        n = len(table)
        rows = list(
            zip(
                blobs,
                table.run_id.tolist(),
                input_ids.tolist(),
                table.scene.tolist(),
                table.task.tolist(),
                table.query.tolist(),
                table.phrase.tolist(),
                tile_rows,
                tile_cols,
                tile_ids,
                box_index.tolist(),
                angles,
                boxes[:, 0].tolist(),
                boxes[:, 1].tolist(),
                boxes[:, 2].tolist(),
                boxes[:, 3].tolist(),
                w[:, 0].tolist(),
                w[:, 1].tolist(),
                w[:, 2].tolist(),
                w[:, 3].tolist(),
                table.model.tolist(),
                table.precision.tolist(),
                [table.angle_convention.value] * n,
                frame[area_name].to_numpy(dtype=np.float64).tolist(),
                [int(pixel)] * n,
                strict=True,
            )
        )
        names = ", ".join(f'"{c}"' for c, _ in _det_columns(pixel))
        marks = ", ".join("?" * (len(_DET_COLUMNS) + 1))
        self._con.executemany(f'INSERT INTO "{layer}" ("geom", {names}) VALUES ({marks})', rows)
        self._widen(layer, geoms)
        txn.touched.add(layer)

    def _insert_footprints(
        self,
        items: Sequence[tuple[str, int, str, Tile, Any, bool, str | None, int]],
    ) -> None:
        txn = self._require_txn()
        layer = self._layers["tile_footprints"]
        geoms = np.asarray([it[4] for it in items], dtype=object)
        blobs = gpkg.geometry_blobs(geoms, layer.srs_id)
        rows = [
            (
                blob,
                run_id,
                input_id,
                scene,
                t.id,
                t.row,
                t.col,
                t.col_off,
                t.row_off,
                t.width,
                t.height,
                t.size,
                int(skipped),
                reason,
                n,
            )
            for blob, (run_id, input_id, scene, t, _, skipped, reason, n) in zip(blobs, items, strict=True)
        ]
        names = ", ".join(f'"{c}"' for c, _ in _FOOTPRINT_COLUMNS)
        marks = ", ".join("?" * (len(_FOOTPRINT_COLUMNS) + 1))
        self._con.executemany(
            f'INSERT OR IGNORE INTO "tile_footprints" ("geom", {names}) VALUES ({marks})', rows
        )
        self._widen("tile_footprints", geoms)
        txn.touched.add("tile_footprints")

    def finish_input(
        self,
        run_id: str,
        input_id: int,
        path: str,
        *,
        status: str,
        pixel_mode: bool,
        tiles_planned: int | None = None,
        skipped: Sequence[TileRecord] = (),
        stage: str | None = None,
        reason: str | None = None,
        angle_convention: str = "ccw",
    ) -> InputOutcome:
        """Close one (run, input): record skipped tiles, merge its raw detections across tile seams into
        the merged layer (replacing an earlier partial merge), and set its status (``done``/``failed``).
        Must run inside :meth:`transaction`."""
        txn = self._require_txn()
        con = self._con
        now = utc_now_iso()
        if skipped:
            con.executemany(
                "INSERT OR IGNORE INTO tiles (run_id, input_id, scene, tile_id, tile_row, tile_col, col_off,"
                " row_off, width, height, size, status, skip_reason, n_boxes, pixel_mode, time) VALUES"
                " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 'skipped', ?, 0, ?, ?)",
                [
                    (
                        run_id,
                        input_id,
                        path,
                        r.tile.id,
                        r.tile.row,
                        r.tile.col,
                        r.tile.col_off,
                        r.tile.row_off,
                        r.tile.width,
                        r.tile.height,
                        r.tile.size,
                        r.skip_reason or "nodata",
                        int(pixel_mode),
                        now,
                    )
                    for r in skipped
                ],
            )
            if not pixel_mode and "tile_footprints" in self._layers:
                self._insert_footprints(
                    [
                        (run_id, input_id, path, r.tile, r.geometry, True, r.skip_reason or "nodata", 0)
                        for r in skipped
                    ]
                )
            txn.touched.add("tiles")
        raw_layer, merged_layer = (
            ("tile_detections_pixel", "detections_pixel") if pixel_mode else ("tile_detections", "detections")
        )
        n_raw = n_merged = 0
        if raw_layer in self._layers:
            con.execute(f'DELETE FROM "{merged_layer}" WHERE input_id = ? AND run_id = ?', (input_id, run_id))
            fids, table = self._raw_for_merge(raw_layer, run_id, input_id, angle_convention)
            n_raw = len(fids)
            if n_raw:
                kept_idx, stitched = merge_table_stitched(table)
                kept = fids[kept_idx]
                n_merged = len(kept)
                attrs = ", ".join(f'"{c}"' for c, _ in _det_columns(pixel_mode))
                cols = f'"geom", {attrs}'
                # Stitched objects get their stitched polygon; every other survivor is copied as is.
                plain = np.setdiff1d(kept, fids[list(stitched)]) if stitched else kept
                for start in range(0, len(plain), 500):
                    chunk = plain[start : start + 500].tolist()
                    con.execute(
                        f'INSERT INTO "{merged_layer}" ({cols}) SELECT {cols} FROM "{raw_layer}" '
                        f"WHERE fid IN ({','.join('?' * len(chunk))}) ORDER BY fid",
                        chunk,
                    )
                srs_id = self._layers[merged_layer].srs_id
                for head, members in stitched.items():
                    member_fids = fids[members].tolist()
                    blobs = con.execute(
                        f'SELECT geom FROM "{raw_layer}" WHERE fid IN ({",".join("?" * len(member_fids))})',
                        member_fids,
                    ).fetchall()
                    geom = stitched_geometry([gpkg.geometry_from_blob(b[0]) for b in blobs])
                    con.execute(
                        f'INSERT INTO "{merged_layer}" ({cols}) SELECT ?, {attrs} FROM "{raw_layer}" '
                        "WHERE fid = ?",
                        (gpkg.geometry_blobs([geom], srs_id)[0], int(fids[head])),
                    )
                lay, src = self._layers[merged_layer], self._layers[raw_layer]
                if src.extent is not None:
                    lay.extent = (
                        list(src.extent)
                        if lay.extent is None
                        else [
                            min(lay.extent[0], src.extent[0]),
                            min(lay.extent[1], src.extent[1]),
                            max(lay.extent[2], src.extent[2]),
                            max(lay.extent[3], src.extent[3]),
                        ]
                    )
                    lay.dirty = True
            txn.touched.add(merged_layer)
        done, n_skipped = con.execute(
            "SELECT coalesce(sum(status = 'done'), 0), coalesce(sum(status = 'skipped'), 0) FROM tiles"
            " WHERE run_id = ? AND input_id = ?",
            (run_id, input_id),
        ).fetchone()
        con.execute(
            "INSERT INTO input_runs (run_id, input_id, path, status, stage, reason, tiles_planned,"
            " tiles_done, tiles_skipped, raw_detections, detections, pixel_mode, updated) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (run_id, input_id) DO UPDATE SET"
            " status = excluded.status, stage = excluded.stage, reason = excluded.reason,"
            " tiles_planned = coalesce(excluded.tiles_planned, tiles_planned),"
            " tiles_done = excluded.tiles_done,"
            " tiles_skipped = excluded.tiles_skipped, raw_detections = excluded.raw_detections,"
            " detections = excluded.detections, pixel_mode = excluded.pixel_mode, updated = excluded.updated",
            (
                run_id,
                input_id,
                path,
                status,
                stage,
                reason,
                tiles_planned,
                done,
                n_skipped,
                n_raw,
                n_merged,
                int(pixel_mode),
                now,
            ),
        )
        txn.touched.add("input_runs")
        return InputOutcome(status, int(done), int(n_skipped), n_raw, n_merged)

    def _raw_for_merge(
        self, layer: str, run_id: str, input_id: int, angle_convention: str
    ) -> tuple[np.ndarray, DetectionTable]:
        rows = self._con.execute(
            f"SELECT fid, phrase, tile_row, tile_col, box_x1, box_y1, box_x2, box_y2, angle, col_off,"
            f' row_off, win_width, win_height, scene, task, query FROM "{layer}"'
            " WHERE input_id = ? AND run_id = ? ORDER BY fid",
            (input_id, run_id),
        ).fetchall()
        n = len(rows)
        fids = np.asarray([r[0] for r in rows], dtype=np.int64)
        boxes = np.asarray(
            [[r[4], r[5], r[6], r[7], np.nan if r[8] is None else r[8]] for r in rows], dtype=np.float64
        ).reshape(n, 5)
        windows = np.asarray([r[9:13] for r in rows], dtype=np.float64).reshape(n, 4)
        placeholder = np.empty(n, dtype=object)  # merging uses boxes and windows, not the polygons
        table = DetectionTable.from_columns(
            phrase=[r[1] for r in rows],
            task=[r[14] for r in rows],
            query=[r[15] for r in rows],
            tile_row=[r[2] for r in rows],
            tile_col=[r[3] for r in rows],
            boxes=boxes,
            windows=windows,
            geometry=placeholder,
            model="",
            precision="",
            run_id=run_id,
            scene=[r[13] for r in rows],
            angle_convention=AngleConvention(angle_convention),
        )
        return fids, table

    # --- sessions -------------------------------------------------------------------------------
    def start_session(self, command: str) -> int:
        with self._transaction_raw():
            cur = self._con.execute(
                "INSERT INTO sessions (started, status, pid, command) VALUES (?, ?, ?, ?)",
                (utc_now_iso(), "running", os.getpid(), command),
            )
            return _rowid(cur)

    def finish_session(self, session: int, status: str, summary: dict[str, Any]) -> None:
        with self._transaction_raw():
            self._con.execute(
                "UPDATE sessions SET finished = ?, status = ?, summary = ? WHERE fid = ?",
                (utc_now_iso(), status, json.dumps(summary, ensure_ascii=False), session),
            )

    # --- reading ----------------------------------------------------------------------------------
    def totals(self, run_ids: Sequence[str]) -> StoreTotals:
        """Counts over the given run ids."""
        q = ",".join("?" * len(run_ids))
        con = self._con
        done, skipped = con.execute(
            f"SELECT coalesce(sum(status = 'done'), 0), coalesce(sum(status = 'skipped'), 0) FROM tiles"
            f" WHERE run_id IN ({q})",
            run_ids,
        ).fetchone()
        raw = merged = 0
        for name in self._layers:
            if name.startswith(("tile_detections", "detections")):
                (n,) = con.execute(f'SELECT count(*) FROM "{name}" WHERE run_id IN ({q})', run_ids).fetchone()
                if name.startswith("tile_"):
                    raw += n
                else:
                    merged += n
        idone, ifailed = con.execute(
            f"SELECT coalesce(sum(status = 'done'), 0), coalesce(sum(status = 'failed'), 0) FROM input_runs"
            f" WHERE run_id IN ({q})",
            run_ids,
        ).fetchone()
        return StoreTotals(int(done), int(skipped), raw, merged, int(idone), int(ifailed))

    def layers(self) -> tuple[str, ...]:
        """The spatial layers that exist."""
        return tuple(sorted(self._layers))

    # --- the answer log ---------------------------------------------------------------------------
    def _open_log(self) -> None:
        self._writer = AnswerLogWriter(self.answer_log)  # repairs a cut-off last line
        self._logged_seq = _last_logged_seq(self.answer_log)
        self.sync_log()

    def sync_log(self) -> int:
        """Append the stored answers not yet in the log (``store_seq`` past the last logged); returns
        how many lines were written."""
        if self._writer is None:
            return 0
        n = 0
        for record in self._records_after(self._logged_seq):
            self._writer.write(record)
            self._logged_seq = int(record.extra["store_seq"])
            n += 1
        if n:
            log.debug("%s: %d answer(s) logged", self.answer_log, n)
        return n

    def _records_after(self, seq: int) -> Iterator[AnswerRecord]:
        cur = self._con.execute(
            "SELECT t.fid, i.path, t.tile_row, t.tile_col, t.col_off, t.row_off, t.width, t.height, t.size,"
            " r.task, r.query, t.answer, t.run_id, r.model, r.precision, t.device, r.angle_convention,"
            " i.crs_wkt, i.transform, t.pixel_mode, t.input_tokens, t.output_tokens, t.seconds, t.time,"
            " r.random_weights, r.overlap, r.target_gsd FROM tiles t JOIN inputs i ON i.fid = t.input_id"
            " JOIN run r ON r.run_id = t.run_id"
            " WHERE t.fid > ? AND t.status = 'done' ORDER BY t.fid",
            (seq,),
        )
        while True:
            rows = cur.fetchmany(256)
            if not rows:
                return
            for (
                fid,
                path,
                trow,
                tcol,
                c0,
                r0,
                w,
                h,
                size,
                task,
                query,
                answer,
                run_id,
                model,
                precision,
                device,
                conv,
                crs,
                transform,
                pixel,
                n_in,
                n_out,
                secs,
                when,
                rnd,
                overlap,
                target_gsd,
            ) in rows:
                yield AnswerRecord(
                    scene=path,
                    col_off=c0,
                    row_off=r0,
                    width=w,
                    height=h,
                    task=task,
                    query=query,
                    answer=answer,
                    tile_row=trow,
                    tile_col=tcol,
                    tile_size=size,
                    run_id=run_id,
                    model=model,
                    precision=precision,
                    device=device or None,
                    angle_convention=conv,
                    crs=crs,
                    transform=None if transform is None else tuple(json.loads(transform)),
                    pixel_mode=bool(pixel),
                    input_tokens=n_in,
                    output_tokens=n_out,
                    seconds=secs,
                    time=when,
                    overlap=None if overlap is None else int(overlap),
                    target_gsd=None if target_gsd is None or target_gsd != target_gsd else float(target_gsd),
                    extra={"store_seq": fid, "random_weights": bool(rnd)},
                )


# --- helpers -------------------------------------------------------------------------------------
def _crs_label(crs: Any) -> str:
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.name


def _lock(log_path: Path, path: Path) -> int | None:
    """Hold an exclusive lock on the answer log for the life of the store (one writer per store)."""
    if fcntl is None:  # pragma: no cover - Windows: no advisory lock
        return None
    fd = os.open(log_path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except OSError:
        os.close(fd)
        raise ConfigError(f"{path} is being written by another rsvg batch process") from None
    return fd


def _unlock(fd: int | None) -> None:
    if fd is not None:
        with contextlib.suppress(OSError):
            os.close(fd)  # closing the descriptor releases the flock


def _create(path: Path) -> None:
    """A new, empty store: GDAL creates the GeoPackage and the attribute tables (in a temporary file
    renamed into place, so a kill never leaves a half-made store)."""
    import pyogrio

    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp.gpkg")
    try:
        for name, columns in _ATTRIBUTE_TABLES.items():
            pyogrio.write_dataframe(
                _empty(columns),
                tmp,
                layer=name,
                driver="GPKG",
                layer_options={"DESCRIPTION": f"rsvg batch: {name}"},
            )
        con = gpkg.connect(tmp)
        try:
            con.execute("BEGIN")
            for sql in _INDEXES:
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


def _add_later_columns(con: sqlite3.Connection) -> None:
    """Bring a store written by an earlier version up to date (columns and indexes added since)."""
    for table, column, kind in _LATER_COLUMNS:
        have = {r[1] for r in con.execute(f'PRAGMA table_info("{table}")')}
        if column not in have:
            con.execute(f'ALTER TABLE "{table}" ADD COLUMN "{column}" {kind}')
    for sql in _INDEXES:
        con.execute(sql)
    if con.in_transaction:
        con.commit()


def _check_store(con: sqlite3.Connection, path: Path) -> None:
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


def _last_logged_seq(path: Path) -> int:
    """The ``store_seq`` of the last complete line of the answer log (0 when none)."""
    try:
        size = path.stat().st_size
    except FileNotFoundError:
        return 0
    if size == 0:
        return 0
    with open(path, "rb") as f:
        block, end, tail = 65536, size, b""
        while end > 0:
            begin = max(0, end - block)
            f.seek(begin)
            tail = f.read(end - begin) + tail
            lines = [ln for ln in tail.split(b"\n") if ln.strip()]
            if len(lines) >= 2 or begin == 0:
                break
            end = begin
    lines = [ln for ln in tail.split(b"\n") if ln.strip()]
    if not lines:
        return 0
    try:
        obj = json.loads(lines[-1].decode("utf-8"))
        return int(obj["store_seq"])
    except (ValueError, KeyError, TypeError):
        log.warning(
            "%s: the last line has no store_seq (not written by rsvg batch?): nothing re-logged", path
        )
        return 2**62


def _rowid(cur: sqlite3.Cursor) -> int:
    """The rowid of the row an INSERT just added."""
    if cur.lastrowid is None:  # pragma: no cover - sqlite sets it after every INSERT
        raise ExportError("the run store did not return the new row's id")
    return int(cur.lastrowid)
