"""The results dock: the detections table with Delete / Restore / Export, in sync with the map."""

from __future__ import annotations

import logging
from collections.abc import Iterable

from PySide6.QtCore import QItemSelection, QItemSelectionModel, QSortFilterProxyModel, Qt, Signal
from PySide6.QtGui import QAction, QKeySequence
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QHeaderView,
    QLabel,
    QPushButton,
    QTableView,
    QVBoxLayout,
    QWidget,
)

from rsvg_desktop.gui.results_model import KEY_ROLE, SORT_ROLE, ResultsModel

__all__ = ["ResultsTable"]

log = logging.getLogger(__name__)

Key = tuple[int, int, int]


class ResultsTable(QWidget):
    """Table of detections. Emits :attr:`selectionChangedKeys` when the analyst selects rows,
    :attr:`deleteRequested` / :attr:`restoreRequested` / :attr:`exportRequested` for the buttons."""

    selectionChangedKeys = Signal(object)  # list of keys
    activated = Signal(object)  # key of a double-clicked row
    deleteRequested = Signal()
    restoreRequested = Signal()
    exportRequested = Signal()

    def __init__(self, model: ResultsModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("resultsTable")
        self.model = model
        self.proxy = QSortFilterProxyModel(self)
        self.proxy.setSourceModel(model)
        self.proxy.setSortRole(SORT_ROLE)
        self.view = QTableView(self)
        self.view.setModel(self.proxy)
        self.view.setSortingEnabled(True)
        self.view.sortByColumn(-1, Qt.SortOrder.AscendingOrder)  # insertion order until a header is clicked
        self.view.setSelectionBehavior(QAbstractItemView.SelectionBehavior.SelectRows)
        self.view.setSelectionMode(QAbstractItemView.SelectionMode.ExtendedSelection)
        self.view.setAlternatingRowColors(True)
        self.view.verticalHeader().setVisible(False)
        self.view.verticalHeader().setDefaultSectionSize(22)
        header = self.view.horizontalHeader()
        header.setSectionResizeMode(0, QHeaderView.ResizeMode.Stretch)
        for col in range(1, 5):
            header.setSectionResizeMode(col, QHeaderView.ResizeMode.ResizeToContents)
        self.view.selectionModel().selectionChanged.connect(self._on_selection)
        self.view.doubleClicked.connect(self._on_double_click)

        delete_action = QAction("Delete selected", self.view)
        delete_action.setShortcuts([QKeySequence(QKeySequence.StandardKey.Delete), QKeySequence("Backspace")])
        delete_action.setShortcutContext(Qt.ShortcutContext.WidgetShortcut)
        delete_action.triggered.connect(self.deleteRequested.emit)
        self.view.addAction(delete_action)
        self.view.setContextMenuPolicy(Qt.ContextMenuPolicy.ActionsContextMenu)

        self.count_label = QLabel(self)
        self.delete_button = QPushButton("Delete selected", self)
        self.delete_button.setToolTip("Remove the selected detections (false positives) from the export")
        self.delete_button.clicked.connect(self.deleteRequested.emit)
        self.restore_button = QPushButton("Restore deleted", self)
        self.restore_button.clicked.connect(self.restoreRequested.emit)
        self.export_button = QPushButton("Export…", self)
        self.export_button.setToolTip("Write the run's merged detections to GeoPackage, GeoJSON or Shapefile")
        self.export_button.clicked.connect(self.exportRequested.emit)

        buttons = QHBoxLayout()
        buttons.addWidget(self.count_label, 1)
        buttons.addWidget(self.delete_button)
        buttons.addWidget(self.restore_button)
        buttons.addWidget(self.export_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addLayout(buttons)
        layout.addWidget(self.view)

        self._syncing = False
        for signal in (model.rowsInserted, model.rowsRemoved, model.modelReset):
            signal.connect(self.refresh_state)
        self.refresh_state()

    def refresh_state(self, *_args: object) -> None:
        n, deleted = self.model.rowCount(), len(self.model.excluded)
        text = f"{n} detection{'s' if n != 1 else ''} (before merging)"
        if deleted:
            text += f", {deleted} deleted"
        self.count_label.setText(text)
        self.delete_button.setEnabled(bool(self.selected_keys()))
        self.restore_button.setEnabled(deleted > 0)
        self.export_button.setEnabled(self.model.answer_log is not None)

    # --- selection ---------------------------------------------------------------------------
    def selected_keys(self) -> list[Key]:
        rows = self.view.selectionModel().selectedRows()
        return sorted(self.proxy.data(idx, KEY_ROLE) for idx in rows)

    def select_keys(self, keys: Iterable[Key], *, scroll: bool = True) -> None:
        """Select exactly these rows (from the map) without emitting :attr:`selectionChangedKeys`."""
        selection = QItemSelection()
        first = None
        for key in keys:
            row = self.model.row_of(key)
            if row is None:
                continue
            src = self.model.index(row, 0)
            idx = self.proxy.mapFromSource(src)
            selection.select(idx, idx)
            first = first or idx
        self._syncing = True
        try:
            flag = QItemSelectionModel.SelectionFlag
            self.view.selectionModel().select(selection, flag.ClearAndSelect | flag.Rows)
            if first is not None and scroll:
                self.view.scrollTo(first)
        finally:
            self._syncing = False
        self.delete_button.setEnabled(bool(self.selected_keys()))

    def _on_selection(self, *_args: object) -> None:
        self.delete_button.setEnabled(bool(self.selected_keys()))
        if not self._syncing:
            self.selectionChangedKeys.emit(self.selected_keys())

    def _on_double_click(self, index: object) -> None:
        key = self.proxy.data(index, KEY_ROLE)  # type: ignore[arg-type]
        if key is not None:
            self.activated.emit(key)
