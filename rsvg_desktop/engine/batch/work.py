"""Producing a batch's work: the inputs still open in the store are opened (one or two ahead, in a
background thread), recorded and georeferenced, tiled as in the geo core, and every (tile, question)
pair not yet in the ledger becomes a :class:`~rsvg_desktop.engine.batch.state.WorkItem` with its
pixels (read one batch ahead). An input that cannot be opened, registered, tiled or read is finished
as ``failed`` and the batch goes on."""

from __future__ import annotations

import functools
import logging
import time
from collections.abc import Generator, Iterator
from dataclasses import dataclass
from typing import Any

from rsvg_desktop.core.geo.grid import plan_tiles
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.batch.config import CPU_BATCH_SIZE
from rsvg_desktop.engine.batch.input_identity import InputIdentity
from rsvg_desktop.engine.batch.state import BatchContext, InputState, WorkItem
from rsvg_desktop.engine.batch.storing import ResultWriter
from rsvg_desktop.engine.events import BatchProgress, Failure, InputFinished, InputStarted
from rsvg_desktop.engine.inputs import Georeferencing, georeference
from rsvg_desktop.engine.prefetch import Prefetch
from rsvg_desktop.errors import SceneError, is_fatal

log = logging.getLogger(__name__)

#: Each tile of an input with the runs (indices) still to answer on it.
Work = list[tuple[Tile, tuple[int, ...]]]
#: Georeferencing of an input that failed before it was georeferenced.
_NO_GEOREF = Georeferencing(None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "none", False)


@dataclass(slots=True)
class _Opened:
    """An input opened ahead: the scene and its grid, or the failure of either step."""

    scene: Any
    plan: Any
    failure: Failure | None


