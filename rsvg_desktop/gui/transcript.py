"""The transcript beside the map: every run and, under it, the answer of each tile.

Text answers (classification, short answers, captions, grounded descriptions, chat) are read here; a
box-only answer shows as "3 objects". Selecting a tile's entry highlights the tile on the map
(:attr:`TranscriptPanel.tileSelected`). With a tile entry selected, a follow-up question continues
*that entry's* conversation on that tile (:attr:`TranscriptPanel.followUpRequested`): the question
and answer of the entry's run, and the follow-ups that led to it. :class:`Conversations` keeps each
thread, keyed by (run, scene, tile window); the questions are kept as sent to the model.
"""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence

from PySide6.QtCore import QEvent, QModelIndex, QObject, QPersistentModelIndex, QRect, QSize, Qt, Signal
from PySide6.QtGui import QBrush, QColor, QFont, QStandardItem, QStandardItemModel
from PySide6.QtWidgets import (
    QAbstractItemView,
    QHBoxLayout,
    QLabel,
    QLineEdit,
    QPushButton,
    QStyledItemDelegate,
    QStyleOptionViewItem,
    QTreeView,
    QVBoxLayout,
    QWidget,
)

from rsvg_desktop.core.types import Tile

__all__ = ["TILE_ROLE", "Conversations", "TranscriptModel", "TranscriptPanel"]

log = logging.getLogger(__name__)

TILE_ROLE = Qt.ItemDataRole.UserRole + 10
RUN_ROLE = Qt.ItemDataRole.UserRole + 11
KIND_ROLE = Qt.ItemDataRole.UserRole + 12

ConversationKey = tuple[str, str, int, int, int, int]  # run, scene, tile window
Turns = tuple[tuple[str, str], ...]


class Conversations:
    """The (question as sent, answer) turns of each run's answer on each tile."""

    def __init__(self) -> None:
        self._threads: dict[ConversationKey, Turns] = {}

    @staticmethod
    def key(run_key: str, scene: str, tile: Tile) -> ConversationKey:
        return (run_key, scene, tile.col_off, tile.row_off, tile.width, tile.height)

    def record(
        self, run_key: str, scene: str, tile: Tile, earlier: Turns, question: str, answer: str
    ) -> None:
        """The run ``run_key`` asked ``question`` about ``tile`` after the ``earlier`` turns."""
        self._threads[self.key(run_key, scene, tile)] = (*earlier, (question, answer))

    def history(self, run_key: str, scene: str, tile: Tile) -> Turns:
        """The turns that a follow-up on this run's answer for ``tile`` continues (empty if none)."""
        return self._threads.get(self.key(run_key, scene, tile), ())

    def clear(self) -> None:
        self._threads.clear()


class TranscriptModel(QStandardItemModel):
    """Runs as top-level rows, tile answers and notes as their children."""

    def __init__(self, parent: QObject | None = None) -> None:
        super().__init__(parent)
        self.setHorizontalHeaderLabels(["Transcript"])
        self._runs: dict[str, QStandardItem] = {}

    def begin_run(self, run_key: str, title: str) -> QStandardItem:
        item = QStandardItem(title)
        font = QFont()
        font.setBold(True)
        item.setFont(font)
        item.setEditable(False)
        item.setData(run_key, RUN_ROLE)
        item.setData("run", KIND_ROLE)
        self.appendRow(item)
        self._runs[run_key] = item
        return item

    def clear_runs(self) -> None:
        """Forget every run (another scene was opened: its tiles and conversations no longer apply)."""
        self.removeRows(0, self.rowCount())
        self._runs.clear()

    def _child(self, run_key: str, text: str, kind: str) -> QStandardItem:
        parent = self._runs.get(run_key) or self.begin_run(run_key, run_key)
        item = QStandardItem(text)
        item.setEditable(False)
        item.setData(kind, KIND_ROLE)
        item.setToolTip(text)
        parent.appendRow(item)
        return item

    def add_tile_answer(self, run_key: str, tile: Tile, text: str) -> QStandardItem:
        item = self._child(run_key, f"{tile.id}: {breakable(text)}", "tile")
        item.setToolTip(f"{tile.id}: {text}")
        item.setData(tile, TILE_ROLE)
        return item

    def add_note(self, run_key: str, text: str, *, error: bool = False) -> QStandardItem:
        item = self._child(run_key, breakable(text), "error" if error else "note")
        item.setToolTip(text)
        item.setForeground(QBrush(QColor("#ff6b6b" if error else "#9aa0a6")))
        return item

    def tile_entries(self, run_key: str | None = None) -> list[QStandardItem]:
        if run_key is not None and run_key in self._runs:
            runs = [self._runs[run_key]]
        else:
            runs = list(self._runs.values())
        out: list[QStandardItem] = []
        for run in runs:
            for r in range(run.rowCount()):
                child = run.child(r)
                if child is not None and child.data(KIND_ROLE) == "tile":
                    out.append(child)
        return out


