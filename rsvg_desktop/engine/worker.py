"""The model worker: a separate process that holds the model and runs scene jobs.

The window (or any other client) talks to it through two queues, so a model that runs out of memory,
a CUDA fault or a crash ends the worker, not the app. The model is loaded once and reused across runs.

Client API (all non-blocking except :meth:`ModelWorker.stop`)::

    worker = ModelWorker(); worker.start()
    worker.load(ModelSpec(model_dir, precision="nf4"))
    worker.run(RunConfig(scene, query, task="refer", output="out.gpkg"))
    for msg in worker.poll(0.05): ...       # run events, ModelLoaded, WorkerError, WorkerDied...
    worker.cancel()                          # the run stops within about a second, finished tiles kept

Messages: the run events of :mod:`rsvg_desktop.engine.events` plus the classes below. A job's
cancellation is checked between batches and, inside a batch, between generated tokens.
"""

from __future__ import annotations

import contextlib
import logging
import multiprocessing as mp
import os
import queue
import time
from dataclasses import dataclass
from typing import Any

from rsvg_desktop.engine.events import ModelInfo, ModelLoaded, ModelSpec, RunConfig, RunFailed

__all__ = [
    "ModelInfo",
    "ModelLoaded",
    "ModelLoading",
    "ModelUnloaded",
    "ModelWorker",
    "WorkerDied",
    "WorkerError",
    "WorkerReady",
]

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class WorkerReady:
    pid: int


@dataclass(frozen=True, slots=True)
class ModelLoading:
    stage: str
    fraction: float


@dataclass(frozen=True, slots=True)
class ModelUnloaded:
    pass


@dataclass(frozen=True, slots=True)
class WorkerError:
    """An error in the worker. ``fatal``: the worker process is ending (reload to go on)."""

    message: str
    fatal: bool = False


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """The worker process is gone (killed, crashed, out of memory); its exit code."""

    exitcode: int | None


# --- the process side ----------------------------------------------------------------------------
def _worker_main(commands: Any, events: Any, cancel: Any, log_level: int) -> None:
    """Process entry point: serve load/unload/run commands until told to stop."""
    logging.basicConfig(level=log_level, format="worker %(levelname)s: %(message)s")
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import LoadSpec, load_model
    from rsvg_desktop.engine.detect import run_scene
    from rsvg_desktop.engine.model_jobs import model_info
    from rsvg_desktop.errors import RsvgError

    events.put(WorkerReady(os.getpid()))
    loaded = generator = None
    while True:
        cmd, arg = commands.get()
        if cmd == "stop":
            return
        try:
            if cmd == "load":
                spec: ModelSpec = arg
                loaded = generator = None
                loaded = load_model(
                    LoadSpec(
                        spec.model_dir,
                        spec.precision,
                        spec.device,
                        int8_threshold=spec.int8_threshold,
                        double_quant=spec.double_quant,
                        use_cache=spec.use_cache,
                    ),
                    progress=lambda stage, fraction: events.put(ModelLoading(str(stage), float(fraction))),
                )
                generator = GeoChatGenerator(loaded)
                events.put(ModelLoaded(model_info(loaded)))
            elif cmd == "unload":
                loaded = generator = None
                with contextlib.suppress(Exception):
                    import torch

                    if torch.cuda.is_available():
                        torch.cuda.empty_cache()
                events.put(ModelUnloaded())
            elif cmd == "run":
                config: RunConfig = arg
                if generator is None:
                    events.put(RunFailed("no model is loaded: load one first"))
                    continue
                generator.should_stop = cancel.is_set
                for event in run_scene(
                    config,
                    generator,
                    model=str(loaded.spec.model_dir),
                    precision=str(loaded.precision),
                    device=loaded.device_name,
                    random_weights=loaded.random_weights,
                    cancel=cancel.is_set,
                ):
                    events.put(event)
        except RsvgError as exc:
            events.put(WorkerError(str(exc), fatal=False))
        except MemoryError as exc:
            events.put(WorkerError(f"out of memory: {exc}; reload at a lower precision", fatal=True))
            raise SystemExit(3) from exc
        except Exception as exc:  # CUDA errors leave the process in an unknown state: end it
            fatal = "CUDA" in str(exc) or "out of memory" in str(exc).lower()
            events.put(WorkerError(f"{type(exc).__name__}: {exc}", fatal=fatal))
            if fatal:
                raise SystemExit(3) from exc
            log.exception("worker: %s failed", cmd)


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

    def stop(self, timeout: float = 5.0) -> None:
        """Ask the process to end; kill it if it does not within ``timeout`` seconds."""
        if self._proc is None:
            return
        if self._proc.is_alive():
            self._cancel.set()
            self._commands.put(("stop", None))
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
    def _send(self, cmd: str, arg: Any = None) -> None:
        if not self.alive:
            self.start()
        self._commands.put((cmd, arg))

    def load(self, spec: ModelSpec) -> None:
        self._send("load", spec)

    def unload(self) -> None:
        self._send("unload")

    def run(self, config: RunConfig) -> None:
        self._cancel.clear() if self._cancel is not None else None
        self._send("run", config)

    def cancel(self) -> None:
        if self._cancel is not None:
            self._cancel.set()

    # messages
    def poll(self, timeout: float = 0.0) -> list[Any]:
        """Every message waiting (waits up to ``timeout`` seconds for the first), plus
        :class:`WorkerDied` once when the process has ended unasked."""
        out: list[Any] = []
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
