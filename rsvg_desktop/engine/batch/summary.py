"""What a batch reports: progress events, an input's end, and the summary of the session."""

from __future__ import annotations

import json
from typing import Any

from rsvg_desktop.engine.batch.state import BatchContext, InputState
from rsvg_desktop.engine.events import BatchProgress, BatchSummary, InputFinished

__all__ = ["batch_summary", "input_finished", "progress", "summary_json"]


def input_finished(state: InputState) -> InputFinished:
    """The event of an input closed in this session: ``done`` or ``failed`` with the stage and reason."""
    f = state.failed
    return InputFinished(
        state.path,
        "failed" if f else "done",
        state.tiles_done,
        state.detections,
        f.stage if f is not None else None,
        f.reason if f is not None else None,
    )


def progress(ctx: BatchContext, path: str) -> BatchProgress:
    """Progress, with the pairs still to come estimated from the inputs tiled so far."""
    c = ctx.counters
    remaining = len(ctx.paths) - c.inputs_already_done - c.inputs_started
    per_input = c.tiles_known / c.inputs_planned if c.inputs_planned else 1.0
    expected = c.tiles_known + round(max(remaining, 0) * per_input)
    return BatchProgress(
        c.tiles_done,
        max(expected, c.tiles_done),
        c.inputs_finished,
        len(ctx.paths),
        c.raw_detections,
        path,
    )


def batch_summary(ctx: BatchContext, status: str, message: str, seconds: float) -> BatchSummary:
    """The summary of this session (counts from the counters, merged detections from the store)."""
    c = ctx.counters
    working = seconds - c.t_load
    totals = ctx.store.totals(ctx.run_ids)
    return BatchSummary(
        status=status,
        output=str(ctx.output),
        answer_log=str(ctx.store.answer_log),
        runs=tuple({"run_id": r.run_id, "task": r.task, "query": r.query} for r in ctx.runs),
        model=ctx.model.model,
        precision=ctx.model.precision,
        device=ctx.device,
        batch_size=ctx.batch_size,
        inputs_total=len(ctx.paths),
        inputs_done=c.inputs_done,
        inputs_already_done=c.inputs_already_done,
        inputs_failed=c.inputs_failed,
        inputs_pixel_mode=c.inputs_pixel,
        tiles_done=c.tiles_done,
        tiles_already_done=c.tiles_already_done,
        tiles_skipped_nodata=c.tiles_skipped,
        tiles_failed=c.tiles_failed,
        raw_detections=c.raw_detections,
        detections=totals.detections,
        store_tiles_done=totals.tiles_done,
        failures=tuple(c.failures),
        seconds=round(seconds, 3),
        tiles_per_second=round(c.tiles_done / working, 3) if working > 0 else 0.0,
        timings={
            "load": round(c.t_load, 3),
            "read": round(c.t_read, 3),
            "model": round(c.t_model, 3),
            "polygons": round(c.t_polygons, 3),
            "store": round(c.t_store, 3),
        },
        message=message,
    )


def summary_json(summary: BatchSummary, **extra: Any) -> str:
    """The summary as one line of JSON (``extra`` keys added, e.g. the exit status)."""
    return json.dumps({**summary.to_dict(), **extra}, ensure_ascii=False)
