"""Comparison mode (File ▸ Compare with another date…): the other scene opened on the open scene's grid
(refused in one line when the two cannot be compared), the map switching between the dates, refer and
grounding questions run on both dates in the model worker (``<runs>/<scene>/<time>-change.gpkg``; a
cancelled one resumes when asked again), the change layers with their counts and toggles, Export, and
Stop comparing. docs/app.md, "Comparing two dates", describes it as the analyst sees it."""

from __future__ import annotations

import dataclasses
import logging
import os
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import QFileDialog, QMessageBox

from rsvg_desktop.core.prompt.templates import TASKS
from rsvg_desktop.engine.change import (
    ChangeConfig,
    ChangeFinished,
    ChangeStarted,
    ChangeWarning,
    DateStarted,
    VerifyProgress,
    VerifyStarted,
    check_change,
)
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.change_layers import ChangeMapLayer, ChangePanel, export_change, read_change
from rsvg_desktop.gui.compare_actions import CompareActions
from rsvg_desktop.gui.compare_dates import ComparedDates, DateImage, open_dates
from rsvg_desktop.gui.logic.compare import DATE_LABELS, ChangeProgress, ResumeBook, change_config, compares
from rsvg_desktop.gui.logic.messages import app_message
from rsvg_desktop.gui.logic.runplan import QueryRequest
from rsvg_desktop.gui.run_controller import output_path_for
from rsvg_desktop.gui.tasks import run_in_background

if TYPE_CHECKING:
    from rsvg_desktop.gui.main_window import MainWindow
    from rsvg_desktop.gui.scene_loader import OpenedScene

__all__ = ["CompareController"]

log = logging.getLogger(__name__)


