"""The query panel: task, text (and class list or region), scope, Run / Cancel, and the run's progress."""

from __future__ import annotations

import logging

from PySide6.QtCore import Signal
from PySide6.QtWidgets import (
    QComboBox,
    QFormLayout,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QProgressBar,
    QPushButton,
    QSpinBox,
    QVBoxLayout,
    QWidget,
)

from rsvg_desktop.core.prompt.templates import TASKS
from rsvg_desktop.gui.logic.runplan import SCOPES, PixelRect, QueryRequest
from rsvg_desktop.gui.logic.task_queries import TaskQueries
from rsvg_desktop.gui.scene_nodata import NodataField

__all__ = ["QueryPanel"]

log = logging.getLogger(__name__)

_PLACEHOLDERS = {
    "grounding": "Please describe the image in detail. (default)",
    "refer": "e.g. airplanes, storage tanks, cars in the parking lot",
    "identify": "(no text: draw the region on the map)",
    "classify": "optional question, e.g. Which class best describes this scene?",
    "vqa": "e.g. Is there a harbour in the image?",
    "chat": "Ask anything about each tile",
}
DEFAULT_CLASSES = (
    "airport, bare land, beach, bridge, commercial, desert, farmland, forest, industrial, "
    "meadow, mountain, parking, port, residential, river"
)