class WorkProducer:
    """Yields the work items of a batch in input order, with the input events between them."""

    def __init__(
        self, ctx: BatchContext, identity: InputIdentity, writer: ResultWriter, assume_crs: str | None
    ) -> None:
        self.ctx = ctx
        self.identity = identity
        self.writer = writer
        self.assume_crs = assume_crs

    def produce(self) -> Generator[WorkItem | InputStarted | InputFinished | BatchProgress, None, None]:
        """Every open (tile, question) pair of every input; an input already done yields its end."""
        c = self.ctx.counters
        # The store says which inputs still have work (main thread: the store is not shared); those
        # are opened and their grids laid one or two inputs ahead in a background thread, so opening
        # many small files overlaps with the model too.
        pending = self._pending()
        opened = Prefetch(self._open(path) for _, path, runs in pending if runs is not None)
        try:
            for index, path, open_runs in pending:
                if open_runs is None:
                    yield self._already_done(path)
                    continue
                t0 = time.perf_counter()
                item = next(opened)
                c.t_read += time.perf_counter() - t0
                yield from self._produce_input(index, path, open_runs, item)
        finally:
            opened.close()
            for left in opened.dropped:
                if left.scene is not None:
                    left.scene.close()

    def _pending(self) -> list[tuple[int, str, tuple[int, ...] | None]]:
        """Each input with the runs still open for it (``None``: all done)."""
        ctx = self.ctx
        pending: list[tuple[int, str, tuple[int, ...] | None]] = []
        for index, path in enumerate(ctx.paths):
            input_id = self.identity.lookup(path)
            runs_left = tuple(range(len(ctx.runs)))
            if input_id is not None:
                status = ctx.store.input_status(input_id, ctx.run_ids)
                runs_left = tuple(i for i, r in enumerate(ctx.run_ids) if status.get(r) != "done")
            pending.append((index, path, runs_left or None))
        return pending

    def _already_done(self, path: str) -> InputFinished:
        ctx, c = self.ctx, self.ctx.counters
        self.identity.forget(path)
        input_id = ctx.store.input_id(path)
        assert input_id is not None  # done inputs are in the store
        c.inputs_already_done += 1
        c.inputs_finished += 1
        c.tiles_already_done += ctx.store.input_tiles_done(input_id, ctx.run_ids)
        self.identity.warn_if_changed(path, input_id)
        return InputFinished(path, "already_done")

    def _open(self, path: str) -> _Opened:
        """Open an input and lay its grid (runs in the read-ahead thread; touches no store)."""
        cfg = self.ctx.config
        try:
            scene = open_scene(path, pixel_mode=True, nodata=cfg.nodata)
        except SceneError as exc:
            return _Opened(None, None, Failure(path, "open", str(exc)))
        try:
            plan = plan_tiles(
                scene,
                tile_size=cfg.tile_size,
                overlap=cfg.overlap,
                target_gsd=cfg.target_gsd,
                max_nodata_fraction=cfg.max_nodata_fraction,
                allow_empty=True,
            )
        except SceneError as exc:
            return _Opened(scene, None, Failure(path, "plan", str(exc)))
        return _Opened(scene, plan, None)

    def _register(self, path: str, info: Any) -> tuple[Georeferencing, int, Any]:
        """Record an opened input in the store and decide its reprojection: its georeferencing, input
        id and the CRS its detections are reprojected to (``None``: none). Anything wrong with this one
        input (a CRS GDAL cannot write or PROJ cannot transform, metadata the store refuses) raises."""
        store = self.ctx.store
        georef = georeference(info, self.assume_crs)
        dst_crs = None
        if not georef.pixel_mode:
            assert georef.crs_wkt is not None
            if store.output_crs_wkt is not None:
                dst_crs = _output_crs_if_different(georef.crs_wkt, store.output_crs_wkt)
                if dst_crs is not None:
                    _check_transformable(georef.crs_wkt, store.output_crs_wkt)
        if not georef.pixel_mode and store.output_crs_wkt is None:
            store.set_output_crs(georef.crs_wkt)  # type: ignore[arg-type]
        input_id = store.add_input(
            self.identity.file_record(
                path,
                driver=info.driver,
                width=info.width,
                height=info.height,
                bands=info.count,
                dtype=info.dtype,
                crs=info.crs_name or (georef.source if georef.crs_wkt else None),
                crs_wkt=georef.crs_wkt,
                transform=georef.transform,
                georef_source=georef.source,
                pixel_mode=georef.pixel_mode,
            )
        )
        if georef.pixel_mode:
            store.prepare_pixel_layers()
            self.ctx.counters.inputs_pixel += 1
        return georef, input_id, dst_crs

    def _produce_input(
        self, index: int, path: str, open_runs: tuple[int, ...], opened: _Opened
    ) -> Iterator[Any]:
        """The work of one opened input (or its failure), between its start and its end."""
        self.ctx.counters.inputs_started += 1
        if opened.scene is None:
            yield from self._fail_unregistered(path, open_runs, opened.failure)
            return
        with opened.scene as scene:
            try:
                georef, input_id, dst_crs = self._register(path, scene.info)
            except Exception as exc:  # this input's CRS or metadata: the input fails, the batch goes on
                if is_fatal(exc):
                    raise
                log.debug("%s: cannot be registered", path, exc_info=True)
                failure = Failure(path, "crs", " ".join(f"{path}: {exc}".split()))
                yield from self._fail_unregistered(path, open_runs, failure)
                return
            state = InputState(path, input_id, georef, dst_crs, open_runs)
            plan = opened.plan
            if plan is None:
                state.read_done, state.failed = True, opened.failure
                yield from self.writer.finish(state)
                return
            work = self._plan_work(state, plan, open_runs)
            yield InputStarted(path, index, state.pairs, plan.n_skipped, georef.pixel_mode, georef.source)
            if not work:
                state.read_done = True
                yield from self.writer.finish(state)
                return
            yield from self._read_items(scene, state, work)

    def _fail_unregistered(
        self, path: str, open_runs: tuple[int, ...], failure: Failure | None
    ) -> Iterator[Any]:
        """Record an input that failed before it was georeferenced, and finish it as failed."""
        input_id = self.ctx.store.add_input(self.identity.file_record(path))
        state = InputState(path, input_id, _NO_GEOREF, None, open_runs, read_done=True, failed=failure)
        yield from self.writer.finish(state)

    def _plan_work(self, state: InputState, plan: Any, open_runs: tuple[int, ...]) -> Work:
        """The kept tiles with the runs not yet answered on them (pairs in the ledger are left out)."""
        ctx, c = self.ctx, self.ctx.counters
        state.tiles_planned, state.skipped = plan.n_kept, plan.skipped
        done = ctx.store.done_windows(state.input_id, [ctx.run_ids[i] for i in open_runs])
        work = [(t, tuple(i for i in open_runs if (ctx.run_ids[i], t.window) not in done)) for t in plan.kept]
        work = [(t, rs) for t, rs in work if rs]
        n_pairs = sum(len(rs) for _, rs in work)
        state.pairs = n_pairs
        c.tiles_already_done += plan.n_kept * len(open_runs) - n_pairs
        c.tiles_known += n_pairs
        c.inputs_planned += 1
        return work

    def _read_items(self, scene: Any, state: InputState, work: Work) -> Iterator[Any]:
        """Read the tiles and yield one item per (tile, run); a read failure fails the input."""
        ctx, c = self.ctx, self.ctx.counters
        # Reads run one batch ahead in a background thread, overlapping with the model; t_read
        # counts only the time spent waiting for them. Without read_tiles the workers read.
        tiles = (scene.read_tile(t) for t, _ in work) if ctx.read_tiles else ((None, None) for _ in work)
        reads = Prefetch(tiles, depth=ctx.batch_size or ctx.config.batch_size or CPU_BATCH_SIZE)
        try:
            for k, (tile, rs) in enumerate(work):
                if state.failed is not None:
                    break
                t0 = time.perf_counter()
                try:
                    image, _valid = next(reads)
                except SceneError as exc:
                    c.t_read += time.perf_counter() - t0
                    state.failed = Failure(state.path, "read", str(exc))
                    break
                c.t_read += time.perf_counter() - t0
                for j, run in enumerate(rs):
                    state.outstanding += 1
                    if k == len(work) - 1 and j == len(rs) - 1:
                        state.read_done = True
                    yield WorkItem(state, tile, image, run)
        finally:
            reads.close()
        state.read_done = True
        if state.ready:  # a read failure with nothing in flight
            yield from self.writer.finish(state)


@functools.lru_cache(maxsize=64)
def _output_crs_if_different(src_wkt: str | None, out_wkt: str | None) -> Any | None:
    """The output CRS when inputs in ``src_wkt`` must be reprojected to it, else ``None`` (cached: an
    archive has few distinct CRSs and parsing WKT costs milliseconds)."""
    from pyproj import CRS

    if src_wkt is None or out_wkt is None:
        return None
    out = CRS.from_wkt(out_wkt)
    return None if CRS.from_wkt(src_wkt).equals(out) else out


@functools.lru_cache(maxsize=64)
def _check_transformable(src_wkt: str, dst_wkt: str) -> None:
    """Raise (pyproj's error) when PROJ cannot transform coordinates from ``src_wkt`` to ``dst_wkt``."""
    from pyproj import CRS, Transformer

    Transformer.from_crs(CRS.from_wkt(src_wkt), CRS.from_wkt(dst_wkt), always_xy=True)
