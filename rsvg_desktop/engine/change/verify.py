"""Verification: every unmatched object's place is asked of the other date.

A detector that finds 70 % of objects on each date sees a persisting object on one date only about 40 %
of the time, so most unmatched objects are misses, not changes. The rule (docs/change.md): for an object
seen on one date only, the other date is asked ``[refer] <the object's phrase>`` about the object's
neighbourhood — a square window around it, resampled to the model's input size, so the model sees the
place larger rather than the same tile again; small objects of one phrase near one another share one
question (the windows: ``verify_windows.py``). An object is confirmed when a box of the answer overlaps
it with rotated-polygon IoU ≥ ``match_iou``; a confirmed object is ``persisting`` (``verified``).

Every question and answer goes to ``OUT.verify.answers.jsonl``; a rerun reuses the answers it holds for
the same place, phrase, model and precision.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import shapely

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord, read_answer_log
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.change.types import Matches, TargetGrid
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.change.config import ChangeConfig, verify_log_path
from rsvg_desktop.engine.change.dates import open_on_grid, scene_of
from rsvg_desktop.engine.change.events import VerifyProgress, VerifyStarted
from rsvg_desktop.engine.change.verify_windows import Question, group_questions
from rsvg_desktop.engine.detect.answering import AnswerGenerator
from rsvg_desktop.engine.results import Georef, detections_for_answer

log = logging.getLogger(__name__)

VERIFY_TASK = "refer"


@dataclass
class Verification:
    """What verification found: the rows of each date the other date confirmed; ``cancelled`` when it
    stopped before the last question."""

    confirmed: dict[str, list[int]] = field(default_factory=lambda: {"before": [], "after": []})
    asked: int = 0
    reused: int = 0
    cancelled: bool = False


def questions(
    config: ChangeConfig, grid: TargetGrid, tables: dict[str, DetectionTable], matches: Matches
) -> list[Question]:
    """The questions about every unmatched object: disappeared ones asked of after, appeared ones of
    before; small objects of one phrase near one another share one (``verify_windows.py``)."""
    out: list[Question] = []
    for own, asked, rows in (("before", "after", matches.disappeared), ("after", "before", matches.appeared)):
        table = tables[own]
        objects = []
        for row in rows:
            phrase = table.phrase[row]
            query = phrase if isinstance(phrase, str) and phrase.strip() else config.query
            objects.append((int(row), query, table.geometry[row]))
        out += group_questions(grid, config.tile_size, own, asked, objects, first_index=len(out))
    return out


def _key(scene: str, tile: Tile, query: str) -> tuple[Any, ...]:
    return (scene, tile.col_off, tile.row_off, tile.width, tile.height, tile.size, query)


class _Asker:
    """Asks questions of one grid through the generator and records them in the verification log."""

    def __init__(self, config: ChangeConfig, grid: TargetGrid, facts: dict[str, Any]) -> None:
        self.config, self.grid, self.facts = config, grid, facts
        self.georef = Georef(grid.transform, grid.crs_wkt)
        self.convention = AngleConvention(config.angle_convention)

    def earlier(self) -> dict[tuple[Any, ...], AnswerRecord]:
        """The answers an earlier run of this comparison recorded (same model, precision and grid)."""
        path = verify_log_path(self.config.output)
        if not path.is_file():
            return {}
        transform = tuple(float(v) for v in self.grid.transform)
        found: dict[tuple[Any, ...], AnswerRecord] = {}
        for rec in read_answer_log(path):
            if (
                (rec.model or "") == self.facts["model"]
                and (rec.precision or "") == self.facts["precision"]
                and rec.transform == transform
                and rec.tile is not None
            ):
                found[_key(rec.scene, rec.tile, rec.query)] = rec
        return found

    def record(self, question: Question, result: Any) -> AnswerRecord:
        return AnswerRecord.for_tile(
            scene_of(self.config, question.asked),
            question.tile,
            VERIFY_TASK,
            question.query,
            result.answer,
            run_id=self.facts["run_id"],
            model=self.facts["model"],
            precision=self.facts["precision"],
            device=self.facts["device"],
            angle_convention=self.convention.value,
            crs=self.grid.crs_wkt,
            transform=self.grid.transform,
            pixel_mode=self.grid.crs_wkt is None,
            input_tokens=result.input_tokens,
            output_tokens=result.output_tokens,
            seconds=result.seconds,
            extra={"verifies": ",".join(f"{question.own}:{row}" for row in question.rows)},
        )

    def confirmed(self, question: Question, record: AnswerRecord) -> list[int]:
        """The question's rows that a box of the answer overlaps with IoU ≥ ``match_iou``."""
        found = detections_for_answer(
            record, parse_answer(record.answer), self.georef, convention=self.convention
        )
        if not len(found):
            return []
        boxes = np.asarray(found.geometry, dtype=object)[:, None]
        targets = np.asarray(question.targets, dtype=object)[None, :]
        inter = shapely.area(shapely.intersection(boxes, targets))
        union = shapely.area(shapely.union(boxes, targets))
        iou = np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)
        hit = (iou >= self.config.match_iou).any(axis=0)
        return [row for row, yes in zip(question.rows, hit, strict=True) if yes]


