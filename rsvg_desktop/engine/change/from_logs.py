"""``rsvg change --logs``: compare two dates from the answer logs of runs already made (``rsvg detect``,
``rsvg batch``), with no model and no verification.

Each log is read as ``rsvg export`` reads it (the latest answer per tile, boxes → polygons, seams merged
per scene, task and query). The after date's objects and tile footprints are reprojected into the
before log's CRS when the two differ; a pixel-mode log is only compared with another pixel-mode log (the
two are taken to be the same pixel grid). Objects are matched one to one per phrase
(:func:`~rsvg_desktop.core.geo.change.match_objects`).

**Unknown area**: the parts of each log's tile footprints that the other log's tiles do not cover: there
only one date was looked at. An unmatched object whose representative point lies there is neither
``appeared`` nor ``disappeared`` (it stays in its date's ``before``/``after`` layer; the run table's
``outside_compared`` counts them). Logs whose tiles do not overlap at all are refused.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from rsvg_desktop.core.geo.boxes import reproject_xy
from rsvg_desktop.core.geo.change import DEFAULT_MIN_IOU, ChangeSet, Matches, match_objects
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.export.change import check_change_output, write_change
from rsvg_desktop.core.geo.merge import MergeConfig
from rsvg_desktop.core.paths import refuse_same_file
from rsvg_desktop.engine.change.summary import ChangeSummary
from rsvg_desktop.engine.results import latest_answer_records, merged_table, rebuild_answer_log
from rsvg_desktop.errors import ChangeInputError, ConfigError

__all__ = ["change_from_logs"]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True, eq=False)
class _Date:
    """One date read from its answer log: merged objects and the union of its tile footprints, in
    ``crs`` (``None``: pixel mode), the scenes and the model that answered."""

    log: Path
    table: DetectionTable
    footprint: BaseGeometry
    crs: CRS | None
    scenes: tuple[str, ...]
    model: str
    precision: str


def _read_date(path: Path, output: Path, which: str, other: Path) -> _Date:
    records = latest_answer_records(path, [output])
    if not records:
        raise ChangeInputError(
            f"{path}: the {which} answer log holds no records: nothing to compare with {other}"
        )
    rebuilt = rebuild_answer_log(path, records)
    table = merged_table(rebuilt.table)
    footprint = shapely.union_all([r.geometry for r in rebuilt.tile_records()])
    scenes = tuple(dict.fromkeys(r.scene for r in records))
    log.info("%s (%s): %d tiles, %d objects after merging seams", path, which, len(records), len(table))
    return _Date(
        path, table, footprint, rebuilt.crs, scenes, records[0].model or "", records[0].precision or ""
    )


def _reprojected(geoms: np.ndarray, src: CRS, dst: CRS) -> np.ndarray:
    return shapely.transform(geoms, lambda xy: reproject_xy(xy, src, dst))


def _in_crs(after: _Date, before: _Date) -> _Date:
    """``after`` in the before date's CRS, refused when one log is in pixel mode and the other not."""
    if (after.crs is None) != (before.crs is None):
        pixel, geo = (before, after) if before.crs is None else (after, before)
        raise ChangeInputError(
            f"{pixel.log} is in pixel coordinates (no CRS) and {geo.log} is georeferenced: they cannot "
            "be compared (compare two georeferenced logs, or two pixel-mode logs of the same grid)"
        )
    if after.crs is None or before.crs is None or after.crs.equals(before.crs):
        return after
    try:
        geoms = _reprojected(after.table.geometry, after.crs, before.crs)
        footprint = _reprojected(np.asarray([after.footprint], dtype=object), after.crs, before.crs)[0]
    except ConfigError as exc:
        raise ChangeInputError(f"{after.log} cannot be compared with {before.log}: {exc}") from exc
    log.info(
        "%s: reprojected from %s to %s (the before log's CRS)", after.log, after.crs.name, before.crs.name
    )
    table = dataclasses.replace(after.table, geometry=geoms)
    return dataclasses.replace(after, table=table, footprint=footprint, crs=before.crs)


