"""The model worker: a separate process that holds the model and runs scene jobs.

The window (or any other client) talks to it through two queues, so a model that runs out of memory,
a CUDA fault or a crash ends the worker, not the app. The model is loaded once and reused across runs.

Client API (all non-blocking except :meth:`ModelWorker.stop`)::

    worker = ModelWorker(); worker.start()
    worker.load(ModelSpec(model_dir, precision="nf4"))
    worker.run(RunConfig(scene, query, task="refer", output="out.gpkg"))
    worker.run_change(ChangeConfig(before, after, query, output="change.gpkg"))  # two dates
    for msg in worker.poll(0.05): ...       # run events, ModelLoaded, WorkerError, WorkerDied...
    worker.cancel()                          # the run stops within about a second, finished tiles kept

Commands and messages are the typed values of :mod:`rsvg_desktop.engine.protocol`; the process side
(:class:`WorkerServer`) dispatches on their types. A job's cancellation is checked between batches and,
inside a batch, between generated tokens. Fatal errors (a device failure, out of memory: see
:func:`rsvg_desktop.errors.is_fatal`) are reported, then the process exits with :data:`EXIT_FATAL`.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import sys
import time
from collections.abc import Callable
from typing import Any, Protocol

from rsvg_desktop.engine.change.config import ChangeConfig, date_answer_logs
from rsvg_desktop.engine.change.events import ChangeFinished
from rsvg_desktop.engine.events import ModelLoaded, ModelSpec, RunConfig, RunFailed
from rsvg_desktop.engine.lifeline import watch_parent
from rsvg_desktop.engine.protocol import (
    Command,
    LoadModel,
    ModelLoading,
    ModelUnloaded,
    RunChangeJob,
    RunJob,
    StopWorker,
    UnloadModel,
    WorkerDied,
    WorkerError,
    WorkerMessage,
    WorkerReady,
)
from rsvg_desktop.errors import RsvgError, is_fatal

__all__ = ["EXIT_FATAL", "ModelWorker", "WorkerServer"]

log = logging.getLogger(__name__)

#: Exit status of a worker that ended on a fatal error (device failure, out of memory).
EXIT_FATAL = 3


class _Queue(Protocol):
    def put(self, item: Any) -> None: ...

    def get(self) -> Any: ...


# --- the process side ----------------------------------------------------------------------------
class WorkerServer:
    """Serves commands until :class:`StopWorker`. ``load`` turns a :class:`ModelSpec` into ``(loaded
    model, generator)``; the default is the project's loader (tests may pass another). Returns the
    process exit status: 0 when stopped, :data:`EXIT_FATAL` after a fatal error (reported first)."""

    def __init__(
        self,
        events: _Queue,
        cancel: Callable[[], bool],
        load: Callable[[ModelSpec, Callable[[str, float], None]], tuple[Any, Any]] | None = None,
        check: Callable[[ModelSpec], None] | None = None,
    ) -> None:
        self._events = events
        self._cancel = cancel
        self._load = load or _load_real
        self._check = check or _check_device
        self._loaded: Any = None
        self._generator: Any = None
        self.running = False

    def serve(self, commands: _Queue) -> int:
        self._events.put(WorkerReady(os.getpid()))
        while True:
            cmd: Command = commands.get()
            if isinstance(cmd, StopWorker):
                return 0
            try:
                self.handle(cmd)
            except RsvgError as exc:
                self._events.put(WorkerError(str(exc), fatal=is_fatal(exc)))
                if is_fatal(exc):
                    return EXIT_FATAL
            except MemoryError as exc:
                self._events.put(WorkerError(f"out of memory: {exc}; reload at a lower precision", True))
                return EXIT_FATAL
            except Exception as exc:
                if _torch_fatal(exc):  # a CUDA fault or OOM outside the generator's own handling
                    self._events.put(WorkerError(f"{type(exc).__name__}: {exc}", fatal=True))
                    return EXIT_FATAL
                log.exception("worker: %s failed", type(cmd).__name__)
                self._events.put(WorkerError(f"{type(exc).__name__}: {exc}", fatal=False))

    def handle(self, cmd: Command) -> None:
        match cmd:
            case LoadModel(spec=spec):
                if self._loaded is not None and not self._may_load(spec):
                    return  # the loaded model stays
                self._loaded = self._generator = None
                self._loaded, self._generator = self._load(
                    spec, lambda stage, fraction: self._events.put(ModelLoading(str(stage), float(fraction)))
                )
                self._events.put(ModelLoaded(_model_info(self._loaded)))
            case UnloadModel():
                self._loaded = self._generator = None
                _free_device_memory()
                self._events.put(ModelUnloaded())
            case RunJob(config=config):
                self._run(config)
            case RunChangeJob(config=change):
                self._run_change(change)
            case _:
                raise TypeError(f"unknown worker command {cmd!r}")

    def _may_load(self, spec: ModelSpec) -> bool:
        """Check ``spec`` before the loaded model is dropped: True when it may be loaded; else the error
        is reported (``model_kept``) and the loaded model goes on serving."""
        try:
            self._check(spec)
        except RsvgError as exc:
            if is_fatal(exc):
                raise
            self._events.put(WorkerError(str(exc), fatal=False, model_kept=True))
            return False
        return True

    def _run(self, config: RunConfig) -> None:
        loaded, generator = self._loaded, self._generator
        if loaded is None or generator is None:
            self._events.put(RunFailed("no model is loaded: load one first"))
            return
        from rsvg_desktop.engine.model_jobs import check_question

        check_question(  # a question that does not fit the context is refused before any tile
            loaded.spec.model_dir,
            task=config.task,
            query=config.query,
            classes=config.classes,
            region=config.region,
            history=config.history,
            max_new_tokens=config.max_new_tokens,
        )
        generator.should_stop = self._cancel
        self.running = True
        try:
            self._run_events(config, loaded, generator)
        finally:
            self.running = False

    def _run_events(self, config: RunConfig, loaded: Any, generator: Any) -> None:
        from rsvg_desktop.engine.detect import run_scene
        from rsvg_desktop.engine.model_jobs import job_facts

        facts = job_facts(loaded.spec, loaded)  # q4cal runs record q4cal@<calibration id>, as detect's do
        for event in run_scene(config, generator, **facts, cancel=self._cancel):
            self._events.put(event)

    def _run_change(self, config: ChangeConfig) -> None:
        """A two-date comparison with the loaded model: :func:`run_change`'s events, the same cancel flag
        as a scene job (answers kept in both dates' answer logs; the same command again resumes)."""
        from rsvg_desktop.engine.change import run_change
        from rsvg_desktop.engine.model_jobs import check_question, job_facts

        loaded, generator = self._loaded, self._generator
        if loaded is None or generator is None:
            self._events.put(_change_refused(config, "no model is loaded: load one first"))
            return
        check_question(
            loaded.spec.model_dir, task=config.task, query=config.query, max_new_tokens=config.max_new_tokens
        )
        generator.should_stop = self._cancel
        self.running = True
        try:
            facts = job_facts(loaded.spec, loaded)
            for event in run_change(config, generator, **facts, cancel=self._cancel):
                self._events.put(event)
        finally:
            self.running = False


def _change_refused(config: ChangeConfig, message: str) -> ChangeFinished:
    """The last event of a comparison that could not start."""
    return ChangeFinished(config.output, None, 0, 0.0, date_answer_logs(config.output), error=message)


def _load_real(spec: ModelSpec, progress: Callable[[str, float], None]) -> tuple[Any, Any]:
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import load_model
    from rsvg_desktop.engine.model_jobs import load_spec

    loaded = load_model(load_spec(spec), progress=progress)
    return loaded, GeoChatGenerator(loaded, compiled=spec.compiled)


def _check_device(spec: ModelSpec) -> None:
    """Raise PrecisionError when ``spec``'s device does not exist here (CUDA on a machine without it)."""
    from rsvg_desktop.core.model.precision import resolve_device

    resolve_device(spec.device)


def _torch_fatal(exc: BaseException) -> bool:
    """A torch device error (CUDA fault, out of memory) that escaped the project's own wrapping into
    :class:`~rsvg_desktop.errors.DeviceFailure`. Checked by type; torch is only consulted when loaded."""
    torch = sys.modules.get("torch")
    if torch is None:
        return False
    return isinstance(exc, torch.AcceleratorError | torch.OutOfMemoryError)


def _model_info(loaded: Any) -> Any:
    from rsvg_desktop.engine.model_jobs import model_info

    return model_info(loaded)


def _free_device_memory() -> None:
    with contextlib.suppress(Exception):
        import torch

        if torch.cuda.is_available():
            torch.cuda.empty_cache()


def _worker_main(commands: Any, events: Any, cancel: Any, log_level: int) -> None:
    """Process entry point."""
    logging.basicConfig(level=log_level, format="worker %(levelname)s: %(message)s")
    server = WorkerServer(events, cancel.is_set)

    def wind_down() -> float:
        cancel.set()  # a run in progress stops at its next tile; finished tiles are in its answer log
        return 2.0 if server.running else 0.0

    watch_parent(wind_down)
    code = server.serve(commands)
    if code:
        raise SystemExit(code)


# --- the client side -----------------------------------------------------------------------------
class ModelWorker:
    """Client handle of the worker process (see the module docs)."""

    def __init__(self) -> None:
        self._ctx = mp.get_context("spawn")
        self._commands: Any = None
        self._events: Any = None
        self._cancel: Any = None
        self._proc: Any = None
        self._died_reported = False

    # lifecycle
    def start(self) -> None:
        """Start the process (a fresh one if a previous one died)."""
        if self.alive:
            return
        self._commands = self._ctx.Queue()
        self._events = self._ctx.Queue()
        self._cancel = self._ctx.Event()
        self._proc = self._ctx.Process(
            target=_worker_main,
            name="rsvg-model-worker",
            daemon=True,
            args=(self._commands, self._events, self._cancel, logging.getLogger().getEffectiveLevel()),
        )
        self._proc.start()
        self._died_reported = False

    @property
    def alive(self) -> bool:
        return self._proc is not None and self._proc.is_alive()

    @property
    def pid(self) -> int | None:
        return None if self._proc is None else self._proc.pid

    @property
    def exitcode(self) -> int | None:
        return None if self._proc is None else self._proc.exitcode

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the process to end; kill it if it does not within ``timeout`` seconds."""
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._cancel.set()
            self._commands.put(StopWorker())
            self._proc.join(timeout)
            if self._proc.is_alive():
                self._proc.kill()
                self._proc.join(2.0)
        self._died_reported = True

    def kill(self) -> None:
        """End the process at once (its run's finished tiles are already on disk)."""
        if self._proc is not None and self._proc.is_alive():
            self._proc.kill()
            self._proc.join(2.0)

    # commands
    def _send(self, cmd: Command) -> None:
        if not self.alive:
            self.start()
        self._commands.put(cmd)

    def load(self, spec: ModelSpec) -> None:
        self._send(LoadModel(spec))

    def unload(self) -> None:
        self._send(UnloadModel())

    def run(self, config: RunConfig) -> None:
        if self._cancel is not None:
            self._cancel.clear()
        self._send(RunJob(config))

    def run_change(self, config: ChangeConfig) -> None:
        if self._cancel is not None:
            self._cancel.clear()
        self._send(RunChangeJob(config))

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    # messages
    def poll(self, timeout: float = 0.0) -> list[WorkerMessage]:
        """Every message waiting (waits up to ``timeout`` seconds for the first), plus
        :class:`WorkerDied` once when the process has ended unasked."""
        out: list[WorkerMessage] = []
        if self._events is None:
            return out
        deadline = time.monotonic() + timeout
        while True:
            wait = max(0.0, deadline - time.monotonic()) if not out else 0.0
            try:
                out.append(self._events.get(timeout=wait) if wait > 0 else self._events.get_nowait())
            except queue.Empty:
                break
            except (EOFError, OSError):
                break
        if self._proc is not None and not self._proc.is_alive() and not self._died_reported:
            # drain what it managed to send before dying
            with contextlib.suppress(queue.Empty, EOFError, OSError):
                while True:
                    out.append(self._events.get_nowait())
            self._died_reported = True
            out.append(WorkerDied(self._proc.exitcode))
        return out
