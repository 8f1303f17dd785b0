"""The batch job: :class:`BatchJob` drives the producer of work, the model and the store, and records
the session; :func:`run_batch` runs one with a given generator and :func:`batch_detect` is ``rsvg
batch`` (checks, then the model loaded only when some pair is still open)."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Generator, Iterator
from pathlib import Path
from typing import Any

from rsvg_desktop.core.paths import refuse_same_file, same_file
from rsvg_desktop.engine.batch.config import (
    CPU_BATCH_SIZE,
    BatchConfig,
    ModelForBatch,
    ModelIdentity,
    ModelLoader,
)
from rsvg_desktop.engine.batch.dispatch import BatchAborted, Dispatcher
from rsvg_desktop.engine.batch.identity import model_fingerprint, run_identity
from rsvg_desktop.engine.batch.input_identity import InputIdentity
from rsvg_desktop.engine.batch.state import BatchContext, WorkItem
from rsvg_desktop.engine.batch.store import BatchStore
from rsvg_desktop.engine.batch.storing import ResultWriter
from rsvg_desktop.engine.batch.summary import batch_summary
from rsvg_desktop.engine.batch.work import WorkProducer
from rsvg_desktop.engine.detect import AnswerGenerator, answer_log_path
from rsvg_desktop.engine.events import BatchEvent, BatchFinished, BatchStarted, ModelLoaded, ModelSpec
from rsvg_desktop.engine.inputs import batch_root, expand_inputs, parse_crs

log = logging.getLogger(__name__)


class BatchJob:
    """A prepared batch: the configuration checked, the inputs listed, the run store open.

    ``BatchJob(config, model)`` raises :class:`ConfigError` (or another
    :class:`~rsvg_desktop.errors.RsvgError`) for bad arguments before any model is loaded; :meth:`run`
    then yields the events; :meth:`close` (or ``with``) releases the store.
    """

    def __init__(self, config: BatchConfig, model: ModelIdentity, *, read_tiles: bool = True) -> None:
        config.validate()
        self.config = config
        self.model = model
        self.output = Path(config.output)
        outputs = [self.output, answer_log_path(self.output)]
        # naming the output as an input would replace it; found inside an input folder, it is skipped
        refuse_same_file(outputs, [p for p in config.inputs if Path(p).is_file()])
        self.paths = [p for p in expand_inputs(config.inputs) if not any(same_file(p, o) for o in outputs)]
        self.root = batch_root(self.paths)
        self.runs = tuple(run_identity(q, model, config) for q in config.queries)
        self.run_ids = tuple(r.run_id for r in self.runs)
        assume_crs = parse_crs(config.assume_crs) if config.assume_crs else None
        out_crs = parse_crs(config.crs) if config.crs else None
        self.store = BatchStore.open(
            self.output, answer_log_path(self.output), overwrite=config.overwrite, crs_wkt=out_crs
        )
        try:
            for run in self.runs:
                self.store.add_run(run)
        except BaseException:
            self.store.close()
            raise
        self._ctx = ctx = BatchContext(
            config,
            model,
            self.store,
            self.runs,
            self.paths,
            self.output,
            read_tiles=read_tiles,
            batch_size=config.batch_size or 0,
        )
        writer = ResultWriter(ctx)
        self._dispatcher = Dispatcher(ctx, writer)
        self._producer = WorkProducer(ctx, InputIdentity(self.store, self.root), writer, assume_crs)

    @property
    def device(self) -> str:
        """The model's device (known once it is loaded)."""
        return self._ctx.device

    @property
    def batch_size(self) -> int:
        """Pairs per model batch (0 until the command or the loaded model decides)."""
        return self._ctx.batch_size

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
        started = time.monotonic()
        session = self.store.start_session(self.config.command)
        yield BatchStarted(
            str(self.output),
            str(self.store.answer_log),
            tuple((r.run_id, r.task, r.query) for r in self.runs),
            len(self.paths),
        )
        status, message = "complete", ""
        producer = self._producer.produce()
        try:
            status, message = yield from self._answer_all(producer, generator, cancel)
        except BatchAborted as exc:
            status, message = "aborted", str(exc)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM (its exception says so)
            status, message = "interrupted", str(exc) or "interrupted (Ctrl-C)"
        except GeneratorExit:
            producer.close()
            closed = batch_summary(self._ctx, "cancelled", "closed", time.monotonic() - started)
            self.store.finish_session(session, "cancelled", closed.to_dict())
            raise
        except Exception as exc:  # the store or the model broke: record how far the session got
            producer.close()
            with contextlib.suppress(Exception):
                broken = batch_summary(
                    self._ctx, "error", f"{type(exc).__name__}: {exc}", time.monotonic() - started
                )
                self.store.finish_session(session, "error", broken.to_dict())
            raise
        finally:
            producer.close()
        yield self._finish_session(session, status, message, time.monotonic() - started)

    def _answer_all(
        self,
        producer: Iterator[Any],
        generator: AnswerGenerator | ModelLoader,
        cancel: Callable[[], bool] | None,
    ) -> Generator[Any, None, tuple[str, str]]:
        """Fill model batches from the producer and dispatch them, loading the model with the first;
        returns the status and message (``complete``, or ``cancelled`` between two batches)."""
        gen: Any = generator if hasattr(generator, "generate") else None
        buffer: list[WorkItem] = []
        for obj in producer:
            if not isinstance(obj, WorkItem):
                yield obj
                continue
            buffer.append(obj)
            if gen is None:
                gen = yield from self._load_model(generator)  # type: ignore[arg-type]
            if len(buffer) >= (self._ctx.batch_size or CPU_BATCH_SIZE):
                batch, buffer = buffer, []
                yield from self._dispatcher.dispatch(gen, batch)
                if cancel is not None and cancel():
                    return "cancelled", "cancelled by the user"
        if buffer:
            batch, buffer = buffer, []
            yield from self._dispatcher.dispatch(gen, batch)
        yield from self._dispatcher.drain(gen)
        return "complete", ""

    def _load_model(self, load: ModelLoader) -> Generator[ModelLoaded, None, Any]:
        """Load the model; its device and batch size become the batch's. Returns the generator."""
        ctx = self._ctx
        t0 = time.perf_counter()
        loaded = load()
        ctx.counters.t_load += time.perf_counter() - t0
        ctx.device = loaded.info.device_name if loaded.info is not None else ""
        ctx.batch_size = self.config.batch_size or loaded.batch_size or CPU_BATCH_SIZE
        if loaded.info is not None:
            yield ModelLoaded(loaded.info)
        return loaded.generator

    def _finish_session(self, session: int, status: str, message: str, seconds: float) -> BatchFinished:
        """Record the end of the session in the store; the last event."""
        if status == "complete" and self._ctx.counters.inputs_failed:
            status = "partial"
        summary = batch_summary(self._ctx, status, message, seconds)
        self.store.finish_session(session, status, summary.to_dict())
        log.info(
            "batch %s: %s, %d pairs answered in %.1f s",
            self.output,
            status,
            self._ctx.counters.tiles_done,
            summary.seconds,
        )
        return BatchFinished(summary)


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
