"""Two dates of one place: one grid for both, the area they share, their residual shift, and the
one-to-one matching of their objects. Pure geometry and scene reading; no model (see docs/change.md)."""

from rsvg_desktop.core.geo.change.types import ChangeSet, CommonArea, Matches, ShiftEstimate, TargetGrid

__all__ = ["ChangeSet", "CommonArea", "Matches", "ShiftEstimate", "TargetGrid"]
