"""The Qt side of the model worker: a QObject that owns a ``ModelWorker`` process, polls it from the event
loop and re-emits what it says as Qt signals.

The worker (``rsvg_desktop.engine.worker.ModelWorker``) is a separate process that holds the model, so
an out-of-memory or CUDA failure ends the worker, not the window. This bridge never blocks: a QTimer
calls the non-blocking ``poll(0)`` every ``poll_ms`` (30 ms) and dispatches the messages, at most
``budget_ms`` of work per tick (the rest waits for the next tick), so a burst of finished tiles cannot
stall the interface.

Messages → signals: ``WorkerReady`` → :attr:`workerReady`, ``ModelLoaded(info)`` → :attr:`modelLoaded`,
``ModelLoading(stage, fraction)`` → :attr:`modelLoading`, ``ModelUnloaded`` → :attr:`modelUnloaded`,
``RunStarted``/``TileStarted``/``TileDone``/``RunFinished``/``RunFailed`` → the signals of the same
name, the comparison's ``ChangeStarted``/``DateStarted``/``ChangeWarning``/``VerifyStarted``/
``VerifyProgress`` → :attr:`changeEvent` and ``ChangeFinished`` → :attr:`changeFinished` (during a
comparison, :meth:`run_change`, each date's ``RunFinished`` leaves the worker ``running``: the
comparison ends with ``ChangeFinished``), ``WorkerError(message, fatal)`` → :attr:`error`,
``WorkerDied(exitcode)`` → :attr:`workerDied` (also emitted when the process is found dead without
having said so). A ``WorkerError`` during a run ends that run (the worker's run loop has stopped);
:attr:`error` is emitted after the state change. A failed load whose error says ``model_kept``
(refused before the loaded model was dropped) goes back to ``ready`` with that model.
Messages are the typed values of :mod:`rsvg_desktop.engine.protocol`, dispatched by type.

:attr:`state` is one of ``stopped`` (no process), ``starting``, ``idle`` (process, no model),
``loading``, ``ready`` (model loaded), ``running``, ``cancelling``, ``unloading``.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from rsvg_desktop.engine.change import (
    ChangeConfig,
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
from rsvg_desktop.engine.protocol import (
    ModelLoading,
    ModelUnloaded,
    WorkerClient,
    WorkerDied,
    WorkerError,
    WorkerReady,
)

__all__ = ["WorkerBridge", "default_worker_factory"]

log = logging.getLogger(__name__)


def default_worker_factory() -> WorkerClient:
    """A new (not started) ``ModelWorker`` from the engine."""
    from rsvg_desktop.engine.worker import ModelWorker

    return ModelWorker()


class WorkerBridge(QObject):
    """Owns one model worker process at a time and turns its messages into Qt signals (see module doc)."""

    workerReady = Signal()
    modelLoading = Signal(str, float)  # stage, fraction
    modelLoaded = Signal(object)
    modelUnloaded = Signal()
    runStarted = Signal(object)
    tileStarted = Signal(object)
    tileDone = Signal(object)
    runFinished = Signal(object)
    runFailed = Signal(object)
    changeEvent = Signal(object)  # ChangeStarted, DateStarted, ChangeWarning, VerifyStarted, VerifyProgress
    changeFinished = Signal(object)  # ChangeFinished
    workerDied = Signal(object)  # exit code (int) or None
    error = Signal(str, bool)  # message, fatal
    stateChanged = Signal(str)

    def __init__(
        self,
        worker_factory: Callable[[], WorkerClient] | None = None,
        *,
        poll_ms: int = 30,
        budget_ms: float = 12.0,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self._factory = worker_factory or default_worker_factory
        self._worker: WorkerClient | None = None
        self._state = "stopped"
        self._model_info: Any = None
        self._spec: ModelSpec | None = None
        self._kept: tuple[Any, ModelSpec | None] | None = None  # the model loaded when a load began
        self._comparing = False  # the run in progress is a two-date comparison
        self._pending: deque[object] = deque()
        self._budget = budget_ms / 1000.0
        self._last_alive_check = 0.0
        self._timer = QTimer(self)
        self._timer.setInterval(poll_ms)
        self._timer.timeout.connect(self._poll)
        self._handlers: dict[type, Callable[[Any], None]] = {
            WorkerReady: self._on_ready,
            ModelLoading: lambda m: self.modelLoading.emit(m.stage, m.fraction),
            ModelLoaded: self._on_loaded,
            ModelUnloaded: self._on_unloaded,
            RunStarted: self._on_run_started,
            TileStarted: self.tileStarted.emit,
            TileDone: self.tileDone.emit,
            RunFinished: self._on_run_finished,
            RunFailed: self._on_run_failed,
            ChangeStarted: self.changeEvent.emit,
            DateStarted: self.changeEvent.emit,
            ChangeWarning: self.changeEvent.emit,
            VerifyStarted: self.changeEvent.emit,
            VerifyProgress: self.changeEvent.emit,
            ChangeFinished: self._on_change_finished,
            WorkerError: self._on_error,
            WorkerDied: self._on_died,
        }

    # --- state -------------------------------------------------------------------------------
    @property
    def state(self) -> str:
        return self._state

    @property
    def model_info(self) -> Any:
        """The ``info`` of the last ``ModelLoaded`` while the model is loaded, else None."""
        return self._model_info

    @property
    def spec(self) -> ModelSpec | None:
        """The spec of the model loaded or being loaded (kept after a crash, to offer a reload)."""
        return self._spec

    @property
    def loaded(self) -> bool:
        return self._model_info is not None and self._state in ("ready", "running", "cancelling")

    @property
    def running(self) -> bool:
        return self._state in ("running", "cancelling")

    @property
    def alive(self) -> bool:
        return self._worker is not None and self._worker.alive

    @property
    def pid(self) -> int | None:
        return self._worker.pid if self._worker is not None else None

    @property
    def worker(self) -> WorkerClient | None:
        return self._worker

    def _set_state(self, state: str) -> None:
        if state != self._state:
            log.debug("worker state %s → %s", self._state, state)
            self._state = state
            self.stateChanged.emit(state)

    # --- commands ----------------------------------------------------------------------------
    def start(self) -> None:
        """Start the worker process if none is running (idempotent)."""
        if self._worker is not None:
            return
        self._worker = worker = self._factory()
        self._pending.clear()
        worker.start()
        self._last_alive_check = time.monotonic()
        self._timer.start()
        log.info("model worker started (pid %s)", self.pid)
        self._set_state("starting")

    def load(self, spec: ModelSpec) -> None:
        """Load ``spec`` in the worker (starting it first when needed); replaces a loaded model."""
        if self.running:
            raise RuntimeError("cannot load a model while a run is in progress")
        self.start()
        assert self._worker is not None
        self._kept = (self._model_info, self._spec) if self._model_info is not None else None
        self._spec = spec
        self._model_info = None
        self._worker.load(spec)
        self._set_state("loading")

    def unload(self) -> None:
        if self._worker is None or self._state in ("stopped",):
            return
        if self.running:
            raise RuntimeError("cancel the run before unloading the model")
        self._worker.unload()
        self._set_state("unloading")

    def run(self, config: RunConfig) -> None:
        if not self.loaded or self._state != "ready" or self._worker is None:
            raise RuntimeError("load a model before running a query")
        self._worker.run(config)
        self._set_state("running")

    def run_change(self, config: ChangeConfig) -> None:
        """Compare two dates with the loaded model; the run ends with :attr:`changeFinished`."""
        if not self.loaded or self._state != "ready" or self._worker is None:
            raise RuntimeError("load a model before comparing two dates")
        self._worker.run_change(config)
        self._comparing = True
        self._set_state("running")

    @property
    def comparing(self) -> bool:
        """Whether the run in progress is a two-date comparison."""
        return self._comparing and self.running

    def cancel(self) -> None:
        """Ask the worker to stop the run (it keeps the tiles that finished)."""
        if self._worker is not None and self._state == "running":
            self._worker.cancel()
            self._set_state("cancelling")

    def kill(self) -> None:
        """End the worker process at once (the app reports it like any other death)."""
        if self._worker is not None:
            log.warning("killing the model worker (pid %s)", self.pid)
            self._worker.kill()

    def stop(self, timeout: float = 3.0) -> None:
        """Stop the worker for good (application exit): graceful, then hard after ``timeout``."""
        worker, self._worker = self._worker, None
        self._timer.stop()
        self._pending.clear()
        self._model_info = None
        if worker is None:
            return
        try:
            worker.stop(timeout=timeout)
        except Exception:
            log.warning("graceful worker stop failed; killing it", exc_info=True)
        if worker.alive:
            try:
                worker.kill()
            except Exception:
                log.warning("could not kill the worker", exc_info=True)
        self._set_state("stopped")

    # --- polling -----------------------------------------------------------------------------
    def _poll(self) -> None:
        worker = self._worker
        if worker is None:
            self._timer.stop()
            return
        try:
            self._pending.extend(worker.poll(0.0))
        except Exception as exc:  # a broken pipe: the process is gone
            log.warning("polling the worker failed: %s", exc)
            self._pending.append(WorkerDied(worker.exitcode))
        deadline = time.monotonic() + self._budget
        while self._pending and self._worker is worker:
            msg = self._pending.popleft()
            self.dispatch(msg)
            if time.monotonic() > deadline:
                break
        now = time.monotonic()
        if self._worker is worker and not self._pending and now - self._last_alive_check > 0.5:
            self._last_alive_check = now
            if not worker.alive:
                # Dead without a WorkerDied message (e.g. killed before its monitor noticed).
                try:
                    self._pending.extend(worker.poll(0.0))
                except Exception:
                    log.debug("final poll of the dead worker failed", exc_info=True)
                if not any(isinstance(m, WorkerDied) for m in self._pending):
                    self._pending.append(WorkerDied(worker.exitcode))

    def dispatch(self, msg: object) -> None:
        """Handle one worker message (public so tests can feed messages without a process)."""
        handler = self._handlers.get(type(msg))
        if handler is None:
            log.debug("ignoring worker message %r", msg)
            return
        try:
            handler(msg)
        except Exception:  # a bug in a slot must not stop the polling
            log.exception("handling worker message %s failed", type(msg).__name__)

    # --- handlers ----------------------------------------------------------------------------
    def _on_ready(self, _msg: Any) -> None:
        if self._state == "starting":
            self._set_state("idle")
        self.workerReady.emit()

    def _on_loaded(self, msg: ModelLoaded) -> None:
        self._model_info = msg.info
        self._set_state("ready")
        self.modelLoaded.emit(self._model_info)

    def _on_unloaded(self, _msg: Any) -> None:
        self._model_info = None
        self._set_state("idle")
        self.modelUnloaded.emit()

    def _on_run_started(self, msg: Any) -> None:
        if self._state not in ("running", "cancelling"):
            self._set_state("running")
        self.runStarted.emit(msg)

    def _after_run(self) -> None:
        self._comparing = False
        self._set_state("ready" if self._model_info is not None else "idle")

    def _on_run_finished(self, msg: Any) -> None:
        if not self._comparing:  # a comparison's date ended: its ChangeFinished ends the run
            self._after_run()
        self.runFinished.emit(msg)

    def _on_run_failed(self, msg: Any) -> None:
        if not self._comparing:
            self._after_run()
        self.runFailed.emit(msg)

    def _on_change_finished(self, msg: ChangeFinished) -> None:
        self._after_run()
        self.changeFinished.emit(msg)

    def _on_error(self, msg: WorkerError) -> None:
        message, fatal = msg.message, msg.fatal
        if self._state == "loading" and msg.model_kept and self._kept is not None:
            self._model_info, self._spec = self._kept  # the worker still holds it
            self._set_state("ready")
        elif self._state == "loading":
            self._set_state("idle")
        elif self._state == "unloading":
            self._model_info = None
            self._set_state("idle")
        elif self._state in ("running", "cancelling"):
            self._after_run()  # an error escaping a run ends it (e.g. its output already exists)
        self.error.emit(message, fatal)

    def _on_died(self, msg: WorkerDied) -> None:
        worker, self._worker = self._worker, None
        self._timer.stop()
        self._pending.clear()
        self._model_info = None
        self._comparing = False
        code = msg.exitcode
        log.error("the model worker died (exit code %s)", code)
        if worker is not None:
            try:  # reap the process; never block the window
                worker.kill()
            except Exception:
                log.debug("reaping the dead worker failed", exc_info=True)
        self._set_state("stopped")
        self.workerDied.emit(code)
