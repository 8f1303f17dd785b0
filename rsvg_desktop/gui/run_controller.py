"""Runs: the analyst's request → a ``RunConfig`` for the worker; the worker's events → the map, the
results table, the transcript and the progress display.

Results policy: a run of a task that finds objects (``has_boxes``: grounding, refer) replaces the
results table and the detections layer with its own detections (the table's export is that run's
answer log). Text-only runs (identify, classify, short answers, chat, follow-ups) leave the current
detections alone and answer in the transcript.

A run that replaces a results table the analyst curated (deleted detections) leaves the curation with
its own run: the deletions are kept beside that run's answer log, and reopening the log brings the table
back as it was left (a note in the transcript says where).

Every run writes its results store and answer log under the runs folder
(``<runs>/<scene stem>/<time>-<task>.gpkg`` and ``….answers.jsonl`` beside it), so a cancelled or
interrupted run keeps every finished tile.
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal

from rsvg_desktop.core.geo.grid import TilePlan
from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.progress import RunProgress, format_duration
from rsvg_desktop.core.prompt.templates import TASKS, build_query
from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.events import RunConfig
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.nodata import given_nodata
from rsvg_desktop.gui.logic.replay import Replay
from rsvg_desktop.gui.logic.runplan import QueryRequest, build_run_config, input_note
from rsvg_desktop.gui.logic.runsize import count_in_scope, large_run_question
from rsvg_desktop.gui.map_view import MapView
from rsvg_desktop.gui.results_model import ResultsModel
from rsvg_desktop.gui.transcript import Conversations, TranscriptModel, run_title, summarise_answer
from rsvg_desktop.gui.worker_bridge import WorkerBridge

__all__ = ["ActiveRun", "RunController", "output_path_for"]

log = logging.getLogger(__name__)


def output_path_for(runs_dir: str | Path, scene: str, task: str, now: float | None = None) -> Path:
    """``<runs_dir>/<scene stem>/<YYYYmmdd-HHMMSS>-<task>.gpkg`` (a numeric suffix if it exists)."""
    stem = re.sub(r"[^\w.-]+", "_", Path(scene).stem) or "scene"
    folder = Path(runs_dir) / stem
    stamp = time.strftime("%Y%m%d-%H%M%S", time.localtime(now))
    path = folder / f"{stamp}-{task}.gpkg"
    n = 2
    while path.exists() or path.with_suffix(".answers.jsonl").exists():
        path = folder / f"{stamp}-{task}-{n}.gpkg"
        n += 1
    return path


@dataclass
class ActiveRun:
    """What the controller remembers about the run in progress (or the last one)."""

    index: int
    key: str
    config: RunConfig
    sent_query: str  # the user text of the turn as sent (for follow-up history)
    label: str  # the task's label
    follow_up: bool = False
    run_id: str | None = None
    answer_log: str | None = None
    total: int = 0
    done: int = 0
    boxes: int = 0
    finished: bool = False
    cancelled: bool = False
    tiles_done: set[tuple[int, int]] = field(default_factory=set)
    owns_results: bool = False


class RunController(QObject):
    """See module doc."""

    runningChanged = Signal(bool)
    progressChanged = Signal(int, int, str)  # done, total, text
    statusMessage = Signal(str)
    runEnded = Signal(object)  # ActiveRun

    def __init__(
        self,
        bridge: WorkerBridge,
        map_view: MapView,
        results: ResultsModel,
        transcript: TranscriptModel,
        conversations: Conversations,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.map = map_view
        self.results = results
        self.transcript = transcript
        self.conversations = conversations
        self.runs_dir = str(Path.home() / "rsvg-runs")
        self.tile_size = 504
        self.overlap = 64
        self.info: SceneInfo | None = None
        self.plan: TilePlan | None = None
        #: Asked (the question's text) before a run of very many tiles; False: the run does not start.
        self.confirm_large_run: Callable[[str], bool] = lambda _text: True
        self.run: ActiveRun | None = None
        self._count = 0
        self.progress = RunProgress()
        self._ticker = QTimer(self)
        self._ticker.setInterval(500)
        self._ticker.timeout.connect(self._emit_progress)
        bridge.runStarted.connect(self._on_run_started)
        bridge.tileStarted.connect(self._on_tile_started)
        bridge.tileDone.connect(self._on_tile_done)
        bridge.runFinished.connect(self._on_run_finished)
        bridge.runFailed.connect(self._on_run_failed)
        bridge.workerDied.connect(self._on_worker_died)
        bridge.error.connect(self._on_error)
        results.saveFailed.connect(self.statusMessage)

    # --- context -----------------------------------------------------------------------------
    def set_scene(self, info: SceneInfo | None, plan: TilePlan | None) -> None:
        self.info = info
        self.plan = plan
        if plan is not None:
            self.tile_size, self.overlap = plan.tile_size, plan.overlap

    def forget_scene(self) -> None:
        """Another scene is open: the previous scene's transcript and conversations no longer apply (their
        tiles are at that scene's offsets; a follow-up would run on the new scene)."""
        self.transcript.clear_runs()
        self.conversations.clear()

    @property
    def running(self) -> bool:
        return self.run is not None and not self.run.finished

    def why_not(self) -> str:
        """Why a run cannot start now ('' when it can)."""
        if self.info is None:
            return "Open a scene first (File ▸ Open, or drop a GeoTIFF on the map)."
        if self.plan is None:
            return "Laying the tile grid…"
        if not self.plan.kept:
            return "Every tile of this scene is nodata: nothing to ask about."
        if self.running:
            return "A run is in progress."
        if not self.bridge.loaded:
            return "Load a model first (Model panel)."
        if self.bridge.state != "ready":
            return "The model worker is busy."
        return ""

    # --- starting ----------------------------------------------------------------------------
    def start(
        self, request: QueryRequest, *, follow_up_tile: Tile | None = None, follow_up_run: str | None = None
    ) -> RunConfig:
        """Start a run (raises ConfigError with a message for the analyst when it cannot).

        ``follow_up_tile`` with ``follow_up_run`` (the run whose answer on that tile is continued) asks a
        follow-up question about one tile."""
        reason = self.why_not()
        if reason:
            raise ConfigError(reason)
        assert self.info is not None and self.plan is not None
        info, plan = self.info, self.plan
        history: tuple[tuple[str, str], ...] = ()
        if follow_up_tile is not None:
            if follow_up_run is None:
                raise ConfigError("choose the answer to follow up in the transcript")
            history = self.conversations.history(follow_up_run, info.path, follow_up_tile)
        output = output_path_for(self.runs_dir, info.path, request.task)
        config = build_run_config(
            request,
            scene=info.path,
            scene_size=(info.width, info.height),
            tiles=plan.tiles,
            output=str(output),
            tile_size=plan.tile_size,
            overlap=plan.overlap,
            pixel_mode=info.pixel_mode,
            visible=self.map.visible_scene_rect(),
            rectangle=self.map.scope_rect,
            history=history,
            follow_up_tile=follow_up_tile,
            nodata=given_nodata(info),
        )
        n_tiles = count_in_scope(plan.kept, config.scope)
        question = large_run_question(n_tiles, plan.tile_size, plan.overlap)
        if question is not None and not self.confirm_large_run(question):
            raise ConfigError(
                f"Not started: {n_tiles:,} tiles. Use a smaller overlap or scope, or larger tiles."
            )
        sent = build_query(config.task, config.query, classes=config.classes or None, region=config.region)
        output.parent.mkdir(parents=True, exist_ok=True)
        self._count += 1
        task = TASKS[config.task]
        self.run = ActiveRun(
            index=self._count,
            key=f"run-{self._count}",
            config=config,
            sent_query=sent,
            label=task.label,
            follow_up=follow_up_tile is not None,
        )
        extra = [f"follow-up on {follow_up_tile.id}"] if follow_up_tile is not None else []
        shown = config.query or (sent if task.needs_region else "")
        self.transcript.begin_run(self.run.key, run_title(self._count, task.label, shown, extra))
        if note := input_note(config):
            self.transcript.add_note(self.run.key, note)
        self.map.grid.reset_states()
        try:
            self.bridge.run(config)
        except RuntimeError as exc:  # the worker went away between the check and the call
            self.transcript.add_note(self.run.key, f"The run could not start: {exc}", error=True)
            self.run.finished = True
            raise ConfigError(str(exc)) from exc
        self.progress.start(0)
        self._ticker.start()
        self.runningChanged.emit(True)
        self.statusMessage.emit(f"Run {self._count} started: {task.label}")
        log.info(
            "run %d: task %s, query %r, scope %s, output %s",
            self._count,
            config.task,
            config.query,
            config.scope,
            output,
        )
        return config

    def replay(self, replay: Replay) -> ActiveRun:
        """Show a run reopened from its answer log (no model): the same path as a live run's events."""
        if self.running:
            raise ConfigError("A run is in progress.")
        if self.info is None:
            raise ConfigError("Open the run's scene first.")
        task = TASKS.get(replay.task)
        if task is None:
            raise ConfigError(f"{replay.answer_log}: unknown task {replay.task!r}")
        try:
            sent = build_query(replay.task, replay.query)
        except ConfigError:  # e.g. a class list or a region that the log keeps inside the query
            sent = replay.query
        self._count += 1
        config = RunConfig(scene=replay.scene, query=replay.query, task=replay.task, output=None)
        run = ActiveRun(
            index=self._count, key=f"run-{self._count}", config=config, sent_query=sent, label=task.label
        )
        self.run = run
        self.transcript.begin_run(run.key, run_title(self._count, task.label, replay.query, ["reopened"]))
        self.map.grid.reset_states()
        self._on_run_started(replay.started)
        for event in replay.tiles:
            self._on_tile_done(event)
        run.answer_log = replay.answer_log
        boxes = sum(len(t.polygons_wkb) for t in replay.tiles)
        self.transcript.add_note(
            run.key,
            f"Reopened from {replay.answer_log}: {len(replay.tiles)} tiles, "
            f"{boxes} boxes (merged across seams on export).",
        )
        if run.owns_results:
            removed = self.results.apply_saved_deletions()
            self.map.detections.remove(removed)
            if removed:
                self.transcript.add_note(
                    run.key,
                    f"{len(removed)} detection(s) deleted earlier stay deleted (Restore brings them back).",
                )
        self.progressChanged.emit(run.done, run.total, f"Reopened run: {run.done} tiles")
        self._finish(run)
        return run

    def cancel(self) -> None:
        if self.running:
            self.bridge.cancel()
            self.statusMessage.emit("Cancelling… (finished tiles are kept)")

    # --- events ------------------------------------------------------------------------------
    def _current(self) -> ActiveRun | None:
        return self.run if self.run is not None and not self.run.finished else None

    def _on_run_started(self, ev: Any) -> None:
        run = self._current()
        if run is None:
            return
        run.run_id = ev.run_id
        run.answer_log = ev.answer_log
        run.total = ev.total
        task = TASKS[run.config.task]
        if task.has_boxes and not run.follow_up:
            run.owns_results = True
            self._note_curated_table(run)
            self.map.detections.clear()
            self.results.reset(
                crs_wkt=ev.crs_wkt,
                transform=ev.transform or (self.info.transform if self.info else None),
                answer_log=ev.answer_log,
                run_id=ev.run_id,
                task=run.config.task,
                query=run.config.query,
            )
        self.progress.start(ev.total, ev.skipped)
        if ev.total == 0:
            self.transcript.add_note(
                run.key, "No tile to run in this scope (all nodata or outside the scene)."
            )
        elif ev.skipped:
            self.transcript.add_note(run.key, f"{ev.total} tiles to run; {ev.skipped} skipped as nodata.")
        self._emit_progress()

    def _note_curated_table(self, run: ActiveRun) -> None:
        """Before a run replaces the table: say where the previous table's deletions are kept."""
        deleted, previous = len(self.results.excluded), self.results.answer_log
        if deleted and previous and previous != run.answer_log:
            self.transcript.add_note(
                run.key,
                f"The previous results ({deleted} deleted detection(s)) are kept with their run: "
                f"File ▸ Reopen a run ▸ {previous} brings them back as you left them.",
            )

    def _on_tile_started(self, ev: Any) -> None:
        if self._current() is None:
            return
        self.map.set_active_tiles(ev.tiles)

    def _on_tile_done(self, ev: Any) -> None:
        run = self._current()
        if run is None or self.info is None:
            return
        tile: Tile = ev.tile
        run.done = ev.done
        run.total = ev.total
        run.tiles_done.add((tile.row, tile.col))
        self.map.grid.set_state(tile, "done")
        remaining = [t for t in self._active_tiles() if (t.row, t.col) != (tile.row, tile.col)]
        self.map.set_active_tiles(remaining)
        n_boxes = len(ev.polygons_wkb)
        run.boxes += n_boxes
        if run.owns_results and n_boxes:
            default_label = run.config.query if run.config.task == "refer" else ""
            rows = self.results.add_tile(
                tile,
                ev.polygons_wkb,
                ev.phrases,
                ev.angles,
                task=run.config.task,
                default_label=default_label,
            )
            for row in rows:
                self.map.detections.add(row.key, row.pixels, row.phrase)
        task = TASKS[run.config.task]
        if not task.has_boxes or n_boxes or (ev.text or "").strip():
            self.transcript.add_tile_answer(run.key, tile, summarise_answer(ev.text, n_boxes, ev.answer))
        self.conversations.record(
            run.key, self.info.path, tile, run.config.history, run.sent_query, ev.answer
        )
        self.progress.update(ev.done, ev.total)
        self._emit_progress()

    def _active_tiles(self) -> list[Tile]:
        return [self.map.grid.tiles[k] for k in self.map.active_tiles() if k in self.map.grid.tiles]

    def _finish(self, run: ActiveRun) -> None:
        run.finished = True
        self._ticker.stop()
        self.map.set_active_tiles(())
        self.runningChanged.emit(False)
        self.runEnded.emit(run)

    def _on_run_finished(self, ev: Any) -> None:
        run = self._current()
        if run is None:
            # A RunFailed already ended it: still record the summary under that run.
            last = self.run
            if last is not None and last.run_id == ev.run_id:
                self.transcript.add_note(
                    last.key, f"{ev.done} / {ev.total} tiles answered; results store: {ev.output}"
                )
            return
        run.cancelled = bool(ev.cancelled)
        run.done = ev.done
        run.answer_log = ev.answer_log or run.answer_log
        if run.owns_results and ev.answer_log:
            self.results.answer_log = ev.answer_log
        took = format_duration(ev.seconds)
        if ev.cancelled:
            text = f"Cancelled after {ev.done} / {ev.total} tiles ({took}); the finished tiles are kept."
        else:
            text = f"Finished: {ev.done} / {ev.total} tiles in {took}"
            if ev.skipped:
                text += f", {ev.skipped} skipped as nodata"
            text += "."
        if TASKS[run.config.task].has_boxes:
            text += f" {ev.raw_detections} boxes → {ev.detections} after merging across seams."
        if ev.failed:
            text += f" {ev.failed} tile(s) failed."
        self.transcript.add_note(run.key, text)
        for err in ev.errors:
            self.transcript.add_note(run.key, err, error=True)
        if ev.output:
            self.transcript.add_note(run.key, f"Results store: {ev.output}")
        self.progress.update(ev.done, ev.total)
        self.progressChanged.emit(ev.done, ev.total, text)
        self.statusMessage.emit(f"Run {run.index}: {text}")
        self._finish(run)

    def _on_run_failed(self, ev: Any) -> None:
        run = self._current()
        if run is None:
            return
        where = f" (answer log {ev.answer_log})" if ev.answer_log else ""
        text = f"The run failed after {ev.done} tiles: {ev.message}. Finished tiles are kept{where}."
        self.transcript.add_note(run.key, text, error=True)
        self.progressChanged.emit(ev.done, max(run.total, 1), "Run failed")
        self.statusMessage.emit(text)
        self._finish(run)

    def _on_worker_died(self, code: Any) -> None:
        run = self._current()
        if run is None:
            return
        where = f" in {run.answer_log}" if run.answer_log else ""
        text = (
            f"The model worker stopped (exit code {code}) after {run.done} / {run.total} tiles. "
            f"The {run.done} finished tiles are kept{where}."
        )
        self.transcript.add_note(run.key, text, error=True)
        self.progressChanged.emit(run.done, max(run.total, 1), "Worker stopped")
        self._finish(run)

    def _on_error(self, message: str, fatal: bool) -> None:
        run = self._current()
        if run is None:
            return
        self.transcript.add_note(run.key, f"The run stopped: {message}", error=True)
        self.statusMessage.emit(f"The run stopped: {message}")
        if not self.bridge.running:  # the bridge has ended the run (see WorkerBridge)
            self.progressChanged.emit(run.done, max(run.total, 1), "Run stopped")
            self._finish(run)

    def _emit_progress(self) -> None:
        run = self._current()
        if run is None:
            return
        text = self.progress.text()
        if self.bridge.state == "cancelling":
            text += " · cancelling…"
        self.progressChanged.emit(self.progress.done, self.progress.total, text)
