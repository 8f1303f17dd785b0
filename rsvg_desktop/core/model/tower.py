"""The vision tower's dimensions, read from what is really there rather than from its name.

GeoChat's ``config.json`` names its CLIP tower by hub id only (``mm_vision_tower``). The dimensions come
from, in this order:

* the CLIP folder's ``config.json`` when one is given (``--clip``), or
* the shapes of the tower tensors in the checkpoint's shard
  (``model.vision_tower.vision_tower.vision_model.*``):
  width from ``embeddings.class_embedding``, patch size and channels from ``embeddings.patch_embedding``,
  the grid (and so the image size) from the rows of ``embeddings.position_embedding`` (``1 + grid²``),
  depth from the ``encoder.layers.N`` present, MLP width from layer 0's ``mlp.fc1``.

Attention heads do not show in any shape. Without a CLIP folder the rule is **64 channels per head**, the
head size of every CLIP ViT OpenAI released (B/32, B/16, L/14, L/14-336); a width that is not a multiple of
64 needs the CLIP folder. Activation (``quick_gelu``) and layer-norm epsilon (1e-5) are OpenAI CLIP's.

Every tower tensor is then checked against the derived dimensions: a shape that disagrees is a
:class:`CheckpointError` naming the tensor. A ``mm_vision_tower`` name whose known dimensions disagree
with the tensors is only a warning: the tensors win.
"""

from __future__ import annotations

import logging
import math
import re
from collections.abc import Mapping

from rsvg_desktop.core.model.vision_dims import CLIP_L14_336, VisionDims, clip_vision_shapes
from rsvg_desktop.errors import CheckpointError

log = logging.getLogger(__name__)

__all__ = [
    "HEAD_DIM",
    "KNOWN_TOWERS",
    "check_tower_shapes",
    "tower_dims_from_tensors",
    "warn_if_name_disagrees",
]

#: Channels per attention head assumed when no CLIP config says how many heads there are.
HEAD_DIM = 64

#: Towers GeoChat/LLaVA configs name, with their published dimensions (for the name check only).
KNOWN_TOWERS: Mapping[str, VisionDims] = {
    "openai/clip-vit-large-patch14-336": CLIP_L14_336,
    "openai/clip-vit-large-patch14": VisionDims(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        image_size=224,
        patch_size=14,
    ),
}

_LAYER = re.compile(r"^encoder\.layers\.(\d+)\.")


def _need(
    shapes: Mapping[str, tuple[int, ...]], rel: str, prefix: str, where: str, ndim: int
) -> tuple[int, ...]:
    if rel not in shapes:
        raise CheckpointError(f"{where}: vision tower tensor {prefix}{rel} is missing")
    shape = tuple(shapes[rel])
    if len(shape) != ndim:
        raise CheckpointError(
            f"{where}: tensor {prefix}{rel} has shape {list(shape)}, expected {ndim} dimensions"
        )
    return shape


def tower_dims_from_tensors(
    shapes: Mapping[str, tuple[int, ...]],
    *,
    prefix: str,
    where: str,
    num_attention_heads: int | None = None,
) -> VisionDims:
    """The CLIP vision dimensions implied by tower tensor ``shapes`` (keys relative to ``prefix``).

    ``num_attention_heads``: from a CLIP config when known; otherwise width / :data:`HEAD_DIM`.
    Checks every tensor against the result (:func:`check_tower_shapes`). ``where`` names the file(s).
    """
    (width,) = _need(shapes, "embeddings.class_embedding", prefix, where, 1)
    pw, channels, ph, pw2 = _need(shapes, "embeddings.patch_embedding.weight", prefix, where, 4)
    if pw != width or ph != pw2:
        raise CheckpointError(
            f"{where}: tensor {prefix}embeddings.patch_embedding.weight has shape {[pw, channels, ph, pw2]}, "
            f"expected [{width}, C, P, P] (width {width} from embeddings.class_embedding, square patches)"
        )
    rows, _ = _need(shapes, "embeddings.position_embedding.weight", prefix, where, 2)
    grid = math.isqrt(max(rows - 1, 0))
    if rows < 2 or grid * grid != rows - 1:
        raise CheckpointError(
            f"{where}: tensor {prefix}embeddings.position_embedding.weight has {rows} rows, "
            "expected 1 + a square number of patches"
        )
    layers = sorted({int(m.group(1)) for k in shapes if (m := _LAYER.match(k))})
    if not layers:
        raise CheckpointError(f"{where}: the vision tower has no {prefix}encoder.layers.* tensors")
    gap = next((i for i, n in enumerate(layers) if i != n), None)
    if gap is not None:
        raise CheckpointError(
            f"{where}: vision tower layer {gap} is missing ({prefix}encoder.layers.{gap}.*)"
        )
    inter, _ = _need(shapes, "encoder.layers.0.mlp.fc1.weight", prefix, where, 2)
    if num_attention_heads is None:
        if width % HEAD_DIM:
            raise CheckpointError(
                f"{where}: the vision tower's width {width} is not a multiple of {HEAD_DIM}, so its number "
                "of "
                "attention heads cannot be inferred; pass the tower's CLIP folder (--clip)"
            )
        num_attention_heads = width // HEAD_DIM
    dims = VisionDims(
        hidden_size=width,
        intermediate_size=inter,
        num_hidden_layers=len(layers),
        num_attention_heads=num_attention_heads,
        image_size=grid * ph,
        patch_size=ph,
        num_channels=channels,
    )
    check_tower_shapes(shapes, dims, prefix=prefix, where=where, source="the tower's other tensors")
    return dims


def check_tower_shapes(
    shapes: Mapping[str, tuple[int, ...]], dims: VisionDims, *, prefix: str, where: str, source: str
) -> None:
    """Raise :class:`CheckpointError` naming the first tower tensor whose shape disagrees with ``dims``.

    The ``position_ids`` buffer is optional (dropped by the conversion); a tensor the dims do not
    describe (e.g. a layer past ``dims``' depth) is an error too.
    """
    expected = clip_vision_shapes(dims)
    for rel, want in expected.items():
        if rel not in shapes:
            if rel.endswith("position_ids"):
                continue
            raise CheckpointError(
                f"{where}: vision tower tensor {prefix}{rel} is missing (expected from {source})"
            )
        if want is not None and tuple(shapes[rel]) != want:
            raise CheckpointError(
                f"{where}: tensor {prefix}{rel} has shape {list(shapes[rel])}, "
                f"expected {list(want)} from {source}"
            )
    extra = sorted(k for k in shapes if k not in expected)
    if extra:
        raise CheckpointError(f"{where}: unexpected vision tower tensor {prefix}{extra[0]} (not in {source})")


def warn_if_name_disagrees(name: object, dims: VisionDims, *, where: str) -> None:
    """Log a warning when ``mm_vision_tower`` names a known tower whose dimensions differ from ``dims``."""
    known = KNOWN_TOWERS.get(str(name)) if name is not None else None
    if known is None:
        log.info(
            "%s: mm_vision_tower %r is not a tower this converter knows; using the tensors' dims", where, name
        )
        return
    fields = ("hidden_size", "intermediate_size", "num_hidden_layers", "image_size", "patch_size")
    diff = [
        f"{f} {getattr(known, f)} vs {getattr(dims, f)}"
        for f in fields
        if getattr(known, f) != getattr(dims, f)
    ]
    if diff:
        log.warning(
            "%s: mm_vision_tower names %s, but the tower really there differs (%s); using the real dims",
            where,
            name,
            ", ".join(diff),
        )
