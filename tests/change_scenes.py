"""Two dates of a real scene with objects at known places, and a stand-in detector that finds them.

:func:`make_pair` crops ``cogeo.tif`` (real aerial pixels) into a before scene and paints magenta squares
on it; the after scene is the same crop, narrower (its right part is not covered: the comparison's
unknown area), with its own squares, displaced by a known sub-pixel amount and reprojected into UTM, so
the comparison must warp it back onto the before grid. :class:`SquareFinder` answers like GeoChat would
if it saw magenta squares: one box per square in the tile image — but a *faint* square smaller than
16 px in the image is missed, as a real detector misses small, low-contrast objects; seen larger (the
verification's zoomed neighbourhood), it is found.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from change_pairs import reprojected
from rasterio.transform import Affine
from rasterio.windows import Window
from scipy import ndimage
from scripted_scene import AnswerResult

STRONG = (255, 0, 255)
FAINT = (205, 75, 205)


@dataclass(frozen=True)
class Square:
    """A square object at before-grid pixel ``(x, y)`` (top-left), ``size`` px, of ``colour``."""

    x: int
    y: int
    size: int = 20
    colour: tuple[int, int, int] = STRONG


# Before grid: 800 × 700 px, tiles of 504 px at columns 0 and 296, rows 0 and 196: squares stay clear of
# the tile edges. The after scene covers columns 0–650 only.
P1 = Square(60, 60)
P2 = Square(560, 560)
P3_FAINT = Square(100, 600, 12, FAINT)  # persisting; faint (missed) on the before date
P3_STRONG = Square(100, 600, 12)
D1 = Square(350, 80)  # before only: disappeared
A1 = Square(600, 300)  # after only: appeared
U1 = Square(720, 100)  # before only, outside the after scene: unknown area, never a change
BEFORE_OBJECTS = (P1, P2, P3_FAINT, D1, U1)
AFTER_OBJECTS = (P1, P2, P3_STRONG, A1)


def _paint(data: np.ndarray, squares: tuple[Square, ...]) -> None:
    for s in squares:
        for band, value in enumerate(s.colour):
            data[band, s.y : s.y + s.size, s.x : s.x + s.size] = value


def make_pair(
    data_dir: Path,
    folder: Path,
    *,
    before_objects: tuple[Square, ...] = BEFORE_OBJECTS,
    after_objects: tuple[Square, ...] = AFTER_OBJECTS,
    shift: tuple[float, float] = (0.4, 0.3),
    after_crs: str | None = "EPSG:32652",
    after_width: int = 650,
) -> tuple[Path, Path]:
    """Write ``before.tif`` and ``after.tif`` into ``folder`` (see the module docs)."""
    with rasterio.open(data_dir / "cogeo.tif") as ds:
        window = Window(0, 0, 800, 700)
        base = ds.read(window=window)
        transform = ds.window_transform(window)
        crs = ds.crs
    profile = {"driver": "GTiff", "dtype": "uint8", "count": 3, "crs": crs}
    before = base.copy()
    _paint(before, before_objects)
    before_path = folder / "before.tif"
    with rasterio.open(before_path, "w", width=800, height=700, transform=transform, **profile) as dst:
        dst.write(before)

    after = np.maximum(base[:, :, :after_width], 1)  # 0 is the after scene's nodata
    _paint(after, after_objects)
    placed = transform @ Affine.translation(*shift)
    out_crs = after_crs or crs
    warped, dst_transform = reprojected(after, placed, crs, out_crs, 0)
    after_path = folder / "after.tif"
    with rasterio.open(
        after_path,
        "w",
        width=warped.shape[2],
        height=warped.shape[1],
        transform=dst_transform,
        nodata=0,
        **{**profile, "crs": out_crs},
    ) as dst:
        dst.write(warped)
    return before_path, after_path


class SquareFinder:
    """A test double of GeoChatGenerator that finds magenta squares in each image (see the module docs).

    ``requests`` keeps every request asked (task, query, image shape), in order."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []

    def generate(self, requests, *, max_new_tokens, batch_size):
        out = []
        for r in requests:
            self.requests.append((r.task, r.query))
            text = find_squares(r.image)
            out.append(AnswerResult.of(text))
        return out


def find_squares(image: np.ndarray) -> str:
    """GeoChat-style boxes ``{<x1><y1><x2><y2>|<0>}`` of the magenta squares in ``image``."""
    img = image.astype(np.int32)
    r, g, b = img[..., 0], img[..., 1], img[..., 2]
    strength = r + b - 2 * g
    labels, _count = ndimage.label((r > 140) & (b > 140) & (g < 120))
    h, w = labels.shape
    boxes = []
    for i, (sy, sx) in enumerate(ndimage.find_objects(labels), start=1):
        side = min(sy.stop - sy.start, sx.stop - sx.start)
        if side < 3 or (strength[labels == i].max() < 400 and side < 16):
            continue
        x1, x2 = round(100 * sx.start / w), round(100 * sx.stop / w)
        y1, y2 = round(100 * sy.start / h), round(100 * sy.stop / h)
        boxes.append(f"{{<{x1}><{y1}><{x2}><{y2}>|<0>}}")
    return "".join(boxes)
