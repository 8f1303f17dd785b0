"""The ``rsvg`` Processing provider: its algorithms and its one setting, the engine's path."""

from __future__ import annotations

import os

from processing.core.ProcessingConfig import ProcessingConfig, Setting
from qgis.core import QgsProcessingProvider
from qgis.PyQt.QtGui import QIcon

from .algorithms import ALGORITHMS
from .engine_cli import VECTOR_EXTENSIONS
from .settings import ENGINE_SETTING

ICON = os.path.join(os.path.dirname(__file__), "icon.png")


class RsvgProvider(QgsProcessingProvider):
    def id(self) -> str:
        return "rsvg"

    def name(self) -> str:
        return "rsvg"

    def longName(self) -> str:
        return "rsvg — GeoChat on imagery (runs the rsvg engine)"

    def icon(self) -> QIcon:
        return QIcon(ICON)

    def load(self) -> bool:
        ProcessingConfig.settingIcons[self.name()] = self.icon()
        ProcessingConfig.addSetting(
            Setting(
                self.name(),
                ENGINE_SETTING,
                "rsvg engine (the rsvg program; empty: rsvg on PATH, then the installed app)",
                "",
                valuetype=Setting.FILE,
            )
        )
        ProcessingConfig.readSettings()
        self.refreshAlgorithms()
        return True

    def unload(self) -> None:
        ProcessingConfig.removeSetting(ENGINE_SETTING)

    def loadAlgorithms(self) -> None:
        for algorithm in ALGORITHMS:
            self.addAlgorithm(algorithm())

    def supportedOutputVectorLayerExtensions(self) -> list[str]:
        return list(VECTOR_EXTENSIONS)

    def supportsNonFileBasedOutput(self) -> bool:
        return False  # the engine writes files

    def defaultVectorFileExtension(self, hasGeometry: bool = True) -> str:
        return "gpkg"
