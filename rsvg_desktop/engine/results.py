"""From model answers to merged geographic detections, and the answer-log re-export.

One path serves live runs and re-exports: an :class:`~rsvg_desktop.core.answers.AnswerRecord` (the
tile window plus the model's raw text) is parsed, its boxes become polygons in the scene CRS, and
duplicates across tile seams are merged per (scene, task, query). ``rsvg export`` and the GUI's export
dialog call :func:`export_answer_log`; a detect run calls :func:`detections_for_answer` per tile and
:func:`merged_table` at the end; ``rsvg change --logs`` reads each date with :func:`latest_answer_records`
and :func:`rebuild_answer_log`.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from pyproj import CRS

from rsvg_desktop.core.answers import AnswerRecord, check_crs, read_answer_log
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import DetectionTable, RunInfo, TileRecord, tile_records
from rsvg_desktop.core.geo.export import ExportResult, export_detections, format_for_path
from rsvg_desktop.core.geo.merge import MergeConfig, merge_detections, stitched_geometry, stitched_groups
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.paths import is_remote_path, refuse_same_file
from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.core.types import ParseResult, Tile
from rsvg_desktop.errors import AnswerLogError, ConfigError, SceneError

log = logging.getLogger(__name__)

DetectionKey = tuple[int, int, int]  # (tile_row, tile_col, index of the box in the tile's answer)
_TileKey = tuple[str, int, int, int, int]  # (scene, col_off, row_off, width, height)


@dataclass(frozen=True, slots=True)
class Georef:
    """Where a scene's pixels are on the map: the full affine and the CRS (``None``: pixel mode)."""

    transform: tuple[float, float, float, float, float, float] | None
    crs_wkt: str | None


def detections_for_answer(
    record: AnswerRecord,
    parsed: ParseResult,
    georef: Georef,
    *,
    dst_crs: Any | None = None,
    convention: AngleConvention | str = AngleConvention.CCW,
) -> DetectionTable:
    """The boxes of one answered tile as a table of polygons (scene CRS, or ``dst_crs``).

    Phrases: a ``<p>`` phrase of the answer where present; else, for ``refer``, the query (the
    expression the boxes answer); else the noun phrase read from the answer's text (or none).
    """
    tile = record.tile or Tile(
        0, 0, record.col_off, record.row_off, record.width, record.height, record.tile_size
    )
    objects = parsed.objects
    if record.task == "refer" and record.query.strip():
        query = " ".join(record.query.split())
        objects = tuple(
            o
            if o.phrase is not None and not o.from_text
            else dataclasses.replace(o, phrase=query, count=None)
            for o in objects
        )
    return DetectionTable.from_tile_objects(
        ((tile, obj) for obj in objects),
        task=record.task,
        query=record.query,
        model=record.model or "",
        precision=record.precision or "",
        run_id=record.run_id or "",
        scene=record.scene,
        # Pixel mode: polygons stay in scene pixels (x right, y down), whatever the file's transform.
        transform6=georef.transform if georef.crs_wkt is not None else None,
        src_crs=georef.crs_wkt,
        dst_crs=dst_crs if georef.crs_wkt is not None else None,
        angle_convention=AngleConvention(convention),
    )


def merge_table_stitched(
    table: DetectionTable, config: MergeConfig = MergeConfig()
) -> tuple[np.ndarray, dict[int, np.ndarray]]:
    """Seam merging per (scene, task, query) group (pixel corners are only comparable inside one
    scene): the ascending indices of the surviving detections, and for every survivor that stitched
    seam fragments, the indices of all its fragments (see :func:`stitched_groups`)."""
    if not len(table):
        return np.empty(0, dtype=np.int64), {}
    keys = np.asarray(
        [f"{s}\x1f{t}\x1f{q}" for s, t, q in zip(table.scene, table.task, table.query, strict=True)],
        dtype=object,
    )
    kept: list[np.ndarray] = []
    stitched: dict[int, np.ndarray] = {}
    for key in dict.fromkeys(keys.tolist()):
        idx = np.flatnonzero(keys == key)
        result = merge_detections(table.take(idx), config)
        kept.append(idx[result.kept])
        stitched.update({int(idx[h]): idx[m] for h, m in stitched_groups(result).items()})
    return np.sort(np.concatenate(kept)), stitched


def merge_table(table: DetectionTable, config: MergeConfig = MergeConfig()) -> np.ndarray:
    """Indices of the detections that survive seam merging (see :func:`merge_table_stitched`)."""
    return merge_table_stitched(table, config)[0]


def merged_table(table: DetectionTable, config: MergeConfig = MergeConfig()) -> DetectionTable:
    """The detections that survive seam merging; stitched objects carry the stitched polygon."""
    kept, stitched = merge_table_stitched(table, config)
    out = table.take(kept)
    if not stitched:
        return out
    geoms = out.geometry.copy()
    pos = {int(k): i for i, k in enumerate(kept.tolist())}
    for head, members in stitched.items():
        geoms[pos[head]] = stitched_geometry(table.geometry[members])
    return dataclasses.replace(out, geometry=geoms)


