"""``rsvg batch``: GeoChat over whole archives (folders of scenes or pre-cut tiles), offline, resumable.

A batch is a set of inputs (see :mod:`~rsvg_desktop.engine.inputs`) and one or more questions. Each
question is a **run** with a deterministic run id (:func:`run_identity`): a hash of the model's
identity (:func:`model_fingerprint`), the precision, the task, the question (and class list), the full
prompt text and :data:`PROMPT_VERSION`, the tile grid (size, overlap, target GSD), the angle
convention, ``max_new_tokens`` and ``--assume-crs``. Re-running the same command finds the same run
ids in the store and goes on where it stopped; changing any of those starts new run ids next to the
old ones in the same store instead of mixing results.

How work flows
    Inputs are visited in order; an input whose runs are all ``done`` in the store is skipped without
    being opened. Otherwise it is opened (always with pixel mode allowed), georeferenced, tiled as in
    the geo core (:func:`~rsvg_desktop.core.geo.grid.plan_tiles`, nodata tiles skipped), and every
    (tile, question) pair not yet in the store's ledger becomes a request. Requests from consecutive
    inputs fill the same model batch, so a folder of single-tile images runs at full batch size.
    Each batch is answered by the generator, its answers are turned into polygons with the scene job's
    own functions (:func:`~rsvg_desktop.engine.results.detections_for_answer`), and stored in one
    transaction together with the seam-merged detections and status of every input that finished in
    it (:mod:`~rsvg_desktop.engine.store`). The answer log follows the commit.

Failures
    An input that cannot be opened, tiled or read is recorded as ``failed`` (stage ``open``, ``plan``
    or ``read``, with the error) and the batch goes on; what it finished is kept and merged. A batch
    the model fails on (:class:`~rsvg_desktop.errors.GenerationError`) fails the inputs in it (stage
    ``model``); after :data:`MAX_CONSECUTIVE_MODEL_FAILURES` failed batches in a row the batch stops
    (``aborted``). Failed inputs are retried by the next run of the same command.

Memory stays flat: inputs are opened one at a time, tiles are read one at a time, at most one
batch of images is held, and per-tile results go to the store, not to memory.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import itertools
import json
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from collections.abc import Generator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsvg_desktop.core.answers import AnswerRecord
from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.core.geo.detections import tile_records
from rsvg_desktop.core.geo.grid import iter_grid, plan_tiles
from rsvg_desktop.core.geo.scene import open_scene
from rsvg_desktop.core.paths import refuse_same_file, same_file
from rsvg_desktop.core.prompt import IMAGE_TOKEN, LLAVA_V1, build_prompt
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.answerer import Answerer, TileJob, TileReadError
from rsvg_desktop.engine.detect import AnswerGenerator, answer_log_path
from rsvg_desktop.engine.events import (
    DEFAULT_OVERLAP,
    DEFAULT_TILE_SIZE,
    BatchEvent,
    BatchFinished,
    BatchProgress,
    BatchStarted,
    BatchSummary,
    Failure,
    InputFinished,
    InputStarted,
    ModelInfo,
    ModelLoaded,
    ModelSpec,
)
from rsvg_desktop.engine.inputs import (
    Georeferencing,
    Query,
    batch_root,
    content_id,
    expand_inputs,
    georeference,
    parse_crs,
)
from rsvg_desktop.engine.prefetch import Prefetch
from rsvg_desktop.engine.results import Georef, detections_for_answer
from rsvg_desktop.engine.store import BatchStore, InputRecord, RunRecord, TileAnswer
from rsvg_desktop.errors import ConfigError, GenerationError, SceneError, is_fatal

__all__ = [
    "MAX_CONSECUTIVE_MODEL_FAILURES",
    "PROMPT_VERSION",
    "BatchConfig",
    "BatchJob",
    "ModelForBatch",
    "ModelLoader",
    "ModelIdentity",
    "batch_detect",
    "model_fingerprint",
    "run_batch",
    "run_identity",
]

log = logging.getLogger(__name__)

#: Bump when the meaning of a run changes beyond what the prompt text shows (decoding, parsing...).
PROMPT_VERSION = 1
MAX_CONSECUTIVE_MODEL_FAILURES = 3
CPU_BATCH_SIZE = 4


@dataclass(frozen=True, slots=True)
class ModelForBatch:
    """What loading the model gives a batch: the generator, the model's description and the batch size it
    runs at. A batch asks for it through a :data:`ModelLoader`, only when its first batch needs the model."""

    generator: Any
    info: ModelInfo | None = None
    batch_size: int | None = None


#: Loads the model when called; a batch calls it only when it first needs the model.
ModelLoader = Callable[[], ModelForBatch]


# --- configuration and identity ------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BatchConfig:
    """One ``rsvg batch`` command. ``inputs`` are files, folders or globs; ``crs`` fixes the output CRS
    of a new store (default: the first georeferenced input's); ``assume_crs`` georeferences inputs that
    have a world file but no CRS (see :mod:`~rsvg_desktop.engine.inputs`)."""

    inputs: tuple[str, ...]
    queries: tuple[Query, ...]
    output: str
    overwrite: bool = False
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    target_gsd: float | None = None
    max_nodata_fraction: float = 1.0
    batch_size: int | None = None
    max_new_tokens: int = 256
    angle_convention: str = "ccw"
    assume_crs: str | None = None
    crs: str | None = None
    command: str = ""

    def validate(self) -> None:
        """ConfigError for a setting that can never work (checked before anything is opened)."""
        if not self.queries:
            raise ConfigError("no question: give --query or --queries FILE")
        next(iter_grid(1, 1, tile_size=self.tile_size, overlap=self.overlap))  # grid parameters
        if not 0.0 < self.max_nodata_fraction <= 1.0:
            raise ConfigError(f"--max-nodata must be in (0, 1], got {self.max_nodata_fraction}")
        if self.target_gsd is not None and not self.target_gsd > 0:
            raise ConfigError(f"--target-gsd must be positive, got {self.target_gsd}")
        if self.batch_size is not None and self.batch_size < 1:
            raise ConfigError(f"--batch-size must be at least 1, got {self.batch_size}")
        if self.max_new_tokens < 1:
            raise ConfigError(f"--max-new-tokens must be at least 1, got {self.max_new_tokens}")
        AngleConvention(self.angle_convention)


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which model answers: ``model`` (its folder, as recorded), ``model_id`` (content fingerprint),
    the requested ``precision`` and whether its weights are random (the test model)."""

    model: str
    model_id: str
    precision: str
    random_weights: bool = False


def model_fingerprint(model_dir: str | os.PathLike[str]) -> str:
    """A 16-hex fingerprint of a converted model folder, read without loading it.

    From ``rsvg_manifest.json`` (the converter's record of the source files' SHA-256 and the tool
    versions), leaving out when and where it was converted; a folder without a manifest is
    fingerprinted by its ``config.json`` and the names and sizes of its weight files.
    """
    folder = Path(model_dir)
    manifest = folder / "rsvg_manifest.json"
    h = hashlib.sha256()
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise ConfigError(f"{manifest}: unreadable manifest ({exc})") from None
        if isinstance(data, dict):
            data.pop("created", None)
            if isinstance(data.get("source"), dict):
                data["source"].pop("path", None)
        h.update(json.dumps(data, sort_keys=True).encode())
    else:
        config = folder / "config.json"
        if config.is_file():
            h.update(config.read_bytes())
        for p in sorted(folder.glob("*.safetensors")):
            h.update(f"{p.name}:{p.stat().st_size}".encode())
        h.update(str(folder.resolve()).encode())
    return h.hexdigest()[:16]


def run_identity(query: Query, model: ModelIdentity, config: BatchConfig) -> RunRecord:
    """The run of one question: its deterministic id and everything that went into it."""
    prompt = build_prompt(
        query.task, query.query, classes=query.classes or None, image_token=IMAGE_TOKEN, template=LLAVA_V1
    )
    prompt_sha = hashlib.sha256(prompt.encode()).hexdigest()
    assume = parse_crs(config.assume_crs) if config.assume_crs else None
    key = {
        "model_id": model.model_id,
        "precision": model.precision,
        "task": query.task,
        "query": query.query,
        "classes": list(query.classes),
        "prompt_sha256": prompt_sha,
        "prompt_version": PROMPT_VERSION,
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "target_gsd": config.target_gsd,
        "angle_convention": config.angle_convention,
        "max_new_tokens": config.max_new_tokens,
        "assume_crs": assume,
    }
    digest = hashlib.sha256(json.dumps(key, sort_keys=True).encode()).hexdigest()[:12]
    return RunRecord(
        run_id=f"{query.task}-{digest}",
        task=query.task,
        query=query.query,
        classes=query.classes,
        prompt=prompt,
        prompt_sha256=prompt_sha,
        model=model.model,
        model_id=model.model_id,
        precision=model.precision,
        angle_convention=config.angle_convention,
        tile_size=config.tile_size,
        overlap=config.overlap,
        target_gsd=config.target_gsd,
        max_new_tokens=config.max_new_tokens,
        assume_crs=config.assume_crs,
        random_weights=model.random_weights,
    )


# --- per-input state -----------------------------------------------------------------------------
@dataclass(eq=False)
class _Input:
    path: str
    input_id: int
    georef: Georeferencing
    dst_crs: Any | None  # output CRS when it differs from the input's (None: same, or pixel mode)
    runs: tuple[int, ...]  # indices of the runs still open for this input
    tiles_planned: int | None = None  # tiles kept by the plan (None: not tiled)
    skipped: tuple[Tile, ...] = ()
    pairs: int = 0  # (tile, question) pairs open in this session
    outstanding: int = 0  # pairs handed to the model and not yet stored
    read_done: bool = False
    closed: bool = False
    failed: Failure | None = None
    tiles_done: int = 0
    detections: int = 0

    @property
    def ready(self) -> bool:
        return self.read_done and self.outstanding == 0 and not self.closed


@dataclass(frozen=True, eq=False)
class _Item:
    state: _Input
    tile: Tile
    image: Any
    run: int


@dataclass
class _Counters:
    inputs_done: int = 0
    inputs_already_done: int = 0
    inputs_failed: int = 0
    inputs_pixel: int = 0
    inputs_finished: int = 0
    tiles_done: int = 0
    tiles_already_done: int = 0
    tiles_skipped: int = 0
    tiles_failed: int = 0
    tiles_known: int = 0
    inputs_planned: int = 0
    inputs_started: int = 0
    raw_detections: int = 0
    model_failures_in_a_row: int = 0
    failures: list[Failure] = field(default_factory=list)
    t_read: float = 0.0
    t_model: float = 0.0
    t_polygons: float = 0.0
    t_store: float = 0.0
    t_load: float = 0.0


class _Abort(Exception):
    pass


# --- the job -------------------------------------------------------------------------------------
@dataclass(slots=True)
class _Opened:
    """An input opened ahead: the scene and its grid, or the failure of either step."""

    scene: Any
    plan: Any
    failure: Failure | None


class BatchJob:
    """A prepared batch: the configuration checked, the inputs listed, the run store open.

    ``BatchJob(config, model)`` raises :class:`ConfigError` (or another
    :class:`~rsvg_desktop.errors.RsvgError`) for bad arguments before any model is loaded; :meth:`run`
    then yields the events; :meth:`close` (or ``with``) releases the store.
    """

    def __init__(self, config: BatchConfig, model: ModelIdentity, *, read_tiles: bool = True) -> None:
        config.validate()
        self.read_tiles = read_tiles  # False: workers read the tiles (an Answerer gets paths and windows)
        self._keys = itertools.count()
        self._in_flight: dict[int, list[_Item]] = {}
        self.config = config
        self.model = model
        outputs = [Path(config.output), answer_log_path(Path(config.output))]
        # naming the output as an input would replace it; found inside an input folder, it is skipped
        refuse_same_file(outputs, [p for p in config.inputs if Path(p).is_file()])
        self.paths = [p for p in expand_inputs(config.inputs) if not any(same_file(p, o) for o in outputs)]
        self.root = batch_root(self.paths)
        self._content: dict[str, str | None] = {}  # content ids computed by a lookup, until recorded
        self.runs = tuple(run_identity(q, model, config) for q in config.queries)
        self.run_ids = tuple(r.run_id for r in self.runs)
        self.assume_crs = parse_crs(config.assume_crs) if config.assume_crs else None
        out_crs = parse_crs(config.crs) if config.crs else None
        self.output = Path(config.output)
        self.store = BatchStore.open(
            self.output, answer_log_path(self.output), overwrite=config.overwrite, crs_wkt=out_crs
        )
        try:
            for run in self.runs:
                self.store.add_run(run)
        except BaseException:
            self.store.close()
            raise
        self.device = ""
        self.batch_size = config.batch_size or 0
        self._c = _Counters()

    def close(self) -> None:
        self.store.close()

    def __enter__(self) -> BatchJob:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- driving --------------------------------------------------------------------------------
    def run(
        self,
        generator: AnswerGenerator | ModelLoader,
        *,
        cancel: Callable[[], bool] | None = None,
    ) -> Generator[BatchEvent, None, None]:
        """Answer every open (tile, question) pair; yields events, the last one :class:`BatchFinished`.

        ``generator`` is a ready generator, or a function returning a :class:`ModelForBatch`, called
        only when the first batch needs the model (a fully finished batch never loads it).
        """
        c = self._c
        started = time.monotonic()
        session = self.store.start_session(self.config.command)
        yield BatchStarted(
            str(self.output),
            str(self.store.answer_log),
            tuple((r.run_id, r.task, r.query) for r in self.runs),
            len(self.paths),
        )
        gen: Any = generator if hasattr(generator, "generate") else None
        status, message = "complete", ""
        buffer: list[_Item] = []
        producer = self._produce()
        try:
            for obj in producer:
                if not isinstance(obj, _Item):
                    yield obj
                    continue
                buffer.append(obj)
                if gen is None:
                    t0 = time.perf_counter()
                    loaded = generator()  # type: ignore[operator]
                    c.t_load += time.perf_counter() - t0
                    gen = loaded.generator
                    self.device = loaded.info.device_name if loaded.info is not None else ""
                    self.batch_size = self.config.batch_size or loaded.batch_size or CPU_BATCH_SIZE
                    if loaded.info is not None:
                        yield ModelLoaded(loaded.info)
                if len(buffer) >= (self.batch_size or CPU_BATCH_SIZE):
                    batch, buffer = buffer, []
                    yield from self._dispatch(gen, batch)
                    if cancel is not None and cancel():
                        status, message = "cancelled", "cancelled by the user"
                        break
            else:
                if buffer:
                    batch, buffer = buffer, []
                    yield from self._dispatch(gen, batch)
                if isinstance(gen, Answerer):
                    while gen.in_flight:
                        yield from self._collect(gen, block=True)
        except _Abort as exc:
            status, message = "aborted", str(exc)
        except KeyboardInterrupt:
            status, message = "interrupted", "interrupted (Ctrl-C)"
        except GeneratorExit:
            producer.close()
            closed = self._summary("cancelled", "closed", time.monotonic() - started)
            self.store.finish_session(session, "cancelled", closed.to_dict())
            raise
        except Exception as exc:  # the store or the model broke: record how far the session got
            producer.close()
            with contextlib.suppress(Exception):
                broken = self._summary("error", f"{type(exc).__name__}: {exc}", time.monotonic() - started)
                self.store.finish_session(session, "error", broken.to_dict())
            raise
        finally:
            producer.close()
        if status == "complete" and c.inputs_failed:
            status = "partial"
        summary = self._summary(status, message, time.monotonic() - started)
        self.store.finish_session(session, status, summary.to_dict())
        log.info(
            "batch %s: %s, %d pairs answered in %.1f s", self.output, status, c.tiles_done, summary.seconds
        )
        yield BatchFinished(summary)

    # --- inputs → items -------------------------------------------------------------------------
    def _produce(self) -> Generator[_Item | InputStarted | InputFinished | BatchProgress, None, None]:
        c = self._c
        # The store says which inputs still have work (main thread: the store is not shared); those
        # are opened and their grids laid one or two inputs ahead in a background thread, so opening
        # many small files overlaps with the model too.
        pending: list[tuple[int, str, tuple[int, ...] | None]] = []
        for index, path in enumerate(self.paths):
            input_id = self._lookup(path)
            runs_left = tuple(range(len(self.runs)))
            if input_id is not None:
                status = self.store.input_status(input_id, self.run_ids)
                runs_left = tuple(i for i, r in enumerate(self.run_ids) if status.get(r) != "done")
            pending.append((index, path, runs_left or None))
        opened = Prefetch(self._open(path) for _, path, runs in pending if runs is not None)
        try:
            for index, path, open_runs in pending:
                if open_runs is None:
                    self._content.pop(path, None)
                    input_id = self.store.input_id(path)
                    assert input_id is not None  # done inputs are in the store
                    c.inputs_already_done += 1
                    c.inputs_finished += 1
                    c.tiles_already_done += self.store.input_tiles_done(input_id, self.run_ids)
                    self._warn_if_changed(path, input_id)
                    yield InputFinished(path, "already_done")
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

    def _open(self, path: str) -> _Opened:
        """Open an input and lay its grid (runs in the read-ahead thread; touches no store)."""
        cfg = self.config
        try:
            scene = open_scene(path, pixel_mode=True)
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

    def _rel(self, path: str) -> str:
        return Path(os.path.relpath(path, self.root)).as_posix() if self.root else path

    def _content_id(self, path: str) -> str | None:
        if path not in self._content:
            try:
                self._content[path] = content_id(path)
            except OSError:
                self._content[path] = None
        return self._content[path]

    def _lookup(self, path: str) -> int | None:
        """The stored input at ``path``, or the same file stored under another path (moved archive)."""
        return self.store.find_input(path, self._rel(path), lambda: self._content_id(path))

    def _warn_if_changed(self, path: str, input_id: int) -> None:
        try:
            st = os.stat(path)
        except OSError:
            return
        size, mtime = self.store.input_fingerprint(input_id)
        if size is not None and (size, mtime) != (st.st_size, st.st_mtime_ns):
            log.warning(
                "%s changed since it was processed; its stored results are kept (use another output "
                "or --overwrite to redo it)",
                path,
            )

    def _file_record(self, path: str, **kw: Any) -> InputRecord:
        rel = self._rel(path)
        cid = self._content_id(path)
        self._content.pop(path, None)
        try:
            st = os.stat(path)
            size, mtime = st.st_size, st.st_mtime_ns
        except OSError:
            return InputRecord(path=path, size_bytes=None, mtime_ns=None, content_id=cid, rel_path=rel, **kw)
        return InputRecord(path=path, size_bytes=size, mtime_ns=mtime, content_id=cid, rel_path=rel, **kw)

    def _register(self, path: str, info: Any) -> tuple[Georeferencing, int, Any]:
        """Record an opened input in the store and decide its reprojection: its georeferencing, input
        id and the CRS its detections are reprojected to (``None``: none). Anything wrong with this one
        input (a CRS GDAL cannot write or PROJ cannot transform, metadata the store refuses) raises."""
        c = self._c
        georef = georeference(info, self.assume_crs)
        dst_crs = None
        if not georef.pixel_mode:
            assert georef.crs_wkt is not None
            if self.store.output_crs_wkt is not None:
                dst_crs = _output_crs_if_different(georef.crs_wkt, self.store.output_crs_wkt)
                if dst_crs is not None:
                    _check_transformable(georef.crs_wkt, self.store.output_crs_wkt)
        if not georef.pixel_mode and self.store.output_crs_wkt is None:
            self.store.set_output_crs(georef.crs_wkt)  # type: ignore[arg-type]
        input_id = self.store.add_input(
            self._file_record(
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
            self.store.prepare_pixel_layers()
            c.inputs_pixel += 1
        return georef, input_id, dst_crs

    def _produce_input(
        self, index: int, path: str, open_runs: tuple[int, ...], opened: _Opened
    ) -> Iterator[Any]:
        c, cfg = self._c, self.config
        c.inputs_started += 1
        if opened.scene is None:
            input_id = self.store.add_input(self._file_record(path))
            nothing = Georeferencing(None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "none", False)
            state = _Input(path, input_id, nothing, None, open_runs, read_done=True, failed=opened.failure)
            yield from self._finish(state)
            return
        with opened.scene as scene:
            info = scene.info
            try:
                georef, input_id, dst_crs = self._register(path, info)
            except Exception as exc:  # this input's CRS or metadata: the input fails, the batch goes on
                if is_fatal(exc):
                    raise
                log.debug("%s: cannot be registered", path, exc_info=True)
                input_id = self.store.add_input(self._file_record(path))
                nothing = Georeferencing(None, (1.0, 0.0, 0.0, 0.0, 1.0, 0.0), "none", False)
                failure = Failure(path, "crs", " ".join(f"{path}: {exc}".split()))
                state = _Input(path, input_id, nothing, None, open_runs, read_done=True, failed=failure)
                yield from self._finish(state)
                return
            state = _Input(path, input_id, georef, dst_crs, open_runs)
            plan = opened.plan
            if plan is None:
                state.read_done, state.failed = True, opened.failure
                yield from self._finish(state)
                return
            state.tiles_planned, state.skipped = plan.n_kept, plan.skipped
            done = self.store.done_windows(input_id, [self.run_ids[i] for i in open_runs])
            work = [
                (t, tuple(i for i in open_runs if (self.run_ids[i], t.window) not in done)) for t in plan.kept
            ]
            work = [(t, rs) for t, rs in work if rs]
            n_pairs = sum(len(rs) for _, rs in work)
            state.pairs = n_pairs
            before = plan.n_kept * len(open_runs) - n_pairs
            c.tiles_already_done += before
            c.tiles_known += n_pairs
            c.inputs_planned += 1
            yield InputStarted(path, index, n_pairs, plan.n_skipped, georef.pixel_mode, georef.source)
            if not work:
                state.read_done = True
                yield from self._finish(state)
                return
            # Reads run one batch ahead in a background thread, overlapping with the model; t_read
            # counts only the time spent waiting for them. Without read_tiles the workers read.
            tiles = (scene.read_tile(t) for t, _ in work) if self.read_tiles else ((None, None) for _ in work)
            reads = Prefetch(tiles, depth=self.batch_size or cfg.batch_size or CPU_BATCH_SIZE)
            try:
                for k, (tile, rs) in enumerate(work):
                    if state.failed is not None:
                        break
                    t0 = time.perf_counter()
                    try:
                        image, _valid = next(reads)
                    except SceneError as exc:
                        c.t_read += time.perf_counter() - t0
                        state.failed = Failure(path, "read", str(exc))
                        break
                    c.t_read += time.perf_counter() - t0
                    for j, run in enumerate(rs):
                        state.outstanding += 1
                        if k == len(work) - 1 and j == len(rs) - 1:
                            state.read_done = True
                        yield _Item(state, tile, image, run)
            finally:
                reads.close()
            state.read_done = True
            if state.ready:  # a read failure with nothing in flight
                yield from self._finish(state)

    # --- the model and the store ----------------------------------------------------------------
    def _dispatch(self, gen: Any, items: list[_Item]) -> Iterator[Any]:
        """Answer a batch: at once with a generator, or handed to an :class:`Answerer` (several batches
        in flight, stored as they come back, in any order)."""
        if not isinstance(gen, Answerer):
            yield from self._answer(gen, items)
            return
        jobs = []
        for it in items:
            run = self.runs[it.run]
            jobs.append(TileJob(it.state.path, it.tile, run.task, run.query, run.classes))
        key = next(self._keys)
        self._in_flight[key] = items
        gen.submit(key, tuple(jobs))
        while gen.in_flight >= gen.capacity:
            yield from self._collect(gen, block=True)
        yield from self._collect(gen, block=False)

    def _collect(self, gen: Answerer, *, block: bool) -> Iterator[Any]:
        for key, outcome, seconds in gen.collect(block=block):
            items = self._in_flight.pop(key)
            self._c.t_model += seconds
            if isinstance(outcome, GenerationError):
                if is_fatal(outcome):
                    raise outcome
                yield from self._model_failed(items, outcome)
                continue
            self._c.model_failures_in_a_row = 0
            failed = [(it, r) for it, r in zip(items, outcome, strict=True) if isinstance(r, TileReadError)]
            for it, r in failed:
                if it.state.failed is None:
                    it.state.failed = Failure(it.state.path, "read", r.message)
            if failed:
                keep = [
                    (it, r) for it, r in zip(items, outcome, strict=True) if not isinstance(r, TileReadError)
                ]
                for it, _ in failed:
                    it.state.outstanding -= 1
                for state in dict.fromkeys(it.state for it, _ in failed):
                    if state.ready and not any(k.state is state for k, _ in keep):
                        yield from self._finish(state)
                if not keep:
                    continue
                items, outcome = [k for k, _ in keep], [r for _, r in keep]
            yield from self._store(items, outcome)

    def _answer(self, gen: Any, items: list[_Item]) -> Iterator[Any]:
        from rsvg_desktop.core.model.generate import GenerationRequest

        c, cfg = self._c, self.config
        requests = []
        for it in items:
            run = self.runs[it.run]
            requests.append(
                GenerationRequest(image=it.image, task=run.task, query=run.query, classes=run.classes or None)
            )
        t0 = time.perf_counter()
        try:
            results = gen.generate(requests, max_new_tokens=cfg.max_new_tokens, batch_size=len(requests))
        except GenerationError as exc:
            c.t_model += time.perf_counter() - t0
            if is_fatal(exc):  # the device is unusable: stop; finished batches are committed
                raise
            yield from self._model_failed(items, exc)
            return
        c.t_model += time.perf_counter() - t0
        c.model_failures_in_a_row = 0
        yield from self._store(items, results)

    def _store(self, items: list[_Item], results: Sequence[Any]) -> Iterator[Any]:
        """Turn answers into polygons and commit them with the inputs they finish (one transaction)."""
        c, cfg = self._c, self.config

        t0 = time.perf_counter()
        answers: list[TileAnswer] = []
        convention = AngleConvention(cfg.angle_convention)
        # Tile footprints: one vectorised projection per input of the batch, not one per tile.
        footprints: dict[int, Any] = {}
        groups: dict[int, list[int]] = {}
        for k, it in enumerate(items):
            if not it.state.georef.pixel_mode:
                groups.setdefault(id(it.state), []).append(k)
        for idx in groups.values():
            state = items[idx[0]].state
            g = state.georef
            recs = tile_records([items[k].tile for k in idx], g.transform, g.crs_wkt, state.dst_crs)
            footprints.update((k, r.geometry) for k, r in zip(idx, recs, strict=True))
        for k, (it, res) in enumerate(zip(items, results, strict=True)):
            state, run = it.state, self.runs[it.run]
            g = state.georef
            record = AnswerRecord.for_tile(
                state.path,
                it.tile,
                run.task,
                run.query,
                res.answer,
                run_id=run.run_id,
                model=self.model.model,
                precision=self.model.precision,
            )
            table = detections_for_answer(
                record,
                res.parsed,
                Georef(g.transform, g.crs_wkt),
                dst_crs=state.dst_crs,
                convention=convention,
            )
            answers.append(
                TileAnswer(
                    run_id=run.run_id,
                    input_id=state.input_id,
                    scene=state.path,
                    tile=it.tile,
                    answer=res.answer,
                    detections=table,
                    pixel_mode=g.pixel_mode,
                    input_tokens=res.input_tokens,
                    output_tokens=res.output_tokens,
                    seconds=res.seconds,
                    batch_size=getattr(res, "batch_size", len(items)),
                    device=getattr(res, "device", None) or self.device,
                    footprint=footprints.get(k),
                )
            )
        c.t_polygons += time.perf_counter() - t0

        t0 = time.perf_counter()
        finished: list[_Input] = []
        with self.store.transaction():
            self.store.add_answers(answers, self.store.output_crs)
            for it, a in zip(items, answers, strict=True):
                it.state.outstanding -= 1
                it.state.tiles_done += 1
                it.state.detections += len(a.detections)
            for state in dict.fromkeys(it.state for it in items):
                if state.ready:
                    finished.append(state)
                    self._finish_in_txn(state)
        c.t_store += time.perf_counter() - t0
        c.tiles_done += len(items)
        c.raw_detections += sum(len(a.detections) for a in answers)
        for state in finished:
            yield self._finished_event(state)
        yield self._progress(items[-1].state.path)

    def _model_failed(self, items: list[_Item], exc: GenerationError) -> Iterator[Any]:
        c = self._c
        c.model_failures_in_a_row += 1
        log.error("the model failed on a batch of %d: %s", len(items), exc)
        states = list(dict.fromkeys(it.state for it in items))
        for it in items:
            it.state.outstanding -= 1
        for state in states:
            if state.failed is None:
                state.failed = Failure(state.path, "model", str(exc))
            if state.ready:
                yield from self._finish(state)
        if c.model_failures_in_a_row >= MAX_CONSECUTIVE_MODEL_FAILURES:
            raise _Abort(
                f"the model failed on {c.model_failures_in_a_row} batches in a row (last: {exc}); "
                "rerun the same command to resume"
            )

    def _finish(self, state: _Input) -> Iterator[Any]:
        t0 = time.perf_counter()
        with self.store.transaction():
            self._finish_in_txn(state)
        self._c.t_store += time.perf_counter() - t0
        yield self._finished_event(state)
        yield self._progress(state.path)

    def _finish_in_txn(self, state: _Input) -> None:
        c = self._c
        if state.closed:
            return
        state.closed = True
        skipped = []
        if state.skipped:
            g = state.georef
            reasons = dict.fromkeys(((t.row, t.col) for t in state.skipped), "nodata")
            skipped = tile_records(
                list(state.skipped),
                None if g.pixel_mode else g.transform,
                g.crs_wkt,
                state.dst_crs,
                skipped=reasons,
            )
        status = "failed" if state.failed is not None else "done"
        f = state.failed
        for i in state.runs:
            self.store.finish_input(
                self.run_ids[i],
                state.input_id,
                state.path,
                status=status,
                pixel_mode=state.georef.pixel_mode,
                tiles_planned=state.tiles_planned,
                skipped=skipped,
                stage=f.stage if f is not None else None,
                reason=f.reason if f is not None else None,
                angle_convention=self.config.angle_convention,
            )
        c.inputs_finished += 1
        c.tiles_skipped += len(state.skipped) * len(state.runs)
        if f is not None:
            c.tiles_failed += max(state.pairs - state.tiles_done, 0)
            c.inputs_failed += 1
            c.failures.append(f)
            log.warning("%s failed (%s): %s", state.path, f.stage, f.reason)
        else:
            c.inputs_done += 1

    def _finished_event(self, state: _Input) -> InputFinished:
        f = state.failed
        return InputFinished(
            state.path,
            "failed" if f else "done",
            state.tiles_done,
            state.detections,
            f.stage if f is not None else None,
            f.reason if f is not None else None,
        )

    def _progress(self, path: str) -> BatchProgress:
        """Progress, with the pairs still to come estimated from the inputs tiled so far."""
        c = self._c
        remaining = len(self.paths) - c.inputs_already_done - c.inputs_started
        per_input = c.tiles_known / c.inputs_planned if c.inputs_planned else 1.0
        expected = c.tiles_known + round(max(remaining, 0) * per_input)
        return BatchProgress(
            c.tiles_done,
            max(expected, c.tiles_done),
            c.inputs_finished,
            len(self.paths),
            c.raw_detections,
            path,
        )

    def _summary(self, status: str, message: str, seconds: float) -> BatchSummary:
        c = self._c
        working = seconds - c.t_load
        totals = self.store.totals(self.run_ids)
        return BatchSummary(
            status=status,
            output=str(self.output),
            answer_log=str(self.store.answer_log),
            runs=tuple({"run_id": r.run_id, "task": r.task, "query": r.query} for r in self.runs),
            model=self.model.model,
            precision=self.model.precision,
            device=self.device,
            batch_size=self.batch_size,
            inputs_total=len(self.paths),
            inputs_done=c.inputs_done,
            inputs_already_done=c.inputs_already_done,
            inputs_failed=c.inputs_failed,
            inputs_pixel_mode=c.inputs_pixel,
            tiles_done=c.tiles_done,
            tiles_already_done=c.tiles_already_done,
            tiles_skipped_nodata=c.tiles_skipped,
            tiles_failed=c.tiles_failed,
            raw_detections=c.raw_detections,
            detections=totals.detections,
            store_tiles_done=totals.tiles_done,
            failures=tuple(c.failures),
            seconds=round(seconds, 3),
            tiles_per_second=round(c.tiles_done / working, 3) if working > 0 else 0.0,
            timings={
                "load": round(c.t_load, 3),
                "read": round(c.t_read, 3),
                "model": round(c.t_model, 3),
                "polygons": round(c.t_polygons, 3),
                "store": round(c.t_store, 3),
            },
            message=message,
        )


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


# --- entry points --------------------------------------------------------------------------------
def run_batch(
    config: BatchConfig,
    generator: AnswerGenerator | ModelLoader,
    *,
    model: ModelIdentity,
    cancel: Callable[[], bool] | None = None,
) -> Generator[BatchEvent, None, None]:
    """Prepare and run a batch with a given generator (see :class:`BatchJob`); yields its events."""
    job = BatchJob(config, model)
    try:
        yield from job.run(generator, cancel=cancel)
    finally:
        job.close()


def batch_detect(
    config: BatchConfig, spec: ModelSpec, *, cancel: Callable[[], bool] | None = None
) -> Generator[BatchEvent, None, None]:
    """``rsvg batch``: check the arguments and open the store, then load the model (only when some
    pair is still open) and run; yields :class:`ModelLoaded` before the first batch."""
    from rsvg_desktop.core.model.loader import read_random_weights_flag
    from rsvg_desktop.engine.model_jobs import check_question, run_precision

    model_dir = Path(spec.model_dir)
    for q in config.queries:  # every question fits the model's context, checked before any load
        check_question(
            model_dir, task=q.task, query=q.query, classes=q.classes, max_new_tokens=config.max_new_tokens
        )
    identity = ModelIdentity(
        model=str(model_dir),
        model_id=model_fingerprint(model_dir),
        precision=run_precision(spec),
        random_weights=read_random_weights_flag(model_dir),
    )

    def load() -> ModelForBatch:
        from rsvg_desktop.core.model.generate import GeoChatGenerator, auto_batch_size
        from rsvg_desktop.core.model.loader import load_model
        from rsvg_desktop.engine.model_jobs import load_spec, model_info

        loaded = load_model(load_spec(spec))
        gen = GeoChatGenerator(loaded, compiled=spec.compiled)
        if cancel is not None:
            gen.should_stop = cancel
        size = config.batch_size or auto_batch_size(loaded, config.max_new_tokens)
        return ModelForBatch(gen, model_info(loaded), size)

    yield from run_batch(config, load, model=identity, cancel=cancel)


def summary_json(summary: BatchSummary, **extra: Any) -> str:
    """The summary as one line of JSON (``extra`` keys added, e.g. the exit status)."""
    return json.dumps({**summary.to_dict(), **extra}, ensure_ascii=False)
