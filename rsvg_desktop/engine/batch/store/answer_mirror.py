"""The answer log (``OUT.answers.jsonl``) as a mirror of the run store's ledger.

The log is written **after** each commit, from the ledger rows, each line carrying the row's
``store_seq`` (``extra`` key). When the process dies between a commit and its log lines, the next
open repairs a cut-off last line and appends the rows whose ``store_seq`` is past the last one
logged: every stored answer is logged exactly once, and a logged answer is always stored.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from collections.abc import Iterator
from pathlib import Path

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
from rsvg_desktop.engine.batch.store.transactions import StoreDb

log = logging.getLogger(__name__)


class AnswerMirror:
    """The answer log at ``path``, kept up to date with the ledger of the store ``db``."""

    def __init__(self, path: Path, db: StoreDb) -> None:
        self.path = path
        self._db = db
        self._writer: AnswerLogWriter | None = None
        self._logged_seq = 0

    def open(self) -> None:
        """Open the log (repairing a cut-off last line) and append what it misses."""
        self._writer = AnswerLogWriter(self.path)  # repairs a cut-off last line
        self._logged_seq = last_logged_seq(self.path)
        self.sync()

    def sync(self) -> int:
        """Append the stored answers not yet in the log (``store_seq`` past the last logged); returns
        how many lines were written."""
        if self._writer is None:
            return 0
        n = 0
        for record in records_after(self._db.con, self._logged_seq):
            self._writer.write(record)
            self._logged_seq = int(record.extra["store_seq"])
            n += 1
        if n:
            log.debug("%s: %d answer(s) logged", self.path, n)
        return n

    def close(self) -> None:
        """Close the log (idempotent)."""
        if self._writer is not None:
            self._writer.close()
            self._writer = None


def records_after(con: sqlite3.Connection, seq: int) -> Iterator[AnswerRecord]:
    """The stored answers with ``store_seq`` (ledger fid) past ``seq``, as answer-log records."""
    cur = con.execute(
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


def last_logged_seq(path: Path) -> int:
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
