"""Answering batches elsewhere: what a batch hands to remote workers and gets back (no Ray here).

A :class:`~rsvg_desktop.engine.batch.BatchJob` normally calls its generator batch by batch. Given an
:class:`Answerer` instead (e.g. the Ray pool of :mod:`~rsvg_desktop.engine.ray_batch`), it submits
batches of :class:`TileJob` (input path + tile window + question: no pixels), keeps up to
``capacity`` of them in flight, and stores each one as it comes back, in any order, in one
transaction. The driver stays the only writer of the run store.

:class:`TileWorkerCore` is the worker's side: it opens each input where the worker runs (a few kept
open), reads the tiles exactly as the single-process path does, and asks its generator.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

from rsvg_desktop.core.types import Tile
from rsvg_desktop.errors import GenerationError, SceneError

__all__ = ["Answerer", "TileJob", "TileReadError", "TileWorkerCore", "WorkerResult"]


@dataclass(frozen=True, slots=True)
class TileJob:
    """One (tile, question) for a worker: where to read it and what to ask."""

    path: str
    tile: Tile
    task: str
    query: str
    classes: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class TileReadError:
    """A tile the worker could not read (the input fails at stage ``read``)."""

    message: str


@dataclass(frozen=True, slots=True)
class WorkerResult:
    """One answer from a worker, shaped like the generator's results, plus who answered it."""

    answer: str
    parsed: Any
    input_tokens: int | None
    output_tokens: int | None
    seconds: float | None
    batch_size: int
    device: str
    worker: str


@runtime_checkable
class Answerer(Protocol):
    """Answers batches asynchronously. ``collect`` returns ``(key, outcome, seconds)`` for batches that
    came back: ``outcome`` is a list of :class:`WorkerResult` / :class:`TileReadError` (one per job, in
    order) or the :class:`GenerationError` the batch failed with."""

    @property
    def capacity(self) -> int: ...

    @property
    def in_flight(self) -> int: ...

    def submit(self, key: int, jobs: tuple[TileJob, ...]) -> None: ...

    def collect(
        self, *, block: bool
    ) -> list[tuple[int, list[WorkerResult | TileReadError] | GenerationError, float]]: ...


class TileWorkerCore:
    """A worker's generator and open inputs. ``factory`` builds the generator (loads the model) on the
    first batch; ``device`` is how its answers are labelled in the ledger."""

    def __init__(
        self, factory: Callable[[], Any], *, name: str, max_new_tokens: int, keep_open: int = 4
    ) -> None:
        self.factory = factory
        self.name = name
        self.max_new_tokens = max_new_tokens
        self.keep_open = keep_open
        self.generator: Any = None
        self.device = ""
        self._scenes: OrderedDict[str, Any] = OrderedDict()

    def load(self) -> str:
        """Build the generator (once); returns the device it runs on."""
        if self.generator is None:
            made = self.factory()
            self.generator, self.device = made if isinstance(made, tuple) else (made, "cpu")
        return self.device

    def unreadable(self, paths: Iterable[str], limit: int = 5) -> list[str]:
        """Up to ``limit`` of ``paths`` this worker cannot open for reading."""
        bad: list[str] = []
        for p in paths:
            try:
                with open(p, "rb") as f:
                    f.read(1)
            except OSError:
                bad.append(p)
                if len(bad) >= limit:
                    break
        return bad

    def _scene(self, path: str) -> Any:
        from rsvg_desktop.core.geo.scene import open_scene

        scene = self._scenes.get(path)
        if scene is None:
            scene = open_scene(path, pixel_mode=True)
            self._scenes[path] = scene
            while len(self._scenes) > self.keep_open:
                _, old = self._scenes.popitem(last=False)
                old.close()
        else:
            self._scenes.move_to_end(path)
        return scene

    def answer(self, jobs: Sequence[TileJob]) -> list[WorkerResult | TileReadError]:
        """Read the tiles of ``jobs`` and answer them in one model batch (GenerationError propagates)."""
        from rsvg_desktop.core.model.generate import GenerationRequest

        self.load()
        out: list[WorkerResult | TileReadError | None] = [None] * len(jobs)
        requests, where = [], []
        images: dict[tuple[str, Tile], Any] = {}  # several questions on one tile: read it once
        for i, job in enumerate(jobs):
            key = (job.path, job.tile)
            try:
                if key not in images:
                    images[key] = self._scene(job.path).read_tile(job.tile)[0]
            except SceneError as exc:
                out[i] = TileReadError(str(exc))
                continue
            requests.append(
                GenerationRequest(
                    image=images[key], task=job.task, query=job.query, classes=job.classes or None
                )
            )
            where.append(i)
        if requests:
            t0 = time.perf_counter()
            results = self.generator.generate(
                requests, max_new_tokens=self.max_new_tokens, batch_size=len(requests)
            )
            elapsed = time.perf_counter() - t0
            for i, res in zip(where, results, strict=True):
                out[i] = WorkerResult(
                    answer=res.answer,
                    parsed=res.parsed,
                    input_tokens=getattr(res, "input_tokens", None),
                    output_tokens=getattr(res, "output_tokens", None),
                    seconds=getattr(res, "seconds", elapsed / len(requests)),
                    batch_size=getattr(res, "batch_size", len(requests)),
                    device=self.device,
                    worker=self.name,
                )
        return [r for r in out if r is not None]

    def close(self) -> None:
        for scene in self._scenes.values():
            scene.close()
        self._scenes.clear()
