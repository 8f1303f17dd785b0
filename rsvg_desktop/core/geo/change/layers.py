"""The layers of a change output, built from a :class:`~rsvg_desktop.core.geo.change.types.ChangeSet`.

Spatial layers (geometry in the comparison grid's CRS; scene pixels, y down, in pixel mode):

* ``before`` / ``after`` — every merged object of that date, with the columns of ``rsvg detect``'s
  ``detections`` layer (:data:`~rsvg_desktop.core.geo.export.frames.DETECTION_FIELDS`); ``det_id`` is
  the object's row in its date's table, the id the other layers refer to.
* ``appeared`` — after objects left unmatched and not confirmed by the before date: the ``after``
  columns, ``det_id`` renamed ``after_id``.
* ``disappeared`` — before objects left unmatched and not confirmed by the after date: the ``before``
  columns, ``det_id`` renamed ``before_id``.
* ``persisting`` — one feature per matched pair (the after polygon, ``verified`` 0, ``seen_on``
  ``both``, the pair's ``iou``) and per object the other date confirmed (its own polygon, ``verified``
  1, ``seen_on`` the date that found it, ``iou`` NULL). Columns: :data:`PERSISTING_FIELDS` and the area.
* ``unknown_area`` — one (Multi)Polygon where the two dates were not both compared (none when the
  whole extent was compared), with its area.

Every spatial layer carries ``area_m2`` (geodesic m²) or, in pixel mode, ``area_px``.

``run`` (no geometry, one row): the facts in ``ChangeSet.run`` flattened to columns (a value object
``shift = ShiftEstimate(...)`` becomes ``shift_dx``, ``shift_dy``…; lists and tuples JSON text), then
``crs``, ``created``, ``tool_version`` and the counts ``n_before``, ``n_after``, ``n_appeared``,
``n_disappeared``, ``n_persisting``, ``n_matched``, ``n_verified`` and ``verification_removed``
(defaults to ``n_verified`` when the run does not say).
"""

from __future__ import annotations

import dataclasses
import enum
import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import geopandas as gpd
import numpy as np
import pandas as pd
import shapely
from pyproj import CRS
from shapely.geometry.base import BaseGeometry

from rsvg_desktop import __version__
from rsvg_desktop.core.answers import utc_now_iso
from rsvg_desktop.core.geo.change.types import ChangeSet
from rsvg_desktop.core.geo.export.frames import area_column, crs_or_none, crs_text, detections_frame

__all__ = [
    "CHANGE_LAYERS",
    "PERSISTING_FIELDS",
    "ChangeCounts",
    "ChangeLayers",
    "change_counts",
    "change_layers",
]

#: The spatial layers of a change output, in the order they are written (the ``run`` table follows).
CHANGE_LAYERS: tuple[str, ...] = ("appeared", "disappeared", "persisting", "before", "after", "unknown_area")

#: The columns of ``persisting`` before its area column.
PERSISTING_FIELDS: tuple[str, ...] = (
    "phrase",
    "task",
    "query",
    "before_id",
    "after_id",
    "iou",
    "verified",
    "seen_on",
)


@dataclass(frozen=True, slots=True)
class ChangeCounts:
    """How many objects each date holds and where they went."""

    before: int
    after: int
    appeared: int
    disappeared: int
    persisting: int
    matched: int
    verified: int

    def as_dict(self) -> dict[str, int]:
        return dataclasses.asdict(self)


@dataclass(frozen=True, slots=True, eq=False)
class ChangeLayers:
    """The change output's tables: the spatial layers (in ``crs``; ``None``: pixel mode) and ``run``."""

    appeared: gpd.GeoDataFrame
    disappeared: gpd.GeoDataFrame
    persisting: gpd.GeoDataFrame
    before: gpd.GeoDataFrame
    after: gpd.GeoDataFrame
    unknown_area: gpd.GeoDataFrame
    run: pd.DataFrame
    crs: CRS | None

    def spatial(self) -> dict[str, gpd.GeoDataFrame]:
        """The spatial layers by name, in :data:`CHANGE_LAYERS` order."""
        return {name: getattr(self, name) for name in CHANGE_LAYERS}


def _unconfirmed(rows: Sequence[int], verified: Sequence[int]) -> list[int]:
    confirmed = set(verified)
    return [int(i) for i in rows if int(i) not in confirmed]


def change_counts(changeset: ChangeSet) -> ChangeCounts:
    """The counts of ``changeset`` (verified objects count as persisting, not as changes)."""
    m = changeset.matches
    verified = len(changeset.verified_appeared) + len(changeset.verified_disappeared)
    return ChangeCounts(
        before=len(changeset.before),
        after=len(changeset.after),
        appeared=len(_unconfirmed(m.appeared, changeset.verified_appeared)),
        disappeared=len(_unconfirmed(m.disappeared, changeset.verified_disappeared)),
        persisting=len(m.pairs) + verified,
        matched=len(m.pairs),
        verified=verified,
    )


def _one_date(frame: gpd.GeoDataFrame, rows: Sequence[int], id_name: str) -> gpd.GeoDataFrame:
    """Rows of a date's layer, ``det_id`` renamed ``id_name``."""
    out = frame.iloc[list(rows)].rename(columns={"det_id": id_name})
    return out.reset_index(drop=True)


