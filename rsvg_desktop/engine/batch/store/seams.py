"""Seam merging in the run store: when an input is finished, the raw boxes of its tiles
(``tile_detections``) are merged across tile seams into its merged detections (``detections``),
replacing an earlier partial merge. Survivors are copied row for row; an object stitched from
fragments on several tiles gets the stitched polygon."""

from __future__ import annotations

import sqlite3

import numpy as np

from rsvg_desktop.core.geo import gpkg
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.merge import stitched_geometry
from rsvg_desktop.engine.batch.store.schema import det_columns
from rsvg_desktop.engine.batch.store.transactions import StoreDb
from rsvg_desktop.engine.results import merge_table_stitched

#: Rows copied per INSERT ... SELECT (SQLite limits the parameters of one statement).
_CHUNK = 500


def merge_seams(
    db: StoreDb, run_id: str, input_id: int, *, pixel_mode: bool, angle_convention: str
) -> tuple[int, int]:
    """Merge the raw boxes of one (run, input) into its merged layer (inside a transaction); returns
    the numbers of raw and of merged detections."""
    raw_layer, merged_layer = (
        ("tile_detections_pixel", "detections_pixel") if pixel_mode else ("tile_detections", "detections")
    )
    if raw_layer not in db.layers:
        return 0, 0
    txn = db.require_txn()
    con = db.con
    con.execute(f'DELETE FROM "{merged_layer}" WHERE input_id = ? AND run_id = ?', (input_id, run_id))
    fids, table = raw_for_merge(con, raw_layer, run_id, input_id, angle_convention)
    n_merged = 0
    if len(fids):
        kept_idx, stitched = merge_table_stitched(table)
        kept = fids[kept_idx]
        n_merged = len(kept)
        attrs = ", ".join(f'"{c}"' for c, _ in det_columns(pixel_mode))
        # Stitched objects get their stitched polygon; every other survivor is copied as is.
        plain = np.setdiff1d(kept, fids[list(stitched)]) if stitched else kept
        _copy_rows(con, raw_layer, merged_layer, attrs, plain)
        srs_id = db.layers[merged_layer].srs_id
        for head, members in stitched.items():
            _write_stitched(con, raw_layer, merged_layer, attrs, srs_id, int(fids[head]), fids[members])
        src = db.layers[raw_layer]
        if src.extent is not None:
            db.layers[merged_layer].widen(src.extent)
    txn.touched.add(merged_layer)
    return len(fids), n_merged


def _copy_rows(
    con: sqlite3.Connection, raw_layer: str, merged_layer: str, attrs: str, fids: np.ndarray
) -> None:
    """Copy the raw rows ``fids`` (geometry and attributes) into the merged layer, in fid order."""
    cols = f'"geom", {attrs}'
    for start in range(0, len(fids), _CHUNK):
        chunk = fids[start : start + _CHUNK].tolist()
        con.execute(
            f'INSERT INTO "{merged_layer}" ({cols}) SELECT {cols} FROM "{raw_layer}" '
            f"WHERE fid IN ({','.join('?' * len(chunk))}) ORDER BY fid",
            chunk,
        )


def _write_stitched(
    con: sqlite3.Connection,
    raw_layer: str,
    merged_layer: str,
    attrs: str,
    srs_id: int,
    head: int,
    members: np.ndarray,
) -> None:
    """One stitched object: the attributes of raw row ``head`` with the union of its fragments' polygons."""
    member_fids = members.tolist()
    blobs = con.execute(
        f'SELECT geom FROM "{raw_layer}" WHERE fid IN ({",".join("?" * len(member_fids))})',
        member_fids,
    ).fetchall()
    geom = stitched_geometry([gpkg.geometry_from_blob(b[0]) for b in blobs])
    con.execute(
        f'INSERT INTO "{merged_layer}" ("geom", {attrs}) SELECT ?, {attrs} FROM "{raw_layer}" WHERE fid = ?',
        (gpkg.geometry_blobs([geom], srs_id)[0], head),
    )


def raw_for_merge(
    con: sqlite3.Connection, layer: str, run_id: str, input_id: int, angle_convention: str
) -> tuple[np.ndarray, DetectionTable]:
    """The raw boxes of one (run, input) as a table the merger reads (boxes and windows; no polygons),
    with their fids."""
    rows = con.execute(
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
