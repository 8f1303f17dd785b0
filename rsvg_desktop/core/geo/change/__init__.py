"""Two dates of one place: one grid for both, the area they share, their residual shift, and the
one-to-one matching of their objects. Pure geometry and scene reading; no model (see docs/change.md).

Modules: ``types`` (the values passed between the steps), ``grid`` (choosing the comparison grid;
scenes are read on it with ``open_scene(warp_to=grid)``), ``overlap`` (the common area), ``shift`` and
``phase`` (the residual shift, by phase correlation), ``matching`` (one-to-one matching by IoU).
"""

from rsvg_desktop.core.geo.change.grid import GRID_CHOICES, choose_grid, scene_grid
from rsvg_desktop.core.geo.change.matching import DEFAULT_MIN_IOU, match_objects, phrase_key
from rsvg_desktop.core.geo.change.overlap import DEFAULT_MAX_PIXELS, common_area
from rsvg_desktop.core.geo.change.shift import estimate_shift, shift_warning_px
from rsvg_desktop.core.geo.change.types import ChangeSet, CommonArea, Matches, ShiftEstimate, TargetGrid

__all__ = [
    "DEFAULT_MAX_PIXELS",
    "DEFAULT_MIN_IOU",
    "GRID_CHOICES",
    "ChangeSet",
    "CommonArea",
    "Matches",
    "ShiftEstimate",
    "TargetGrid",
    "choose_grid",
    "common_area",
    "estimate_shift",
    "match_objects",
    "phrase_key",
    "scene_grid",
    "shift_warning_px",
]
