"""A tile's answer, kept: its line in the answer log, its polygons and its :class:`TileDone` event.

Every record of a run shares the run's facts (run id, model, precision, grid settings, georeference)
and what rebuilds the exact prompt (classes, region, history); they are built once per run.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np
import shapely

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.detect.planning import RunPlan
from rsvg_desktop.engine.events import RunConfig, TileDone
from rsvg_desktop.engine.results import detections_for_answer


def prompt_extras(config: RunConfig, random_weights: bool) -> dict[str, object]:
    """What the answer log needs beyond task and query to rebuild the exact prompt."""
    extra: dict[str, object] = {"random_weights": random_weights}
    if config.classes:
        extra["classes"] = list(config.classes)
    if config.region is not None:
        r = config.region
        extra["region"] = [r.x1, r.y1, r.x2, r.y2, r.angle]
    if config.history:
        extra["history"] = [list(turn) for turn in config.history]
    return extra


def nodata_extras(nodata: float | None) -> dict[str, str | float]:
    """The user's nodata value (``--nodata``) as the answer log and the run record keep it: a number,
    or ``"nan"`` (JSON has no NaN); nothing when the file's own nodata and mask were used."""
    if nodata is None:
        return {}
    return {"nodata": "nan" if math.isnan(nodata) else nodata}


def shared_fields(plan: RunPlan) -> dict[str, Any]:
    """The answer-record fields every tile of the run shares."""
    config, info, facts = plan.config, plan.info, plan.facts
    return dict(
        run_id=plan.run_id,
        model=facts.model,
        precision=facts.precision,
        device=facts.device,
        angle_convention=plan.convention.value,
        crs=info.crs_wkt,
        transform=info.transform,
        pixel_mode=info.crs_wkt is None,
        overlap=config.overlap,
        target_gsd=config.target_gsd,
        max_nodata_fraction=config.max_nodata_fraction,
        extra=prompt_extras(config, facts.random_weights) | nodata_extras(config.nodata),
    )


class AnswerRecorder:
    """Writes each tile's answer to the answer log and turns it into map polygons."""

    def __init__(self, plan: RunPlan) -> None:
        self._plan = plan
        self._fields = shared_fields(plan)

    def record(self, writer: AnswerLogWriter, tile: Tile, result: Any) -> DetectionTable:
        """Log the answer (flushed at once), then its detections as polygons in the scene's CRS."""
        plan = self._plan
        record = writer.write(
            AnswerRecord.for_tile(
                plan.info.path,
                tile,
                plan.config.task,
                plan.config.query,
                result.answer,
                input_tokens=result.input_tokens,
                output_tokens=result.output_tokens,
                seconds=result.seconds,
                **self._fields,
            )
        )
        return detections_for_answer(record, result.parsed, plan.georef, convention=plan.convention)

    def tile_done(self, tile: Tile, result: Any, table: DetectionTable, done: int) -> TileDone:
        """The event of a recorded tile, ``done`` tiles of the run's finished."""
        return TileDone(
            tile=tile,
            answer=result.answer,
            text=result.parsed.text,
            phrases=tuple(table.phrase.tolist()),
            angles=tuple(None if np.isnan(a) else float(a) for a in table.angle),
            polygons_wkb=tuple(shapely.to_wkb(table.geometry).tolist()) if len(table) else (),
            done=done,
            total=len(self._plan.todo),
            seconds=result.seconds,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
        )
