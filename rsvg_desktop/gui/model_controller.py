"""Loading and unloading the model from the model panel, and reporting worker crashes.

The test model (tiny, RANDOM WEIGHTS) is prepared in a background thread on first use by the engine's
``ensure_test_model()`` (cached under the user's data folder). A worker that dies (killed, out of
memory, CUDA failure) or a load that fails shows a banner in the panel with Reload / Reload at a lower
precision; the window itself carries on.
"""

from __future__ import annotations

import logging
import signal
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, QTimer, Signal
from PySide6.QtWidgets import QWidget

from rsvg_desktop.engine.events import ModelSpec
from rsvg_desktop.gui.logic.modelinfo import describe_loaded, process_rss_bytes
from rsvg_desktop.gui.model_manager import ModelManagerDialog
from rsvg_desktop.gui.model_panel import ModelChoice, ModelPanel
from rsvg_desktop.gui.settings import Settings
from rsvg_desktop.gui.tasks import run_in_background
from rsvg_desktop.gui.worker_bridge import WorkerBridge

__all__ = ["ModelController", "default_test_model", "explain_exit"]

log = logging.getLogger(__name__)


def default_test_model() -> Path:
    """The engine's cached tiny test model (random weights)."""
    from rsvg_desktop.engine.model_files import ensure_test_model

    return Path(ensure_test_model())


def discover_model() -> str | None:
    """The model folder the command line would use ($RSVG_MODEL_DIR, the HF cache), or None."""
    from rsvg_desktop.core.model.locate import find_model
    from rsvg_desktop.engine.model_jobs import downloaded_model_dirs
    from rsvg_desktop.errors import ModelError

    try:
        return str(find_model(downloaded=downloaded_model_dirs()).path)
    except ModelError:
        return None


def explain_exit(code: int | None) -> str:
    """A few words on a worker's exit code."""
    if code is None:
        return "exit code unknown"
    if code < 0:
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = {
            "SIGKILL": " — killed; often the system ran out of memory",
            "SIGSEGV": " — crashed (segmentation fault)",
            "SIGABRT": " — aborted (often a CUDA or driver error)",
            "SIGTERM": " — terminated",
        }.get(name, "")
        return f"{name}{hint}"
    return f"exit code {code}"


