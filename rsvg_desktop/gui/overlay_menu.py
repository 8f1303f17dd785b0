"""Vector layers over the scene: reading them in the background, drawing them on the map's overlay
layer, and the View ▸ Vector layers menu that shows, hides and removes them one by one."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

from PySide6.QtCore import QObject, Signal
from PySide6.QtGui import QAction
from PySide6.QtWidgets import QMenu

from rsvg_desktop.core.geo.overlay import VectorOverlay, read_overlay
from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.gui.logic.viewrules import outside_scene
from rsvg_desktop.gui.map_view import MapView
from rsvg_desktop.gui.tasks import run_in_background

__all__ = ["OverlayMenu"]

log = logging.getLogger(__name__)


class OverlayMenu(QObject):
    """See module doc. ``menu`` is View ▸ Vector layers; ``layer_action`` the View ▸ Vector overlays
    toggle of the whole layer. Emits :attr:`added` (the layer's name), :attr:`removed` (its name),
    :attr:`statusMessage` and :attr:`failed` (title, message)."""

    added = Signal(str)
    removed = Signal(str)
    statusMessage = Signal(str)
    failed = Signal(str, str)

    def __init__(self, map_view: MapView, menu: QMenu, layer_action: QAction, parent: QObject) -> None:
        super().__init__(parent)
        self.map = map_view
        self.menu = menu
        self.layer_action = layer_action
        self.actions: dict[str, QAction] = {}
        self.remove_menu = QMenu("&Remove", menu)
        self.remove_menu.setObjectName("removeOverlayMenu")
        self.remove_all_action = QAction("Remove &all vector layers", self)
        self.remove_all_action.triggered.connect(self.remove_all)
        self._remove_actions: list[QAction] = []
        self._call: Any = None
        self._rebuild()

    def add(
        self, path: str | os.PathLike[str], info: SceneInfo, is_current: Callable[[SceneInfo], bool]
    ) -> None:
        """Read ``path`` placed on ``info``'s scene and show it (``is_current(info)``: still that scene)."""
        path = os.fspath(path)
        self.statusMessage.emit(f"Reading {path}…")
        self._call = run_in_background(
            lambda: read_overlay(path, crs_wkt=info.crs_wkt, transform=info.transform),
            lambda overlay: self._ready(info, overlay) if is_current(info) else None,
            lambda exc: self.failed.emit("Cannot add the vector layer", str(exc)),
            name="read overlay",
        )

    def _ready(self, info: SceneInfo, overlay: VectorOverlay) -> None:
        name = f"{Path(overlay.path).name} · {overlay.layer}"
        self.map.overlays.add(name, [(p.kind, p.xy) for p in overlay.parts])
        self.map.set_layer_visible("overlays", True)
        self.layer_action.setChecked(True)
        if name not in self.actions:
            action = QAction(name, self, checkable=True, checked=True)
            action.toggled.connect(lambda on, n=name: self.map.overlays.set_visible(n, on))
            self.actions[name] = action
        self.actions[name].setChecked(True)
        self._rebuild()
        if outside_scene((p.xy for p in overlay.parts), info.width, info.height):
            crs = f" ({overlay.crs_name})" if overlay.crs_name else ""
            self.failed.emit(
                "Vector layer outside the scene",
                f"{name}: none of its {overlay.features} features falls on the scene, so nothing shows. "
                f"Check that the layer's coordinate system{crs} is right and that it covers this area; "
                "remove it with View ▸ Vector layers ▸ Remove.",
            )
            self.statusMessage.emit(f"Added {name}: all {overlay.features} features lie outside the scene")
        else:
            self.statusMessage.emit(f"Added {overlay.features} features from {name}")
        self.added.emit(name)

    def remove(self, name: str) -> None:
        """Take the layer ``name`` off the map and out of the menu."""
        action = self.actions.pop(name, None)
        if action is None:
            return
        self.map.overlays.remove(name)
        action.deleteLater()
        self._rebuild()
        self.statusMessage.emit(f"Removed the vector layer {name}")
        self.removed.emit(name)

    def remove_all(self) -> None:
        for name in list(self.actions):
            self.remove(name)

    def clear(self) -> None:
        """Forget every layer (another scene was opened: the map was cleared)."""
        for action in self.actions.values():
            action.deleteLater()
        self.actions.clear()
        self._rebuild()

    def _rebuild(self) -> None:
        # The actions belong to this object, not to the menus: clearing a menu while one of its actions
        # is being triggered (Remove) must not delete that action under Qt's feet.
        self.menu.clear()
        self.remove_menu.clear()
        for old in self._remove_actions:
            old.deleteLater()
        self._remove_actions = []
        for name, action in self.actions.items():
            self.menu.addAction(action)
            remove = QAction(name, self)
            remove.triggered.connect(lambda _c=False, n=name: self.remove(n))
            self.remove_menu.addAction(remove)
            self._remove_actions.append(remove)
        if self.actions:
            self.menu.addSeparator()
            self.menu.addMenu(self.remove_menu)
            if len(self.actions) > 1:
                self.menu.addAction(self.remove_all_action)
        self.menu.setEnabled(bool(self.actions))