class _WrappingDelegate(QStyledItemDelegate):
    """Wraps long answers over several lines at the view's current width (a tree view elides them)."""

    def __init__(self, view: QTreeView) -> None:
        super().__init__(view)
        self._view = view

    def _depth(self, index: QModelIndex | QPersistentModelIndex) -> int:
        depth, parent = 0, index.parent()
        while parent.isValid():
            depth, parent = depth + 1, parent.parent()
        return depth

    def sizeHint(self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex) -> QSize:
        opt = QStyleOptionViewItem(option)
        self.initStyleOption(opt, index)
        indent = self._view.indentation() * (self._depth(index) + 1)
        width = max(80, self._view.viewport().width() - indent - 28)
        flags = int(Qt.TextFlag.TextWordWrap)
        rect = opt.fontMetrics.boundingRect(QRect(0, 0, width, 100_000), flags, opt.text)
        return QSize(width, rect.height() + 6)

    def initStyleOption(
        self, option: QStyleOptionViewItem, index: QModelIndex | QPersistentModelIndex
    ) -> None:
        super().initStyleOption(option, index)
        option.features |= QStyleOptionViewItem.ViewItemFeature.WrapText


class _Relayout(QObject):
    """Recomputes the wrapped rows' heights when the view's width changes."""

    def __init__(self, view: QTreeView) -> None:
        super().__init__(view)
        self._view = view
        self._width = -1

    def eventFilter(self, watched: QObject, event: QEvent) -> bool:
        if event.type() == QEvent.Type.Resize and self._view.viewport().width() != self._width:
            self._width = self._view.viewport().width()
            self._view.scheduleDelayedItemsLayout()
        return False


