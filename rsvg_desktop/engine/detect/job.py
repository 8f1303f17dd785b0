"""The scene job's loop: plan, read ahead, answer batch by batch, finish (see the package docs)."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator

import numpy as np

from rsvg_desktop.core.answers import AnswerLogWriter
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.grid import iter_tile_images
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.detect.answering import AnswerGenerator, TileQuestion
from rsvg_desktop.engine.detect.finishing import RunTally, finished_event, write_export
from rsvg_desktop.engine.detect.planning import (
    ModelFacts,
    RunPlan,
    checked_outputs,
    make_room,
    new_run_id,
    plan_run,
)
from rsvg_desktop.engine.detect.recording import AnswerRecorder
from rsvg_desktop.engine.detect.resuming import resumed_plan
from rsvg_desktop.engine.events import Event, RunConfig, RunFailed, TileStarted
from rsvg_desktop.engine.prefetch import Prefetch
from rsvg_desktop.errors import CancelledError, RsvgError, is_fatal


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
    """Run one question over the tiles of one scene (see the package docs); yields events."""
    outputs = checked_outputs(config)
    convention = AngleConvention(config.angle_convention)
    run_id = config.run_id or new_run_id()
    started = time.monotonic()
    facts = ModelFacts(model, precision, device, random_weights)

    with open_scene(
        config.scene,
        pixel_mode=config.pixel_mode,
        bands=config.bands,
        nodata=config.nodata,
        warp_to=config.warp_to,
    ) as scene:
        plan = plan_run(scene, config, run_id=run_id, outputs=outputs, convention=convention, facts=facts)
        make_room(plan)
        plan, reused_tables = resumed_plan(plan)
        yield plan.started()

        question = TileQuestion(generator, config)
        recorder = AnswerRecorder(plan)
        tally = RunTally(tables=reused_tables)
        # Tiles are read one batch ahead in a background thread, overlapping reads with the model.
        images = Prefetch(iter_tile_images(scene, plan.todo), depth=plan.batch_size)
        try:
            with AnswerLogWriter(plan.answer_log) as writer:
                yield from _answer_tiles(plan, images, question, recorder, writer, tally, cancel)
        except (GeneratorExit, KeyboardInterrupt):  # closed, or Ctrl-C while a batch was answered
            tally.cancelled = True
            raise
        except CancelledError:  # cancelled inside a batch: that batch is dropped, the rest is kept
            tally.cancelled = True
        except RsvgError as exc:
            tally.failed += 1
            tally.errors.append(str(exc))
            yield RunFailed(message=str(exc), done=tally.done, answer_log=str(plan.answer_log))
            if is_fatal(exc):  # a broken device: the caller (the worker process) must end
                raise
        finally:
            images.close()
            exported = write_export(plan, tally)
    yield finished_event(plan, tally, exported, seconds=time.monotonic() - started)


def _answer_tiles(
    plan: RunPlan,
    images: Prefetch[tuple[Tile, np.ndarray, np.ndarray]],
    question: TileQuestion,
    recorder: AnswerRecorder,
    writer: AnswerLogWriter,
    tally: RunTally,
    cancel: Callable[[], bool] | None,
) -> Iterator[Event]:
    """Batch by batch until every tile is answered or ``cancel()`` says stop (checked between batches).

    Each answer is logged, its polygons kept in ``tally`` and its event yielded before the next one.
    """
    total = len(plan.todo)
    while tally.done < total:
        if cancel is not None and cancel():
            tally.cancelled = True
            return
        batch = [next(images) for _ in range(min(plan.batch_size, total - tally.done))]
        yield TileStarted(tuple(t for t, _, _ in batch))
        results = question.ask([img for _, img, _ in batch])
        for (tile, _, _), result in zip(batch, results, strict=True):
            table = recorder.record(writer, tile, result)
            tally.tables.append(table)
            tally.done += 1
            yield recorder.tile_done(tile, result, table, tally.done)
