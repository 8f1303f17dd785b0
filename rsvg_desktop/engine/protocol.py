"""The typed protocol between a client (the app) and the model worker process.

Commands go to the worker, messages come back; both are small frozen values that pickle across the
process boundary, and both sides dispatch on their *types* (``match`` / a dict keyed by class), never
on names or message text.

Commands: :class:`LoadModel`, :class:`UnloadModel`, :class:`RunJob`, :class:`RunChangeJob`,
:class:`StopWorker`.
Messages: :class:`WorkerReady`, :class:`ModelLoading`, ``ModelLoaded``, :class:`ModelUnloaded`, the run
events of :mod:`rsvg_desktop.engine.events` (a two-date comparison adds those of
:mod:`rsvg_desktop.engine.change.events`, ending with ``ChangeFinished``), :class:`WorkerError` and
:class:`WorkerDied`.

:class:`WorkerClient` is what the app needs from a worker handle; the real
:class:`~rsvg_desktop.engine.worker.ModelWorker` and the tests' in-process fake both implement it.

Which errors end the worker is decided by type in :func:`rsvg_desktop.errors.is_fatal`: a device failure
(:class:`~rsvg_desktop.errors.DeviceFailure`, e.g. a CUDA device-side assert that poisons the context)
and running out of memory (``MemoryError``, including
:class:`~rsvg_desktop.errors.DeviceOutOfMemoryError`) end the process so that a reload starts clean;
every other error is reported and the worker keeps serving.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from rsvg_desktop.engine.change.config import ChangeConfig
from rsvg_desktop.engine.change.events import (
    ChangeFinished,
    ChangeStarted,
    ChangeWarning,
    DateStarted,
    VerifyProgress,
    VerifyStarted,
)
from rsvg_desktop.engine.events import (
    ModelLoaded,
    ModelSpec,
    RunConfig,
    RunFailed,
    RunFinished,
    RunStarted,
    TileDone,
    TileStarted,
)

__all__ = [
    "Command",
    "LoadModel",
    "ModelLoading",
    "ModelUnloaded",
    "RunChangeJob",
    "RunJob",
    "StopWorker",
    "UnloadModel",
    "WorkerClient",
    "WorkerDied",
    "WorkerError",
    "WorkerMessage",
    "WorkerReady",
]


# --- commands (client → worker) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class LoadModel:
    spec: ModelSpec


@dataclass(frozen=True, slots=True)
class UnloadModel:
    pass


@dataclass(frozen=True, slots=True)
class RunJob:
    config: RunConfig


@dataclass(frozen=True, slots=True)
class RunChangeJob:
    """Compare two dates (:func:`~rsvg_desktop.engine.change.run_change`) with the loaded model."""

    config: ChangeConfig


@dataclass(frozen=True, slots=True)
class StopWorker:
    pass


Command = LoadModel | UnloadModel | RunJob | RunChangeJob | StopWorker


# --- messages (worker → client) -------------------------------------------------------------------
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
    """An error in the worker. ``fatal``: the worker process is ending (reload to go on).
    ``model_kept``: a load was refused before the loaded model was dropped (e.g. its device does not
    exist here): that model is still loaded and serving."""

    message: str
    fatal: bool = False
    model_kept: bool = False


@dataclass(frozen=True, slots=True)
class WorkerDied:
    """The worker process is gone (killed, crashed, out of memory); its exit code. Sent by the client
    handle (a dead process sends nothing), and by the app's bridge when it finds the process dead."""

    exitcode: int | None


WorkerMessage = (
    WorkerReady
    | ModelLoading
    | ModelLoaded
    | ModelUnloaded
    | RunStarted
    | TileStarted
    | TileDone
    | RunFinished
    | RunFailed
    | ChangeStarted
    | DateStarted
    | ChangeWarning
    | VerifyStarted
    | VerifyProgress
    | ChangeFinished
    | WorkerError
    | WorkerDied
)


@runtime_checkable
class WorkerClient(Protocol):
    """What the app's bridge needs from a worker handle. Every call but :meth:`stop` is non-blocking."""

    @property
    def alive(self) -> bool: ...

    @property
    def pid(self) -> int | None: ...

    @property
    def exitcode(self) -> int | None: ...

    def start(self) -> None: ...

    def stop(self, timeout: float = 5.0) -> None: ...

    def kill(self) -> None: ...

    def load(self, spec: ModelSpec) -> None: ...

    def unload(self) -> None: ...

    def run(self, config: RunConfig) -> None: ...

    def run_change(self, config: ChangeConfig) -> None: ...

    def cancel(self) -> None: ...

    def poll(self, timeout: float = 0.0) -> list[WorkerMessage]: ...