class QueryPanel(QWidget):
    """Builds a :class:`~rsvg_desktop.gui.logic.runplan.QueryRequest` from the analyst's choices."""

    runRequested = Signal(object)  # QueryRequest
    cancelRequested = Signal()
    drawScopeRequested = Signal()
    drawRegionRequested = Signal()
    gridChanged = Signal(int, int)  # tile size, overlap

    def __init__(self, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("queryPanel")
        self.task_combo = QComboBox(self)
        for task in TASKS.values():
            self.task_combo.addItem(task.label, task.name)
            self.task_combo.setItemData(
                self.task_combo.count() - 1, task.description, role=3
            )  # Qt.ToolTipRole
        self.task_help = QLabel(self)
        self.task_help.setWordWrap(True)
        self.task_help.setStyleSheet("color: palette(mid);")

        self.query_edit = QLineEdit(self)
        self.query_edit.returnPressed.connect(self._run)
        self.classes_label = QLabel("Classes", self)
        self.classes_edit = QLineEdit(DEFAULT_CLASSES, self)
        self.classes_edit.setToolTip("Comma-separated class names the model chooses from")

        self.region_label = QLabel(self)
        self.region_button = QPushButton("Draw region", self)
        self.region_button.setToolTip("Drag a rectangle around the object on the map")
        self.region_button.clicked.connect(self.drawRegionRequested.emit)
        region_row = QHBoxLayout()
        region_row.addWidget(self.region_label, 1)
        region_row.addWidget(self.region_button)
        self.region_widget = QWidget(self)
        self.region_widget.setLayout(region_row)
        region_row.setContentsMargins(0, 0, 0, 0)

        self.scope_combo = QComboBox(self)
        for value, label in SCOPES:
            self.scope_combo.addItem(label, value)
        self.scope_button = QPushButton("Draw", self)
        self.scope_button.setToolTip("Drag the scope rectangle on the map")
        self.scope_button.clicked.connect(self.drawScopeRequested.emit)
        scope_row = QHBoxLayout()
        scope_row.addWidget(self.scope_combo, 1)
        scope_row.addWidget(self.scope_button)
        scope_row.setContentsMargins(0, 0, 0, 0)
        self.scope_widget = QWidget(self)
        self.scope_widget.setLayout(scope_row)

        self.tile_spin = QSpinBox(self)
        self.tile_spin.setRange(64, 4096)
        self.tile_spin.setValue(504)
        self.tile_spin.setSuffix(" px")
        self.tile_spin.setToolTip("Tile side sent to the model (GeoChat sees 504 px)")
        self.overlap_spin = QSpinBox(self)
        self.overlap_spin.setRange(0, 1024)
        self.overlap_spin.setValue(64)
        self.overlap_spin.setSuffix(" px")
        self.overlap_spin.setToolTip("Overlap between neighbouring tiles")
        grid_row = QHBoxLayout()
        grid_row.setContentsMargins(0, 0, 0, 0)
        grid_row.addWidget(self.tile_spin, 1)
        grid_row.addWidget(QLabel("overlap", self))
        grid_row.addWidget(self.overlap_spin, 1)
        self.tile_spin.editingFinished.connect(self._grid_edited)
        self.overlap_spin.editingFinished.connect(self._grid_edited)

        self.run_button = QPushButton("Run", self)
        self.run_button.setDefault(True)
        self.run_button.clicked.connect(self._run)
        self.cancel_button = QPushButton("Cancel", self)
        self.cancel_button.clicked.connect(self.cancelRequested.emit)
        self.cancel_button.setEnabled(False)
        buttons = QHBoxLayout()
        buttons.addWidget(self.run_button, 1)
        buttons.addWidget(self.cancel_button)

        self.reason_label = QLabel(self)
        self.reason_label.setWordWrap(True)
        self.reason_label.setStyleSheet("color: #e0a030;")
        self.progress = QProgressBar(self)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no run yet")
        self.progress_label = QLabel(self)
        self.progress_label.setWordWrap(True)

        form = QFormLayout()
        form.addRow("Task", self.task_combo)
        form.addRow("", self.task_help)
        form.addRow("Query", self.query_edit)
        form.addRow(self.classes_label, self.classes_edit)
        self.region_row_label = QLabel("Region", self)
        form.addRow(self.region_row_label, self.region_widget)
        self.scope_row_label = QLabel("Scope", self)
        form.addRow(self.scope_row_label, self.scope_widget)
        form.addRow("Tiles", grid_row)
        self.nodata_field = NodataField(self)  # the scene's description and its nodata value
        scene_form = QFormLayout()  # under the run's progress: Run stays on screen in a small window
        scene_form.addRow("Nodata value", self.nodata_field)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(6, 6, 6, 6)
        layout.addLayout(form)
        layout.addLayout(buttons)
        layout.addWidget(self.reason_label)
        layout.addWidget(self.progress)
        layout.addWidget(self.progress_label)
        layout.addLayout(scene_form)
        layout.addStretch(1)
        for combo in self.findChildren(QComboBox):  # long item labels must not set the dock's width
            combo.setSizeAdjustPolicy(QComboBox.SizeAdjustPolicy.AdjustToMinimumContentsLengthWithIcon)
            combo.setMinimumContentsLength(10)

        self._region: PixelRect | None = None
        self._queries = TaskQueries()  # each task keeps its own query text
        self._running = False
        self._can_run = False
        self._reason = ""
        self.task_combo.currentIndexChanged.connect(self._task_changed)
        self.scope_combo.currentIndexChanged.connect(self._scope_changed)
        self.set_region(None)
        self.set_task("refer")
        self._task_changed()
        self._scope_changed()
        self._update_buttons()

    # --- state from outside ------------------------------------------------------------------
    @property
    def task(self) -> str:
        return str(self.task_combo.currentData())

    def set_task(self, name: str) -> None:
        i = self.task_combo.findData(name)
        if i >= 0:
            self.task_combo.setCurrentIndex(i)

    @property
    def scope(self) -> str:
        return str(self.scope_combo.currentData())

    def set_scope(self, value: str) -> None:
        i = self.scope_combo.findData(value)
        if i >= 0:
            self.scope_combo.setCurrentIndex(i)

    def set_region(self, rect: PixelRect | None) -> None:
        self._region = rect
        if rect is None:
            self.region_label.setText("none: draw it on the map")
        else:
            x0, y0, x1, y1 = rect
            self.region_label.setText(
                f"{abs(x1 - x0):.0f} × {abs(y1 - y0):.0f} px at ({min(x0, x1):.0f}, {min(y0, y1):.0f})"
            )

    def forget_scene(self) -> None:
        """Another scene is open: the region drawn on the previous one and its run's progress go."""
        self.set_region(None)
        self.progress.setRange(0, 1)
        self.progress.setValue(0)
        self.progress.setFormat("no run yet")
        self.progress_label.setText("")

    def set_grid(self, tile_size: int, overlap: int) -> None:
        self.tile_spin.blockSignals(True)
        self.overlap_spin.blockSignals(True)
        self.tile_spin.setValue(tile_size)
        self.overlap_spin.setMaximum(max(0, tile_size - 1))
        self.overlap_spin.setValue(min(overlap, tile_size - 1))
        self.tile_spin.blockSignals(False)
        self.overlap_spin.blockSignals(False)
        self._grid = (self.tile_spin.value(), self.overlap_spin.value())

    def grid(self) -> tuple[int, int]:
        return (self.tile_spin.value(), self.overlap_spin.value())

    def _grid_edited(self) -> None:
        self.overlap_spin.setMaximum(max(0, self.tile_spin.value() - 1))
        grid = self.grid()
        if grid != getattr(self, "_grid", None):
            self._grid = grid
            self.gridChanged.emit(*grid)

    def set_can_run(self, can: bool, reason: str = "") -> None:
        """Whether Run is possible now, and if not, why (shown under the buttons)."""
        self._can_run = can
        self._reason = reason
        self._update_buttons()

    def set_running(self, running: bool) -> None:
        self._running = running
        self._update_buttons()

    def set_cancelling(self) -> None:
        self.cancel_button.setEnabled(False)
        self.progress_label.setText(self.progress_label.text() + " · cancelling…")

    def set_progress(self, done: int, total: int, text: str = "", unit: str = "tiles") -> None:
        """``unit``: what is counted (a comparison: both dates' tiles and its verification questions)."""
        self.progress.setFormat(f"%v / %m {unit}")
        self.progress.setRange(0, max(1, total))
        self.progress.setValue(min(done, max(1, total)))
        self.progress_label.setText(text)

    def request(self) -> QueryRequest:
        classes = tuple(c.strip() for c in self.classes_edit.text().split(",") if c.strip())
        return QueryRequest(
            task=self.task,
            query=self.query_edit.text().strip(),
            classes=classes if TASKS[self.task].takes_classes else (),
            scope=self.scope,
            region=self._region,
        )

    # --- internals ---------------------------------------------------------------------------
    def _update_buttons(self) -> None:
        self.run_button.setEnabled(self._can_run and not self._running)
        self.tile_spin.setEnabled(not self._running)
        self.overlap_spin.setEnabled(not self._running)
        self.nodata_field.setEnabled(not self._running)
        self.cancel_button.setEnabled(self._running)
        self.reason_label.setText("" if self._can_run or self._running else self._reason)
        self.reason_label.setVisible(bool(self.reason_label.text()))

    def _task_changed(self, *_args: object) -> None:
        task = TASKS[self.task]
        if task.name != self._queries.task:
            self.query_edit.setText(self._queries.switch(task.name, self.query_edit.text()))
        self.task_help.setText(task.description)
        self.query_edit.setPlaceholderText(_PLACEHOLDERS.get(task.name, ""))
        self.query_edit.setEnabled(not task.needs_region)
        widgets: tuple[QWidget, ...]
        for widgets, visible in (
            ((self.classes_label, self.classes_edit), task.takes_classes),
            ((self.region_row_label, self.region_widget), task.needs_region),
            ((self.scope_row_label, self.scope_widget), not task.needs_region),
        ):
            for w in widgets:
                w.setVisible(visible)

    def _scope_changed(self, *_args: object) -> None:
        self.scope_button.setVisible(self.scope == "rectangle")

    def _run(self) -> None:
        if self._can_run and not self._running:
            self.runRequested.emit(self.request())