class _GeorefCache:
    """Georeferencing per scene path: from the record when it carries it, else read from the scene; a
    scene that is a URL or a GDAL network path is read only when ``allow_remote``."""

    def __init__(self, *, allow_remote: bool = False) -> None:
        self._cache: dict[tuple[str, bool], Georef] = {}
        self.allow_remote = allow_remote

    def get(self, record: AnswerRecord) -> Georef:
        if record.transform is not None and (record.crs is not None or record.pixel_mode):
            return Georef(record.transform, record.crs)
        key = (record.scene, record.pixel_mode)
        if key not in self._cache:
            if not self.allow_remote and is_remote_path(record.scene):
                raise AnswerLogError(
                    f"the log has no georeferencing for {record.scene!r}, a URL or a GDAL network path: "
                    "reading it would fetch data from the network; pass --allow-remote to read it anyway"
                )
            try:
                with open_scene(record.scene, pixel_mode=record.pixel_mode) as scene:
                    self._cache[key] = Georef(scene.info.transform, scene.info.crs_wkt)
            except SceneError as exc:
                raise AnswerLogError(
                    f"the log has no georeferencing for {record.scene} and the scene cannot be read: {exc}"
                ) from exc
        return self._cache[key]


def _latest_per_tile(records: Iterable[AnswerRecord]) -> list[AnswerRecord]:
    """One record per (scene, run, window, task, query): a resumed run may have written a tile twice;
    the last answer wins. Order of first appearance is kept."""
    latest: dict[tuple[Any, ...], AnswerRecord] = {}
    for rec in records:
        latest[(rec.scene, rec.run_id, rec.window, rec.task, rec.query)] = rec
    return list(latest.values())


@dataclass(frozen=True, slots=True)
class ExportSummary:
    """What ``export_answer_log`` did: records read, tiles, raw and merged detections, the file."""

    answer_log: str
    records: int
    raw_detections: int
    detections: int
    excluded: int
    result: ExportResult


def export_answer_log(
    answer_log: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    overwrite: bool = False,
    fmt: str | None = None,
    exclude: Iterable[DetectionKey] = (),
    merge: MergeConfig | None = MergeConfig(),
    angle_convention: str | None = None,
    allow_remote: bool = False,
) -> ExportSummary:
    """Rebuild polygons from an answer log and write them merged to ``output`` (.gpkg/.geojson/.shp).

    The model is not run. Georeferencing comes from each record (``transform``/``crs``) or, when a
    record lacks it, from opening its scene. ``exclude`` removes detections by (tile_row, tile_col,
    index in the tile's answer), e.g. false positives deleted in the GUI. ``merge=None`` keeps every
    box. ``angle_convention`` overrides the one recorded in the log. Scenes in different CRSs are
    reprojected to the first scene's CRS. A record without georeferencing whose scene is a URL or a GDAL
    network path (``/vsicurl/``, ``/vsis3/``...) is refused unless ``allow_remote``: opening someone's
    log must not make the tool fetch from the network.
    """
    log_path = Path(answer_log)
    records = _records_to_export(log_path, output, fmt)
    rebuilt = rebuild_answer_log(
        log_path, records, angle_convention=angle_convention, allow_remote=allow_remote
    )
    table, keys, out_crs = rebuilt.table, rebuilt.keys, rebuilt.crs
    raw = len(table)
    excluded = set(exclude)
    if excluded:
        mask = np.asarray([k not in excluded for k in keys], dtype=bool)
        table = table.take(np.flatnonzero(mask))
    n_excluded = raw - len(table)
    if merge is not None:
        table = merged_table(table, merge)

    tile_recs = rebuilt.tile_records()
    runs = _run_infos(records, rebuilt.convention, out_crs)
    result = export_detections(
        output, table, crs=out_crs, tiles=tile_recs, run=runs, overwrite=overwrite, fmt=fmt
    )
    log.info(
        "%s: %d records, %d boxes, %d excluded, %d after merging → %s",
        log_path,
        len(records),
        raw,
        n_excluded,
        len(table),
        result.path,
    )
    return ExportSummary(str(log_path), len(records), raw, len(table), n_excluded, result)


def _records_to_export(log_path: Path, output: str | os.PathLike[str], fmt: str | None) -> list[AnswerRecord]:
    """The latest record of each tile, checked: the output replaces neither the log nor a scene, its
    format is known, every CRS is readable, and there is at least one record."""
    refuse_same_file([output], [log_path])
    format_for_path(output, fmt)  # fail on a bad extension before reading anything
    records = latest_answer_records(log_path, [output])
    if not records:
        raise AnswerLogError(f"{log_path}: the answer log holds no records")
    return records


def latest_answer_records(
    log_path: Path, outputs: Sequence[str | os.PathLike[str]] = ()
) -> list[AnswerRecord]:
    """The latest record of each tile of the answer log ``log_path`` (none for an empty log), checked:
    ``outputs`` replace no scene of the log and every CRS is readable."""
    records = _latest_per_tile(read_answer_log(log_path))
    refuse_same_file(outputs, {r.scene for r in records})
    for rec in records:  # a CRS PROJ cannot read fails here, naming the log and the record
        if rec.crs is not None:
            try:
                check_crs(rec.crs)
            except AnswerLogError as exc:
                raise AnswerLogError(
                    f"{log_path}: record of {rec.scene} window {rec.window}: {exc}"
                ) from None
    return records


