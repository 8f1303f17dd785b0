"""Planning a scene run: where its outputs go, which tiles it asks about, what it records of itself.

Everything here happens before the first tile is read: the outputs are checked (and refused when they
exist and the run may not overwrite them), the tile grid is laid and cut to the scope, and the facts the
run writes with every answer (run id, model, precision, device) are fixed in one :class:`RunPlan`.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass
from pathlib import Path

from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.export import format_for_path
from rsvg_desktop.core.geo.grid import plan_tiles
from rsvg_desktop.core.geo.scene import Scene, SceneInfo
from rsvg_desktop.core.paths import refuse_same_file
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.events import RunConfig, RunStarted
from rsvg_desktop.engine.preflight import check_output_name
from rsvg_desktop.engine.results import Georef
from rsvg_desktop.errors import ConfigError, OutputExistsError


def answer_log_path(output: str | Path) -> Path:
    """The answer log written next to an output: ``out.gpkg`` → ``out.answers.jsonl``."""
    out = Path(output)
    stem = out.name[: -len(out.suffix)] if out.suffix else out.name
    return out.with_name(f"{stem}.answers.jsonl")


def tiles_in_scope(tiles: tuple[Tile, ...], scope: tuple[int, int, int, int] | None) -> tuple[Tile, ...]:
    """Tiles whose window intersects the pixel window ``scope`` (all tiles when ``None``)."""
    if scope is None:
        return tiles
    c0, r0, w, h = scope
    if w <= 0 or h <= 0:
        raise ConfigError(f"the scope window must have a positive size, got {scope}")
    return tuple(
        t
        for t in tiles
        if t.col_off < c0 + w
        and t.col_off + t.width > c0
        and t.row_off < r0 + h
        and t.row_off + t.height > r0
    )


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def checked_outputs(config: RunConfig) -> tuple[Path, Path]:
    """The run's output and its answer log; refused when the output is missing or of an unknown format,
    when either would replace the scene, or when either exists and ``config.overwrite`` is not set (a
    run that writes no export may find its output there; a resumed run, its answer log)."""
    if config.output is None:
        raise ConfigError("a run needs an output file (.gpkg, .geojson or .shp)")
    check_output_name(config.output)  # ".": no answer log can be named after it
    output = Path(config.output)
    format_for_path(output)
    log_path = answer_log_path(output)
    refuse_same_file([output, log_path], [config.scene])
    written = ([output] if config.export else []) + ([] if config.resume else [log_path])
    for path in written:
        if path.exists() and not config.overwrite:
            raise OutputExistsError(f"{path} exists (use --overwrite to replace the run's outputs)")
    return output, log_path


@dataclass(frozen=True, slots=True)
class ModelFacts:
    """The model that answers, as the answer log and the export's run table record it."""

    model: str
    precision: str
    device: str
    random_weights: bool


@dataclass(frozen=True, slots=True)
class RunPlan:
    """What a scene run fixed before its first tile: settings, outputs, scene, tiles and model facts."""

    config: RunConfig
    run_id: str
    output: Path
    answer_log: Path
    convention: AngleConvention
    facts: ModelFacts
    info: SceneInfo
    todo: tuple[Tile, ...]  # the tiles asked about, in reading order
    skipped: tuple[Tile, ...]  # tiles in scope skipped as nodata
    georef: Georef
    reused: tuple[Tile, ...] = ()  # tiles a resumed run's answer log already answers (not asked)

    @property
    def batch_size(self) -> int:
        """Tiles asked about together (and read ahead)."""
        return max(1, self.config.batch_size or 4)

    def started(self) -> RunStarted:
        info = self.info
        return RunStarted(
            run_id=self.run_id,
            scene=info.path,
            total=len(self.todo),
            skipped=len(self.skipped),
            tiles=self.todo,
            skipped_tiles=self.skipped,
            crs_wkt=info.crs_wkt,
            transform=info.transform,
            answer_log=str(self.answer_log),
            reused=len(self.reused),
        )


def plan_run(
    scene: Scene,
    config: RunConfig,
    *,
    run_id: str,
    outputs: tuple[Path, Path],
    convention: AngleConvention,
    facts: ModelFacts,
) -> RunPlan:
    """Lay the open scene's tile grid and keep the tiles in ``config.scope`` (or ask about
    ``config.tile`` alone)."""
    info = scene.info
    todo: tuple[Tile, ...]
    skipped: tuple[Tile, ...]
    if config.tile is not None:
        todo, skipped = (config.tile,), ()
    else:
        grid = plan_tiles(
            scene,
            tile_size=config.tile_size,
            overlap=config.overlap,
            target_gsd=config.target_gsd,
            max_nodata_fraction=config.max_nodata_fraction,
        )
        todo, skipped = tiles_in_scope(grid.kept, config.scope), tiles_in_scope(grid.skipped, config.scope)
    output, log_path = outputs
    return RunPlan(
        config=config,
        run_id=run_id,
        output=output,
        answer_log=log_path,
        convention=convention,
        facts=facts,
        info=info,
        todo=todo,
        skipped=skipped,
        georef=Georef(info.transform if info.crs_wkt is not None else None, info.crs_wkt),
    )


def make_room(plan: RunPlan) -> None:
    """The output's folder exists, and an overwritten run's old answer log is gone."""
    plan.output.parent.mkdir(parents=True, exist_ok=True)
    if plan.config.overwrite and plan.answer_log.exists():
        plan.answer_log.unlink()
