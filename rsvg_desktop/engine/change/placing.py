"""Putting the two dates on one grid: whose grid, the area both cover, and their residual shift.

Both scenes are opened (no pixels read) to choose the grid; then both are read on it — the other date
through a ``WarpedVRT``, never a warped copy — to find where both hold valid pixels and how far apart the
dates are on that area (phase correlation on a decimated read). See :mod:`rsvg_desktop.core.geo.change`.
"""

from __future__ import annotations

from dataclasses import dataclass

from rsvg_desktop.core.geo.change.types import CommonArea, ShiftEstimate, TargetGrid
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.engine.change.config import ChangeConfig
from rsvg_desktop.engine.change.dates import open_on_grid
from rsvg_desktop.errors import ChangeInputError


@dataclass(frozen=True, slots=True)
class Placement:
    grid: TargetGrid
    area: CommonArea
    shift: ShiftEstimate


def place_dates(config: ChangeConfig) -> Placement:
    """The comparison grid (``config.grid``'s), the common area and the residual shift.

    Raises :class:`ChangeInputError` when the scenes do not overlap, when one has a CRS and the other
    not, or when they share no valid pixel."""
    from rsvg_desktop.core.geo.change.grid import choose_grid
    from rsvg_desktop.core.geo.change.overlap import common_area
    from rsvg_desktop.core.geo.change.shift import estimate_shift

    with (
        open_scene(config.before, pixel_mode=config.pixel_mode, nodata=config.nodata) as before,
        open_scene(config.after, pixel_mode=config.pixel_mode, nodata=config.nodata) as after,
    ):
        grid = choose_grid(before.info, after.info, which=config.grid)
    with open_on_grid(config, "before", grid) as before, open_on_grid(config, "after", grid) as after:
        area = common_area(before, after)
        if area.compared.is_empty or area.compared_fraction <= 0:
            raise ChangeInputError(
                f"{config.before} and {config.after}: the scenes share no valid pixels; nothing to compare"
            )
        shift = estimate_shift(before, after, area)
    return Placement(grid, area, shift)