def verify(
    config: ChangeConfig,
    grid: TargetGrid,
    tables: dict[str, DetectionTable],
    matches: Matches,
    generator: AnswerGenerator,
    *,
    facts: dict[str, Any],
    outcome: Verification,
    batch_size: int,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[VerifyStarted | VerifyProgress]:
    """Ask every unmatched object's place of the other date (see the module docs); fills ``outcome``."""
    todo = questions(config, grid, tables, matches)
    asker = _Asker(config, grid, facts)
    earlier = asker.earlier()
    answered = {
        i: earlier[k]
        for i, q in enumerate(todo)
        if (k := _key(scene_of(config, q.asked), q.tile, q.query)) in earlier
    }
    outcome.reused = len(answered)
    yield VerifyStarted(total=len(todo), reused=len(answered))
    for i, rec in answered.items():
        _settle(asker, todo[i], rec, outcome)
    missing = [i for i in range(len(todo)) if i not in answered]
    done = len(answered)
    with AnswerLogWriter(verify_log_path(config.output)) as writer:
        for date in ("before", "after"):
            batch_rows = [i for i in missing if todo[i].asked == date]
            if not batch_rows:
                continue
            with open_on_grid(config, date, grid) as scene:
                for start in range(0, len(batch_rows), batch_size):
                    if cancel is not None and cancel():
                        outcome.cancelled = True
                        return
                    chunk = [todo[i] for i in batch_rows[start : start + batch_size]]
                    results = _ask(generator, scene, chunk, config.max_new_tokens)
                    for question, result in zip(chunk, results, strict=True):
                        _settle(asker, question, writer.write(asker.record(question, result)), outcome)
                    done += len(chunk)
                    outcome.asked += len(chunk)
                    yield VerifyProgress(done, len(todo), sum(len(v) for v in outcome.confirmed.values()))
    log.info(
        "verification: %d questions (%d reused), %d confirmed",
        len(todo),
        outcome.reused,
        sum(len(v) for v in outcome.confirmed.values()),
    )


def _settle(asker: _Asker, question: Question, record: AnswerRecord, outcome: Verification) -> None:
    outcome.confirmed[question.own] += asker.confirmed(question, record)


def _ask(generator: AnswerGenerator, scene: Any, chunk: Sequence[Question], max_new_tokens: int) -> list[Any]:
    from rsvg_desktop.core.model.generate import GenerationRequest  # torch only when asking

    requests = [
        GenerationRequest(image=scene.read_tile(q.tile)[0], task=VERIFY_TASK, query=q.query) for q in chunk
    ]
    return generator.generate(requests, max_new_tokens=max_new_tokens, batch_size=len(requests))
