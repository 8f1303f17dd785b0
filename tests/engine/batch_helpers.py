"""Helpers shared by the batch tests (no tests here): rasters with bright "objects", and a test-only
generator that answers in GeoChat's format with a box around every bright blob of the tile it is shown.

The tiny random-weights model answers noise, so tests that need real boxes (seam merging, identical
detections after a kill) use :class:`BlobGenerator`; everything else (rasterio reads, polygons, the
GeoPackage store, the answer log) is the real code.
"""

from __future__ import annotations

import time
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import rasterio
from affine import Affine
from rasterio.errors import NotGeoreferencedWarning

from rsvg_desktop.core.prompt.parser import parse_answer
from rsvg_desktop.errors import GenerationError

BRIGHT = 230


@dataclass(frozen=True)
class FakeResult:
    answer: str
    parsed: object
    input_tokens: int = 12
    output_tokens: int = 7
    seconds: float = 0.0
    batch_size: int = 1


def _runs(flags: np.ndarray) -> list[tuple[int, int]]:
    """``[start, stop)`` runs of true values."""
    padded = np.concatenate([[False], flags, [False]]).astype(np.int8)
    edges = np.flatnonzero(np.diff(padded))
    return list(zip(edges[::2].tolist(), edges[1::2].tolist(), strict=True))


def blob_answer(image: np.ndarray, phrase: str = "car") -> str:
    """A GeoChat answer with one box per bright blob (objects laid out on a lattice, so row and column
    projections separate them), in the 0–100 grid of the image."""
    mask = image[..., 0] >= BRIGHT
    h, w = mask.shape
    boxes = []
    for r0, r1 in _runs(mask.any(axis=1)):
        for c0, c1 in _runs(mask[r0:r1].any(axis=0)):
            sub = mask[r0:r1, c0:c1]
            rows, cols = np.flatnonzero(sub.any(axis=1)), np.flatnonzero(sub.any(axis=0))
            y0, y1 = r0 + rows[0], r0 + rows[-1] + 1
            x0, x1 = c0 + cols[0], c0 + cols[-1] + 1
            boxes.append(
                f"{{<{round(100 * x0 / w)}><{round(100 * y0 / h)}><{round(100 * x1 / w)}>"
                f"<{round(100 * y1 / h)}>|<0>}}"
            )
    return f"<p>{phrase}</p> " + "".join(boxes) if boxes else "There is none."


class BlobGenerator:
    """Test double for ``GeoChatGenerator``: answers from the image (see :func:`blob_answer`).

    ``delay``: seconds slept per batch (lets a test kill a process mid-run). ``fail``: a function of
    the 1-based batch number that makes that batch raise GenerationError.
    """

    def __init__(self, delay: float = 0.0, fail: Callable[[int], bool] | None = None) -> None:
        self.delay = delay
        self.fail = fail
        self.calls: list[int] = []

    def generate(self, requests, *, max_new_tokens, batch_size):
        self.calls.append(len(requests))
        if self.fail is not None and self.fail(len(self.calls)):
            raise GenerationError(f"scripted failure of batch {len(self.calls)}")
        if self.delay:
            time.sleep(self.delay)
        out = []
        for r in requests:
            phrase = (r.query or "object").split()[0]
            text = blob_answer(np.asarray(r.image), phrase)
            out.append(FakeResult(text, parse_answer(text), batch_size=len(requests)))
        return out


def blob_image(width: int, height: int, objects: Sequence[tuple[int, int, int]], seed: int = 0) -> np.ndarray:
    """``(3, height, width)`` uint8: dark noise with bright squares ``(col, row, side)``."""
    rng = np.random.default_rng(seed)
    img = rng.integers(10, 60, size=(3, height, width), dtype=np.uint8)
    for c, r, side in objects:
        img[:, r : r + side, c : c + side] = 250
    return img


def write_geotiff(
    path: Path,
    image: np.ndarray,
    *,
    crs: str = "EPSG:32633",
    x0: float = 500000.0,
    y0: float = 4650000.0,
    pixel: float = 0.5,
    nodata: int | None = None,
) -> Path:
    count, height, width = image.shape
    with rasterio.open(
        path,
        "w",
        driver="GTiff",
        width=width,
        height=height,
        count=count,
        dtype="uint8",
        crs=crs,
        transform=Affine(pixel, 0.0, x0, 0.0, -pixel, y0),
        nodata=nodata,
    ) as dst:
        dst.write(image)
    return path


def write_plain(path: Path, image: np.ndarray, *, driver: str = "PNG") -> Path:
    """A PNG/JPEG without any georeferencing (and no .aux.xml left behind)."""
    count, height, width = image.shape
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", NotGeoreferencedWarning)
        with rasterio.open(
            path, "w", driver=driver, width=width, height=height, count=count, dtype="uint8"
        ) as dst:
            dst.write(image)
    for aux in path.parent.glob(path.name + ".aux.xml"):
        aux.unlink()
    return path


def write_world_file(image_path: Path, suffix: str, *, x0: float, y0: float, pixel: float) -> Path:
    """An ESRI world file: pixel size, rotations, and the centre of the top-left pixel."""
    wf = image_path.with_suffix(suffix)
    wf.write_text(f"{pixel}\n0\n0\n{-pixel}\n{x0 + pixel / 2}\n{y0 - pixel / 2}\n")
    return wf


def lattice(width: int, height: int, step: int, side: int, offset: int = 5) -> list[tuple[int, int, int]]:
    """Squares of ``side`` px every ``step`` px (some will straddle tile seams)."""
    return [
        (c, r, side) for r in range(offset, height - side, step) for c in range(offset, width - side, step)
    ]
