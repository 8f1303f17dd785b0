"""Storing a batch's answers: each answer becomes polygons with the scene job's own functions, and the
batch is committed in one transaction with the seam-merged detections and status of every input it
finishes. An input closed without answers (failed, or nothing left to do) is finished the same way."""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator, Sequence
from typing import Any

from rsvg_desktop.core.answers import AnswerRecord
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import TileRecord, tile_records
from rsvg_desktop.engine.batch.state import BatchContext, InputState, WorkItem
from rsvg_desktop.engine.batch.store import TileAnswer
from rsvg_desktop.engine.batch.summary import input_finished, progress
from rsvg_desktop.engine.results import Georef, detections_for_answer

log = logging.getLogger(__name__)


class ResultWriter:
    """Writes the answers of a batch, and the end of each input, into the batch's store."""

    def __init__(self, ctx: BatchContext) -> None:
        self.ctx = ctx

    # --- answers ----------------------------------------------------------------------------------
    def store(self, items: list[WorkItem], results: Sequence[Any]) -> Iterator[Any]:
        """Turn answers into polygons and commit them with the inputs they finish (one transaction)."""
        c = self.ctx.counters
        t0 = time.perf_counter()
        answers = self._tile_answers(items, results, self._footprints(items))
        c.t_polygons += time.perf_counter() - t0

        t0 = time.perf_counter()
        finished = self._commit(items, answers)
        c.t_store += time.perf_counter() - t0
        c.tiles_done += len(items)
        c.raw_detections += sum(len(a.detections) for a in answers)
        for state in finished:
            yield input_finished(state)
        yield progress(self.ctx, items[-1].state.path)

    @staticmethod
    def _footprints(items: list[WorkItem]) -> dict[int, Any]:
        """Tile footprints of the georeferenced items, by position in ``items``: one vectorised
        projection per input of the batch, not one per tile."""
        footprints: dict[int, Any] = {}
        groups: dict[int, list[int]] = {}
        for k, it in enumerate(items):
            if not it.state.georef.pixel_mode:
                groups.setdefault(id(it.state), []).append(k)
        for idx in groups.values():
            state = items[idx[0]].state
            g = state.georef
            recs = tile_records([items[k].tile for k in idx], g.transform, g.crs_wkt, state.dst_crs)
            footprints.update((k, r.geometry) for k, r in zip(idx, recs, strict=True))
        return footprints

    def _tile_answers(
        self, items: list[WorkItem], results: Sequence[Any], footprints: dict[int, Any]
    ) -> list[TileAnswer]:
        """Each answer with its polygons (in the output CRS, or pixels), as the store takes it."""
        ctx = self.ctx
        convention = AngleConvention(ctx.config.angle_convention)
        answers: list[TileAnswer] = []
        for k, (it, res) in enumerate(zip(items, results, strict=True)):
            state, run = it.state, ctx.runs[it.run]
            g = state.georef
            record = AnswerRecord.for_tile(
                state.path,
                it.tile,
                run.task,
                run.query,
                res.answer,
                run_id=run.run_id,
                model=ctx.model.model,
                precision=ctx.model.precision,
            )
            table = detections_for_answer(
                record,
                res.parsed,
                Georef(g.transform, g.crs_wkt),
                dst_crs=state.dst_crs,
                convention=convention,
            )
            answers.append(
                TileAnswer(
                    run_id=run.run_id,
                    input_id=state.input_id,
                    scene=state.path,
                    tile=it.tile,
                    answer=res.answer,
                    detections=table,
                    pixel_mode=g.pixel_mode,
                    input_tokens=res.input_tokens,
                    output_tokens=res.output_tokens,
                    seconds=res.seconds,
                    batch_size=getattr(res, "batch_size", len(items)),
                    device=getattr(res, "device", None) or ctx.device,
                    footprint=footprints.get(k),
                )
            )
        return answers

    def _commit(self, items: list[WorkItem], answers: list[TileAnswer]) -> list[InputState]:
        """One transaction: the answers, and every input whose last pair they are; returns those inputs."""
        store = self.ctx.store
        finished: list[InputState] = []
        with store.transaction():
            store.add_answers(answers, store.output_crs)
            for it, a in zip(items, answers, strict=True):
                it.state.outstanding -= 1
                it.state.tiles_done += 1
                it.state.detections += len(a.detections)
            for state in dict.fromkeys(it.state for it in items):
                if state.ready:
                    finished.append(state)
                    self.finish_in_txn(state)
        return finished

    # --- the end of an input ----------------------------------------------------------------------
    def finish(self, state: InputState) -> Iterator[Any]:
        """Close an input in a transaction of its own; yields its end and the progress."""
        t0 = time.perf_counter()
        with self.ctx.store.transaction():
            self.finish_in_txn(state)
        self.ctx.counters.t_store += time.perf_counter() - t0
        yield input_finished(state)
        yield progress(self.ctx, state.path)

    def finish_in_txn(self, state: InputState) -> None:
        """Close an input (once) inside the transaction under way: its skipped tiles, seam merging and
        status for every run still open for it."""
        if state.closed:
            return
        state.closed = True
        skipped = self._skipped_records(state)
        status = "failed" if state.failed is not None else "done"
        f = state.failed
        for i in state.runs:
            self.ctx.store.finish_input(
                self.ctx.run_ids[i],
                state.input_id,
                state.path,
                status=status,
                pixel_mode=state.georef.pixel_mode,
                tiles_planned=state.tiles_planned,
                skipped=skipped,
                stage=f.stage if f is not None else None,
                reason=f.reason if f is not None else None,
                angle_convention=self.ctx.config.angle_convention,
            )
        self._count_finished(state)

    @staticmethod
    def _skipped_records(state: InputState) -> list[TileRecord]:
        """The input's tiles skipped as nodata, with their footprints (none in pixel mode)."""
        if not state.skipped:
            return []
        g = state.georef
        reasons = dict.fromkeys(((t.row, t.col) for t in state.skipped), "nodata")
        return tile_records(
            list(state.skipped),
            None if g.pixel_mode else g.transform,
            g.crs_wkt,
            state.dst_crs,
            skipped=reasons,
        )

    def _count_finished(self, state: InputState) -> None:
        c, f = self.ctx.counters, state.failed
        c.inputs_finished += 1
        c.tiles_skipped += len(state.skipped) * len(state.runs)
        if f is not None:
            c.tiles_failed += max(state.pairs - state.tiles_done, 0)
            c.inputs_failed += 1
            c.failures.append(f)
            log.warning("%s failed (%s): %s", state.path, f.stage, f.reason)
        else:
            c.inputs_done += 1
