"""One date of a comparison: its scene job's settings, and its objects rebuilt from its answer log.

Each date runs the very scene job of ``rsvg detect`` (:func:`~rsvg_desktop.engine.detect.run_scene`) on
the comparison grid (the date whose grid it is read as is, the other warped onto it), over the tiles that
meet the compared area, resuming from its answer log and writing no export of its own. Its objects are
then rebuilt from that log (the tiles answered now and those an interrupted run answered alike), their
seams merged. Unmatched objects outside the compared area are no change (:func:`compared_only`).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from pathlib import Path

import numpy as np
import shapely
from shapely import affinity
from shapely.geometry.base import BaseGeometry

from rsvg_desktop.core.answers import AnswerRecord, read_answer_log
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.change.types import Matches, TargetGrid
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.scene import Scene, open_scene
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.engine.change.config import ChangeConfig, date_answer_log, date_output
from rsvg_desktop.engine.events import RunConfig
from rsvg_desktop.engine.results import Georef, detections_for_answer, merged_table


def scene_of(config: ChangeConfig, date: str) -> str:
    return config.before if date == "before" else config.after


def open_on_grid(config: ChangeConfig, date: str, grid: TargetGrid) -> Scene:
    """A date's scene read on the grid: as is when it is its own, else warped onto it."""
    return open_scene(
        scene_of(config, date),
        pixel_mode=config.pixel_mode,
        nodata=config.nodata,
        warp_to=None if grid.source == date else grid,
    )


def to_grid_pixels(grid: TargetGrid, geometry: BaseGeometry) -> BaseGeometry:
    """A geometry in the grid's CRS as grid pixels (pixel mode: as it is)."""
    if grid.crs_wkt is None:
        return geometry
    a, b, c, d, e, f = grid.transform
    det = a * e - b * d
    inverse = (e / det, -b / det, -d / det, a / det, (b * f - e * c) / det, (d * c - a * f) / det)
    return affinity.affine_transform(geometry, inverse)


def compared_window(grid: TargetGrid, compared: BaseGeometry) -> tuple[int, int, int, int]:
    """The pixel window ``(col_off, row_off, width, height)`` of the grid that holds the compared area."""
    x0, y0, x1, y1 = to_grid_pixels(grid, compared).bounds
    c0, r0 = max(0, math.floor(x0)), max(0, math.floor(y0))
    c1, r1 = min(grid.width, math.ceil(x1)), min(grid.height, math.ceil(y1))
    return (c0, r0, max(1, c1 - c0), max(1, r1 - r0))


def date_run_config(
    config: ChangeConfig, date: str, grid: TargetGrid, scope: tuple[int, int, int, int]
) -> RunConfig:
    """The scene job's settings for one date: ``rsvg detect``'s, on the grid, resuming, no export."""
    return RunConfig(
        scene=scene_of(config, date),
        query=config.query,
        task=config.task,
        output=str(date_output(config.output, date)),
        overwrite=config.overwrite,
        tile_size=config.tile_size,
        overlap=config.overlap,
        target_gsd=config.target_gsd,
        max_nodata_fraction=config.max_nodata_fraction,
        scope=scope,
        pixel_mode=config.pixel_mode,
        batch_size=config.batch_size,
        max_new_tokens=config.max_new_tokens,
        angle_convention=config.angle_convention,
        nodata=config.nodata,
        warp_to=None if grid.source == date else grid,
        resume=True,
        export=False,
    )


def _records_of_run(
    records: Iterable[AnswerRecord], run: RunConfig, grid: TargetGrid, model: str, precision: str
) -> list[AnswerRecord]:
    """The latest answer per window of this question, model and grid (the log may hold others)."""
    latest: dict[tuple[int, int, int, int, int], AnswerRecord] = {}
    for rec in records:
        if (
            rec.task == run.task
            and rec.query == run.query
            and (rec.model or "") == model
            and (rec.precision or "") == precision
            and (rec.crs is None) == (grid.crs_wkt is None)
            and rec.transform == tuple(float(v) for v in grid.transform)
            and (rec.overlap is None or rec.overlap == run.overlap)
            and rec.target_gsd == run.target_gsd
            and rec.tile_size == run.tile_size
        ):
            latest[(*rec.window, rec.tile_size)] = rec
    return list(latest.values())


def date_objects(
    config: ChangeConfig, date: str, grid: TargetGrid, *, model: str, precision: str
) -> DetectionTable:
    """The date's objects: its answer log's boxes of this question, model and grid as polygons on the
    grid, seams merged."""
    run = date_run_config(config, date, grid, (0, 0, grid.width, grid.height))
    convention = AngleConvention(config.angle_convention)
    log_path = date_answer_log(config.output, date)
    records = (
        _records_of_run(read_answer_log(log_path), run, grid, model, precision)
        if Path(log_path).is_file()
        else []
    )
    georef = Georef(grid.transform, grid.crs_wkt)
    tables = [
        detections_for_answer(r, parse_answer(r.answer), georef, convention=convention) for r in records
    ]
    table = DetectionTable.concat(tables) if tables else DetectionTable.empty(convention)
    return merged_table(table) if len(table) else table


def _inside(table: DetectionTable, rows: tuple[int, ...], compared: BaseGeometry) -> tuple[int, ...]:
    """The ``rows`` of ``table`` whose representative point lies in ``compared``."""
    if not rows:
        return ()
    keep = shapely.covers(compared, shapely.point_on_surface(table.geometry[list(rows)]))
    return tuple(r for r, k in zip(rows, np.asarray(keep, dtype=bool).tolist(), strict=True) if k)


def compared_only(
    matches: Matches, before: DetectionTable, after: DetectionTable, compared: BaseGeometry
) -> tuple[Matches, int]:
    """``matches`` without the unmatched objects outside the compared area (no change is reported where
    only one date has pixels: they stay in their date's layer), and how many were left out."""
    kept = Matches(
        pairs=matches.pairs,
        appeared=_inside(after, matches.appeared, compared),
        disappeared=_inside(before, matches.disappeared, compared),
    )
    left_out = len(matches.appeared) + len(matches.disappeared) - len(kept.appeared) - len(kept.disappeared)
    return kept, left_out
