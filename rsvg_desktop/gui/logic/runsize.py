"""How big a run is before it starts (Qt-free): a small tile with a large overlap makes tens of
thousands of tiles, which the app asks about first."""

from __future__ import annotations

from collections.abc import Iterable

from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.detect import tiles_in_scope

__all__ = ["LARGE_RUN_TILES", "count_in_scope", "large_run_question"]

#: A run of more tiles than this asks before it starts.
LARGE_RUN_TILES = 2000


def count_in_scope(tiles: Iterable[Tile], scope: tuple[int, int, int, int] | None) -> int:
    """How many of ``tiles`` a run with ``scope`` (pixel window ``col_off, row_off, width, height``;
    None: the whole scene) sends to the model: the scene job's own choice, counted."""
    return len(tiles_in_scope(tuple(tiles), scope))


def large_run_question(
    n_tiles: int, tile_size: int, overlap: int, *, limit: int = LARGE_RUN_TILES
) -> str | None:
    """The question to ask before a run of ``n_tiles`` tiles, or None when it is not large."""
    if n_tiles <= limit:
        return None
    step = tile_size - overlap
    why = (
        f" Tiles of {tile_size} px overlapping by {overlap} px advance only {step} px at a time: "
        "a smaller overlap (Ask panel, Tiles) makes far fewer tiles."
        if overlap * 2 > tile_size
        else " A smaller scope (visible extent or a drawn rectangle) or larger tiles make fewer."
    )
    return f"This run sends {n_tiles:,} tiles to the model, one at a time; it may take a very long time.{why}"
