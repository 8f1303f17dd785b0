"""Scene jobs that need no model: describe a scene, write its tile grid."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from rsvg_desktop.core.geo.detections import tile_records
from rsvg_desktop.core.geo.export import ExportResult, export_tiles
from rsvg_desktop.core.geo.grid import TilePlan, plan_tiles
from rsvg_desktop.core.geo.scene import SceneInfo, open_scene
from rsvg_desktop.core.paths import refuse_same_file
from rsvg_desktop.engine.events import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE


@dataclass(frozen=True, slots=True)
class SceneSummary:
    """A scene's description and its tile grid at the given settings."""

    info: SceneInfo
    plan: TilePlan


def describe_scene(
    path: str | os.PathLike[str],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    target_gsd: float | None = None,
    pixel_mode: bool = False,
    bands: tuple[int, ...] | None = None,
    max_nodata_fraction: float = 1.0,
    nodata: float | None = None,
) -> SceneSummary:
    """Open a scene and lay its tile grid (reads only a decimated validity mask, never all pixels).

    A scene with no valid pixel gives a plan with zero kept tiles (not an error) so it can be described.
    ``nodata``: the user's nodata value (``--nodata``, see :func:`open_scene`).
    """
    with open_scene(path, pixel_mode=pixel_mode, bands=bands, nodata=nodata) as scene:
        plan = plan_tiles(
            scene,
            tile_size=tile_size,
            overlap=overlap,
            target_gsd=target_gsd,
            max_nodata_fraction=max_nodata_fraction,
            allow_empty=True,
        )
        return SceneSummary(scene.info, plan)


def write_tile_grid(
    path: str | os.PathLike[str],
    output: str | os.PathLike[str],
    *,
    tile_size: int = DEFAULT_TILE_SIZE,
    overlap: int = DEFAULT_OVERLAP,
    target_gsd: float | None = None,
    pixel_mode: bool = False,
    max_nodata_fraction: float = 1.0,
    overwrite: bool = False,
    fmt: str | None = None,
    nodata: float | None = None,
) -> tuple[SceneSummary, ExportResult]:
    """Write the scene's tile footprints (skipped nodata tiles flagged) as a vector file."""
    refuse_same_file([output], [path])
    summary = describe_scene(
        path,
        tile_size=tile_size,
        overlap=overlap,
        target_gsd=target_gsd,
        pixel_mode=pixel_mode,
        max_nodata_fraction=max_nodata_fraction,
        nodata=nodata,
    )
    info, plan = summary.info, summary.plan
    transform = info.transform if info.crs_wkt is not None else None
    skipped = {(t.row, t.col): "nodata" for t in plan.skipped}
    records = tile_records(plan.tiles, transform, info.crs_wkt, skipped=skipped)
    result = export_tiles(Path(output), records, crs=info.crs_wkt, overwrite=overwrite, fmt=fmt)
    return summary, result
