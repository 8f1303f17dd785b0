"""Loading and unloading the model from the model panel, and reporting worker crashes.

The test model (tiny, RANDOM WEIGHTS) is prepared in a background thread on first use by the engine's
``ensure_test_model()`` (cached under the user's data folder). A worker that dies (killed, out of
memory, CUDA failure) or a load that fails shows a banner in the panel with Reload / Reload at a lower
precision; the window itself carries on. A load that fails while another model was working (a GPU chosen
on a machine without one) keeps that model (the worker refuses a missing device before dropping it) or
loads it again, and the banner offers other settings (the CPU) rather than the same failing ones.
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
from rsvg_desktop.gui.model_manager import ModelManagerDialog, ModelTask
from rsvg_desktop.gui.model_panel import ModelChoice, ModelPanel, device_words
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
        self._loading: ModelChoice | None = None  # the load in progress
        self._working: ModelChoice | None = None  # the last choice that loaded
        self._restoring = False  # loading the working model again after a failed load
        self._failure_shown = False  # a fatal load failure is on the banner: the worker's death follows
        self._memory = QTimer(self)
        self._memory.setInterval(2000)
        self._memory.timeout.connect(self._refresh_memory)
        panel.loadRequested.connect(self.load)
        panel.unloadRequested.connect(self.unload)
        panel.choiceChanged.connect(self._save_choice)
        panel.manageRequested.connect(self.open_manager)
        panel.calibrateRequested.connect(self.calibrate)
        self.calibration: ModelTask | None = None
        self.calibration_samples = 32
        self.calibration_inputs: list[str] = []  # scenes to take tiles from (the open scene, when set)
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

    # --- q4cal calibration ----------------------------------------------------------------------
    def calibrate(self) -> None:
        """Calibrate q4cal for the chosen model in the background (a second click cancels)."""
        if self.calibration is not None and self.calibration.running:
            self.calibration.cancel()
            self.panel.status_label.setText("Cancelling the calibration…")
            return
        choice = self.panel.choice()
        try:
            folder = str(self._test_model()) if choice.source == "test" else choice.folder
        except Exception as exc:
            self.panel.show_banner(f"The test model could not be prepared: {exc}", offer_lower=False)
            return
        if not folder:
            self.panel.status_label.setText("Choose a converted model folder first, then calibrate.")
            return
        from rsvg_desktop.engine.model_jobs import calibrate

        samples, inputs, device = self.calibration_samples, list(self.calibration_inputs), choice.device
        task = ModelTask(
            "calibrate",
            lambda progress, stop: calibrate(
                folder, inputs, samples=samples, device=device, progress=progress, cancel=stop
            ),
        )
        task.progress.connect(
            lambda p: self.panel.status_label.setText(f"Calibrating q4cal… {p.stage} ({p.fraction:.0%})")
        )
        task.done.connect(self._calibrated)
        task.failed.connect(self._calibration_failed)
        self.calibration = task
        self.panel.calibrate_button.setText("Cancel calibration")
        self.statusMessage.emit(f"Calibrating q4cal for {folder} on {samples} tiles…")
        task.start()

    def _calibrated(self, summary: Any) -> None:
        self.calibration = None
        self.panel.calibrate_button.setText("Calibrate q4cal…")
        i = self.panel.precision_combo.findData("q4cal")
        if i >= 0:
            self.panel.precision_combo.setCurrentIndex(i)
        gain = 100.0 * (1 - summary.loss / summary.loss_nf4) if summary.loss_nf4 else 0.0
        self.panel.status_label.setText(
            f"q4cal calibrated ({summary.calibration_id}, {summary.seconds:.0f} s; block error {gain:.0f} % "
            "below plain nf4 on the calibration tiles). Press Load."
        )
        self.statusMessage.emit(f"q4cal calibration {summary.calibration_id} written")

    def _calibration_failed(self, exc: BaseException) -> None:
        from rsvg_desktop.errors import CancelledError, RsvgError

        self.calibration = None
        self.panel.calibrate_button.setText("Calibrate q4cal…")
        if isinstance(exc, CancelledError):
            self.panel.status_label.setText("Calibration cancelled; nothing was written.")
        elif isinstance(exc, RsvgError):
            self.panel.show_banner(f"The calibration failed: {exc}", offer_lower=False)
        else:
            log.error("calibration failed", exc_info=exc)
            self.panel.show_banner(f"The calibration failed: {type(exc).__name__}: {exc}", offer_lower=False)

    # --- commands ----------------------------------------------------------------------------
    def load(self, choice: ModelChoice) -> None:
        self._save_choice()
        self._loading, self._failure_shown = choice, False
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
            self._loading = None
            self.panel.set_state(self.bridge.state)
            self.panel.show_banner(f"The model worker could not start: {exc}", offer_lower=False)
            return
        self.statusMessage.emit(f"Loading the model at {choice.precision}…")

    def _prepare_failed(self, exc: BaseException) -> None:
        self._preparing = False
        self._loading = None
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
        if self._loading is not None:
            self._working, self._loading = self._loading, None
        if not self._restoring:
            self.panel.hide_banner()  # after restoring, the banner still says what failed
        self._restoring = False
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
        failed, self._loading = self._loading, None
        if failed is not None:
            self._load_failed(failed, message, fatal)
            return
        if fatal or not self.bridge.loaded:
            spec = self.bridge.spec
            self.panel.show_banner(
                f"The model could not be loaded or run: {message}",
                precision=spec.precision if spec is not None else None,
            )
        self.statusMessage.emit(message)

    def _load_failed(self, failed: ModelChoice, message: str, fatal: bool) -> None:
        """A load failed: say so, keep (or load again) the model that worked when there was one, and offer
        other settings than the failing ones (the CPU, or the settings that worked)."""
        self._restoring = False
        self._failure_shown = fatal
        where = f"{failed.precision} on {device_words(failed.device)}"
        text = f"The model could not be loaded ({where}): {message}"
        previous = self._working if self._working is not None and self._working != failed else None
        on_cpu = ModelChoice(failed.source, failed.folder, failed.precision, "cpu")
        retry, label = (
            (on_cpu, f"Load {failed.precision} on the CPU") if failed.device != "cpu" else (None, None)
        )
        kept = self.bridge.loaded  # the worker refused the load and kept the model it had
        if kept:
            self.panel.set_state("ready")
            self.panel.show_loaded(self.bridge.model_info, process_rss_bytes(self.bridge.pid))
        if previous is not None and (kept or not fatal):
            what = f"The model that worked ({previous.precision} on {device_words(previous.device)})"
            text += f" {what} stays loaded." if kept else f" {what} is loaded again."
            self.panel.set_choice(
                folder=previous.folder,
                use_test=previous.source == "test",
                precision=previous.precision,
                device=previous.device,
            )
            if not kept:
                self._restoring = True
                self.load(previous)
        elif previous is not None and retry is None:
            retry, label = previous, f"Reload the settings that worked ({previous.precision})"
        self.panel.show_banner(text, precision=failed.precision, retry=retry, retry_label=label)
        self.statusMessage.emit(text)

    def _on_died(self, code: Any) -> None:
        failed, self._loading = self._loading, None
        if failed is not None:  # died while loading, without a word
            self._load_failed(failed, f"the model worker stopped ({explain_exit(code)})", True)
        if self._failure_shown:  # the banner already says what failed and what to try
            self._failure_shown = False
            self.statusMessage.emit(f"The model worker stopped ({explain_exit(code)})")
            return
        spec = self.bridge.spec
        what = f" while holding {spec.precision}" if spec is not None else ""
        self.panel.show_banner(
            f"The model worker stopped unexpectedly ({explain_exit(code)}){what}. The window and the "
            "finished tiles are fine; load the model again to continue.",
            precision=spec.precision if spec is not None else None,
        )
        self.statusMessage.emit(f"The model worker stopped ({explain_exit(code)})")
