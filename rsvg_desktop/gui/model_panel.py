"""The model panel: which model (a GeoChat folder or the test model with random weights), precision,
device, Load / Unload, what is loaded (precision, device name, memory), and the banner that reports a
worker crash or a failed load and offers to reload."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from PySide6.QtCore import Qt, Signal
from PySide6.QtWidgets import (
    QButtonGroup,
    QComboBox,
    QFileDialog,
    QFormLayout,
    QFrame,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QRadioButton,
    QVBoxLayout,
    QWidget,
)

from rsvg_desktop.gui.logic.messages import app_message
from rsvg_desktop.gui.logic.modelinfo import (
    GUIDANCE,
    RANDOM_WEIGHTS_LABEL,
    check_model_folder,
    describe_loaded,
    format_bytes,
)
from rsvg_desktop.gui.logic.runplan import PRECISIONS, lower_precision

__all__ = ["DEVICES", "ModelChoice", "ModelPanel", "device_words"]

log = logging.getLogger(__name__)

DEVICES: tuple[tuple[str, str], ...] = (("auto", "Auto (GPU if any)"), ("cuda", "GPU (CUDA)"), ("cpu", "CPU"))


def device_words(device: str) -> str:
    """A device setting in the panel's words ("GPU (CUDA)")."""
    return dict(DEVICES).get(device, device)


@dataclass(frozen=True, slots=True)
class ModelChoice:
    """What to load: ``source`` is ``folder`` or ``test``."""

    source: str
    folder: str
    precision: str
    device: str


