"""Scene-wide contrast stretch: raw pixel values → 8-bit RGB for display and for the model.

One :class:`Stretch` is computed once per scene (percentiles of a decimated sample, nodata ignored) and
the same linear mapping is applied to every tile, so tiles look alike and a raw value always maps to the
same 8-bit value, whichever tile it falls in. 8-bit scenes pass through unchanged unless a stretch is
given explicitly.

Nodata pixels are painted :data:`FILL_RGB`, CLIP's mean colour ``(122, 116, 104)``: it is the colour
GeoChat pads images with, and after CLIP's normalisation it becomes ≈ 0, so the model sees nodata as the
same neutral "nothing" it saw in training padding (black would be a strong, meaningful colour).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from rsvg_desktop.core.constants import CLIP_MEAN_RGB

__all__ = ["DEFAULT_PERCENTILES", "FILL_RGB", "Stretch", "compute_stretch", "render_rgb"]

#: Colour of nodata pixels in every image produced by ``core.geo`` (CLIP's mean colour, see module doc).
FILL_RGB: tuple[int, int, int] = CLIP_MEAN_RGB

#: Default lower/upper percentiles of the scene-wide stretch.
DEFAULT_PERCENTILES: tuple[float, float] = (2.0, 98.0)


@dataclass(frozen=True, slots=True)
class Stretch:
    """Linear mapping of raw values to 0–255, one ``(low, high)`` pair per display channel (R, G, B).

    ``low`` maps to 0, ``high`` to 255, values outside are clipped; results are rounded to nearest.
    ``percentiles`` records how the limits were found (``None`` when given by hand). Plain floats only:
    picklable, comparable, and worth recording in the run store so a run can be reproduced exactly.
    """

    low: tuple[float, float, float]
    high: tuple[float, float, float]
    percentiles: tuple[float, float] | None = None

    def __post_init__(self) -> None:
        if len(self.low) != 3 or len(self.high) != 3:
            raise ValueError(f"a stretch needs 3 low and 3 high values, got {self.low!r} and {self.high!r}")
        for lo, hi in zip(self.low, self.high, strict=True):
            if not (math.isfinite(lo) and math.isfinite(hi)) or hi <= lo:
                raise ValueError(f"stretch limits must be finite with high > low, got ({lo}, {hi})")

    def scale(self, channel: int) -> tuple[float, float]:
        """``(offset, gain)`` of one channel: ``u8 = clip((raw - offset) * gain, 0, 255)``."""
        lo, hi = self.low[channel], self.high[channel]
        return lo, 255.0 / (hi - lo)

    def lut(self, channel: int, dtype: np.dtype | str) -> np.ndarray | None:
        """A lookup table for 8/16-bit integer data (indexed by ``raw - iinfo.min``), else ``None``."""
        dt = np.dtype(dtype)
        if dt.kind not in "ui" or dt.itemsize > 2:
            return None
        info = np.iinfo(dt)
        values = np.arange(info.min, info.max + 1, dtype=np.float64)
        return _map_float(values, *self.scale(channel))


def _map_float(values: np.ndarray, offset: float, gain: float) -> np.ndarray:
    out = (values.astype(np.float32, copy=False) - np.float32(offset)) * np.float32(gain)
    np.nan_to_num(out, copy=False, nan=0.0, posinf=255.0, neginf=0.0)
    np.clip(out, 0.0, 255.0, out=out)
    out += 0.5
    return out.astype(np.uint8)


def compute_stretch(
    samples: Sequence[np.ndarray], percentiles: tuple[float, float] = DEFAULT_PERCENTILES
) -> Stretch:
    """A stretch from valid sample values of each display channel (three 1-D arrays, nodata removed).

    A channel whose sample is constant (``low == high``) gets a one-unit range centred on the value, so
    it maps to mid-grey instead of dividing by zero. Raises ``ValueError`` when a sample is empty.
    """
    p_lo, p_hi = percentiles
    if not 0.0 <= p_lo < p_hi <= 100.0:
        raise ValueError(f"percentiles must satisfy 0 <= low < high <= 100, got {percentiles!r}")
    if len(samples) != 3:
        raise ValueError(f"need samples of 3 channels, got {len(samples)}")
    lows: list[float] = []
    highs: list[float] = []
    for sample in samples:
        values = np.asarray(sample).ravel()
        if values.dtype.kind == "f":
            values = values[np.isfinite(values)]
        if values.size == 0:
            raise ValueError("no valid sample values to compute a stretch from")
        lo, hi = (float(v) for v in np.percentile(values, [p_lo, p_hi]))
        if hi <= lo:
            lo, hi = lo - 0.5, hi + 0.5
        lows.append(lo)
        highs.append(hi)
    return Stretch(tuple(lows), tuple(highs), (float(p_lo), float(p_hi)))  # type: ignore[arg-type]


def render_rgb(
    raw: np.ndarray,
    channels: tuple[int, int, int],
    valid: np.ndarray | None,
    stretch: Stretch | None,
    *,
    luts: Sequence[np.ndarray | None] | None = None,
    fill: tuple[int, int, int] = FILL_RGB,
    reuse: bool = False,
) -> np.ndarray:
    """Make the ``(h, w, 3)`` uint8 image of raw band data.

    ``raw`` is ``(n, h, w)`` as read; ``channels[i]`` is the index in ``raw`` of display channel ``i``
    (a grey band is read once and used three times). ``stretch=None`` passes 8-bit data through unchanged
    (other types are clipped to 0–255). ``luts`` may give precomputed ``stretch.lut(i, raw.dtype)``.
    Pixels where ``valid`` is false are painted ``fill``. With ``reuse=True`` 8-bit RGB data laid out
    pixel-interleaved (``raw`` a band-first view of an ``(h, w, 3)`` array) is returned as that array,
    painted in place, without a copy.
    """
    n, h, w = raw.shape
    if reuse and stretch is None and raw.dtype == np.uint8 and channels == (0, 1, 2) and n == 3:
        pixels = np.moveaxis(raw, 0, -1)
        if pixels.flags.c_contiguous:
            if valid is not None and not valid.all():
                pixels[~valid] = fill
            return pixels
    out = np.empty((h, w, 3), dtype=np.uint8)
    done: dict[int, int] = {}
    for i, src in enumerate(channels):
        if not 0 <= src < n:
            raise IndexError(f"channel {i} refers to band {src} of a {n}-band array")
        if src in done and (stretch is None or stretch.scale(i) == stretch.scale(done[src])):
            out[..., i] = out[..., done[src]]
            continue
        band = raw[src]
        if stretch is None:
            if band.dtype == np.uint8:
                out[..., i] = band
            else:
                out[..., i] = _map_float(band, 0.0, 1.0)
        else:
            lut = luts[i] if luts is not None else stretch.lut(i, band.dtype)
            if lut is not None:
                idx = band if band.dtype.kind == "u" else band.astype(np.int32) - np.iinfo(band.dtype).min
                out[..., i] = lut[idx]
            else:
                out[..., i] = _map_float(band, *stretch.scale(i))
        done[src] = i
    if valid is not None and not valid.all():
        out[~valid] = fill
    return out