def _inside(table: DetectionTable, rows: tuple[int, ...], area: BaseGeometry) -> tuple[int, ...]:
    """The ``rows`` of ``table`` whose representative point lies in ``area``."""
    if not rows:
        return ()
    points = shapely.point_on_surface(table.geometry[list(rows)])
    keep = shapely.covers(area, points)
    return tuple(r for r, k in zip(rows, keep.tolist(), strict=True) if k)


def _compared_only(matches: Matches, before: _Date, after: _Date, compared: BaseGeometry) -> Matches:
    """``matches`` without the unmatched objects outside the compared area (no change is reported where
    only one date was looked at)."""
    return Matches(
        pairs=matches.pairs,
        appeared=_inside(after.table, matches.appeared, compared),
        disappeared=_inside(before.table, matches.disappeared, compared),
    )


def _run_facts(
    before: _Date, after: _Date, match_iou: float, compared: BaseGeometry, outside: int
) -> dict[str, Any]:
    """The ``run`` table's row of a comparison from answer logs."""
    union = shapely.union(before.footprint, after.footprint)
    return {
        "mode": "answer logs",
        "before_log": str(before.log),
        "after_log": str(after.log),
        "before": ";".join(before.scenes),
        "after": ";".join(after.scenes),
        "grid": "before",
        "compared_fraction": float(compared.area / union.area) if union.area else 0.0,
        "before_model": before.model,
        "before_precision": before.precision,
        "after_model": after.model,
        "after_precision": after.precision,
        "match_iou": match_iou,
        "merge_iou": MergeConfig().iou_threshold,
        "verification": "none (answer logs)",
        "verification_removed": 0,
        "outside_compared": outside,
    }


def change_from_logs(
    before_log: str | os.PathLike[str],
    after_log: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    match_iou: float = DEFAULT_MIN_IOU,
    overwrite: bool = False,
) -> ChangeSummary:
    """Compare the dates of two answer logs and write the change layers to ``output`` (.gpkg, .geojson
    or .shp, see :func:`~rsvg_desktop.core.geo.export.change.write_change`).

    Raises :class:`AnswerLogNotFoundError` for a missing log, :class:`ChangeInputError` (one line
    naming the logs) for an empty log, a pixel-mode log against a georeferenced one, objects that cannot
    be reprojected, or logs whose tiles do not overlap, and :class:`OutputExistsError` for an existing
    output unless ``overwrite``.
    """
    start = time.monotonic()
    b_path, a_path, out = Path(before_log), Path(after_log), Path(output)
    refuse_same_file([out], [b_path, a_path])
    check_change_output(out, overwrite=overwrite)
    before = _read_date(b_path, out, "before", a_path)
    after = _in_crs(_read_date(a_path, out, "after", b_path), before)
    compared = shapely.intersection(before.footprint, after.footprint)
    if compared.is_empty or compared.area <= 0:
        raise ChangeInputError(
            f"the tiles of {b_path} and {a_path} do not overlap: there is nothing to compare"
        )
    unknown = shapely.symmetric_difference(before.footprint, after.footprint)
    found = match_objects(
        before.table.geometry,
        before.table.phrase.tolist(),
        after.table.geometry,
        after.table.phrase.tolist(),
        min_iou=match_iou,
    )
    matches = _compared_only(found, before, after, compared)
    outside = len(found.appeared) + len(found.disappeared) - len(matches.appeared) - len(matches.disappeared)
    changeset = ChangeSet(
        before=before.table,
        after=after.table,
        matches=matches,
        unknown_area=None if unknown.is_empty else unknown,
        crs_wkt=None if before.crs is None else before.crs.to_wkt(),
        run=_run_facts(before, after, match_iou, compared, outside),
    )
    files = write_change(out, changeset, overwrite=overwrite)
    summary = ChangeSummary.from_changeset(changeset, files, seconds=time.monotonic() - start)
    log.info(
        "change from %s and %s: %d appeared, %d disappeared, %d persisting (%d outside the compared area)",
        b_path,
        a_path,
        summary.appeared,
        summary.disappeared,
        summary.persisting,
        outside,
    )
    return summary
