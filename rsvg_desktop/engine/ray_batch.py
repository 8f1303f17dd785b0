"""``rsvg batch --ray``: the same batch job, its batches answered by a pool of Ray actors.

The driver (this process) lists the inputs, reads the ledger, lays the tile grids and is the only
writer of the run store, exactly as :mod:`~rsvg_desktop.engine.batch` does in one process. Only the
model work moves: each batch of (input path, tile window, question) goes to an actor that loaded the
model once, reads the tiles itself (paths must be readable where the workers run: checked up front)
and sends back the answers (text and parsed boxes, a few hundred bytes a tile). The driver commits
each returned batch in one transaction, in whatever order batches come back.

Why actors and not Ray Data ``map_batches``: the work list is not known up front. It comes out of
the ledger input by input (an input already done is never opened; a resumed one asks only its open
pairs), and a Ray Data pipeline wants its dataset (or its generator's blocks) made before it runs and
delivers results through its own executor, which would either hold millions of tile rows in memory
or re-plan on every resume. A pool of actors fed with ``ray.wait`` keeps the driver's streaming loop,
its flat memory and its per-batch transactions as they are, and retries are the driver's own: a
batch whose actor died is sent to another actor (a new actor replaces the dead one), and since only
returned batches are committed, nothing is duplicated or lost.

Ray is imported only in this module, and only when ``--ray`` is used.
"""

from __future__ import annotations

import itertools
import logging
import os
import time
import uuid
from collections.abc import Callable, Generator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvg_desktop.engine.answerer import TileJob, TileReadError, TileWorkerCore, WorkerResult
from rsvg_desktop.engine.batch import (
    BatchConfig,
    BatchJob,
    ModelForBatch,
    ModelIdentity,
    model_fingerprint,
)
from rsvg_desktop.engine.events import BatchEvent, BatchProgress, ModelSpec
from rsvg_desktop.errors import ConfigError, GenerationError, RsvgError

__all__ = [
    "RayOptions",
    "RayUnavailableError",
    "WorkerStats",
    "WorkersProgress",
    "ray_batch_detect",
    "run_ray_batch",
]

log = logging.getLogger(__name__)

INSTALL_HINT = "Ray is not installed: pip install 'rsvg-desktop[cluster]' (or pip install ray)"
#: Batches queued per actor beyond the one it is answering (keeps every GPU busy between batches).
QUEUE_PER_WORKER = 1
#: Replacement actors started over a whole run before the pool gives up (workers keep dying).
MAX_REPLACEMENTS_PER_WORKER = 3


class RayUnavailableError(RsvgError, ImportError):
    """``--ray`` was asked for but Ray is not installed."""


@dataclass(frozen=True, slots=True)
class RayOptions:
    """``--ray [ADDRESS]``, ``--workers N``, ``--worker-device``. ``address`` ``None`` starts a local
    Ray instance (``num_cpus``/``object_store_memory`` size it); ``"auto"`` or ``ray://host:10001``
    joins a running cluster. ``workers`` ``None``: one per GPU (one with ``worker_device`` ``cpu``)."""

    address: str | None = None
    workers: int | None = None
    worker_device: str = "auto"
    num_cpus: int | None = None
    object_store_memory: int | None = None


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """One worker's share so far."""

    worker: str
    tiles: int
    batches: int
    seconds: float
    tiles_per_second: float
    alive: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "worker": self.worker,
            "tiles": self.tiles,
            "batches": self.batches,
            "seconds": round(self.seconds, 3),
            "tiles_per_second": round(self.tiles_per_second, 3),
            "alive": self.alive,
        }


@dataclass(frozen=True, slots=True)
class WorkersProgress:
    """Per-worker figures, after every returned batch and at the end."""

    workers: tuple[WorkerStats, ...]
    retried_batches: int
    replaced_workers: int


def import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise RayUnavailableError(INSTALL_HINT) from None
    return ray


class _TileWorker:
    """The actor: a :class:`TileWorkerCore` behind Ray's remote calls."""

    def __init__(self, factory: Callable[[], Any], name: str, max_new_tokens: int) -> None:
        self.core = TileWorkerCore(factory, name=name, max_new_tokens=max_new_tokens)

    def ping(self) -> str:
        import socket

        return f"{socket.gethostname()}:{os.getpid()}"

    def unreadable(self, paths: list[str]) -> list[str]:
        return self.core.unreadable(paths)

    def load(self) -> str:
        return self.core.load()

    def answer(self, jobs: tuple[TileJob, ...]) -> tuple[list[WorkerResult | TileReadError], float]:
        t0 = time.perf_counter()
        out = self.core.answer(jobs)
        return out, time.perf_counter() - t0


