"""An in-process stand-in for the engine's ``ModelWorker``: the same methods and messages, no model.

A run is the engine's real scene job (:func:`~rsvg_desktop.engine.detect.run_scene`: tile grid, tile
reads, answer log, parsing, polygons, seam merge, export) driven with scripted answers in place of the
model (:func:`scripted_scene.scripted_scene`), which answer each tile with a scripted GeoChat-like
answer; only the model and the process boundary are stood in for. Messages are released by ``poll``
one tile per ``tile_seconds``, so tests are deterministic and need no process.

A two-date comparison (``run_change``) is the engine's real :func:`~rsvg_desktop.engine.change.run_change`
(grid, warp, both dates' scene jobs, matching, verification, the change GeoPackage) with a stand-in
detector in place of the model (``change_generator()``, default :class:`change_scenes.SquareFinder`).
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterator
from typing import Any

from change_scenes import SquareFinder
from scripted_scene import scripted_scene

from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.change import ChangeConfig, run_change
from rsvg_desktop.engine.events import (
    ModelInfo,
    ModelLoaded,
    ModelSpec,
    RunConfig,
)
from rsvg_desktop.engine.protocol import ModelLoading, ModelUnloaded, WorkerDied, WorkerError, WorkerReady
from rsvg_desktop.errors import RsvgError, is_fatal


def scripted_answer(config: RunConfig, tile: Tile) -> str:
    """A plausible GeoChat answer per task (two boxes for box tasks, text otherwise)."""
    if config.task in ("refer", "grounding"):
        phrase = config.query or "building"
        text = "A tile with two objects. " if config.task == "grounding" else ""
        return f"{text}<p>{phrase}</p> {{<10><10><30><25>|<90>}}{{<55><60><80><72>|<30>}}"
    if config.task == "classify":
        return "forest" if (tile.row + tile.col) % 2 else "residential"
    if config.task == "vqa":
        return "yes"
    if config.task == "identify":
        return "a white storage tank"
    return f"answer {len(config.history) + 1} about tile {tile.id}"


class FakeWorker:
    """See module doc. ``answer(config, tile)`` scripts the answers."""

    def __init__(
        self,
        *,
        tile_seconds: float = 0.01,
        load_seconds: float = 0.02,
        answer: Callable[[RunConfig, Tile], str] = scripted_answer,
        random_weights: bool = True,
        fail_load: str | None = None,
        fail_devices: tuple[str, ...] = (),
        change_generator: Callable[[], Any] = SquareFinder,
    ) -> None:
        self.tile_seconds = tile_seconds
        self.load_seconds = load_seconds
        self.answer = answer
        self.random_weights = random_weights
        self.fail_load = fail_load
        self.fail_devices = fail_devices  # loads on these devices fail as on a machine without them
        self.change_generator = change_generator
        self.change_configs: list[ChangeConfig] = []
        self.keeps_model = True  # a refused device keeps the loaded model, as the real worker does
        self.loaded: ModelSpec | None = None
        self.alive = False
        self.pid: int | None = None
        self.exitcode: int | None = None
        self.specs: list[ModelSpec] = []
        self.configs: list[RunConfig] = []
        self.cancel_calls = 0
        self.started = 0
        self._queue: list[tuple[float, object]] = []
        self._run: Iterator[object] | None = None
        self._next = 0.0
        self._cancel = False
        self._died_reported = True
        self.hold = False  # True: the run makes no progress (a tile "takes forever")

    # lifecycle
    def start(self) -> None:
        self.alive = True
        self.started += 1
        self.pid = os.getpid()
        self.exitcode = None
        self._died_reported = False
        self._queue.append((time.monotonic(), WorkerReady(os.getpid())))

    def stop(self, timeout: float = 5.0) -> None:
        self.alive = False
        self._died_reported = True
        self._run = None

    def kill(self) -> None:
        if self.alive:
            self.alive = False
            self.exitcode = -9
        if self._run is not None:
            close = getattr(self._run, "close", None)
            if close is not None:
                close()
        self._run = None

    # commands
    def load(self, spec: ModelSpec) -> None:
        self.specs.append(spec)
        now = time.monotonic()
        self._queue.append((now, ModelLoading("weights", 0.5)))
        if self.fail_load:
            self.loaded = None
            self._queue.append((now + self.load_seconds, WorkerError(self.fail_load, fatal=False)))
            return
        if spec.device in self.fail_devices:
            message = f"device {spec.device!r} requested but CUDA is not available (use 'cpu' or 'auto')"
            kept = self.keeps_model and self.loaded is not None
            if not kept:
                self.loaded = None
            self._queue.append((now + self.load_seconds, WorkerError(message, fatal=False, model_kept=kept)))
            return
        self.loaded = spec
        info = ModelInfo(
            model_dir=spec.model_dir,
            precision=spec.precision,
            device="cpu",
            device_name="CPU",
            dtype="float32",
            param_bytes=12_345_678,
            load_seconds=self.load_seconds,
            from_cache=False,
            random_weights=self.random_weights,
            description=f"{spec.precision} on CPU",
            notes=("fake worker",),
        )
        self._queue.append((now + self.load_seconds, ModelLoaded(info)))

    def unload(self) -> None:
        self.loaded = None
        self._queue.append((time.monotonic(), ModelUnloaded()))

    def run(self, config: RunConfig) -> None:
        self.configs.append(config)
        self._cancel = False
        self._run = self._job(config)
        self._next = time.monotonic()

    def run_change(self, config: ChangeConfig) -> None:
        self.change_configs.append(config)
        self._cancel = False
        self._run = self._change_job(config)
        self._next = time.monotonic()

    def cancel(self) -> None:
        self.cancel_calls += 1
        self._cancel = True

    # messages
    def poll(self, timeout: float = 0.0) -> list[Any]:
        now = time.monotonic()
        out = [m for due, m in self._queue if due <= now]
        self._queue = [(due, m) for due, m in self._queue if due > now]
        if self.alive and self._run is not None and not self.hold and now >= self._next:
            for _ in range(2):  # TileStarted + TileDone, or the run's last event
                try:
                    out.append(next(self._run))
                except StopIteration:
                    self._run = None
                    break
                if type(out[-1]).__name__ == "TileDone":
                    break
            self._next = now + self.tile_seconds
        if not self.alive and not self._died_reported:
            self._died_reported = True
            out.append(WorkerDied(self.exitcode))
        return out

    # the job: the engine's own scene job, with the model's answers scripted
    def _job_arguments(self) -> dict[str, Any]:
        """The fake model's facts and the cancel flag, as the real worker gives both of its jobs."""
        return {
            "model": "fake",
            "precision": "fp32",
            "device": "CPU",
            "random_weights": self.random_weights,
            "cancel": lambda: self._cancel,
        }

    def _job(self, config: RunConfig) -> Iterator[object]:
        try:
            yield from scripted_scene(config, self.answer, **self._job_arguments())
        except RsvgError as exc:  # as the real worker reports a run that cannot start
            yield WorkerError(str(exc), fatal=is_fatal(exc))

    def _change_job(self, config: ChangeConfig) -> Iterator[object]:
        try:
            yield from run_change(config, self.change_generator(), **self._job_arguments())
        except RsvgError as exc:  # as the real worker reports a comparison that cannot start
            yield WorkerError(str(exc), fatal=is_fatal(exc))


class LagProbe:
    """Measures how late a 10 ms QTimer fires while the event loop runs (``max_lag`` in seconds)."""

    def __init__(self, interval_ms: int = 10) -> None:
        from PySide6.QtCore import QTimer

        self.interval = interval_ms / 1000.0
        self.timer = QTimer()
        self.timer.setInterval(interval_ms)
        self.timer.timeout.connect(self._tick)
        self.max_lag = 0.0
        self.ticks = 0
        self._last = 0.0

    def _tick(self) -> None:
        now = time.perf_counter()
        if self.ticks:
            self.max_lag = max(self.max_lag, now - self._last - self.interval)
        self._last = now
        self.ticks += 1

    def __enter__(self) -> LagProbe:
        self._last = time.perf_counter()
        self.timer.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.timer.stop()
