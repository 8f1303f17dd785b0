"""Reopen a finished (or interrupted) run from its answer log, without the model (Qt-free).

The answer log holds every tile's window and the model's raw answer, so the run's events can be
rebuilt exactly as the worker sent them: a ``RunStarted``, one ``TileDone`` per answered tile (boxes
parsed and turned into polygons by the engine's own code) and a ``RunFinished``. The window feeds them
through the same path as a live run, so the map, the results table, the transcript and the export
behave the same. When a tile was answered twice (a resumed run) the last answer wins, as in the export.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

import shapely

from rsvg_desktop.core.answers import AnswerRecord, read_answer_log
from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.paths import refuse_remote
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.events import RunFinished, RunStarted, TileDone
from rsvg_desktop.engine.results import Georef, detections_for_answer
from rsvg_desktop.errors import AnswerLogError

__all__ = ["Replay", "read_run", "scene_of_log"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Replay:
    """The rebuilt events of one answer log, and the task and query it asked."""

    answer_log: str
    scene: str
    task: str
    query: str
    started: RunStarted
    tiles: tuple[TileDone, ...]
    finished: RunFinished


def scene_of_log(path: str | os.PathLike[str]) -> str:
    """The scene path of the log's first record; a URL or a GDAL network path (``/vsicurl/``...) is
    refused (:class:`~rsvg_desktop.core.paths.RemotePathError`): reopening someone's log must not make
    the app fetch from the network."""
    for record in read_answer_log(path):
        refuse_remote(
            record.scene, f"{path}: the run's scene", hint="the app reopens runs of local scenes only"
        )
        return record.scene
    raise AnswerLogError(f"{path}: the answer log holds no records")


def _latest(records: list[AnswerRecord]) -> list[AnswerRecord]:
    latest: dict[tuple[object, ...], AnswerRecord] = {}
    for rec in records:
        latest[(rec.scene, rec.run_id, rec.window, rec.task, rec.query)] = rec
    return list(latest.values())


def read_run(path: str | os.PathLike[str], info: SceneInfo) -> Replay:
    """Rebuild the events of the answer log at ``path`` for the open scene ``info``.

    Raises AnswerLogError when the log is empty or belongs to another scene.
    """
    path = str(path)
    records = _latest(list(read_answer_log(path)))
    if not records:
        raise AnswerLogError(f"{path}: the answer log holds no records")
    if Path(records[0].scene).resolve() != Path(info.path).resolve():
        raise AnswerLogError(f"{path}: the log answers {records[0].scene}, not the open scene {info.path}")
    first = records[0]
    transform = first.transform or info.transform
    crs = first.crs if first.transform is not None else info.crs_wkt
    georef = Georef(transform if crs is not None else None, crs)
    tiles: list[TileDone] = []
    for n, rec in enumerate(records, start=1):
        parsed = parse_answer(rec.answer)
        table = detections_for_answer(rec, parsed, georef, convention=rec.angle_convention or "ccw")
        tile = rec.tile or Tile(0, 0, *rec.window, rec.tile_size)
        wkb = tuple(shapely.to_wkb(table.geometry).tolist()) if len(table) else ()
        angles = tuple(None if a != a else float(a) for a in table.angle)  # NaN → None
        tiles.append(
            TileDone(
                tile=tile,
                answer=rec.answer,
                text=parsed.text,
                phrases=tuple(table.phrase.tolist()),
                angles=angles,
                polygons_wkb=wkb,
                done=n,
                total=len(records),
                seconds=rec.seconds or 0.0,
                input_tokens=rec.input_tokens or 0,
                output_tokens=rec.output_tokens or 0,
            )
        )
    run_id = first.run_id or Path(path).stem
    boxes = sum(len(t.polygons_wkb) for t in tiles)
    started = RunStarted(
        run_id=run_id,
        scene=info.path,
        total=len(tiles),
        skipped=0,
        tiles=tuple(t.tile for t in tiles),
        crs_wkt=crs,
        transform=transform,
        answer_log=path,
    )
    finished = RunFinished(
        run_id=run_id,
        done=len(tiles),
        total=len(tiles),
        skipped=0,
        failed=0,
        detections=boxes,
        raw_detections=boxes,
        seconds=sum(t.seconds for t in tiles),
        answer_log=path,
    )
    log.info("%s: %d tiles, %d boxes reopened", path, len(tiles), boxes)
    return Replay(path, first.scene, first.task, first.query, started, tuple(tiles), finished)
