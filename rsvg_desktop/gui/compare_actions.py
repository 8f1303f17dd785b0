"""The menu entries of comparison mode: File ▸ Compare with another date… / Export change… / Stop
comparing, View ▸ Date ▸ Before / After (one checked; ``D`` switches) and View ▸ Change layers (a toggle
per layer, kept in step with the Results panel's check boxes); and the status bar's indicator naming
both dates."""

from __future__ import annotations

from PySide6.QtCore import QObject
from PySide6.QtGui import QAction, QActionGroup, QKeySequence
from PySide6.QtWidgets import QLabel, QMainWindow, QMenu

from rsvg_desktop.gui.change_layers import CHANGE_KINDS
from rsvg_desktop.gui.logic.compare import DATE_LABELS

__all__ = ["CompareActions"]


def _menu(window: QMainWindow, title: str) -> QMenu:
    for action in window.menuBar().actions():
        menu = action.menu()
        if isinstance(menu, QMenu) and action.text().replace("&", "") == title:
            return menu
    raise LookupError(f"no {title} menu")


class CompareActions(QObject):
    """Builds the actions into the window's File menu (before ``before``) and View menu (see module
    doc); the controller connects them."""

    def __init__(self, window: QMainWindow, before: QAction) -> None:
        super().__init__(window)
        file_menu, view_menu = _menu(window, "File"), _menu(window, "View")
        self.compare = QAction("&Compare with another date…", self)
        self.compare.setObjectName("compareAction")
        self.compare.setToolTip(
            "Ask the same question of another scene of the same place and see what changed"
        )
        self.export = QAction("Export &change…", self)
        self.export.setToolTip("Write the comparison's change GeoPackage")
        self.stop = QAction("Stop co&mparing", self)
        self.stop.setToolTip("Back to the open scene alone")
        file_menu.insertActions(before, [self.compare, self.export, self.stop])
        file_menu.insertSeparator(before)

        self.date_menu = QMenu("&Date", view_menu)
        self.dates = QActionGroup(self)
        self.dates.setExclusive(True)
        self.date: dict[str, QAction] = {}
        for name, label in DATE_LABELS.items():
            action = QAction(label, self, checkable=True)
            self.dates.addAction(action)
            self.date_menu.addAction(action)
            self.date[name] = action
        self.date["before"].setChecked(True)
        self.switch = QAction("&Switch date", self, shortcut=QKeySequence("D"))
        self.switch.setObjectName("switchDateAction")
        self.date_menu.addSeparator()
        self.date_menu.addAction(self.switch)
        window.addAction(self.switch)  # the shortcut works wherever the focus is in the window
        self.layers_menu = QMenu("C&hange layers", view_menu)
        self.layers: dict[str, QAction] = {}
        for name, (label, _color) in CHANGE_KINDS.items():
            action = QAction(label, self, checkable=True, checked=True)
            self.layers_menu.addAction(action)
            self.layers[name] = action
        first = view_menu.actions()[0]  # the comparison's entries come first
        view_menu.insertMenu(first, self.date_menu)
        view_menu.insertMenu(first, self.layers_menu)
        view_menu.insertSeparator(first)
        self.indicator = QLabel(window)
        self.indicator.setObjectName("compareIndicator")
        self.indicator.setStyleSheet("font-weight: bold;")
        window.statusBar().insertPermanentWidget(0, self.indicator)  # messages do not hide it
        self.indicator.hide()
        self.set_mode(comparing=False, running=False, can_start=False, finished=False)

    def set_mode(self, *, comparing: bool, running: bool, can_start: bool, finished: bool) -> None:
        """Enable what applies: Compare when a scene is open and nothing runs; the dates and Stop in
        comparison mode (Stop not during a run); Export and the layer toggles once a comparison finished."""
        self.compare.setEnabled(can_start and not running)
        self.stop.setEnabled(comparing and not running)
        self.date_menu.setEnabled(comparing)
        for action in (*self.date.values(), self.switch):
            action.setEnabled(comparing)
        self.export.setEnabled(comparing and finished)
        self.layers_menu.setEnabled(comparing and finished)

    def show_date(self, name: str) -> None:
        self.date[name].setChecked(True)
