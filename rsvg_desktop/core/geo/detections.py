"""Detection values: one frozen :class:`Detection` per object, a columnar :class:`DetectionTable` for
many, plus the tile and run records that exports carry alongside.

A table holds numpy columns (object arrays for text and geometries), so 100,000+ detections convert,
merge and export without building Python objects per row. Row ``i`` of a table is
``table[i]`` (a :class:`Detection`); ``DetectionTable.from_detections`` goes the other way.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from shapely.geometry.base import BaseGeometry

from rsvg_desktop import __version__
from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo.boxes import (
    DEFAULT_ANGLE_CONVENTION,
    AngleConvention,
    boxes_to_array,
    grid_boxes_to_polygons,
    tile_footprints,
    windows_to_array,
)
from rsvg_desktop.core.types import GridBox, ParsedObject, Tile
from rsvg_desktop.errors import ConfigError

__all__ = ["Detection", "DetectionTable", "RunInfo", "TileRecord", "tile_records"]

log = logging.getLogger(__name__)

Window = tuple[int, int, int, int]

_TEXT = ("phrase", "task", "query", "model", "precision", "run_id", "scene")
_COLUMNS = (*_TEXT, "tile_row", "tile_col", "boxes", "windows", "geometry")


@dataclass(frozen=True, slots=True)
class Detection:
    """One object found by the model, placed on the map.

    ``geometry`` is a shapely Polygon in the scene CRS (or in scene pixels, y down, in pixel mode).
    ``angle`` is the angle as the model wrote it (``box.angle``; ``None`` when it wrote none).
    ``window`` is the tile's pixel window ``(col_off, row_off, width, height)``, needed to merge seams.
    """

    phrase: str | None
    task: str
    query: str
    tile_row: int
    tile_col: int
    angle: float | None
    box: GridBox
    geometry: BaseGeometry
    model: str
    precision: str
    run_id: str
    scene: str
    window: Window | None = None

    def __post_init__(self) -> None:
        if self.angle != self.box.angle:
            raise ConfigError(f"Detection angle {self.angle!r} differs from box angle {self.box.angle!r}")

    @property
    def tile_id(self) -> str:
        return f"r{self.tile_row}c{self.tile_col}"


def _column(value: Any, n: int, name: str) -> np.ndarray:
    """A scalar broadcast to ``n`` rows, or a length-``n`` sequence, as an object array."""
    if isinstance(value, str) or value is None:
        arr = np.empty(n, dtype=object)
        arr[:] = value
        return arr
    arr = np.empty(n, dtype=object)
    vals = list(value)
    if len(vals) != n:
        raise ConfigError(f"column {name!r} has {len(vals)} values for {n} rows")
    arr[:] = vals
    return arr


@dataclass(frozen=True, eq=False)
class DetectionTable:
    """Columnar detections: every column has one entry per detection.

    ``boxes`` is ``(N, 5)`` float (x1, y1, x2, y2, angle; ``NaN`` angle = none written), ``windows`` is
    ``(N, 4)`` float (``NaN`` rows where unknown), ``geometry`` an object array of shapely Polygons.
    Text columns are object arrays (``phrase`` may hold ``None``). ``angle_convention`` is the one used to
    build the geometries.
    """

    phrase: np.ndarray
    task: np.ndarray
    query: np.ndarray
    tile_row: np.ndarray
    tile_col: np.ndarray
    boxes: np.ndarray
    windows: np.ndarray
    geometry: np.ndarray
    model: np.ndarray
    precision: np.ndarray
    run_id: np.ndarray
    scene: np.ndarray
    angle_convention: AngleConvention = DEFAULT_ANGLE_CONVENTION

    def __post_init__(self) -> None:
        n = len(self.geometry)
        for name in _COLUMNS:
            col = getattr(self, name)
            if not isinstance(col, np.ndarray) or len(col) != n:
                raise ConfigError(f"DetectionTable column {name!r} must be an array of {n} rows")
        if self.boxes.shape != (n, 5) or self.windows.shape != (n, 4):
            raise ConfigError(
                f"boxes must be (N, 5) and windows (N, 4); got {self.boxes.shape}, {self.windows.shape}"
            )
        object.__setattr__(self, "angle_convention", AngleConvention(self.angle_convention))

    # --- building ---------------------------------------------------------------------------------
    @classmethod
    def empty(cls, angle_convention: AngleConvention = DEFAULT_ANGLE_CONVENTION) -> DetectionTable:
        return cls.from_columns(
            phrase=[],
            task="",
            query="",
            tile_row=[],
            tile_col=[],
            boxes=np.empty((0, 5)),
            windows=None,
            geometry=[],
            model="",
            precision="",
            run_id="",
            scene="",
            angle_convention=angle_convention,
        )

    @classmethod
    def from_columns(
        cls,
        *,
        phrase: Any,
        task: Any,
        query: Any,
        tile_row: Any,
        tile_col: Any,
        boxes: Any,
        windows: Any | None,
        geometry: Any,
        model: Any,
        precision: Any,
        run_id: Any,
        scene: Any,
        angle_convention: AngleConvention = DEFAULT_ANGLE_CONVENTION,
    ) -> DetectionTable:
        """Build from columns; a ``str`` (or ``None`` for ``phrase``) is broadcast to every row."""
        geoms = np.empty(len(geometry), dtype=object)
        geoms[:] = list(geometry)
        n = len(geoms)
        box_arr = np.asarray(boxes, dtype=np.float64)
        box_arr = box_arr.reshape(n, -1) if box_arr.size else np.empty((n, 5))
        if box_arr.shape[1] == 4:
            box_arr = np.concatenate([box_arr, np.full((n, 1), np.nan)], axis=1)
        win = np.full((n, 4), np.nan) if windows is None else np.asarray(windows, dtype=np.float64)
        if win.ndim == 1:
            win = np.broadcast_to(win, (n, 4)).copy()
        return cls(
            phrase=_column(phrase, n, "phrase"),
            task=_column(task, n, "task"),
            query=_column(query, n, "query"),
            tile_row=np.broadcast_to(np.asarray(tile_row, dtype=np.int64), (n,)).copy(),
            tile_col=np.broadcast_to(np.asarray(tile_col, dtype=np.int64), (n,)).copy(),
            boxes=box_arr,
            windows=win,
            geometry=geoms,
            model=_column(model, n, "model"),
            precision=_column(precision, n, "precision"),
            run_id=_column(run_id, n, "run_id"),
            scene=_column(scene, n, "scene"),
            angle_convention=angle_convention,
        )

    @classmethod
    def from_detections(
        cls, detections: Sequence[Detection], angle_convention: AngleConvention = DEFAULT_ANGLE_CONVENTION
    ) -> DetectionTable:
        """Rows → columns."""
        dets = list(detections)
        nan4 = (np.nan,) * 4
        return cls.from_columns(
            phrase=[d.phrase for d in dets],
            task=[d.task for d in dets],
            query=[d.query for d in dets],
            tile_row=[d.tile_row for d in dets],
            tile_col=[d.tile_col for d in dets],
            boxes=boxes_to_array(d.box for d in dets).reshape(len(dets), 5),
            windows=np.asarray([d.window or nan4 for d in dets], dtype=np.float64).reshape(len(dets), 4),
            geometry=[d.geometry for d in dets],
            model=[d.model for d in dets],
            precision=[d.precision for d in dets],
            run_id=[d.run_id for d in dets],
            scene=[d.scene for d in dets],
            angle_convention=angle_convention,
        )

    @classmethod
    def from_tile_objects(
        cls,
        items: Iterable[tuple[Tile, ParsedObject]],
        *,
        task: str,
        query: str,
        model: str,
        precision: str,
        run_id: str,
        scene: str,
        transform6: Any | None = None,
        src_crs: Any | None = None,
        dst_crs: Any | None = None,
        angle_convention: AngleConvention = DEFAULT_ANGLE_CONVENTION,
    ) -> DetectionTable:
        """Parsed objects with their tiles → table, polygons built in one vectorised call.

        ``transform6`` None = pixel mode; else polygons in the scene CRS (or ``dst_crs``).
        """
        pairs = list(items)
        tiles = [t for t, _ in pairs]
        boxes = boxes_to_array(o.box for _, o in pairs).reshape(len(pairs), 5)
        windows = windows_to_array(tiles).reshape(len(pairs), 4)
        geoms: Any = (
            grid_boxes_to_polygons(boxes, windows, transform6, src_crs, dst_crs, convention=angle_convention)
            if pairs
            else []
        )
        return cls.from_columns(
            phrase=[o.phrase for _, o in pairs],
            task=task,
            query=query,
            tile_row=[t.row for t in tiles],
            tile_col=[t.col for t in tiles],
            boxes=boxes,
            windows=windows,
            geometry=geoms,
            model=model,
            precision=precision,
            run_id=run_id,
            scene=scene,
            angle_convention=angle_convention,
        )

    @staticmethod
    def concat(tables: Sequence[DetectionTable]) -> DetectionTable:
        """Stack tables (all must share one angle convention)."""
        if not tables:
            return DetectionTable.empty()
        conv = {t.angle_convention for t in tables}
        if len(conv) > 1:
            raise ConfigError(f"cannot concatenate tables with different angle conventions {sorted(conv)}")
        cols = {name: np.concatenate([getattr(t, name) for t in tables]) for name in _COLUMNS}
        return DetectionTable(**cols, angle_convention=tables[0].angle_convention)

    # --- access -----------------------------------------------------------------------------------
    def __len__(self) -> int:
        return len(self.geometry)

    @property
    def angle(self) -> np.ndarray:
        """Angles as written (``NaN`` = none written)."""
        return self.boxes[:, 4]

    def __getitem__(self, i: int) -> Detection:
        b = self.boxes[i]
        angle = None if np.isnan(b[4]) else float(b[4])
        w = self.windows[i]
        window = None if np.isnan(w).any() else tuple(int(v) for v in w)
        return Detection(
            phrase=self.phrase[i],
            task=self.task[i],
            query=self.query[i],
            tile_row=int(self.tile_row[i]),
            tile_col=int(self.tile_col[i]),
            angle=angle,
            box=GridBox(float(b[0]), float(b[1]), float(b[2]), float(b[3]), angle),
            geometry=self.geometry[i],
            model=self.model[i],
            precision=self.precision[i],
            run_id=self.run_id[i],
            scene=self.scene[i],
            window=window,  # type: ignore[arg-type]
        )

    def __iter__(self) -> Iterator[Detection]:
        for i in range(len(self)):
            yield self[i]

    def to_detections(self) -> list[Detection]:
        return list(self)

    def take(self, indices: Any) -> DetectionTable:
        """Rows at ``indices`` (integer array or boolean mask), in that order."""
        idx = np.asarray(indices)
        cols = {name: getattr(self, name)[idx] for name in _COLUMNS}
        return DetectionTable(**cols, angle_convention=self.angle_convention)


@dataclass(frozen=True, slots=True)
class RunInfo:
    """Run metadata written to the export's ``run`` table (one row per run)."""

    run_id: str
    scene: str
    model: str
    precision: str
    device: str = ""
    angle_convention: AngleConvention = DEFAULT_ANGLE_CONVENTION
    tile_size: int = 504
    overlap: int = 0
    target_gsd: float | None = None
    max_nodata_fraction: float | None = None
    created: str = field(default_factory=utc_now_iso)
    tool_version: str = __version__
    random_weights: bool = False
    task: str = ""
    query: str = ""
    crs: str = ""
    #: More columns, each ``x_<name>``, with their types (text, integer, real or boolean).
    extra: tuple[tuple[str, str | int | float | bool], ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "angle_convention", AngleConvention(self.angle_convention))

    def as_record(self) -> dict[str, Any]:
        """Flat ``{column: value}`` (extras become their own columns, prefixed ``x_``)."""
        rec: dict[str, Any] = {
            "run_id": self.run_id,
            "scene": self.scene,
            "model": self.model,
            "precision": self.precision,
            "device": self.device,
            "angle_convention": self.angle_convention.value,
            "angle_convention_doc": self.angle_convention.description,
            "tile_size": self.tile_size,
            "overlap": self.overlap,
            "target_gsd": self.target_gsd,
            "max_nodata_fraction": self.max_nodata_fraction,
            "created": self.created,
            "tool_version": self.tool_version,
            "random_weights": self.random_weights,
            "task": self.task,
            "query": self.query,
            "crs": self.crs,
        }
        for key, value in self.extra:
            rec[f"x_{key}"] = value
        return rec