class TranscriptPanel(QWidget):
    """The transcript dock: the tree of runs and answers, and the follow-up question box."""

    tileSelected = Signal(object)  # Tile or None
    followUpRequested = Signal(object, str, str)  # Tile, question, run key of the selected entry

    def __init__(self, model: TranscriptModel, parent: QWidget | None = None) -> None:
        super().__init__(parent)
        self.setObjectName("transcript")
        self.model = model
        self.view = QTreeView(self)
        self.view.setModel(model)
        self.view.setHeaderHidden(True)
        self.view.setWordWrap(True)
        self.view.setTextElideMode(Qt.TextElideMode.ElideNone)
        self.view.setItemDelegate(_WrappingDelegate(self.view))
        self._relayout = _Relayout(self.view)
        self.view.viewport().installEventFilter(self._relayout)
        self.view.setUniformRowHeights(False)
        self.view.setEditTriggers(QAbstractItemView.EditTrigger.NoEditTriggers)
        self.view.selectionModel().currentChanged.connect(self._on_current)
        model.rowsInserted.connect(self._on_rows_inserted)
        model.rowsRemoved.connect(self._on_rows_removed)

        self.follow_label = QLabel(self)
        self.follow_label.setWordWrap(True)
        self.follow_edit = QLineEdit(self)
        self.follow_edit.setPlaceholderText("Follow-up question about the selected tile")
        self.follow_edit.returnPressed.connect(self._ask)
        self.follow_button = QPushButton("Ask", self)
        self.follow_button.clicked.connect(self._ask)
        row = QHBoxLayout()
        row.addWidget(self.follow_edit, 1)
        row.addWidget(self.follow_button)
        layout = QVBoxLayout(self)
        layout.setContentsMargins(4, 4, 4, 4)
        layout.addWidget(self.view, 1)
        layout.addWidget(self.follow_label)
        layout.addLayout(row)
        self._can_ask = False
        self._update_follow()

    def _on_rows_inserted(self, parent: QModelIndex, first: int, last: int) -> None:
        if parent.isValid():
            self.view.expand(parent)
        self.view.scrollTo(self.model.index(last, 0, parent))

    def _on_rows_removed(self, *_args: object) -> None:
        if not self.view.currentIndex().isValid():  # the follow-up target went with its entry
            self.follow_edit.clear()
            self.tileSelected.emit(None)
        self._update_follow()

    def current_tile(self) -> Tile | None:
        idx = self.view.currentIndex()
        if not idx.isValid():
            return None
        tile = idx.data(TILE_ROLE)
        return tile if isinstance(tile, Tile) else None

    def current_run_key(self) -> str | None:
        """The run of the selected entry (its own, or its parent's for a tile entry)."""
        idx = self.view.currentIndex()
        while idx.isValid():
            key = idx.data(RUN_ROLE)
            if key:
                return str(key)
            idx = idx.parent()
        return None

    def select_entry(self, item: QStandardItem) -> None:
        self.view.setCurrentIndex(item.index())

    def set_can_ask(self, can: bool) -> None:
        """Whether a follow-up can be asked now (a model is loaded and idle)."""
        self._can_ask = can
        self._update_follow()

    def _update_follow(self) -> None:
        tile = self.current_tile()
        enabled = self._can_ask and tile is not None
        self.follow_edit.setEnabled(tile is not None)
        self.follow_button.setEnabled(enabled)
        if tile is None:
            self.follow_label.setText("Select a tile's answer to ask a follow-up question about that tile.")
        else:
            self.follow_label.setText(
                f"Follow-up on tile {tile.id}"
                + ("" if self._can_ask else " (load a model and wait for the run to end)")
            )

    def _on_current(self, current: QModelIndex, _previous: QModelIndex) -> None:
        tile = current.data(TILE_ROLE) if current.isValid() else None
        self.tileSelected.emit(tile if isinstance(tile, Tile) else None)
        self._update_follow()

    def _ask(self) -> None:
        tile = self.current_tile()
        run_key = self.current_run_key()
        text = self.follow_edit.text().strip()
        if tile is None or run_key is None or not text or not self._can_ask:
            return
        self.follow_edit.clear()
        self.followUpRequested.emit(tile, text, run_key)


_LONG_WORD = re.compile(r"\S{40,}")


def breakable(text: str, every: int = 40) -> str:
    """``text`` with zero-width spaces inside words longer than ``every`` characters, so that a long
    run without spaces (a cut-off box list, or a random-weights model's noise) wraps instead of
    overflowing the transcript. Display only: tooltips and conversations keep the raw text."""
    return _LONG_WORD.sub(
        lambda m: "\u200b".join(m.group(0)[i : i + every] for i in range(0, len(m.group(0)), every)), text
    )


def summarise_answer(text: str, n_boxes: int, answer: str) -> str:
    """What a tile's transcript entry says: the readable text, plus the number of objects found."""
    text = (text or "").strip()
    if n_boxes:
        objects = f"{n_boxes} object{'s' if n_boxes != 1 else ''}"
        return f"{text} [{objects}]" if text else objects
    if text:
        return text
    return answer.strip() or "(empty answer)"


def run_title(index: int, task_label: str, query: str, extra: Sequence[str] = ()) -> str:
    q = query if len(query) <= 60 else query[:57] + "…"
    parts = [f"Run {index} · {task_label}"]
    if q:
        parts.append(f"“{q}”")
    parts.extend(extra)
    return " · ".join(parts)
