"""Constants shared by torch-free packages (``core.geo``, ``core.prompt``) and the model code.

One copy each; ``core.model`` imports them from here (``core.geo``/``core.prompt`` may not import it).
"""

from __future__ import annotations

__all__ = ["CLIP_MEAN", "CLIP_MEAN_RGB"]

#: CLIP's per-channel image mean (OpenAI CLIP preprocessing), in 0..1.
CLIP_MEAN: tuple[float, float, float] = (0.48145466, 0.4578275, 0.40821073)
#: The same colour in 0..255, rounded: GeoChat pads images to a square with it, and nodata is painted with it.
CLIP_MEAN_RGB: tuple[int, int, int] = (122, 116, 104)