class ModelPanel(QWidget):
    """See module doc. Emits :attr:`loadRequested` (a :class:`ModelChoice`) and :attr:`unloadRequested`."""

    loadRequested = Signal(object)
    unloadRequested = Signal()
    choiceChanged = Signal()
    manageRequested = Signal()  # "Get a model…": open the model manager
    calibrateRequested = Signal()  # "Calibrate q4cal…" (again: cancel the calibration)

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("modelPanel")
        self.folder_radio = QRadioButton("GeoChat folder", self)
        self.test_radio = QRadioButton(RANDOM_WEIGHTS_LABEL.capitalize(), self)
        self.test_radio.setToolTip(
            "A tiny GeoChat-shaped model with RANDOM WEIGHTS: it shows the whole "
            "flow working, its answers are meaningless"
        )
        group = QButtonGroup(self)
        group.addButton(self.folder_radio)
        group.addButton(self.test_radio)
        self.folder_radio.setChecked(True)

        self.folder_edit = QLineEdit(self)
        self.folder_edit.setPlaceholderText("converted GeoChat folder")
        self.browse_button = QPushButton("Browse…", self)
        self.browse_button.clicked.connect(self._browse)
        folder_row = QHBoxLayout()
        folder_row.setContentsMargins(0, 0, 0, 0)
        folder_row.addWidget(self.folder_edit, 1)
        folder_row.addWidget(self.browse_button)
        self.get_button = QPushButton("Get a model…", self)
        self.get_button.setToolTip("Download, convert and verify a known model (GeoChat-7B…)")
        self.get_button.clicked.connect(self.manageRequested.emit)
        self.calibrate_button = QPushButton("Calibrate q4cal…", self)
        self.calibrate_button.setToolTip(
            "Calibrate the calibrated 4-bit precision (q4cal) on tiles of your scenes: same memory as nf4, "
            "closer to bf16. Runs in the background; click again to cancel."
        )
        self.calibrate_button.clicked.connect(self.calibrateRequested.emit)

        self.guidance = QLabel(self)
        self.guidance.setWordWrap(True)
        self.guidance.setTextFormat(Qt.TextFormat.RichText)
        self.guidance.setTextInteractionFlags(Qt.TextInteractionFlag.TextSelectableByMouse)
        self.guidance.setObjectName("modelGuidance")
        self.use_test_button = QPushButton("Use the test model (random weights)", self)
        self.use_test_button.clicked.connect(lambda: self.test_radio.setChecked(True))

        self.precision_combo = QComboBox(self)
        for value, label in PRECISIONS:  # q4cal too: a calibration made earlier can be loaded any time
            self.precision_combo.addItem(app_message(label), value)
        self.device_combo = QComboBox(self)
        for value, label in DEVICES:
            self.device_combo.addItem(label, value)

        self.load_button = QPushButton("Load", self)
        self.load_button.clicked.connect(self._load)
        self.unload_button = QPushButton("Unload", self)
        self.unload_button.clicked.connect(self.unloadRequested.emit)
        buttons = QHBoxLayout()
        buttons.addWidget(self.load_button, 1)
        buttons.addWidget(self.unload_button, 1)

        self.status_label = QLabel("No model loaded.", self)
        self.status_label.setObjectName("modelStatus")
        self.status_label.setWordWrap(True)
        self.details_label = QLabel(self)
        self.details_label.setWordWrap(True)
        self.details_label.setStyleSheet("color: palette(mid);")
        self.random_badge = QLabel("RANDOM WEIGHTS: test model, answers are meaningless", self)
        self.random_badge.setObjectName("randomWeightsBadge")
        self.random_badge.setWordWrap(True)
        self.random_badge.setStyleSheet("background: #b3261e; color: white; font-weight: bold; padding: 3px;")
        self.random_badge.setVisible(False)

        # Crash / failure banner.
        self.banner = QFrame(self)
        self.banner.setObjectName("workerBanner")
        self.banner.setStyleSheet(
            "#workerBanner { background: #5c1d1d; border: 1px solid #e57373; }"
            "#workerBanner QLabel { color: white; }"
        )
        self.banner_label = QLabel(self.banner)
        self.banner_label.setWordWrap(True)
        self.reload_button = QPushButton("Reload", self.banner)
        self.reload_lower_button = QPushButton(self.banner)
        self.dismiss_button = QPushButton("Dismiss", self.banner)
        self.reload_button.clicked.connect(self._retry_load)
        self.reload_lower_button.clicked.connect(lambda: self._reload(self._lower))
        self.dismiss_button.clicked.connect(self.hide_banner)
        banner_buttons = QHBoxLayout()  # two rows: the banner must fit a narrow dock
        banner_buttons.addWidget(self.reload_button, 1)
        banner_buttons.addWidget(self.dismiss_button)
        banner_layout = QVBoxLayout(self.banner)
        banner_layout.addWidget(self.banner_label)
        banner_layout.addLayout(banner_buttons)
        banner_layout.addWidget(self.reload_lower_button)
        self.banner.setVisible(False)
        self._lower: str | None = None
        self._retry: ModelChoice | None = None

        form = QFormLayout()
        form.addRow(self.folder_radio)
        form.addRow(folder_row)
        form.addRow(self.get_button)
        form.addRow(self.guidance)
        form.addRow(self.use_test_button)
        form.addRow(self.test_radio)
        form.addRow("Precision", self.precision_combo)
        form.addRow(self.calibrate_button)
        form.addRow("Device", self.device_combo)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.banner)
        layout.addWidget(self.random_badge)
        layout.addWidget(self.status_label)
        layout.addWidget(self.details_label)
        layout.addStretch(1)
        for combo in self.findChildren(QComboBox):  # long item labels must not set the dock's width
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)

        self._state = "stopped"
        self.folder_edit.textChanged.connect(self._choice_changed)
        self.folder_radio.toggled.connect(self._choice_changed)
        self.precision_combo.currentIndexChanged.connect(self._choice_changed)
        self.device_combo.currentIndexChanged.connect(self._choice_changed)
        self._choice_changed()

    # --- choice ------------------------------------------------------------------------------
    def choice(self) -> ModelChoice:
        return ModelChoice(
            source="test" if self.test_radio.isChecked() else "folder",
            folder=self.folder_edit.text().strip(),
            precision=str(self.precision_combo.currentData()),
            device=str(self.device_combo.currentData()),
        )

    def set_choice(self, *, folder: str, use_test: bool, precision: str, device: str) -> None:
        self.folder_edit.setText(folder)
        (self.test_radio if use_test else self.folder_radio).setChecked(True)
        i = self.precision_combo.findData(precision)
        if i >= 0:
            self.precision_combo.setCurrentIndex(i)
        j = self.device_combo.findData(device)
        if j >= 0:
            self.device_combo.setCurrentIndex(j)

    def _browse(self) -> None:
        folder = QFileDialog.getExistingDirectory(
            self, "Choose the converted GeoChat folder", self.folder_edit.text() or ""
        )
        if folder:
            self.folder_edit.setText(folder)
            self.folder_radio.setChecked(True)

    def _choice_changed(self, *_args: object) -> None:
        choice = self.choice()
        use_folder = choice.source == "folder"
        self.folder_edit.setEnabled(use_folder)
        self.browse_button.setEnabled(use_folder)
        if use_folder:
            check = check_model_folder(choice.folder)
            if not choice.folder:
                self.guidance.setText(GUIDANCE)
            else:
                color = "#7cc47f" if check.ok else "#e0a030"
                self.guidance.setText(f"<span style='color:{color}'>{check.message}</span>")
            self.use_test_button.setVisible(not check.ok)
        else:
            self.guidance.setText(
                "<span style='color:#e57373'><b>Test model: RANDOM WEIGHTS.</b> "
                "It runs the "
                "whole flow (tiles, answers, polygons, export) but its answers are "
                "meaningless. It is prepared on first use.</span>"
            )
            self.use_test_button.setVisible(False)
        self._update_buttons()
        self.choiceChanged.emit()

    def can_load(self) -> bool:
        choice = self.choice()
        return choice.source == "test" or check_model_folder(choice.folder).ok

    def _load(self) -> None:
        if self.can_load():
            self.hide_banner()
            self.loadRequested.emit(self.choice())

    def _retry_load(self) -> None:
        retry = self._retry
        if retry is not None:
            self.set_choice(
                folder=retry.folder,
                use_test=retry.source == "test",
                precision=retry.precision,
                device=retry.device,
            )
        self._load()

    def _reload(self, precision: str | None) -> None:
        if precision:
            i = self.precision_combo.findData(precision)
            if i >= 0:
                self.precision_combo.setCurrentIndex(i)
        self._load()

    # --- worker state ------------------------------------------------------------------------
    def set_state(self, state: str) -> None:
        """The bridge's state (stopped, starting, idle, loading, ready, running, cancelling, unloading)."""
        self._state = state
        if state in ("starting", "loading"):
            self.status_label.setText("Loading the model…")
        elif state == "preparing":
            self.status_label.setText("Preparing the test model (random weights)…")
        elif state in ("stopped", "idle"):
            self.status_label.setText("No model loaded.")
            self.details_label.setText("")
            self.random_badge.setVisible(False)
        elif state == "unloading":
            self.status_label.setText("Unloading…")
        self._update_buttons()

    def _update_buttons(self) -> None:
        busy = self._state in ("starting", "loading", "running", "cancelling", "unloading", "preparing")
        self.load_button.setEnabled(self.can_load() and not busy)
        self.unload_button.setEnabled(self._state == "ready")
        for w in (self.precision_combo, self.device_combo, self.folder_radio, self.test_radio):
            w.setEnabled(not busy)

    def show_loading(self, stage: str, fraction: float) -> None:
        if self._state in ("starting", "loading"):
            self.status_label.setText(f"Loading the model… {stage} ({fraction:.0%})")

    def show_loaded(self, info: object, rss_bytes: int | None = None) -> None:
        summary = describe_loaded(info)
        self.status_label.setText(f"<b>Loaded:</b> {summary.headline}")
        self.random_badge.setVisible(summary.random_weights)
        self._details = list(summary.details)
        self.show_memory(rss_bytes)

    def show_memory(self, rss_bytes: int | None) -> None:
        details = list(getattr(self, "_details", []))
        if rss_bytes:
            details.append(f"worker process memory {format_bytes(rss_bytes)}")
        self.details_label.setText(" · ".join(details))

    def show_banner(
        self,
        message: str,
        *,
        offer_lower: bool = True,
        precision: str | None = None,
        retry: ModelChoice | None = None,
        retry_label: str | None = None,
    ) -> None:
        """Report a crash or failure and offer to reload (at a lower precision than ``precision``, the one
        that failed, when there is one). ``retry``: what the Reload button loads (``retry_label`` on it)
        instead of the panel's current choice (e.g. the CPU after a GPU failed)."""
        precision = precision or self.choice().precision
        self._lower = lower_precision(precision) if offer_lower else None
        self._retry = retry
        self.banner_label.setText(app_message(message))
        self.reload_button.setText(retry_label or f"Reload ({precision})")
        self.reload_lower_button.setVisible(self._lower is not None)
        if self._lower is not None:
            self.reload_lower_button.setText(f"Reload at {self._lower} (less memory)")
        self.banner.setVisible(True)

    def hide_banner(self) -> None:
        self.banner.setVisible(False)

    @property
    def banner_visible(self) -> bool:
        return not self.banner.isHidden()