@dataclass(frozen=True, slots=True)
class TileRecord:
    """One tile for the export's ``tiles`` layer: the tile, its footprint, and whether it was skipped."""

    tile: Tile
    geometry: BaseGeometry
    skipped: bool = False
    skip_reason: str | None = None
    run_id: str | None = None


def tile_records(
    tiles: Sequence[Tile],
    transform6: Any | None = None,
    src_crs: Any | None = None,
    dst_crs: Any | None = None,
    *,
    skipped: Iterable[tuple[int, int]] | dict[tuple[int, int], str] = (),
    run_id: str | None = None,
) -> list[TileRecord]:
    """Footprints for ``tiles`` (pixel mode when ``transform6`` is None); ``skipped`` holds ``(row, col)``
    ids, or maps them to a reason."""
    reasons = dict(skipped) if isinstance(skipped, dict) else dict.fromkeys(skipped, "")
    geoms = tile_footprints(windows_to_array(tiles).reshape(len(tiles), 4), transform6, src_crs, dst_crs)
    return [
        TileRecord(
            tile=t,
            geometry=g,
            skipped=(t.row, t.col) in reasons,
            skip_reason=(reasons.get((t.row, t.col)) or None),
            run_id=run_id,
        )
        for t, g in zip(tiles, geoms, strict=True)
    ]
