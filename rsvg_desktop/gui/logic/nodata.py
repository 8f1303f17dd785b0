"""The analyst's nodata value for a scene (the app's ``--nodata``), Qt-free: what the field's text
means, how it is written back, and the key it is remembered under.

An empty field means the file's own nodata and mask. Otherwise the text is a finite number (``0`` for
a black collar, ``-9999``) or ``nan`` (floating-point scenes only); pixels equal to it in every
display band are nodata: their tiles are skipped, and the preview and the stretch leave them out.
"""

from __future__ import annotations

import math
from pathlib import Path
from urllib.parse import quote

import numpy as np

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.errors import ConfigError

__all__ = ["SETTINGS_GROUP", "given_nodata", "nodata_key", "nodata_text", "parse_nodata"]

#: The settings group holding one value per scene (see :func:`nodata_key`).
SETTINGS_GROUP = "scene_nodata"


def parse_nodata(text: str, dtype: str | None = None) -> float | None:
    """The nodata value the field's ``text`` asks for: ``None`` when empty (the file's own), else a
    finite number or NaN. ``dtype``: the scene's data type, when known (NaN needs floating point).

    Raises ConfigError with a message for the analyst when the text is not such a value."""
    text = text.strip()
    if not text:
        return None
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(
            f"Nodata value {text!r} is not a number: give a number such as 0 or -9999, nan, "
            "or leave it empty for the file's own nodata"
        ) from None
    if math.isinf(value):
        raise ConfigError(f"Nodata value {text!r} must be a finite number or nan")
    if math.isnan(value) and dtype is not None and np.dtype(dtype).kind != "f":
        raise ConfigError(f"Nodata value nan needs floating-point data; this scene holds {dtype}")
    return value


def nodata_text(value: float | None) -> str:
    """``value`` as the field shows it and the settings keep it: ``""``, ``"0"``, ``"-9999"``,
    ``"0.5"``, ``"nan"``."""
    if value is None:
        return ""
    if math.isnan(value):
        return "nan"
    return repr(float(value)).removesuffix(".0")


def nodata_key(path: str) -> str:
    """The settings key of a scene's nodata value: its absolute path (as the recent files keep it;
    a URL as given), escaped so that no ``/`` or ``\\`` splits it into settings groups."""
    absolute = path if "://" in path else str(Path(path).resolve())
    return f"{SETTINGS_GROUP}/{quote(absolute, safe='')}"


def given_nodata(info: SceneInfo) -> float | None:
    """The analyst's nodata value the scene was opened with (``None``: the file's own)."""
    return info.nodata if info.nodata_given else None
