"""What a run store knows of each input file: its row in ``inputs`` (found again by content after the
archive moved), and its status per run in ``input_runs``."""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Sequence

from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.engine.batch.store.records import InputOutcome, InputRecord
from rsvg_desktop.engine.batch.store.schema import PATH_COLUMNS
from rsvg_desktop.engine.batch.store.transactions import StoreDb, inserted_rowid

log = logging.getLogger(__name__)


def id_by_path(db: StoreDb, path: str) -> int | None:
    """The id of the input stored under ``path`` (``None``: none)."""
    row = db.con.execute("SELECT fid FROM inputs WHERE path = ?", (path,)).fetchone()
    return None if row is None else int(row[0])


def find_input(db: StoreDb, path: str, rel_path: str | None, content: Callable[[], str | None]) -> int | None:
    """The id of a stored input: by ``path``; else (a moved or renamed archive) by ``rel_path`` and
    content id, then by content id alone when exactly one stored input has it and its old path is
    gone. ``content`` computes the content id, called only when the path is not known. A match
    under another path is moved to ``path`` (see :func:`relocate_input`)."""
    found = id_by_path(db, path)
    if found is not None:
        return found
    if db.con.execute("SELECT fid FROM inputs LIMIT 1").fetchone() is None:
        return None  # a new store: nothing to match, no file to hash
    cid = content()
    if cid is None:
        return None
    rows = db.con.execute(
        "SELECT fid, path, rel_path FROM inputs WHERE content_id = ? ORDER BY fid", (cid,)
    ).fetchall()
    match = [r for r in rows if rel_path is not None and r[2] == rel_path]
    if not match:
        gone = [r for r in rows if not os.path.exists(r[1])]
        match = gone if len(gone) == 1 else []
    if len(match) != 1:
        return None
    fid, old, _ = match[0]
    relocate_input(db, int(fid), path, rel_path)
    log.info("%s: resuming the input stored as %s (same content)", path, old)
    return int(fid)


def relocate_input(db: StoreDb, input_id: int, path: str, rel_path: str | None) -> None:
    """Record that input ``input_id`` is now at ``path``: the input row and every row naming it."""
    with db.transaction():
        db.con.execute(
            "UPDATE inputs SET path = ?, name = ?, rel_path = ? WHERE fid = ?",
            (path, os.path.basename(path), rel_path, input_id),
        )
        present = {r[0] for r in db.con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        for table, column in PATH_COLUMNS:
            if table in present:
                db.con.execute(f'UPDATE "{table}" SET "{column}" = ? WHERE input_id = ?', (path, input_id))


def add_input(db: StoreDb, rec: InputRecord) -> int:
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
    with db.transaction():
        found = id_by_path(db, rec.path)
        if found is None:
            cur = db.con.execute(
                "INSERT INTO inputs (path, name, driver, width, height, bands, dtype, crs, crs_wkt,"
                " transform, georef_source, pixel_mode, size_bytes, mtime_ns, content_id, rel_path,"
                " first_seen) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (rec.path, os.path.basename(rec.path), *values, utc_now_iso()),
            )
            return inserted_rowid(cur)
        if rec.driver is not None:
            db.con.execute(
                "UPDATE inputs SET driver = ?, width = ?, height = ?, bands = ?, dtype = ?, crs = ?,"
                " crs_wkt = ?, transform = ?, georef_source = ?, pixel_mode = ?, size_bytes = ?,"
                " mtime_ns = ?, content_id = coalesce(?, content_id), rel_path = coalesce(?, rel_path)"
                " WHERE fid = ?",
                (*values, found),
            )
        return found


def input_fingerprint(db: StoreDb, input_id: int) -> tuple[int | None, int | None]:
    """The size and modification time (ns) recorded for an input."""
    row = db.con.execute("SELECT size_bytes, mtime_ns FROM inputs WHERE fid = ?", (input_id,)).fetchone()
    return (None, None) if row is None else (row[0], row[1])


def input_status(db: StoreDb, input_id: int, run_ids: Sequence[str]) -> dict[str, str]:
    """``{run_id: status}`` of the input for those runs that have a row."""
    q = ",".join("?" * len(run_ids))
    rows = db.con.execute(
        f"SELECT run_id, status FROM input_runs WHERE input_id = ? AND run_id IN ({q})",
        (input_id, *run_ids),
    ).fetchall()
    return dict(rows)


def set_input_status(
    db: StoreDb,
    run_id: str,
    input_id: int,
    path: str,
    outcome: InputOutcome,
    *,
    stage: str | None,
    reason: str | None,
    tiles_planned: int | None,
    pixel_mode: bool,
    now: str,
) -> None:
    """Record the outcome of one (run, input) in ``input_runs`` (inside a transaction)."""
    txn = db.require_txn()
    db.con.execute(
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
            outcome.status,
            stage,
            reason,
            tiles_planned,
            outcome.tiles_done,
            outcome.tiles_skipped,
            outcome.raw_detections,
            outcome.detections,
            int(pixel_mode),
            now,
        ),
    )
    txn.touched.add("input_runs")
