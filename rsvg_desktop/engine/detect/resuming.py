"""Resuming a scene run (``RunConfig.resume``): the tiles its answer log already answers are not asked
again; their recorded answers are reused.

An answer is reused only when it answers the same question about the same pixels with the same model:
same window, input size, task, query, prompt extras (classes, region, history), model, precision, CRS
and affine. Anything else in the log (another question, another model, a changed grid) is left alone
and the tile is asked again.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any

from rsvg_desktop.core.answers import AnswerRecord, read_answer_log
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.detect.planning import RunPlan
from rsvg_desktop.engine.detect.recording import prompt_extras
from rsvg_desktop.engine.results import detections_for_answer

log = logging.getLogger(__name__)

_PROMPT_KEYS = ("classes", "region", "history")

TileKey = tuple[int, int, int, int, int]  # (col_off, row_off, width, height, size)


def _tile_key(tile: Tile) -> TileKey:
    return (tile.col_off, tile.row_off, tile.width, tile.height, tile.size)


def _prompt_of(extra: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(extra.get(k) for k in _PROMPT_KEYS)


def reusable_answers(plan: RunPlan) -> dict[TileKey, AnswerRecord]:
    """The latest record of each tile of the plan that the answer log holds for this very question and
    model (empty when the run does not resume or the log does not exist)."""
    if not plan.config.resume or not plan.answer_log.is_file():
        return {}
    config, info, facts = plan.config, plan.info, plan.facts
    prompt = _prompt_of(prompt_extras(config, facts.random_weights))
    wanted = {_tile_key(t) for t in plan.todo}
    found: dict[TileKey, AnswerRecord] = {}
    for rec in read_answer_log(plan.answer_log):
        key = (*rec.window, rec.tile_size)
        if (
            key in wanted
            and rec.task == config.task
            and rec.query == config.query
            and (rec.model or "") == facts.model
            and (rec.precision or "") == facts.precision
            and rec.crs == info.crs_wkt
            and rec.transform == tuple(info.transform)
            and _prompt_of(rec.extra) == prompt
        ):
            found[key] = rec
    return found


def resumed_plan(plan: RunPlan) -> tuple[RunPlan, list[DetectionTable]]:
    """The plan without the tiles already answered (now in ``plan.reused``), and the detections of
    those answers, in tile order."""
    answers = reusable_answers(plan)
    if not answers:
        return plan, []
    reused = tuple(t for t in plan.todo if _tile_key(t) in answers)
    todo = tuple(t for t in plan.todo if _tile_key(t) not in answers)
    tables = [
        detections_for_answer(
            answers[_tile_key(t)],
            parse_answer(answers[_tile_key(t)].answer),
            plan.georef,
            convention=plan.convention,
        )
        for t in reused
    ]
    log.info(
        "%s: %d tiles already answered in %s, %d to ask",
        plan.info.path,
        len(reused),
        plan.answer_log,
        len(todo),
    )
    return dataclasses.replace(plan, todo=todo, reused=reused), tables
