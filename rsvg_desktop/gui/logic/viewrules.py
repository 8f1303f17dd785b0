"""Rules of what the map shows (Qt-free): how far selecting a result zooms, when a detection's label is
drawn, whether a vector layer lands on the scene at all."""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np

__all__ = [
    "LABEL_MIN_BOX_PX",
    "RESULT_CONTEXT_PX",
    "RESULT_MAX_ZOOM",
    "label_fits",
    "outside_scene",
    "result_view_rect",
]

PixelRect = tuple[float, float, float, float]

#: Selecting a result shows at least this many scene pixels around its centre (context, not pixels).
RESULT_CONTEXT_PX = 256.0
#: Selecting a result never zooms in further than this (screen pixels per scene pixel).
RESULT_MAX_ZOOM = 2.0
#: A detection's label is drawn only when its box is at least this big on screen (pixels, both sides).
LABEL_MIN_BOX_PX = 24.0


def result_view_rect(box: PixelRect, *, context: float = RESULT_CONTEXT_PX, margin: float = 0.5) -> PixelRect:
    """The scene rectangle to show for a selected result's ``box`` (x0, y0, x1, y1): the box with
    ``margin`` (fraction of its size) around it, and at least ``context`` pixels wide and high, centred on
    the box."""
    x0, y0, x1, y1 = (float(v) for v in box)
    x0, x1 = min(x0, x1), max(x0, x1)
    y0, y1 = min(y0, y1), max(y0, y1)
    pad = max(x1 - x0, y1 - y0) * margin
    half_w = max((x1 - x0) / 2 + pad, context / 2)
    half_h = max((y1 - y0) / 2 + pad, context / 2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    return (cx - half_w, cy - half_h, cx + half_w, cy + half_h)


def label_fits(width_px: float, height_px: float, *, minimum: float = LABEL_MIN_BOX_PX) -> bool:
    """Whether a box this big on screen gets its label (a label over a smaller box would hide it)."""
    return width_px >= minimum and height_px >= minimum


def outside_scene(parts: Iterable[np.ndarray], width: float, height: float) -> bool:
    """True when no part (``(n, 2)`` scene pixels) reaches the scene's ``width`` × ``height`` pixels:
    not one feature of the layer would show over the scene."""
    for xy in parts:
        xy = np.asarray(xy, dtype=np.float64).reshape(-1, 2)
        if len(xy) == 0 or not np.isfinite(xy).any():
            continue
        x0, y0 = np.nanmin(xy, axis=0)
        x1, y1 = np.nanmax(xy, axis=0)
        if x1 >= 0 and y1 >= 0 and x0 <= width and y0 <= height:
            return False
    return True
