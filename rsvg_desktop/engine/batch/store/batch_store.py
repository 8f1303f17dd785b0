"""The run store as one object: opening (locked, created or checked and brought up to date), the
output CRS, transactions followed by the answer log, and the reads and writes of a batch, each done
by the module that holds its job (see the package doc)."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sqlite3
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.detections import TileRecord
from rsvg_desktop.engine.batch.store import known_inputs, ledger
from rsvg_desktop.engine.batch.store.answer_mirror import AnswerMirror
from rsvg_desktop.engine.batch.store.layers import OUTPUT_CRS_LAYERS, PIXEL_LAYERS
from rsvg_desktop.engine.batch.store.lock import lock_store, unlock_store
from rsvg_desktop.engine.batch.store.records import (
    InputOutcome,
    InputRecord,
    RunRecord,
    StoreTotals,
    TileAnswer,
)
from rsvg_desktop.engine.batch.store.schema import (
    add_later_columns,
    check_store,
    create_store,
    read_meta,
    write_meta,
)
from rsvg_desktop.engine.batch.store.seams import merge_seams
from rsvg_desktop.engine.batch.store.transactions import StoreDb, inserted_rowid
from rsvg_desktop.errors import ConfigError, ExportError, OutputExistsError

log = logging.getLogger(__name__)


class BatchStore:
    """The GeoPackage run store and its answer log (see the package doc). Open with :meth:`open`."""

    def __init__(self, path: Path, answer_log: Path, con: sqlite3.Connection, lock_fd: int | None) -> None:
        self.path = path
        self.answer_log = answer_log
        self._lock_fd = lock_fd
        self._db = StoreDb(con)
        self._mirror = AnswerMirror(answer_log, self._db)
        self._out_crs: tuple[str, Any] | None = None

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
        _check_output_path(path)
        lock_fd = lock_store(log_path, path)
        try:
            if overwrite:
                for p in (path, path.with_name(path.name + "-journal"), log_path):
                    with contextlib.suppress(FileNotFoundError):
                        p.unlink()
            store = cls(path, log_path, _connect(path, log_path), lock_fd)
        except BaseException:
            unlock_store(lock_fd)
            raise
        try:
            if crs_wkt is not None:
                store.set_output_crs(crs_wkt)
            store._ensure_styles()
            store._mirror.open()
        except BaseException:
            store.close()
            raise
        return store

    def close(self) -> None:
        """Close the log and the database and release the lock (idempotent)."""
        self._mirror.close()
        self._db.close()
        unlock_store(self._lock_fd)
        self._lock_fd = None

    def __enter__(self) -> BatchStore:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- the output CRS and the layers ------------------------------------------------------------
    @property
    def output_crs_wkt(self) -> str | None:
        """The CRS of the georeferenced layers (``None`` until the first georeferenced input)."""
        return read_meta(self._db.con, "output_crs_wkt")

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
        db = self._db
        with db.transaction():
            srs_id = gpkg.ensure_srs(db.con, wanted)
            write_meta(db.con, "output_crs_wkt", wanted.to_wkt())
            write_meta(db.con, "output_crs", _crs_label(wanted))
            for name, cols, desc in OUTPUT_CRS_LAYERS:
                db.layers.create(db.con, name, cols, srs_id, desc)
        self._ensure_styles()
        log.info("%s: output CRS %s", self.path, _crs_label(wanted))

    def prepare_pixel_layers(self) -> None:
        """Create the pixel-mode layers (outside a transaction) if they do not exist yet."""
        db = self._db
        if "detections_pixel" in db.layers:
            return
        with db.transaction():
            for name, cols, desc in PIXEL_LAYERS:
                db.layers.create(db.con, name, cols, gpkg.PIXEL_SRS_ID, desc)
        self._ensure_styles()

    def _ensure_styles(self) -> None:
        self._db.layers.ensure_styles(self._db.con, self.path)

    def layers(self) -> tuple[str, ...]:
        """The spatial layers that exist."""
        return tuple(sorted(self._db.layers))

    # --- transactions -----------------------------------------------------------------------------
    @contextlib.contextmanager
    def transaction(self) -> Iterator[None]:
        """All writes inside are committed together, or (on an exception or a kill) not at all. The
        answer log is brought up to date after the commit."""
        try:
            with self._db.transaction():
                yield
        except sqlite3.Error as exc:
            raise ExportError(f"writing the run store {self.path} failed: {exc}") from exc
        self.sync_log()

    def sync_log(self) -> int:
        """Append the stored answers not yet in the answer log; returns how many lines were written."""
        return self._mirror.sync()

    # --- runs and inputs --------------------------------------------------------------------------
    def add_run(self, run: RunRecord) -> None:
        """Record a run id (nothing happens when it is already there)."""
        ledger.add_run(self._db, run)

    def input_id(self, path: str) -> int | None:
        """The id of the input stored under ``path`` (``None``: none)."""
        return known_inputs.id_by_path(self._db, path)

    def find_input(self, path: str, rel_path: str | None, content: Callable[[], str | None]) -> int | None:
        """The id of a stored input, by path, or found by content after a move (see
        :func:`~rsvg_desktop.engine.batch.store.known_inputs.find_input`)."""
        return known_inputs.find_input(self._db, path, rel_path, content)

    def relocate_input(self, input_id: int, path: str, rel_path: str | None) -> None:
        """Record that input ``input_id`` is now at ``path``: the input row and every row naming it."""
        known_inputs.relocate_input(self._db, input_id, path, rel_path)

    def add_input(self, rec: InputRecord) -> int:
        """The input's id, recording (or refreshing) what is known about the file."""
        return known_inputs.add_input(self._db, rec)

    def input_fingerprint(self, input_id: int) -> tuple[int | None, int | None]:
        """The size and modification time (ns) recorded for an input."""
        return known_inputs.input_fingerprint(self._db, input_id)

    def input_status(self, input_id: int, run_ids: Sequence[str]) -> dict[str, str]:
        """``{run_id: status}`` of the input for those runs that have a row."""
        return known_inputs.input_status(self._db, input_id, run_ids)

    def input_tiles_done(self, input_id: int, run_ids: Sequence[str]) -> int:
        """Answered (tile, run) pairs of an input, over the given runs."""
        return ledger.input_tiles_done(self._db, input_id, run_ids)

    def done_windows(
        self, input_id: int, run_ids: Sequence[str]
    ) -> set[tuple[str, tuple[int, int, int, int]]]:
        """``(run_id, window)`` of the tiles of an input already answered."""
        return ledger.done_windows(self._db, input_id, run_ids)

    # --- writing results (inside a transaction) ---------------------------------------------------
    def add_answers(self, answers: Sequence[TileAnswer], output_crs: Any | None) -> list[int]:
        """Store answered tiles: ledger rows, raw detections, footprints. Returns the ledger seqs."""
        return ledger.add_answers(self._db, answers, output_crs)

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
        db = self._db
        db.require_txn()
        now = utc_now_iso()
        ledger.add_skipped(db, run_id, input_id, path, skipped, pixel_mode=pixel_mode, now=now)
        n_raw, n_merged = merge_seams(
            db, run_id, input_id, pixel_mode=pixel_mode, angle_convention=angle_convention
        )
        done, n_skipped = ledger.tile_counts(db, run_id, input_id)
        outcome = InputOutcome(status, done, n_skipped, n_raw, n_merged)
        known_inputs.set_input_status(
            db,
            run_id,
            input_id,
            path,
            outcome,
            stage=stage,
            reason=reason,
            tiles_planned=tiles_planned,
            pixel_mode=pixel_mode,
            now=now,
        )
        return outcome

    # --- sessions -------------------------------------------------------------------------------
    def start_session(self, command: str) -> int:
        """Record an invocation as ``running``; returns its id."""
        with self._db.transaction():
            cur = self._db.con.execute(
                "INSERT INTO sessions (started, status, pid, command) VALUES (?, ?, ?, ?)",
                (utc_now_iso(), "running", os.getpid(), command),
            )
            return inserted_rowid(cur)

    def finish_session(self, session: int, status: str, summary: dict[str, Any]) -> None:
        """Record how an invocation ended, with its JSON summary."""
        with self._db.transaction():
            self._db.con.execute(
                "UPDATE sessions SET finished = ?, status = ?, summary = ? WHERE fid = ?",
                (utc_now_iso(), status, json.dumps(summary, ensure_ascii=False), session),
            )

    # --- reading ----------------------------------------------------------------------------------
    def totals(self, run_ids: Sequence[str]) -> StoreTotals:
        """Counts over the given run ids."""
        return ledger.totals(self._db, run_ids)


def _check_output_path(path: Path) -> None:
    if path.suffix.lower() != ".gpkg":
        raise ConfigError(f"{path}: the run store of a batch is a GeoPackage: use a .gpkg name")
    if path.is_dir():
        raise ConfigError(f"{path} is a folder, not a file name")
    if not path.parent.is_dir():
        raise ConfigError(f"the folder of {path} does not exist")


def _connect(path: Path, log_path: Path) -> sqlite3.Connection:
    """The connection to an existing store (checked, brought up to date) or to a new one."""
    if path.exists():
        con = gpkg.connect(path)
        check_store(con, path)
        add_later_columns(con)
        return con
    if log_path.exists() and log_path.stat().st_size > 0:
        raise OutputExistsError(
            f"{log_path} exists but its run store {path} does not: move the log away, or pass "
            "--overwrite to start a new run store"
        )
    create_store(path)
    return gpkg.connect(path)


def _crs_label(crs: Any) -> str:
    auth = crs.to_authority()
    return f"{auth[0]}:{auth[1]}" if auth else crs.name
