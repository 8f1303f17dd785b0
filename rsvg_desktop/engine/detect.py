"""The scene job: tiles → batched generation → answer log → polygons → merged export.

:func:`run_scene` is a generator of :mod:`~rsvg_desktop.engine.events`: every yield is a progress
report and a cancellation point (closing the generator, or ``cancel()`` returning true, stops it after
the batch in flight). Whatever happens — success, cancel, an error — the answer log holds every tile
answered so far (one line per tile, flushed as it finishes), and the export at the end is written from
the tiles that finished. The CLI (``rsvg detect``), the model worker process and the GUI drive it.

Per-tile work outside the model is kept small: the prompt template, the processor and the generation
config are built once (in :class:`GeoChatGenerator`); tiles are read with windowed reads one batch ahead
in a background thread (:class:`~rsvg_desktop.engine.prefetch.Prefetch`), so reading overlaps with the
model; polygons are built vectorised per tile; merging runs once at the end.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import shapely

from rsvg_desktop.core.answers import AnswerLogWriter, AnswerRecord
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import DetectionTable, RunInfo, tile_records
from rsvg_desktop.core.geo.export import export_detections, format_for_path
from rsvg_desktop.core.geo.grid import iter_tile_images, plan_tiles
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.paths import refuse_same_file
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.events import (
    Event,
    RunConfig,
    RunFailed,
    RunFinished,
    RunStarted,
    TileDone,
    TileStarted,
)
from rsvg_desktop.engine.prefetch import Prefetch
from rsvg_desktop.engine.results import Georef, detections_for_answer, merged_table
from rsvg_desktop.errors import CancelledError, ConfigError, OutputExistsError, RsvgError, is_fatal

log = logging.getLogger(__name__)


class AnswerGenerator(Protocol):
    """What the job needs of the model: :class:`rsvg_desktop.core.model.generate.GeoChatGenerator`."""

    def generate(
        self, requests: Sequence[Any], *, max_new_tokens: int, batch_size: int | None
    ) -> list[Any]: ...


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


def _prompt_extras(config: RunConfig, random_weights: bool) -> dict[str, object]:
    """What the answer log needs beyond task and query to rebuild the exact prompt."""
    extra: dict[str, object] = {"random_weights": random_weights}
    if config.classes:
        extra["classes"] = list(config.classes)
    if config.region is not None:
        r = config.region
        extra["region"] = [r.x1, r.y1, r.x2, r.y2, r.angle]
    if config.history:
        extra["history"] = [list(turn) for turn in config.history]
    return extra


def new_run_id() -> str:
    return time.strftime("%Y%m%dT%H%M%S") + "-" + uuid.uuid4().hex[:6]


def run_scene(
    config: RunConfig,
    generator: AnswerGenerator,
    *,
    model: str = "",
    precision: str = "",
    device: str = "",
    random_weights: bool = False,
    cancel: Callable[[], bool] | None = None,
) -> Iterator[Event]:
    """Run one question over the tiles of one scene (see the module docs); yields events."""
    if config.output is None:
        raise ConfigError("a run needs an output file (.gpkg, .geojson or .shp)")
    output = Path(config.output)
    format_for_path(output)
    log_path = answer_log_path(output)
    refuse_same_file([output, log_path], [config.scene])
    for path in (output, log_path):
        if path.exists() and not config.overwrite:
            raise OutputExistsError(f"{path} exists (use --overwrite to replace the run's outputs)")
    convention = AngleConvention(config.angle_convention)
    run_id = config.run_id or new_run_id()
    started = time.monotonic()

    with open_scene(config.scene, pixel_mode=config.pixel_mode, bands=config.bands) as scene:
        info = scene.info
        plan = plan_tiles(
            scene,
            tile_size=config.tile_size,
            overlap=config.overlap,
            target_gsd=config.target_gsd,
            max_nodata_fraction=config.max_nodata_fraction,
        )
        todo = tiles_in_scope(plan.kept, config.scope)
        skipped = tiles_in_scope(plan.skipped, config.scope)
        georef = Georef(info.transform if info.crs_wkt is not None else None, info.crs_wkt)
        output.parent.mkdir(parents=True, exist_ok=True)
        if config.overwrite and log_path.exists():
            log_path.unlink()
        yield RunStarted(
            run_id=run_id,
            scene=info.path,
            total=len(todo),
            skipped=len(skipped),
            tiles=todo,
            skipped_tiles=skipped,
            crs_wkt=info.crs_wkt,
            transform=info.transform,
            answer_log=str(log_path),
        )

        from rsvg_desktop.core.model.generate import GenerationRequest  # torch only when running

        tables: list[DetectionTable] = []
        done = failed = 0
        errors: list[str] = []
        cancelled = False
        export_error: str | None = None
        batch_size = max(1, config.batch_size or 4)
        common = dict(
            run_id=run_id,
            model=model,
            precision=precision,
            device=device,
            angle_convention=convention.value,
            crs=info.crs_wkt,
            transform=info.transform,
            pixel_mode=info.crs_wkt is None,
            overlap=config.overlap,
            target_gsd=config.target_gsd,
            max_nodata_fraction=config.max_nodata_fraction,
            extra=_prompt_extras(config, random_weights),
        )
        # Tiles are read one batch ahead in a background thread, overlapping reads with the model.
        images = Prefetch(iter_tile_images(scene, todo), depth=batch_size)
        try:
            with AnswerLogWriter(log_path) as writer:
                while done < len(todo):
                    if cancel is not None and cancel():
                        cancelled = True
                        break
                    batch = [next(images) for _ in range(min(batch_size, len(todo) - done))]
                    yield TileStarted(tuple(t for t, _, _ in batch))
                    requests = [
                        GenerationRequest(
                            image=img,
                            task=config.task,
                            query=config.query,
                            history=config.history,
                            region=config.region,
                            classes=config.classes or None,
                        )
                        for _, img, _ in batch
                    ]
                    results = generator.generate(
                        requests, max_new_tokens=config.max_new_tokens, batch_size=len(requests)
                    )
                    for (tile, _, _), res in zip(batch, results, strict=True):
                        record = writer.write(
                            AnswerRecord.for_tile(
                                info.path,
                                tile,
                                config.task,
                                config.query,
                                res.answer,
                                input_tokens=res.input_tokens,
                                output_tokens=res.output_tokens,
                                seconds=res.seconds,
                                **common,
                            )
                        )
                        table = detections_for_answer(record, res.parsed, georef, convention=convention)
                        tables.append(table)
                        done += 1
                        yield TileDone(
                            tile=tile,
                            answer=res.answer,
                            text=res.parsed.text,
                            phrases=tuple(table.phrase.tolist()),
                            angles=tuple(None if np.isnan(a) else float(a) for a in table.angle),
                            polygons_wkb=tuple(shapely.to_wkb(table.geometry).tolist()) if len(table) else (),
                            done=done,
                            total=len(todo),
                            seconds=res.seconds,
                            input_tokens=res.input_tokens,
                            output_tokens=res.output_tokens,
                        )
        except GeneratorExit:
            cancelled = True
            raise
        except CancelledError:  # cancelled inside a batch: that batch is dropped, the rest is kept
            cancelled = True
        except RsvgError as exc:
            failed += 1
            errors.append(str(exc))
            yield RunFailed(message=str(exc), done=done, answer_log=str(log_path))
            if is_fatal(exc):  # a broken device: the caller (the worker process) must end
                raise
        finally:
            images.close()
            table = DetectionTable.concat(tables) if tables else DetectionTable.empty(convention)
            kept = merged_table(table) if len(table) else table
            answered = {(t.row, t.col) for t in todo[:done]}
            tile_recs = tile_records(
                [t for t in todo if (t.row, t.col) in answered] + list(skipped),
                georef.transform,
                info.crs_wkt,
                skipped={(t.row, t.col): "nodata" for t in skipped},
                run_id=run_id,
            )
            run = RunInfo(
                run_id=run_id,
                scene=info.path,
                model=model,
                precision=precision,
                device=device,
                angle_convention=convention,
                tile_size=config.tile_size,
                overlap=config.overlap,
                target_gsd=config.target_gsd,
                max_nodata_fraction=config.max_nodata_fraction,
                random_weights=random_weights,
                task=config.task,
                query=config.query,
                extra=(
                    ("tiles_done", str(done)),
                    ("tiles_total", str(len(todo))),
                    ("cancelled", str(cancelled)),
                ),
            )
            try:
                export_detections(output, kept, crs=info.crs_wkt, tiles=tile_recs, run=run, overwrite=True)
            except RsvgError as exc:  # the answer log still holds everything: `rsvg export` rebuilds it
                export_error = str(exc)
                log.info(
                    "run %s: writing %s failed (%s); rebuild it with: rsvg export %s -o %s",
                    run_id,
                    output,
                    exc,
                    log_path,
                    output,
                )
                errors.append(str(exc))
            log.info(
                "run %s: %d/%d tiles, %d boxes, %d after merging → %s",
                run_id,
                done,
                len(todo),
                len(table),
                len(kept),
                output,
            )
    yield RunFinished(
        run_id=run_id,
        done=done,
        total=len(todo),
        skipped=len(skipped),
        failed=failed,
        detections=len(kept),
        raw_detections=len(table),
        seconds=time.monotonic() - started,
        cancelled=cancelled,
        output=str(output),
        answer_log=str(log_path),
        errors=tuple(errors),
        export_error=export_error,
    )
