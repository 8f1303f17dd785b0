"""The detections of the current run as a Qt table model: phrase, task, tile, area, angle.

One row per box as the model wrote it (before seam merging: the export merges), keyed by
``(tile_row, tile_col, index of the box in the tile's answer)`` — the key the engine's
``export_answer_log(..., exclude=...)`` understands. Deleting rows (false positives) moves their keys
to :attr:`ResultsModel.excluded`; :meth:`ResultsModel.restore_all` brings them back. The deletions are
kept with the run, beside its answer log (:mod:`rsvg_desktop.gui.logic.deletions`), so a reopened
run comes back as the analyst left it (:meth:`ResultsModel.apply_saved_deletions`).

Sorting: :data:`SORT_ROLE` gives raw values (numbers for area and angle), for a
``QSortFilterProxyModel``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import numpy as np
import shapely
from PySide6.QtCore import QAbstractTableModel, QModelIndex, QPersistentModelIndex, Qt, Signal

from rsvg_desktop.core.types import Tile
from rsvg_desktop.gui.logic.deletions import read_deletions, write_deletions
from rsvg_desktop.gui.logic.geometry import AreaCalculator, format_area, polygon_to_pixels

__all__ = ["COLUMNS", "KEY_ROLE", "SORT_ROLE", "DetectionRow", "ResultsModel"]

log = logging.getLogger(__name__)

COLUMNS = ("Phrase", "Task", "Tile", "Area", "Angle")
KEY_ROLE = Qt.ItemDataRole.UserRole + 1
SORT_ROLE = Qt.ItemDataRole.UserRole + 2

Key = tuple[int, int, int]
_Index = QModelIndex | QPersistentModelIndex


@dataclass(frozen=True, slots=True)
class DetectionRow:
    """One detection: its key, label, task, tile, area (on the ground in m², px² in pixel mode), polygon
    (scene CRS) and its ring in scene pixels."""

    key: Key
    phrase: str
    task: str
    tile: Tile
    area: float
    angle: float | None
    polygon: shapely.Geometry
    pixels: np.ndarray

    @property
    def tile_id(self) -> str:
        return self.tile.id

    def pixel_bounds(self) -> tuple[float, float, float, float]:
        xs, ys = self.pixels[:, 0], self.pixels[:, 1]
        return (float(xs.min()), float(ys.min()), float(xs.max()), float(ys.max()))


class ResultsModel(QAbstractTableModel):
    """Detections of one run (see module doc). :attr:`saveFailed` says why deletions could not be kept."""

    saveFailed = Signal(str)

    def __init__(self, parent: Any = None) -> None:
        super().__init__(parent)
        self._rows: list[DetectionRow] = []
        self._index: dict[Key, int] = {}
        self._deleted: dict[Key, DetectionRow] = {}
        self._areas = AreaCalculator(None)
        self._scene_open = False  # no scene yet: the area header names no unit
        self.transform: tuple[float, ...] | None = None
        self.crs_wkt: str | None = None
        self.answer_log: str | None = None
        self.run_id: str | None = None
        self.task: str | None = None
        self.query: str | None = None

    # --- run lifetime ------------------------------------------------------------------------
    def reset(
        self,
        *,
        crs_wkt: str | None,
        transform: Sequence[float] | None,
        answer_log: str | None,
        run_id: str | None,
        task: str | None = None,
        query: str | None = None,
    ) -> None:
        """Start a new run's table (the previous rows and deletions are dropped)."""
        self.beginResetModel()
        self._rows.clear()
        self._index.clear()
        self._deleted.clear()
        self.crs_wkt = crs_wkt
        # Pixel mode: polygons are already in scene pixels.
        self.transform = tuple(transform) if (transform is not None and crs_wkt is not None) else None
        self._areas = AreaCalculator(crs_wkt)
        self._scene_open = True
        self.answer_log = answer_log
        self.run_id = run_id
        self.task = task
        self.query = query
        self.endResetModel()

    def add_tile(
        self,
        tile: Tile,
        polygons_wkb: Sequence[bytes],
        phrases: Sequence[str | None],
        angles: Sequence[float | None],
        *,
        task: str,
        default_label: str = "",
    ) -> list[DetectionRow]:
        """Append the detections of one finished tile; returns the new rows."""
        new: list[DetectionRow] = []
        for i, wkb in enumerate(polygons_wkb):
            key = (tile.row, tile.col, i)
            if key in self._index or key in self._deleted:
                continue
            try:
                polygon = shapely.from_wkb(wkb)
            except Exception:
                log.warning("tile %s: detection %d has an unreadable polygon", tile.id, i)
                continue
            phrase = phrases[i] if i < len(phrases) else None
            angle = angles[i] if i < len(angles) else None
            pixels = polygon_to_pixels(polygon, self.transform)
            if len(pixels) < 3:
                continue
            new.append(
                DetectionRow(
                    key,
                    (phrase or default_label or "").strip(),
                    task,
                    tile,
                    0.0,  # measured below, for the whole tile at once
                    angle,
                    polygon,
                    pixels,
                )
            )
        areas = self._areas.areas([row.polygon for row in new])  # on the ground, one transformation
        new = [replace(row, area=float(a)) for row, a in zip(new, areas, strict=True)]
        if new:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(new) - 1)
            for row in new:
                self._index[row.key] = len(self._rows)
                self._rows.append(row)
            self.endInsertRows()
        return new

    def remove_keys(self, keys: Iterable[Key], *, save: bool = True) -> list[Key]:
        """Delete these detections (false positives): they go to :attr:`excluded` (and, with ``save``,
        beside the run's answer log). Returns those removed."""
        doomed = sorted((self._index[k] for k in set(keys) if k in self._index), reverse=True)
        removed: list[Key] = []
        for pos in doomed:  # one block per row, from the end: positions stay valid
            self.beginRemoveRows(QModelIndex(), pos, pos)
            row = self._rows.pop(pos)
            # recorded before the views hear of the removal: the count and Restore see it at once
            self._deleted[row.key] = row
            self._index = {r.key: i for i, r in enumerate(self._rows)}
            removed.append(row.key)
            self.endRemoveRows()
        if removed and save:
            self._save_deletions()
        return removed

    def restore_all(self) -> list[DetectionRow]:
        """Undo every deletion; returns the rows restored."""
        rows = sorted(self._deleted.values(), key=lambda r: r.key)
        if rows:
            first = len(self._rows)
            self.beginInsertRows(QModelIndex(), first, first + len(rows) - 1)
            self._deleted.clear()
            for row in rows:
                self._index[row.key] = len(self._rows)
                self._rows.append(row)
            self.endInsertRows()
            self._save_deletions()
        return rows

    def apply_saved_deletions(self) -> list[Key]:
        """Delete again what the analyst deleted from this run before (kept beside its answer log);
        returns the keys removed."""
        if self.answer_log is None:
            return []
        return self.remove_keys(read_deletions(self.answer_log, self.run_id), save=False)

    def _save_deletions(self) -> None:
        if self.answer_log is None:
            return
        try:
            write_deletions(self.answer_log, self.run_id, self._deleted)
        except OSError as exc:
            log.warning("cannot keep the deletions beside %s: %s", self.answer_log, exc)
            self.saveFailed.emit(f"The deletions are not saved with the run: {exc}")

    # --- access ------------------------------------------------------------------------------
    @property
    def rows(self) -> tuple[DetectionRow, ...]:
        return tuple(self._rows)

    @property
    def excluded(self) -> frozenset[Key]:
        """Keys of the deleted detections (for the export's ``exclude``)."""
        return frozenset(self._deleted)

    @property
    def area_unit(self) -> str:
        """``m²`` for a scene with a CRS, ``px²`` in pixel mode, ``""`` before any scene is open."""
        return self._areas.unit if self._scene_open else ""

    def row_of(self, key: Key) -> int | None:
        return self._index.get(key)

    def detection(self, key: Key) -> DetectionRow | None:
        pos = self._index.get(key)
        return None if pos is None else self._rows[pos]

    # --- Qt model ----------------------------------------------------------------------------
    def rowCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(self._rows)

    def columnCount(self, parent: _Index = QModelIndex()) -> int:  # noqa: B008
        return 0 if parent.isValid() else len(COLUMNS)

    def headerData(
        self, section: int, orientation: Qt.Orientation, role: int = Qt.ItemDataRole.DisplayRole
    ) -> Any:
        if role == Qt.ItemDataRole.DisplayRole and orientation == Qt.Orientation.Horizontal:
            name = COLUMNS[section]
            if name == "Area":
                return f"Area ({self.area_unit})" if self.area_unit else "Area"
            return name
        horizontal_tip = role == Qt.ItemDataRole.ToolTipRole and orientation == Qt.Orientation.Horizontal
        if horizontal_tip and COLUMNS[section] == "Area" and self.area_unit == "m²":
            return "Area on the ground: geodesic, on the ellipsoid (not the map projection's planar area)"
        return None

    def data(self, index: _Index, role: int = Qt.ItemDataRole.DisplayRole) -> Any:
        if not index.isValid() or not 0 <= index.row() < len(self._rows):
            return None
        row = self._rows[index.row()]
        col = index.column()
        if role == KEY_ROLE:
            return row.key
        if role == SORT_ROLE:
            tile_order = float(row.tile.row * 1_000_000 + row.tile.col * 1_000 + row.key[2])
            return (
                row.phrase.lower(),
                row.task,
                tile_order,
                row.area,
                -1.0 if row.angle is None else float(row.angle),
            )[col]
        if role == Qt.ItemDataRole.DisplayRole:
            if col == 0:
                return row.phrase or "—"
            if col == 1:
                return row.task
            if col == 2:
                return f"{row.tile.id} #{row.key[2] + 1}"
            if col == 3:
                return f"{row.area:,.1f}" if row.area < 1e4 else f"{row.area:,.0f}"
            if col == 4:
                return "—" if row.angle is None else f"{row.angle:g}°"
        if role == Qt.ItemDataRole.TextAlignmentRole and col in (3, 4):
            return int(Qt.AlignmentFlag.AlignRight | Qt.AlignmentFlag.AlignVCenter)
        if role == Qt.ItemDataRole.ToolTipRole:
            return (
                f"{row.phrase or '(no phrase)'} — tile {row.tile.id}, box {row.key[2] + 1}, "
                f"{format_area(row.area, self._areas.unit)}"
            )
        return None