def _persisting_part(
    frame: gpd.GeoDataFrame, rows: Sequence[int], columns: Mapping[str, Any]
) -> gpd.GeoDataFrame:
    """``phrase``, ``task``, ``query``, the area and the geometry of ``rows`` of a date's layer, with
    ``columns`` (one value per row, or one for all) added."""
    area = "area_px" if "area_px" in frame.columns else "area_m2"
    part = frame.iloc[list(rows)][["phrase", "task", "query", area, frame.geometry.name]]
    part = part.reset_index(drop=True)
    for name, values in columns.items():
        part[name] = values
    return part


def _persisting(changeset: ChangeSet, before: gpd.GeoDataFrame, after: gpd.GeoDataFrame) -> gpd.GeoDataFrame:
    """Matched pairs (the after polygon) and the objects the other date confirmed (their own polygon)."""
    pairs = changeset.matches.pairs
    b_rows, a_rows = [p[0] for p in pairs], [p[1] for p in pairs]
    va, vd = list(changeset.verified_appeared), list(changeset.verified_disappeared)
    missing = pd.array([pd.NA] * max(len(va), len(vd)), dtype="Int64")
    parts = [
        _persisting_part(
            after,
            a_rows,
            {
                "before_id": b_rows,
                "after_id": a_rows,
                "iou": [p[2] for p in pairs],
                "verified": 0,
                "seen_on": "both",
            },
        ),
        _persisting_part(
            after,
            va,
            {
                "before_id": missing[: len(va)],
                "after_id": va,
                "iou": np.nan,
                "verified": 1,
                "seen_on": "after",
            },
        ),
        _persisting_part(
            before,
            vd,
            {
                "before_id": vd,
                "after_id": missing[: len(vd)],
                "iou": np.nan,
                "verified": 1,
                "seen_on": "before",
            },
        ),
    ]
    area = parts[0].columns[3]
    out = pd.concat(parts, ignore_index=True)
    out = out.astype({"before_id": "Int64", "after_id": "Int64", "iou": "float64", "verified": "int64"})
    geometry = after.geometry.name
    return gpd.GeoDataFrame(out[[*PERSISTING_FIELDS, area, geometry]], geometry=geometry, crs=after.crs)


def _as_multipolygon(geom: BaseGeometry | None) -> BaseGeometry | None:
    """The polygons of ``geom`` as one MultiPolygon (``None`` when it has none)."""
    if geom is None or geom.is_empty:
        return None
    parts = [p for p in shapely.get_parts(geom) if p.geom_type in ("Polygon", "MultiPolygon")]
    polygons = [q for p in parts for q in shapely.get_parts(p) if not q.is_empty]
    return shapely.MultiPolygon(polygons) if polygons else None


def _unknown_frame(geom: BaseGeometry | None, crs: CRS | None) -> gpd.GeoDataFrame:
    multi = _as_multipolygon(geom)
    geoms = np.asarray([multi] if multi is not None else [], dtype=object)
    name, areas = area_column(geoms, crs)
    return gpd.GeoDataFrame({name: areas}, geometry=gpd.GeoSeries(geoms, crs=crs), crs=crs)


def _flat_value(value: Any) -> Any:
    if isinstance(value, enum.Enum):
        return value.value
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, os.PathLike):
        return os.fspath(value)
    if isinstance(value, list | tuple):
        return json.dumps([_flat_value(v) for v in value])
    if value is None or isinstance(value, str | int | float | bool):
        return value
    return str(value)


def _flatten(run: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``run`` as flat columns: value objects and mappings become ``key_field`` columns."""
    out: dict[str, Any] = {}
    for key, value in run.items():
        name = f"{prefix}{key}"
        if dataclasses.is_dataclass(value) and not isinstance(value, type):
            out.update(
                _flatten({f.name: getattr(value, f.name) for f in dataclasses.fields(value)}, f"{name}_")
            )
        elif isinstance(value, Mapping):
            out.update(_flatten(value, f"{name}_"))
        else:
            out[name] = _flat_value(value)
    return out


def _run_frame(changeset: ChangeSet, counts: ChangeCounts, crs: CRS | None) -> pd.DataFrame:
    record = _flatten(changeset.run)
    record.update(crs=crs_text(crs), created=utc_now_iso(), tool_version=__version__)
    record.update({f"n_{k}": v for k, v in counts.as_dict().items()})
    record.setdefault("verification_removed", counts.verified)
    return pd.DataFrame.from_records([record])


def change_layers(changeset: ChangeSet) -> ChangeLayers:
    """Every table of the change output (see the module's description of layers and columns)."""
    crs = crs_or_none(changeset.crs_wkt)
    before = detections_frame(changeset.before, crs=crs)
    after = detections_frame(changeset.after, crs=crs)
    m = changeset.matches
    return ChangeLayers(
        appeared=_one_date(after, _unconfirmed(m.appeared, changeset.verified_appeared), "after_id"),
        disappeared=_one_date(
            before, _unconfirmed(m.disappeared, changeset.verified_disappeared), "before_id"
        ),
        persisting=_persisting(changeset, before, after),
        before=before,
        after=after,
        unknown_area=_unknown_frame(changeset.unknown_area, crs),
        run=_run_frame(changeset, change_counts(changeset), crs),
        crs=crs,
    )
