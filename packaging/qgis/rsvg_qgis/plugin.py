"""The plugin: registers the Processing provider and the Diagnostics entry of the Plugins menu."""

from __future__ import annotations

from typing import Any

from qgis.core import QgsApplication
from qgis.PyQt.QtGui import QIcon
from qgis.PyQt.QtWidgets import QAction

from .provider import ICON, RsvgProvider

MENU = "&rsvg"


class RsvgPlugin:
    def __init__(self, iface: Any) -> None:
        self.iface = iface
        self.provider: RsvgProvider | None = None
        self.action: QAction | None = None
        self.dialog: Any = None

    def initProcessing(self) -> None:
        if self.provider is None:
            self.provider = RsvgProvider()
            QgsApplication.processingRegistry().addProvider(self.provider)

    def initGui(self) -> None:
        self.initProcessing()
        if self.iface is None:
            return
        self.action = QAction(QIcon(ICON), "Diagnostics (rsvg doctor)…", self.iface.mainWindow())
        self.action.triggered.connect(self.show_diagnostics)
        self.iface.addPluginToMenu(MENU, self.action)

    def show_diagnostics(self) -> None:
        from .diagnostics import show_diagnostics

        self.dialog = show_diagnostics(self.iface.mainWindow() if self.iface is not None else None)

    def unload(self) -> None:
        if self.action is not None and self.iface is not None:
            self.iface.removePluginMenu(MENU, self.action)
            self.action = None
        if self.provider is not None:
            QgsApplication.processingRegistry().removeProvider(self.provider)
            self.provider = None
