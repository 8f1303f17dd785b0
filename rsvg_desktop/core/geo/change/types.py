"""The values a two-date comparison passes between its steps (and between core, engine and the writers).

All geometry is in the comparison grid's CRS (scene pixels, y down, in pixel mode). Indices refer to
rows of the two dates' merged :class:`~rsvg_desktop.core.geo.detections.DetectionTable`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from shapely.geometry.base import BaseGeometry

from rsvg_desktop.core.geo.detections import DetectionTable

__all__ = ["ChangeSet", "CommonArea", "Matches", "ShiftEstimate", "TargetGrid"]

Affine6 = tuple[float, float, float, float, float, float]


@dataclass(frozen=True, slots=True)
class TargetGrid:
    """The pixel grid both dates are read on: one scene's own grid; the other scene is warped onto it.

    ``transform`` holds rasterio's affine coefficients ``(a, b, c, d, e, f)``; ``crs_wkt`` is ``None`` in
    pixel mode. ``source`` says whose grid it is (``"before"`` or ``"after"``).
    """

    crs_wkt: str | None
    transform: Affine6
    width: int
    height: int
    source: str = "before"


@dataclass(frozen=True, slots=True)
class CommonArea:
    """Where both dates hold valid pixels (``compared``) and the rest of the grid's extent (``unknown``)."""

    compared: BaseGeometry
    unknown: BaseGeometry
    compared_fraction: float


@dataclass(frozen=True, slots=True)
class ShiftEstimate:
    """The residual shift of the after date against the before date on the common grid, in grid pixels
    (positive ``dx``: after is displaced to the right; positive ``dy``: downwards)."""

    dx: float
    dy: float
    confidence: float

    @property
    def magnitude(self) -> float:
        return math.hypot(self.dx, self.dy)


@dataclass(frozen=True, slots=True)
class Matches:
    """One-to-one matching of the two dates' objects: ``pairs`` holds ``(before row, after row, IoU)``;
    ``appeared`` the after rows left unmatched, ``disappeared`` the before rows left unmatched."""

    pairs: tuple[tuple[int, int, float], ...]
    appeared: tuple[int, ...]
    disappeared: tuple[int, ...]


@dataclass(frozen=True, slots=True)
class ChangeSet:
    """Everything the change writers need: the two dates' merged objects, their matching, which unmatched
    objects the other date confirmed (they become ``persisting`` with ``verified`` set), the unknown
    area, the grid's CRS and the run's facts (scenes, grid, shift, model, precision, thresholds, counts)."""

    before: DetectionTable
    after: DetectionTable
    matches: Matches
    verified_disappeared: tuple[int, ...] = ()
    verified_appeared: tuple[int, ...] = ()
    unknown_area: BaseGeometry | None = None
    crs_wkt: str | None = None
    run: Mapping[str, Any] = field(default_factory=dict)
