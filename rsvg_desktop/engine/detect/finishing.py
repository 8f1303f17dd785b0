"""Finishing a scene run: seams merged, the export written from the tiles that finished, the last event.

Finishing runs whatever ended the run (success, cancel, an error): the export holds the tiles answered
so far. When the export cannot be written the answer log still holds everything, and the run says how
to rebuild the export from it (``rsvg export``).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from rsvg_desktop.core.geo.detections import DetectionTable, RunInfo, TileRecord, tile_records
from rsvg_desktop.core.geo.export import export_detections
from rsvg_desktop.engine.detect.planning import RunPlan
from rsvg_desktop.engine.detect.recording import nodata_extras
from rsvg_desktop.engine.events import RunFinished
from rsvg_desktop.engine.results import merged_table
from rsvg_desktop.errors import RsvgError

log = logging.getLogger(__name__)


@dataclass
class RunTally:
    """What a run has done so far: the job's loop fills it in, finishing writes it out."""

    tables: list[DetectionTable] = field(default_factory=list)  # one per answered tile, in order
    done: int = 0
    failed: int = 0
    errors: list[str] = field(default_factory=list)
    cancelled: bool = False
    export_error: str | None = None


@dataclass(frozen=True, slots=True)
class Exported:
    """How many detections the run found, and how many are left after merging across seams."""

    raw: int
    kept: int


def _tile_footprints(plan: RunPlan, done: int) -> list[TileRecord]:
    """The footprints of the tiles answered so far and of the tiles skipped as nodata."""
    answered = {(t.row, t.col) for t in plan.todo[:done]} | {(t.row, t.col) for t in plan.reused}
    return tile_records(
        [t for t in (*plan.reused, *plan.todo) if (t.row, t.col) in answered] + list(plan.skipped),
        plan.georef.transform,
        plan.info.crs_wkt,
        skipped={(t.row, t.col): "nodata" for t in plan.skipped},
        run_id=plan.run_id,
    )


def _run_info(plan: RunPlan, tally: RunTally) -> RunInfo:
    config, facts = plan.config, plan.facts
    return RunInfo(
        run_id=plan.run_id,
        scene=plan.info.path,
        model=facts.model,
        precision=facts.precision,
        device=facts.device,
        angle_convention=plan.convention,
        tile_size=config.tile_size,
        overlap=config.overlap,
        target_gsd=config.target_gsd,
        max_nodata_fraction=config.max_nodata_fraction,
        random_weights=facts.random_weights,
        task=config.task,
        query=config.query,
        extra=(
            ("tiles_done", tally.done + len(plan.reused)),
            ("tiles_total", len(plan.todo) + len(plan.reused)),
            ("cancelled", tally.cancelled),
            *nodata_extras(config.nodata).items(),
        ),
    )


def write_export(plan: RunPlan, tally: RunTally) -> Exported:
    """Merge the answered tiles' detections and write the export (its failure goes into ``tally``)."""
    table = DetectionTable.concat(tally.tables) if tally.tables else DetectionTable.empty(plan.convention)
    kept = merged_table(table) if len(table) else table
    tiles = _tile_footprints(plan, tally.done)
    run = _run_info(plan, tally)
    output = plan.output
    if not plan.config.export:  # the answer log alone (a comparison's date): nothing more to write
        log.info(
            "run %s: %d/%d tiles, %d boxes, %d after merging",
            plan.run_id,
            tally.done,
            len(plan.todo),
            len(table),
            len(kept),
        )
        return Exported(raw=len(table), kept=len(kept))
    try:
        export_detections(output, kept, crs=plan.info.crs_wkt, tiles=tiles, run=run, overwrite=True)
    except RsvgError as exc:  # the answer log still holds everything: `rsvg export` rebuilds it
        tally.export_error = str(exc)
        log.info(
            "run %s: writing %s failed (%s); rebuild it with: rsvg export %s -o %s",
            plan.run_id,
            output,
            exc,
            plan.answer_log,
            output,
        )
        tally.errors.append(str(exc))
    log.info(
        "run %s: %d/%d tiles, %d boxes, %d after merging → %s",
        plan.run_id,
        tally.done,
        len(plan.todo),
        len(table),
        len(kept),
        output,
    )
    return Exported(raw=len(table), kept=len(kept))


def finished_event(plan: RunPlan, tally: RunTally, exported: Exported, seconds: float) -> RunFinished:
    return RunFinished(
        run_id=plan.run_id,
        done=tally.done,
        total=len(plan.todo),
        skipped=len(plan.skipped),
        failed=tally.failed,
        detections=exported.kept,
        raw_detections=exported.raw,
        seconds=seconds,
        cancelled=tally.cancelled,
        output=str(plan.output) if plan.config.export else None,
        answer_log=str(plan.answer_log),
        errors=tuple(tally.errors),
        export_error=tally.export_error,
    )
