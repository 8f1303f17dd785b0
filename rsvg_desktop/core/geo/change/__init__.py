"""Two dates of one place: one grid for both, the area they share, their residual shift, and the
one-to-one matching of their objects. Pure geometry and scene reading; no model (see docs/change.md)."""

from rsvg_desktop.core.geo.change.matching import DEFAULT_MIN_IOU, match_objects, phrase_key
from rsvg_desktop.core.geo.change.types import ChangeSet, CommonArea, Matches, ShiftEstimate, TargetGrid

__all__ = [
    "DEFAULT_MIN_IOU",
    "ChangeSet",
    "CommonArea",
    "Matches",
    "ShiftEstimate",
    "TargetGrid",
    "match_objects",
    "phrase_key",
]
