"""The model manager: get a known model (``models/*.json``) from inside the app.

Choose a model → **Download** (progress, speed, time left; resumable; Cancel stops within about a
second and keeps what finished for the next try) → **Convert** (progress; cancellable, nothing is left
half-written) → **Verify** (re-hashes the files against their record) → **Use this model**, which puts
the converted folder in the Model panel. Everything runs in a background thread: the window stays
responsive. Offline, one line says so and points to the manual path (copy a model folder, Browse…).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any

from PySide6.QtCore import QObject, Qt, Signal
from PySide6.QtWidgets import (
    QDialog,
    QHBoxLayout,
    QLabel,
    QListWidget,
    QListWidgetItem,
    QProgressBar,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from rsvg_desktop.core.progress import format_duration
from rsvg_desktop.errors import CancelledError, OfflineError, RsvgError
from rsvg_desktop.gui.logic.messages import app_message

__all__ = ["ModelManagerDialog", "ModelTask", "describe_download"]

log = logging.getLogger(__name__)


def _size(n: float) -> str:
    return f"{n / 1e9:.2f} GB" if n >= 1e9 else f"{n / 1e6:.1f} MB"


def describe_download(p: Any) -> str:
    """``412.0 MB of 14.13 GB · 23.4 MB/s · 10:02 left · pytorch_model-00001-of-00002.bin``."""
    parts = [f"{_size(p.done)} of {_size(p.total)}" if p.total else _size(p.done)]
    if p.bytes_per_s > 0:
        parts.append(f"{_size(p.bytes_per_s)}/s")
    left = p.seconds_left
    if left is not None and p.total and p.done < p.total:
        parts.append(f"{format_duration(left)} left")
    if p.file:
        parts.append(p.file)
    return " · ".join(parts)


class ModelTask(QObject):
    """One long job in its own Python thread; signals arrive on the GUI thread. ``fn`` receives
    ``(progress, should_stop)``."""

    progress = Signal(object)
    done = Signal(object)
    failed = Signal(object)

    def __init__(self, name: str, fn: Callable[[Callable[[Any], None], Callable[[], bool]], Any]) -> None:
        super().__init__()
        self.name = name
        self._fn = fn
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"rsvg-{name}", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def cancel(self) -> None:
        self._stop.set()

    @property
    def running(self) -> bool:
        return self._thread.is_alive()

    def wait(self, timeout: float) -> bool:
        self._thread.join(timeout)
        return not self._thread.is_alive()

    def _run(self) -> None:
        try:
            value = self._fn(self.progress.emit, self._stop.is_set)
        except BaseException as exc:  # delivered to the GUI thread, never raised in this thread
            self.failed.emit(exc)
        else:
            self.done.emit(value)


class ModelManagerDialog(QDialog):
    """See the module doc. :attr:`modelChosen` carries the converted folder to use."""

    modelChosen = Signal(str)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setWindowTitle("Get a model")
        self.setMinimumWidth(520)
        self.task: ModelTask | None = None
        self._statuses: dict[str, Any] = {}

        self.list = QListWidget(self)
        self.list.currentItemChanged.connect(lambda *_: self._show_selected())
        self.details = QLabel(self)
        self.details.setWordWrap(True)
        self.details.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.progress_bar = QProgressBar(self)
        self.progress_bar.setVisible(False)
        self.status = QLabel(self)
        self.status.setWordWrap(True)
        self.status.setObjectName("modelManagerStatus")

        self.download_button = QPushButton("Download", self)
        self.convert_button = QPushButton("Convert", self)
        self.verify_button = QPushButton("Verify", self)
        self.use_button = QPushButton("Use this model", self)
        self.cancel_button = QPushButton("Cancel", self)
        self.close_button = QPushButton("Close", self)
        self.download_button.clicked.connect(self.download)
        self.convert_button.clicked.connect(self.convert)
        self.verify_button.clicked.connect(self.verify)
        self.use_button.clicked.connect(self._use)
        self.cancel_button.clicked.connect(self.cancel)
        self.close_button.clicked.connect(self.close)

        buttons = QHBoxLayout()
        for b in (self.download_button, self.convert_button, self.verify_button, self.use_button):
            buttons.addWidget(b)
        buttons.addStretch(1)
        buttons.addWidget(self.cancel_button)
        buttons.addWidget(self.close_button)
        layout = QVBoxLayout(self)
        layout.addWidget(QLabel("Known models (manifests in models/ and your data folder):", self))
        layout.addWidget(self.list, 1)
        layout.addWidget(self.details)
        layout.addWidget(self.progress_bar)
        layout.addWidget(self.status)
        layout.addLayout(buttons)
        self.refresh()

    # --- state ---------------------------------------------------------------------------------
    def refresh(self) -> None:
        from rsvg_desktop.engine.model_jobs import list_models

        current = self.selected_id()
        self._statuses = {s.id: s for s in list_models()}
        self.list.clear()
        for s in self._statuses.values():
            state = (
                "converted"
                if s.converted
                else "downloaded"
                if s.downloaded
                else "partly downloaded"
                if s.partial
                else "not downloaded"
            )
            item = QListWidgetItem(f"{s.name} — {state}")
            item.setData(Qt.ItemDataRole.UserRole, s.id)
            self.list.addItem(item)
            if s.id == current or (current is None and self.list.count() == 1):
                self.list.setCurrentItem(item)
        self._show_selected()

    def selected_id(self) -> str | None:
        item = self.list.currentItem()
        return None if item is None else str(item.data(Qt.ItemDataRole.UserRole))

    def _show_selected(self) -> None:
        from rsvg_desktop.engine.model_jobs import checked_against

        s = self._statuses.get(self.selected_id() or "")
        busy = self.task is not None and self.task.running
        if s is None:
            self.details.setText("No known model: add a manifest to models/ (see models/README.md).")
        else:
            size = f"about {_size(s.size_hint)}" if s.size_hint else "size unknown"
            cached = ", ".join(s.cached_precisions) or "none"
            self.details.setText(
                f"<b>{s.name}</b> ({size})<br>Licence: {s.license}<br>Download folder: {s.download_dir}"
                f"<br>Converted folder: {s.converted_dir if s.converted else 'not converted yet'}"
                f"<br>Cached precisions: {cached}<br>Checked against: {checked_against(s)}"
            )
        self.download_button.setEnabled(s is not None and not busy and not s.downloaded)
        self.convert_button.setEnabled(s is not None and not busy and s.downloaded)
        self.verify_button.setEnabled(s is not None and not busy and s.downloaded)
        self.use_button.setEnabled(s is not None and not busy and s.converted)
        self.cancel_button.setEnabled(busy)
        self.list.setEnabled(not busy)

    # --- jobs ----------------------------------------------------------------------------------
    def _start(
        self,
        name: str,
        fn: Callable[[Callable[[Any], None], Callable[[], bool]], Any],
        on_done: Callable[[Any], None],
    ) -> None:
        task = ModelTask(name, fn)
        task.progress.connect(self._on_progress)
        task.done.connect(lambda value: self._finished(on_done, value))
        task.failed.connect(self._failed)
        self.task = task
        self.progress_bar.setVisible(True)
        self.progress_bar.setRange(0, 0)
        task.start()
        self._show_selected()

    def download(self) -> None:
        from rsvg_desktop.engine.model_jobs import download_known

        model_id = self.selected_id()
        if model_id is None:
            return
        self.status.setText(f"Downloading {model_id}…")
        self._start(
            "download",
            lambda progress, stop: download_known(model_id, progress=progress, should_stop=stop),
            lambda _path: self.status.setText("Downloaded and checked. Next: Convert."),
        )

    def convert(self) -> None:
        from rsvg_desktop.engine.model_jobs import convert_known

        model_id = self.selected_id()
        if model_id is None:
            return
        self.status.setText(f"Converting {model_id}…")

        def job(progress: Callable[[Any], None], stop: Callable[[], bool]) -> Any:
            def report(p: Any) -> None:
                if stop():
                    raise CancelledError("conversion cancelled (nothing was written)")
                progress(p)

            return convert_known(model_id, progress=report, overwrite=True)

        self._start(
            "convert", job, lambda path: self.status.setText(f"Converted: {path}. Next: Use this model.")
        )

    def verify(self) -> None:
        from rsvg_desktop.engine.model_jobs import verify_known

        model_id = self.selected_id()
        if model_id is None:
            return
        self.status.setText(f"Checking every file of {model_id}…")
        self._start(
            "verify",
            lambda _progress, stop: verify_known(model_id, should_stop=stop),
            lambda problems: self.status.setText(
                "Every file matches its record." if not problems else "Problems: " + "; ".join(problems)
            ),
        )

    def cancel(self) -> None:
        if self.task is not None and self.task.running:
            self.task.cancel()
            self.status.setText("Cancelling…")

    def _on_progress(self, p: Any) -> None:
        if hasattr(p, "bytes_per_s"):  # a download
            if p.total:
                self.progress_bar.setRange(0, 1000)
                self.progress_bar.setValue(int(1000 * min(1.0, p.done / p.total)))
            self.status.setText(describe_download(p))
        elif hasattr(p, "fraction"):  # a conversion
            self.progress_bar.setRange(0, 1000)
            self.progress_bar.setValue(int(1000 * p.fraction))
            self.status.setText(f"Converting: {getattr(p, 'message', '')}")

    def _finished(self, on_done: Callable[[Any], None], value: Any) -> None:
        self.task = None
        self.progress_bar.setVisible(False)
        self.refresh()
        on_done(value)

    def _failed(self, exc: BaseException) -> None:
        self.task = None
        self.progress_bar.setVisible(False)
        self.refresh()
        if isinstance(exc, CancelledError):
            text = f"Cancelled: {exc}. What finished is kept; Download resumes it."
        elif isinstance(exc, OfflineError):
            text = (
                f"{exc} To install by hand, copy a downloaded or converted model folder to this machine "
                "and choose it with Browse… in the Model panel."
            )
        elif isinstance(exc, RsvgError):
            text = str(exc)
        else:
            log.error("model manager: %s failed", type(exc).__name__, exc_info=exc)
            text = f"Failed: {type(exc).__name__}: {exc}"
        self.status.setText(app_message(text))  # no commands, no raw [Errno …]

    def _use(self) -> None:
        s = self._statuses.get(self.selected_id() or "")
        if s is not None and s.converted:
            self.modelChosen.emit(s.converted_dir)
            self.accept()

    def closeEvent(self, event: Any) -> None:
        if self.task is not None and self.task.running:
            self.task.cancel()
            self.task.wait(2.0)
        super().closeEvent(event)
