"""Handing a batch's work to the model: at once to a generator, or to an
:class:`~rsvg_desktop.engine.answerer.Answerer` with several batches in flight (stored as they come
back, in any order). A batch the model fails on fails its inputs; after
:data:`MAX_CONSECUTIVE_MODEL_FAILURES` failed batches in a row the batch stops."""

from __future__ import annotations

import itertools
import logging
import time
from collections.abc import Generator, Iterator, Sequence
from typing import Any

from rsvg_desktop.engine.answerer import Answerer, TileJob, TileReadError
from rsvg_desktop.engine.batch.state import BatchContext, WorkItem
from rsvg_desktop.engine.batch.storing import ResultWriter
from rsvg_desktop.engine.events import Failure
from rsvg_desktop.errors import GenerationError, is_fatal

log = logging.getLogger(__name__)

MAX_CONSECUTIVE_MODEL_FAILURES = 3


class BatchAborted(Exception):
    """The model kept failing: the batch stops (caught by the batch job, which reports ``aborted``)."""


class Dispatcher:
    """Sends batches of work items to the model and their answers to the :class:`ResultWriter`."""

    def __init__(self, ctx: BatchContext, writer: ResultWriter) -> None:
        self.ctx = ctx
        self.writer = writer
        self._keys = itertools.count()
        self._in_flight: dict[int, list[WorkItem]] = {}

    def dispatch(self, gen: Any, items: list[WorkItem]) -> Iterator[Any]:
        """Answer a batch: at once with a generator, or handed to an :class:`Answerer` (several batches
        in flight, stored as they come back, in any order)."""
        if not isinstance(gen, Answerer):
            yield from self._answer(gen, items)
            return
        jobs = []
        for it in items:
            run = self.ctx.runs[it.run]
            jobs.append(TileJob(it.state.path, it.tile, run.task, run.query, run.classes))
        key = next(self._keys)
        self._in_flight[key] = items
        gen.submit(key, tuple(jobs))
        while gen.in_flight >= gen.capacity:
            yield from self.collect(gen, block=True)
        yield from self.collect(gen, block=False)

    def drain(self, gen: Any) -> Iterator[Any]:
        """Wait for the batches still in flight (an :class:`Answerer`) and store them."""
        if isinstance(gen, Answerer):
            while gen.in_flight:
                yield from self.collect(gen, block=True)

    def collect(self, gen: Answerer, *, block: bool) -> Iterator[Any]:
        """Store the batches the :class:`Answerer` has answered (wait for one when ``block``)."""
        for key, outcome, seconds in gen.collect(block=block):
            items = self._in_flight.pop(key)
            self.ctx.counters.t_model += seconds
            if isinstance(outcome, GenerationError):
                if is_fatal(outcome):
                    raise outcome
                yield from self._model_failed(items, outcome)
                continue
            self.ctx.counters.model_failures_in_a_row = 0
            if any(isinstance(r, TileReadError) for r in outcome):
                items, outcome = yield from self._drop_unreadable(items, outcome)
                if not items:
                    continue
            yield from self.writer.store(items, outcome)

    def _drop_unreadable(
        self, items: list[WorkItem], outcome: Sequence[Any]
    ) -> Generator[Any, None, tuple[list[WorkItem], list[Any]]]:
        """Fail the inputs of the tiles a worker could not read, finishing those with nothing else in
        this batch; returns (as the generator's value) the items and results left to store."""
        failed = [(it, r) for it, r in zip(items, outcome, strict=True) if isinstance(r, TileReadError)]
        for it, r in failed:
            if it.state.failed is None:
                it.state.failed = Failure(it.state.path, "read", r.message)
        keep = [(it, r) for it, r in zip(items, outcome, strict=True) if not isinstance(r, TileReadError)]
        for it, _ in failed:
            it.state.outstanding -= 1
        for state in dict.fromkeys(it.state for it, _ in failed):
            if state.ready and not any(k.state is state for k, _ in keep):
                yield from self.writer.finish(state)
        return [k for k, _ in keep], [r for _, r in keep]

    def _answer(self, gen: Any, items: list[WorkItem]) -> Iterator[Any]:
        from rsvg_desktop.core.model.generate import GenerationRequest

        c, cfg = self.ctx.counters, self.ctx.config
        requests = []
        for it in items:
            run = self.ctx.runs[it.run]
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
        yield from self.writer.store(items, results)

    def _model_failed(self, items: list[WorkItem], exc: GenerationError) -> Iterator[Any]:
        c = self.ctx.counters
        c.model_failures_in_a_row += 1
        log.error("the model failed on a batch of %d: %s", len(items), exc)
        states = list(dict.fromkeys(it.state for it in items))
        for it in items:
            it.state.outstanding -= 1
        for state in states:
            if state.failed is None:
                state.failed = Failure(state.path, "model", str(exc))
            if state.ready:
                yield from self.writer.finish(state)
        if c.model_failures_in_a_row >= MAX_CONSECUTIVE_MODEL_FAILURES:
            raise BatchAborted(
                f"the model failed on {c.model_failures_in_a_row} batches in a row (last: {exc}); "
                "rerun the same command to resume"
            )