@dataclass
class _Slot:
    name: str
    actor: Any
    busy: int = 0
    tiles: int = 0
    batches: int = 0
    seconds: float = 0.0
    alive: bool = True


class RayPool:
    """An :class:`~rsvg_desktop.engine.answerer.Answerer` over Ray actors (see the module doc)."""

    def __init__(self, ray: Any, make_actor: Callable[[str], Any], workers: int) -> None:
        self.ray = ray
        self._make = make_actor
        self._ids = itertools.count()
        self._run = uuid.uuid4().hex[:8]
        self.slots = [self._new_slot() for _ in range(workers)]
        self._refs: dict[Any, tuple[int, tuple[TileJob, ...], _Slot]] = {}
        self.retried = 0
        self.replaced = 0
        self._max_replacements = MAX_REPLACEMENTS_PER_WORKER * workers

    def _new_slot(self) -> _Slot:
        name = f"rsvg-worker-{self._run}-{next(self._ids)}"
        return _Slot(name, self._make(name))

    @property
    def capacity(self) -> int:
        return sum(s.alive for s in self.slots) * (1 + QUEUE_PER_WORKER)

    @property
    def in_flight(self) -> int:
        return len(self._refs)

    def call_all(self, method: str, *args: Any) -> list[Any]:
        return self.ray.get([getattr(s.actor, method).remote(*args) for s in self.slots if s.alive])

    def submit(self, key: int, jobs: tuple[TileJob, ...]) -> None:
        slot = min((s for s in self.slots if s.alive), key=lambda s: s.busy)
        slot.busy += 1
        self._refs[slot.actor.answer.remote(jobs)] = (key, jobs, slot)

    def collect(self, *, block: bool) -> list[tuple[int, Any, float]]:
        from ray.exceptions import ActorDiedError, ActorUnavailableError, RayActorError, RayTaskError

        if not self._refs:
            return []
        ready, _ = self.ray.wait(list(self._refs), num_returns=1, timeout=None if block else 0)
        out: list[tuple[int, Any, float]] = []
        for ref in ready:
            key, jobs, slot = self._refs.pop(ref)
            slot.busy -= 1
            try:
                results, seconds = self.ray.get(ref)
            except (RayActorError, ActorDiedError, ActorUnavailableError) as exc:
                self._worker_died(slot, exc)
                self.retried += 1
                self.submit(key, jobs)  # to a live worker; never stored twice: only returns are stored
                continue
            except RayTaskError as exc:
                cause = exc.cause if isinstance(exc.cause, GenerationError) else None
                if cause is None:
                    cause = GenerationError(f"worker {slot.name}: {type(exc.cause).__name__}: {exc.cause}")
                out.append((key, cause, 0.0))
                continue
            slot.tiles += len(jobs)
            slot.batches += 1
            slot.seconds += seconds
            out.append((key, results, seconds))
        return out

    def _worker_died(self, slot: _Slot, exc: BaseException) -> None:
        if slot.alive:
            slot.alive = False
            log.warning("Ray worker %s died (%s); its batches go to the other workers", slot.name, exc)
            if self.replaced >= self._max_replacements:
                if not any(s.alive for s in self.slots):
                    raise GenerationError(f"every Ray worker died (last: {exc})")
                return
            self.replaced += 1
            self.slots.append(self._new_slot())

    def stats(self) -> WorkersProgress:
        return WorkersProgress(
            tuple(
                WorkerStats(
                    s.name, s.tiles, s.batches, s.seconds, s.tiles / s.seconds if s.seconds else 0.0, s.alive
                )
                for s in self.slots
            ),
            self.retried,
            self.replaced,
        )

    def shutdown(self) -> None:
        for s in self.slots:
            if s.alive:
                try:
                    self.ray.kill(s.actor)
                except Exception:
                    log.debug("actor %s already gone", s.name)


def _connect(ray: Any, options: RayOptions, device: str) -> bool:
    """Start or join Ray; returns whether this call started it (and so must shut it down)."""
    if ray.is_initialized():
        return False
    kw: dict[str, Any] = {
        "include_dashboard": False,
        "log_to_driver": False,
        "logging_level": logging.WARNING,
    }
    if options.address is None:
        kw["num_cpus"] = options.num_cpus or os.cpu_count()
        if options.object_store_memory:
            kw["object_store_memory"] = options.object_store_memory
        if device == "cpu":
            kw["num_gpus"] = 0
    else:
        kw["address"] = options.address
    try:
        ray.init(**kw)
    except (ConnectionError, RuntimeError, ValueError, TimeoutError) as exc:
        where = options.address or "a local instance"
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ConfigError(f"--ray {where}: cannot start or reach Ray ({first})") from None
    return True


