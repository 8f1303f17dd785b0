"""The ledger of a run store: the runs, and one row per (run, input, tile window) in ``tiles`` saying
that this (tile, question) is answered (with the raw answer) or skipped as nodata. The ledger, not the
answer log, says what is done."""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any

from rsvg_desktop import __version__
from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import TileRecord
from rsvg_desktop.engine.batch.store.features import insert_detections, insert_footprints
from rsvg_desktop.engine.batch.store.records import RunRecord, StoreTotals, TileAnswer
from rsvg_desktop.engine.batch.store.transactions import StoreDb, inserted_rowid


def add_run(db: StoreDb, run: RunRecord) -> None:
    """Record a run id (nothing happens when it is already there)."""
    with db.transaction():
        db.con.execute(
            "INSERT OR IGNORE INTO run (run_id, task, query, classes, prompt, prompt_sha256, model,"
            " model_id, precision, angle_convention, angle_convention_doc, tile_size, overlap,"
            " target_gsd, max_new_tokens, assume_crs, random_weights, tool_version, created, nodata) VALUES"
            " (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
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
                run.nodata,
            ),
        )


def add_answers(db: StoreDb, answers: Sequence[TileAnswer], output_crs: Any | None) -> list[int]:
    """Store answered tiles: ledger rows, raw detections, footprints. Returns the ledger seqs."""
    txn = db.require_txn()
    now = utc_now_iso()
    seqs: list[int] = []
    for a in answers:
        t = a.tile
        cur = db.con.execute(
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
        seqs.append(inserted_rowid(cur))
    txn.touched.add("tiles")
    for pixel in (False, True):
        group = [a for a in answers if a.pixel_mode is pixel and len(a.detections)]
        if group:
            layer = "tile_detections_pixel" if pixel else "tile_detections"
            if pixel and "tile_detections_pixel" not in db.layers:
                raise RuntimeError("call prepare_pixel_layers() before storing pixel-mode answers")
            insert_detections(db, layer, group, None if pixel else output_crs)
    footprints = [a for a in answers if a.footprint is not None]
    if footprints:
        insert_footprints(
            db,
            [
                (a.run_id, a.input_id, a.scene, a.tile, a.footprint, False, None, len(a.detections))
                for a in footprints
            ],
        )
    return seqs


def add_skipped(
    db: StoreDb,
    run_id: str,
    input_id: int,
    path: str,
    skipped: Sequence[TileRecord],
    *,
    pixel_mode: bool,
    now: str,
) -> None:
    """Record tiles skipped as nodata: ledger rows (``status`` ``skipped``) and, for georeferenced
    inputs, their footprints (inside a transaction)."""
    txn = db.require_txn()
    if not skipped:
        return
    db.con.executemany(
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
    if not pixel_mode and "tile_footprints" in db.layers:
        insert_footprints(
            db,
            [
                (run_id, input_id, path, r.tile, r.geometry, True, r.skip_reason or "nodata", 0)
                for r in skipped
            ],
        )
    txn.touched.add("tiles")


def tile_counts(db: StoreDb, run_id: str, input_id: int) -> tuple[int, int]:
    """Tiles of one (run, input) in the ledger: answered, and skipped as nodata."""
    done, n_skipped = db.con.execute(
        "SELECT coalesce(sum(status = 'done'), 0), coalesce(sum(status = 'skipped'), 0) FROM tiles"
        " WHERE run_id = ? AND input_id = ?",
        (run_id, input_id),
    ).fetchone()
    return int(done), int(n_skipped)


def input_tiles_done(db: StoreDb, input_id: int, run_ids: Sequence[str]) -> int:
    """Answered (tile, run) pairs of an input, over the given runs."""
    q = ",".join("?" * len(run_ids))
    (n,) = db.con.execute(
        f"SELECT count(*) FROM tiles WHERE input_id = ? AND run_id IN ({q}) AND status = 'done'",
        (input_id, *run_ids),
    ).fetchone()
    return int(n)


def done_windows(
    db: StoreDb, input_id: int, run_ids: Sequence[str]
) -> set[tuple[str, tuple[int, int, int, int]]]:
    """``(run_id, window)`` of the tiles of an input already answered."""
    q = ",".join("?" * len(run_ids))
    rows = db.con.execute(
        f"SELECT run_id, col_off, row_off, width, height FROM tiles WHERE input_id = ?"
        f" AND run_id IN ({q}) AND status = 'done'",
        (input_id, *run_ids),
    ).fetchall()
    return {(r[0], (r[1], r[2], r[3], r[4])) for r in rows}


def totals(db: StoreDb, run_ids: Sequence[str]) -> StoreTotals:
    """Counts over the given run ids: the ledger, the spatial layers and the inputs' status."""
    q = ",".join("?" * len(run_ids))
    con = db.con
    done, skipped = con.execute(
        f"SELECT coalesce(sum(status = 'done'), 0), coalesce(sum(status = 'skipped'), 0) FROM tiles"
        f" WHERE run_id IN ({q})",
        run_ids,
    ).fetchone()
    raw = merged = 0
    for name in db.layers:
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