class ModelController(QObject):
    """See module doc."""

    statusMessage = Signal(str)
    deviceChanged = Signal(str, bool)  # device label for the status bar, random weights

    def __init__(
        self,
        bridge: WorkerBridge,
        panel: ModelPanel,
        settings: Settings,
        test_model: Callable[[], Path] | None = None,
        parent: QObject | None = None,
    ) -> None:
        super().__init__(parent)
        self.bridge = bridge
        self.panel = panel
        self.settings = settings
        self._test_model = test_model or default_test_model
        self._preparing = False
        self._memory = QTimer(self)
        self._memory.setInterval(2000)
        self._memory.timeout.connect(self._refresh_memory)
        panel.loadRequested.connect(self.load)
        panel.unloadRequested.connect(self.unload)
        panel.choiceChanged.connect(self._save_choice)
        panel.manageRequested.connect(self.open_manager)
        self.manager: ModelManagerDialog | None = None
        bridge.stateChanged.connect(self._on_state)
        bridge.modelLoading.connect(panel.show_loading)
        bridge.modelLoaded.connect(self._on_loaded)
        bridge.modelUnloaded.connect(self._on_unloaded)
        bridge.error.connect(self._on_error)
        bridge.workerDied.connect(self._on_died)

    def restore(self) -> None:
        """Fill the panel from the settings; with no folder set there, look for a model the way the CLI
        does ($RSVG_MODEL_DIR, then the Hugging Face cache, offline) in the background."""
        s = self.settings
        self.panel.set_choice(
            folder=s.model_dir, use_test=s.use_test_model, precision=s.precision, device=s.device
        )
        if not s.model_dir:
            run_in_background(discover_model, self._discovered, lambda exc: None, name="discover model")

    def _discovered(self, folder: str | None) -> None:
        if folder and not self.panel.folder_edit.text():
            log.info("found a model at %s", folder)
            self.panel.folder_edit.setText(folder)

    def _save_choice(self) -> None:
        choice = self.panel.choice()
        self.settings.model_dir = choice.folder
        self.settings.use_test_model = choice.source == "test"
        self.settings.precision = choice.precision
        self.settings.device = choice.device

    # --- the model manager ---------------------------------------------------------------------
    def open_manager(self) -> ModelManagerDialog:
        """Show the model manager (download, convert, verify a known model); one at a time."""
        if self.manager is None:
            parent = self.panel.window()
            self.manager = ModelManagerDialog(parent if isinstance(parent, QWidget) else None)
            self.manager.modelChosen.connect(self._use_downloaded)
        self.manager.refresh()
        self.manager.show()
        self.manager.raise_()
        return self.manager

    def _use_downloaded(self, folder: str) -> None:
        self.panel.folder_radio.setChecked(True)
        self.panel.folder_edit.setText(folder)
        self._save_choice()
        self.statusMessage.emit(f"Model folder set to {folder}: press Load")

    # --- commands ----------------------------------------------------------------------------
    def load(self, choice: ModelChoice) -> None:
        self._save_choice()
        if choice.source == "test":
            self._preparing = True
            self.panel.set_state("preparing")
            self.statusMessage.emit("Preparing the test model (random weights)…")
            self._call = run_in_background(
                self._test_model,
                lambda path: self._load_spec(choice, str(path)),
                self._prepare_failed,
                name="test model",
            )
        else:
            self._load_spec(choice, choice.folder)

    def _load_spec(self, choice: ModelChoice, folder: str) -> None:
        self._preparing = False
        spec = ModelSpec(model_dir=folder, precision=choice.precision, device=choice.device)
        log.info("loading %s at %s on %s", folder, choice.precision, choice.device)
        try:
            self.bridge.load(spec)
        except Exception as exc:
            log.exception("starting the model worker failed")
            self.panel.set_state(self.bridge.state)
            self.panel.show_banner(f"The model worker could not start: {exc}", offer_lower=False)
            return
        self.statusMessage.emit(f"Loading the model at {choice.precision}…")

    def _prepare_failed(self, exc: BaseException) -> None:
        self._preparing = False
        self.panel.set_state(self.bridge.state)
        self.panel.show_banner(f"The test model could not be prepared: {exc}", offer_lower=False)

    def unload(self) -> None:
        try:
            self.bridge.unload()
        except RuntimeError as exc:
            self.statusMessage.emit(str(exc))

    # --- bridge ------------------------------------------------------------------------------
    def _on_state(self, state: str) -> None:
        if not self._preparing:
            self.panel.set_state(state)
        if state in ("stopped", "idle"):
            self._memory.stop()
            self.deviceChanged.emit("no model", False)

    def _on_loaded(self, info: Any) -> None:
        summary = describe_loaded(info)
        self.panel.hide_banner()
        self.panel.show_loaded(info, process_rss_bytes(self.bridge.pid))
        self.panel.set_state("ready")
        self._memory.start()
        self.deviceChanged.emit(summary.device_name, summary.random_weights)
        self.statusMessage.emit(f"Model loaded: {summary.headline}")

    def _on_unloaded(self) -> None:
        self.statusMessage.emit("Model unloaded")

    def _refresh_memory(self) -> None:
        if self.bridge.loaded:
            self.panel.show_memory(process_rss_bytes(self.bridge.pid))

    def _on_error(self, message: str, fatal: bool) -> None:
        log.warning("model worker error%s: %s", " (fatal)" if fatal else "", message)
        if fatal or not self.bridge.loaded:
            spec = self.bridge.spec
            self.panel.show_banner(
                f"The model could not be loaded or run: {message}",
                precision=spec.precision if spec is not None else None,
            )
        self.statusMessage.emit(message)

    def _on_died(self, code: Any) -> None:
        spec = self.bridge.spec
        what = f" while holding {spec.precision}" if spec is not None else ""
        self.panel.show_banner(
            f"The model worker stopped unexpectedly ({explain_exit(code)}){what}. The window and the "
            "finished tiles are fine; load the model again to continue.",
            precision=spec.precision if spec is not None else None,
        )
        self.statusMessage.emit(f"The model worker stopped ({explain_exit(code)})")
