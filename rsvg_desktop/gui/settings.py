"""Settings that persist between sessions (QSettings): model folder, precision, device, grid, recent files,
results folder, each scene's nodata value, window layout.

Where they are stored: the platform's native place for organisation and application "rsvg-desktop",
unless a file is named with ``--settings-file`` or the ``RSVG_DESKTOP_SETTINGS`` environment variable
(an INI file; tests always use one so they never touch the user's real settings).
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from rsvg_desktop.engine.events import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from rsvg_desktop.errors import ConfigError
from rsvg_desktop.gui.logic.nodata import nodata_key, nodata_text, parse_nodata

__all__ = ["APP_NAME", "ENV_SETTINGS", "MAX_RECENT", "ORG_NAME", "Settings", "open_qsettings"]

log = logging.getLogger(__name__)

ORG_NAME = "rsvg-desktop"
APP_NAME = "rsvg-desktop"
ENV_SETTINGS = "RSVG_DESKTOP_SETTINGS"
MAX_RECENT = 10


def open_qsettings(path: str | os.PathLike[str] | None = None) -> QSettings:
    """The QSettings to use: ``path`` (INI), else ``$RSVG_DESKTOP_SETTINGS`` (INI), else the native store."""
    path = path or os.environ.get(ENV_SETTINGS) or None
    if path:
        Path(path).parent.mkdir(parents=True, exist_ok=True)
        log.info("settings file: %s", path)
        return QSettings(str(path), QSettings.Format.IniFormat)
    return QSettings(QSettings.Format.NativeFormat, QSettings.Scope.UserScope, ORG_NAME, APP_NAME)


def _as_bool(value: object, default: bool) -> bool:
    if value is None:
        return default
    if isinstance(value, bool):
        return value
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def _as_int(value: object, default: int) -> int:
    try:
        return int(value)  # type: ignore[call-overload]
    except (TypeError, ValueError):
        return default


class Settings:
    """Typed access to the application's QSettings (each property reads/writes one key)."""

    def __init__(self, qsettings: QSettings | None = None) -> None:
        self.q = qsettings if qsettings is not None else open_qsettings()

    def sync(self) -> None:
        self.q.sync()

    @property
    def file_name(self) -> str:
        return self.q.fileName()

    # --- strings -----------------------------------------------------------------------------
    def _str(self, key: str, default: str = "") -> str:
        value = self.q.value(key, default)
        return default if value is None else str(value)

    @property
    def model_dir(self) -> str:
        return self._str("model/folder")

    @model_dir.setter
    def model_dir(self, value: str) -> None:
        self.q.setValue("model/folder", value or "")

    @property
    def use_test_model(self) -> bool:
        return _as_bool(self.q.value("model/use_test_model"), False)

    @use_test_model.setter
    def use_test_model(self, value: bool) -> None:
        self.q.setValue("model/use_test_model", bool(value))

    @property
    def precision(self) -> str:
        return self._str("model/precision", "nf4")

    @precision.setter
    def precision(self, value: str) -> None:
        self.q.setValue("model/precision", value)

    @property
    def device(self) -> str:
        return self._str("model/device", "auto")

    @device.setter
    def device(self, value: str) -> None:
        self.q.setValue("model/device", value)

    @property
    def tile_size(self) -> int:
        return max(16, _as_int(self.q.value("grid/tile_size"), DEFAULT_TILE_SIZE))

    @tile_size.setter
    def tile_size(self, value: int) -> None:
        self.q.setValue("grid/tile_size", int(value))

    @property
    def overlap(self) -> int:
        return max(0, _as_int(self.q.value("grid/overlap"), DEFAULT_OVERLAP))

    @overlap.setter
    def overlap(self, value: int) -> None:
        self.q.setValue("grid/overlap", int(value))

    @property
    def runs_dir(self) -> str:
        """Folder where each run's results store and answer log are written (key ``runs/folder``).

        When unset: ``runs`` beside the settings file if the settings are a file of their own
        (``--settings-file``, ``RSVG_DESKTOP_SETTINGS``), so such a profile keeps its runs with it;
        else ``runs`` in the user's data folder."""
        value = self._str("runs/folder")
        if value:
            return value
        if self.q.format() == QSettings.Format.IniFormat and self.q.fileName():
            return str(Path(self.q.fileName()).resolve().parent / "runs")
        base = QStandardPaths.writableLocation(QStandardPaths.StandardLocation.AppLocalDataLocation)
        return str(Path(base or Path.home() / ".rsvg-desktop") / "runs")

    @runs_dir.setter
    def runs_dir(self, value: str) -> None:
        self.q.setValue("runs/folder", value or "")

    @property
    def last_dir(self) -> str:
        return self._str("files/last_dir", str(Path.home()))

    @last_dir.setter
    def last_dir(self, value: str) -> None:
        self.q.setValue("files/last_dir", value)

    # --- recent files ------------------------------------------------------------------------
    @property
    def recent_files(self) -> list[str]:
        value: Any = self.q.value("files/recent", [])
        if value is None:
            return []
        if isinstance(value, str):  # INI stores a one-item list as a plain string
            value = [value] if value else []
        return [str(v) for v in value if str(v)][:MAX_RECENT]

    @recent_files.setter
    def recent_files(self, files: list[str]) -> None:
        self.q.setValue("files/recent", list(files)[:MAX_RECENT])

    def add_recent(self, path: str) -> list[str]:
        """Put ``path`` first in the recent files (once) and return the new list."""
        path = str(Path(path).resolve()) if "://" not in path else path
        files = [path, *(f for f in self.recent_files if f != path)][:MAX_RECENT]
        self.recent_files = files
        return files

    def remove_recent(self, path: str) -> list[str]:
        files = [f for f in self.recent_files if f != path]
        self.recent_files = files
        return files

    # --- per scene ---------------------------------------------------------------------------
    def scene_nodata(self, path: str) -> float | None:
        """The nodata value the analyst gave for the scene at ``path`` (``None``: the file's own)."""
        try:
            return parse_nodata(self._str(nodata_key(path)))
        except ConfigError:
            log.warning("ignoring the unreadable nodata value kept for %s", path)
            return None

    def set_scene_nodata(self, path: str, value: float | None) -> None:
        """Remember ``value`` for the scene at ``path`` (``None`` forgets it)."""
        if value is None:
            self.q.remove(nodata_key(path))
        else:
            self.q.setValue(nodata_key(path), nodata_text(value))

    # --- window layout -----------------------------------------------------------------------
    def window_geometry(self) -> QByteArray | None:
        value = self.q.value("window/geometry")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def window_state(self) -> QByteArray | None:
        value = self.q.value("window/state")
        return value if isinstance(value, QByteArray) and not value.isEmpty() else None

    def save_window(self, geometry: QByteArray, state: QByteArray) -> None:
        self.q.setValue("window/geometry", geometry)
        self.q.setValue("window/state", state)