def _one_convention(
    log_path: Path, records: Sequence[AnswerRecord], angle_convention: str | None
) -> AngleConvention:
    """The angle convention of every record (``angle_convention`` overrides); ConfigError for a mix."""
    conventions = {angle_convention or r.angle_convention or "ccw" for r in records}
    if len(conventions) > 1:
        raise ConfigError(
            f"{log_path}: records use different angle conventions {sorted(conventions)}; "
            "choose one with the angle-convention option"
        )
    return AngleConvention(conventions.pop())


@dataclass(frozen=True, slots=True, eq=False)
class RebuiltLog:
    """An answer log's records rebuilt as polygons, not merged: the angle convention, the table, each
    detection's key, each tile with its georeferencing, and the CRS (``None``: pixel mode)."""

    convention: AngleConvention
    table: DetectionTable
    keys: list[DetectionKey]
    tiles: dict[_TileKey, tuple[Tile, Georef]]
    crs: CRS | None

    def tile_records(self) -> list[TileRecord]:
        """The footprints of the log's tiles, in :attr:`crs`."""
        recs: list[TileRecord] = []
        for tile, georef in self.tiles.values():
            recs.extend(tile_records([tile], georef.transform, georef.crs_wkt, self.crs))
        return recs


def rebuild_answer_log(
    log_path: Path,
    records: Sequence[AnswerRecord],
    *,
    angle_convention: str | None = None,
    allow_remote: bool = False,
) -> RebuiltLog:
    """``records`` of the answer log ``log_path`` (see :func:`latest_answer_records`) as polygons in the
    first scene's CRS; ``angle_convention`` overrides the one they record (ConfigError for a mix)."""
    convention = _one_convention(log_path, records, angle_convention)
    table, keys, tiles, crs = _rebuild(log_path, records, convention, allow_remote=allow_remote)
    return RebuiltLog(convention, table, keys, tiles, crs)


def _rebuild(
    log_path: Path, records: Sequence[AnswerRecord], convention: AngleConvention, *, allow_remote: bool
) -> tuple[
    DetectionTable,
    list[DetectionKey],
    dict[_TileKey, tuple[Tile, Georef]],
    CRS | None,
]:
    """Every record's boxes as polygons in the first scene's CRS (or pixels): the table, each
    detection's key, each tile with its georeferencing, and the CRS."""
    georefs = _GeorefCache(allow_remote=allow_remote)
    out_crs: CRS | None = None
    first = georefs.get(records[0])
    if first.crs_wkt is not None:
        out_crs = CRS.from_wkt(first.crs_wkt)
    tables: list[DetectionTable] = []
    keys: list[DetectionKey] = []
    tiles: dict[_TileKey, tuple[Tile, Georef]] = {}
    for rec in records:
        georef = georefs.get(rec)
        if (georef.crs_wkt is None) != (out_crs is None):
            raise ConfigError(
                f"{log_path}: the log mixes georeferenced and pixel-mode scenes "
                f"({rec.scene}); export them separately"
            )
        parsed = parse_answer(rec.answer)
        table = detections_for_answer(rec, parsed, georef, dst_crs=out_crs, convention=convention)
        tables.append(table)
        row, col = rec.tile_row or 0, rec.tile_col or 0
        keys.extend((row, col, i) for i in range(len(table)))
        tile = rec.tile or Tile(row, col, *rec.window, rec.tile_size)
        tiles[(rec.scene, *rec.window)] = (tile, georef)
    table = DetectionTable.concat(tables) if tables else DetectionTable.empty(convention)
    return table, keys, tiles, out_crs


def _nodata_used(rec: AnswerRecord) -> tuple[tuple[str, str | int | float | bool], ...]:
    """The run's ``--nodata`` value, when the log records one (a number or ``"nan"``)."""
    value = rec.extra.get("nodata")
    if isinstance(value, int | float | str) and not isinstance(value, bool):
        return (("nodata", value),)
    return ()


def _run_infos(
    records: Sequence[AnswerRecord], convention: AngleConvention, crs: CRS | None
) -> list[RunInfo]:
    runs: dict[str, RunInfo] = {}
    for rec in records:
        rid = rec.run_id or ""
        if rid in runs:
            continue
        runs[rid] = RunInfo(
            run_id=rid,
            scene=rec.scene,
            model=rec.model or "",
            precision=rec.precision or "",
            device=rec.device or "",
            angle_convention=convention,
            tile_size=rec.tile_size,
            overlap=rec.overlap or 0,
            target_gsd=rec.target_gsd,
            max_nodata_fraction=rec.max_nodata_fraction,
            task=rec.task,
            query=rec.query,
            random_weights=bool(rec.extra.get("random_weights", False)),
            extra=_nodata_used(rec),
        )
    return list(runs.values())