def _worker_device(options: RayOptions, spec_device: str, ray: Any) -> str:
    device = options.worker_device if options.worker_device != "auto" else spec_device
    if device == "auto":
        device = "cuda" if ray.cluster_resources().get("GPU", 0) >= 1 else "cpu"
    return device


def run_ray_batch(
    config: BatchConfig,
    factory: Callable[[], Any],
    *,
    model: ModelIdentity,
    options: RayOptions,
    device: str = "cpu",
    model_info: Any = None,
    cancel: Callable[[], bool] | None = None,
) -> Generator[BatchEvent | WorkersProgress, None, None]:
    """Run a batch over Ray actors that each build a generator with ``factory`` (picklable; returns a
    generator, or ``(generator, device_name)``). Yields the batch events plus :class:`WorkersProgress`.

    Raises :class:`RayUnavailableError` without Ray, :class:`ConfigError` for a bad address or inputs
    the workers cannot read (before anything runs)."""
    ray = import_ray()
    job = BatchJob(config, model, read_tiles=False)
    started_ray = False
    pool: RayPool | None = None
    try:
        started_ray = _connect(ray, options, device)
        wdev = _worker_device(options, device, ray)
        n = options.workers
        if n is None:
            n = max(int(ray.cluster_resources().get("GPU", 0)), 1) if wdev == "cuda" else 1
        if n < 1:
            raise ConfigError(f"--workers must be at least 1, got {n}")
        remote_kw: dict[str, Any] = {"num_gpus": 1, "num_cpus": 1} if wdev == "cuda" else {"num_cpus": 1}
        actor_cls = ray.remote(**remote_kw, max_restarts=0)(_TileWorker)

        def make_actor(name: str) -> Any:
            return actor_cls.options(name=name).remote(factory, name, config.max_new_tokens)

        pool = RayPool(ray, make_actor, n)
        for slot, bad in zip(pool.slots, pool.call_all("unreadable", list(job.paths)), strict=True):
            if bad:
                raise ConfigError(
                    f"{bad[0]}: not readable by Ray worker {slot.name} ({len(bad)}+ such inputs): inputs "
                    "must be on storage every worker can read (the same path on every node, e.g. a shared "
                    "mount)"
                )
        batch_size = config.batch_size

        def load() -> ModelForBatch:
            assert pool is not None
            devices = pool.call_all("load")
            log.info("Ray: %d workers loaded the model (%s)", len(devices), ", ".join(sorted(set(devices))))
            return ModelForBatch(pool, model_info, batch_size or 4)

        for event in job.run(load, cancel=cancel):
            yield event
            if isinstance(event, BatchProgress):
                yield pool.stats()
        yield pool.stats()
    finally:
        if pool is not None:
            pool.shutdown()
        job.close()
        if started_ray:
            ray.shutdown()


@dataclass(frozen=True, slots=True)
class ModelFactory:
    """Builds the real generator in a worker: the project's loader and quantized cache."""

    spec: ModelSpec
    batch_size: int | None
    max_new_tokens: int

    def __call__(self) -> tuple[Any, str]:
        from rsvg_desktop.core.model.generate import GeoChatGenerator
        from rsvg_desktop.core.model.loader import load_model
        from rsvg_desktop.engine.model_jobs import load_spec, model_info

        loaded = load_model(load_spec(self.spec))
        return GeoChatGenerator(loaded), model_info(loaded).device_name


def ray_batch_detect(
    config: BatchConfig,
    spec: ModelSpec,
    options: RayOptions,
    *,
    cancel: Callable[[], bool] | None = None,
) -> Generator[BatchEvent | WorkersProgress, None, None]:
    """``rsvg batch --ray``: :func:`~rsvg_desktop.engine.batch.batch_detect` with the model in Ray
    workers (one model per worker, at the requested precision)."""
    from rsvg_desktop.core.model.loader import read_random_weights_flag

    model_dir = Path(spec.model_dir)
    identity = ModelIdentity(
        model=str(model_dir),
        model_id=model_fingerprint(model_dir),
        precision=str(spec.precision),
        random_weights=read_random_weights_flag(model_dir),
    )
    factory = ModelFactory(spec, config.batch_size, config.max_new_tokens)
    device = options.worker_device if options.worker_device != "auto" else str(spec.device)
    yield from run_ray_batch(config, factory, model=identity, options=options, device=device, cancel=cancel)