class CompareController(QObject):
    """See module doc. Signals: :attr:`modeChanged` (comparing), :attr:`refused` (the one-line reason a
    scene cannot be compared), :attr:`runningChanged`, :attr:`progressChanged` (done, total, text) and
    :attr:`changeShown` (the ``ChangeFinished`` whose layers are now on the map)."""

    modeChanged = Signal(bool)
    refused = Signal(str)
    runningChanged = Signal(bool)
    progressChanged = Signal(int, int, str)
    changeShown = Signal(object)

    def __init__(self, window: MainWindow) -> None:
        super().__init__(window)
        self.win = window
        self.dates: ComparedDates | None = None
        self.shown = "before"
        self.config: ChangeConfig | None = None  # the comparison running or last run
        self.running = False
        self.finished: ChangeFinished | None = None  # the last comparison that wrote its output
        self.book = ResumeBook()
        self.progress = ChangeProgress()
        self._count = 0
        self._key = ""
        self._started = 0.0
        self._calls: list[Any] = []
        self.actions = CompareActions(window, window.export_action)
        self.layer = ChangeMapLayer()
        window.map.scene().addItem(self.layer)
        self.panel = ChangePanel(window.results_table)
        window.results_table.layout().insertWidget(0, self.panel)  # type: ignore[union-attr]
        self.panel.hide()
        self.indicator = self.actions.indicator
        self._connect()
        self.refresh()

    def _connect(self) -> None:
        a, bridge = self.actions, self.win.bridge
        a.compare.triggered.connect(self.choose)
        a.stop.triggered.connect(self.stop)
        a.export.triggered.connect(self.choose_export)
        a.switch.triggered.connect(self.switch_date)
        for name, action in a.date.items():
            action.triggered.connect(lambda _on=False, n=name: self.show_date(n))
        for name, action in a.layers.items():
            action.toggled.connect(self.panel.boxes[name].setChecked)
            self.panel.boxes[name].toggled.connect(action.setChecked)
        self.panel.visibilityChanged.connect(self.layer.set_visible)
        self.panel.exportRequested.connect(self.choose_export)
        bridge.changeEvent.connect(self._on_change_event)
        bridge.changeFinished.connect(self._on_change_finished)
        bridge.runStarted.connect(self._on_date_event)
        bridge.tileDone.connect(self._on_date_event)
        bridge.runFinished.connect(self._on_date_finished)
        bridge.error.connect(lambda message, _fatal: self._stopped(message))
        bridge.workerDied.connect(lambda code: self._stopped(f"the model worker stopped (exit code {code})"))
        bridge.stateChanged.connect(self.refresh)
        self.win.sceneOpened.connect(self._scene_opened)
        self.win.loader.reread_done.connect(self._reread)
        self.win.runs.runningChanged.connect(self.refresh)
        self.win.query_panel.cancelRequested.connect(self.cancel)

    # --- mode --------------------------------------------------------------------------------
    @property
    def active(self) -> bool:
        return self.dates is not None

    def refresh(self, *_args: object) -> None:
        can = self.win.info is not None and not self.win.runs.running and not self.win.bridge.running
        self.actions.set_mode(
            comparing=self.active, running=self.running, can_start=can, finished=self.finished is not None
        )

    def choose(self) -> None:
        from rsvg_desktop.gui.main_window import SCENE_FILTER  # the window imports this module

        path, _ = QFileDialog.getOpenFileName(
            self.win, "Compare with another date", self.win.settings.last_dir, SCENE_FILTER
        )
        if path:
            self.compare_with(path)

    def compare_with(self, path: str | os.PathLike[str]) -> None:
        """Open ``path`` on the open scene's grid in the background, then enter comparison mode
        (:attr:`modeChanged`), or say why not (:attr:`refused`)."""
        info = self.win.info
        if info is None or self.running or self.win.runs.running:
            self.win.show_status("Open a scene, and let the run finish, before comparing dates.")
            return
        path = os.fspath(path)
        self.win.show_status(f"Opening {path} on the grid of {Path(info.path).name}…")
        self._calls = [c for c in self._calls if not c.finished]
        self._calls.append(
            run_in_background(
                lambda: open_dates(info, path),
                lambda dates: self._enter(dates) if self.win.info is info else None,
                lambda exc: self._refuse(str(exc) or type(exc).__name__),
                name=f"open {path} to compare",
            )
        )

    def _refuse(self, message: str) -> None:
        message = app_message(message).splitlines()[0]
        self.win.show_status(message)
        box = QMessageBox(QMessageBox.Icon.Warning, "Cannot compare", message, parent=self.win)
        box.setAttribute(Qt.WidgetAttribute.WA_DeleteOnClose, True)
        box.open()
        self.refused.emit(message)

    def _enter(self, dates: ComparedDates) -> None:
        if self.active:
            self._leave()
        self.dates, self.finished = dates, None
        self._count += 1
        self._key = f"compare-{self._count}"
        before, after = (Path(d.info.path).name for d in (dates.before, dates.after))
        self.win.transcript_model.begin_run(self._key, f"Comparison {self._count}: {before} ↔ {after}")
        self.win.transcript_model.add_note(
            self._key,
            f"Before: {dates.before.info.path}; after: {dates.after.info.path}, read on the before scene's "
            "grid. Refer and grounding questions run on both dates; other tasks ask the before scene only. "
            "D switches the date shown.",
        )
        self.panel.show_summary(None, "Ask a refer or grounding question to compare the dates.")
        self.panel.show()
        self.indicator.show()
        self.show_date("before")
        self.refresh()
        self.modeChanged.emit(True)

    def stop(self) -> None:
        """Back to the open scene alone (not during a comparison run)."""
        if self.running:
            self.win.show_status("Cancel the comparison before leaving comparison mode.")
            return
        if self.active:
            self.show_date("before")
            self._leave()
            self.win.show_status("Stopped comparing: the open scene alone.")
            self.modeChanged.emit(False)

    def _leave(self) -> None:
        self.dates, self.finished, self.shown = None, None, "before"
        self.layer.clear()
        self.layer.show_date("before")
        self.panel.hide()
        self.indicator.hide()
        self.refresh()

    def _scene_opened(self, _info: object) -> None:
        """Another scene is open: the comparison ends (the map already shows the new scene)."""
        if self.active:
            self._leave()
            self.modeChanged.emit(False)
        self.refresh()

    def _reread(self, opened: OpenedScene) -> None:
        """The open scene was read again (another nodata value): the before date follows it."""
        if self.dates is not None and self.win.info is opened.info:
            before = DateImage(opened.info, opened.preview, opened.stretch)
            self.dates = dataclasses.replace(self.dates, before=before)
            self.show_date(self.shown)

    # --- dates -------------------------------------------------------------------------------
    def show_date(self, date: str) -> None:
        """Show one date on the map (the view, the layers over it and the tools stay)."""
        if self.dates is None:
            return
        image = self.dates.date(date)
        if self.win.map.info is not image.info:
            self.win.map.replace_raster(image.info, image.preview, image.stretch)
        self.shown = date
        self.actions.show_date(date)
        self.layer.show_date(date)
        names = {d: Path(self.dates.date(d).info.path).name for d in DATE_LABELS}
        self.indicator.setText(
            f"  Comparing {names['before']} (before) ↔ {names['after']} (after) · showing "
            f"{DATE_LABELS[date]}: {names[date]}  "
        )
        self.win.show_status(f"Showing the {date} date: {names[date]}")

    def switch_date(self) -> None:
        self.show_date("after" if self.shown == "before" else "before")

    # --- runs --------------------------------------------------------------------------------
    def takes(self, request: QueryRequest) -> bool:
        """Whether the Ask panel's ``request`` runs on both dates (comparison mode, a task that finds
        objects); other requests ask the open scene, the before date, as usual (the map shows it, and the
        transcript says so)."""
        if not self.active:
            return False
        if compares(request.task):
            return True
        self.show_date("before")
        self._note(f"{request.task}: asked of the open scene (the before date) only.")
        return False

    def start(self, request: QueryRequest) -> bool:
        """Run ``request`` on both dates; False (with the reason shown) when it cannot start now."""
        win, info = self.win, self.win.info
        reason = win.runs.why_not()
        if reason or info is None or self.dates is None:
            win.show_status(reason or "Open a scene first.")
            return False
        tile_size, overlap = win.query_panel.grid()
        config = change_config(
            info,
            self.dates.after.info.path,
            task=request.task,
            query=request.query or (TASKS[request.task].default_query or ""),
            output=output_path_for(win.runs.runs_dir, info.path, "change"),
            tile_size=tile_size,
            overlap=overlap,
        )
        resumed = self.book.output_for(config)
        if resumed is not None:
            config = dataclasses.replace(config, output=resumed)
        try:
            Path(config.output).parent.mkdir(parents=True, exist_ok=True)
            check_change(config)
            win.bridge.run_change(config)
        except (ConfigError, OSError, RuntimeError) as exc:
            win.show_status(f"The comparison could not start: {app_message(str(exc))}")
            return False
        self.config, self.running, self.progress = config, True, ChangeProgress()
        self._started = time.monotonic()
        self.book.stopped(config)  # until it writes its output, a rerun resumes it
        shown = f" {config.query!r}" if config.query else ""
        self.win.transcript_model.add_note(
            self._key,
            f"{request.task}{shown} on both dates → {config.output}"
            + (" (resuming the answers of the interrupted run)" if resumed else ""),
        )
        self.runningChanged.emit(True)
        self._emit_progress()
        self.refresh()
        return True

    def cancel(self) -> None:
        if self.running:
            self.win.bridge.cancel()
            self.win.show_status("Cancelling the comparison… (finished tiles are kept)")

    def _note(self, text: str, *, error: bool = False) -> None:
        self.win.transcript_model.add_note(self._key, text, error=error)

    def _emit_progress(self) -> None:
        done, total = self.progress.value
        self.progressChanged.emit(done, total, self.progress.text(time.monotonic() - self._started))

    def _on_change_event(self, event: object) -> None:
        if not self.running:
            return
        if isinstance(event, ChangeStarted):
            self._note(
                f"Compared area: {event.compared_fraction:.0%} of the before scene; residual shift "
                f"{event.shift_dx:+.1f}, {event.shift_dy:+.1f} px."
            )
        elif isinstance(event, DateStarted):
            self.progress.on_date(event)
        elif isinstance(event, ChangeWarning):
            self._note(event.message, error=True)
        elif isinstance(event, VerifyStarted | VerifyProgress):
            self.progress.on_verify(event)
        self._emit_progress()

    def _on_date_event(self, event: Any) -> None:
        """A date's ``RunStarted`` (no ``done``) or ``TileDone``: that date's progress."""
        if self.running and self.win.bridge.comparing:
            self.progress.on_tile(getattr(event, "done", 0), event.total)
            self._emit_progress()

    def _on_date_finished(self, event: Any) -> None:
        if self.running and self.progress.date is not None:
            label = DATE_LABELS[self.progress.date]
            self._note(f"{label}: {event.done} / {event.total} tiles, {event.detections} objects.")

    def _on_change_finished(self, event: ChangeFinished) -> None:
        if not self.running or self.config is None:
            return
        self.running = False
        summary = event.summary
        if summary is None:
            why = "Cancelled" if event.cancelled else f"Stopped: {event.error}"
            self._note(
                f"{why}. The finished tiles are kept in {event.answer_logs[0]} and {event.answer_logs[1]}; "
                "ask the same question again to go on from them.",
                error=not event.cancelled,
            )
        else:
            self.book.finished(self.config)
            self.finished = event
            self._note(
                f"Appeared {summary.appeared}, disappeared {summary.disappeared}, persisting "
                f"{summary.persisting} ({summary.verified} confirmed by verification). Output: {event.output}"
            )
            self._show_layers(event)
        self.runningChanged.emit(False)
        done, total = self.progress.value
        self.progressChanged.emit(done, total, "Comparison " + ("finished" if summary else "stopped"))
        self.refresh()

    def _stopped(self, message: str) -> None:
        """The worker ended the comparison without its last event (an error, or the worker died)."""
        if self.running and not self.win.bridge.running:
            self.running = False
            self._note(f"The comparison stopped: {message}. Finished tiles are kept.", error=True)
            self.runningChanged.emit(False)
            self.progressChanged.emit(0, 1, "Comparison stopped")
            self.refresh()

    # --- results -----------------------------------------------------------------------------
    def _show_layers(self, event: ChangeFinished) -> None:
        info = self.dates.before.info if self.dates is not None else None
        if info is None:
            return

        def ready(layers: Any) -> None:
            if self.finished is event:
                self.layer.set_layers(layers)
                self.panel.show_summary(event.summary)
                self.changeShown.emit(event)

        self._calls.append(
            run_in_background(
                lambda: read_change(event.output, info),
                ready,
                lambda exc: self._note(f"Cannot show the change layers: {exc}", error=True),
                name="read change layers",
            )
        )

    def choose_export(self) -> None:
        if self.finished is None:
            return
        default = str(Path(self.finished.output).with_name(Path(self.finished.output).stem + "-export.gpkg"))
        path, _ = QFileDialog.getSaveFileName(self.win, "Export change", default, "GeoPackage (*.gpkg)")
        if path:
            self.export(path)

    def export(self, path: str | os.PathLike[str]) -> Path | None:
        """Write the finished comparison's change GeoPackage to ``path`` (a copy of its output)."""
        if self.finished is None:
            return None
        try:
            target = export_change(self.finished.output, path)
        except OSError as exc:
            self.win.show_status(f"Cannot export to {path}: {exc}")
            return None
        self.win.show_status(f"Exported the change layers to {target}")
        return target
