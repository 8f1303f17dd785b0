"""A CLIP vision transformer's dimensions (:class:`VisionDims`) and the tensor shapes they imply.

Shared by the checkpoint reader (:mod:`~rsvg_desktop.core.model.checkpoint`), the tower's dimension
checks (:mod:`~rsvg_desktop.core.model.tower`), the CLIP folder reader and the converter; it imports
none of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rsvg_desktop.errors import CheckpointError

__all__ = ["CLIP_L14_336", "VisionDims", "clip_vision_shapes"]


@dataclass(frozen=True, slots=True)
class VisionDims:
    """Dimensions of a CLIP vision transformer (as ``CLIPVisionConfig`` names them)."""

    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    image_size: int
    patch_size: int
    num_channels: int = 3
    layer_norm_eps: float = 1e-5
    hidden_act: str = "quick_gelu"
    projection_dim: int = 768

    @property
    def grid(self) -> int:
        """Patches per side."""
        return self.image_size // self.patch_size

    @property
    def num_positions(self) -> int:
        """Rows of the position embedding: one per patch plus the CLS token."""
        return self.grid**2 + 1

    @classmethod
    def from_mapping(cls, data: Mapping[str, Any], *, where: str) -> VisionDims:
        for name in ("hidden_size", "intermediate_size", "num_hidden_layers", "num_attention_heads",
                     "image_size", "patch_size", "num_channels", "projection_dim"):  # fmt: skip
            value = data.get(name, 1)
            if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
                raise CheckpointError(f"{where}: field {name} must be a positive integer, found {value!r}")
        try:
            return cls(**{f: data[f] for f in cls.__dataclass_fields__ if f in data})
        except TypeError as exc:
            raise CheckpointError(f"{where}: incomplete CLIP vision config ({exc})") from None


#: ``openai/clip-vit-large-patch14-336``, the tower every real GeoChat config names by hub id.
CLIP_L14_336 = VisionDims(
    hidden_size=1024,
    intermediate_size=4096,
    num_hidden_layers=24,
    num_attention_heads=16,
    image_size=336,
    patch_size=14,
)


def clip_vision_shapes(v: VisionDims) -> dict[str, tuple[int, ...] | None]:
    """Keys (relative to ``vision_model.``) and shapes of a CLIP vision transformer with dims ``v``."""
    h, i, p = v.hidden_size, v.intermediate_size, v.patch_size
    shapes: dict[str, tuple[int, ...] | None] = {
        "embeddings.class_embedding": (h,),
        "embeddings.patch_embedding.weight": (h, v.num_channels, p, p),
        "embeddings.position_embedding.weight": (v.num_positions, h),
        "embeddings.position_ids": (1, v.num_positions),
        "pre_layrnorm.weight": (h,),
        "pre_layrnorm.bias": (h,),
        "post_layernorm.weight": (h,),
        "post_layernorm.bias": (h,),
    }
    for n in range(v.num_hidden_layers):
        lp = f"encoder.layers.{n}."
        for proj in ("q_proj", "k_proj", "v_proj", "out_proj"):
            shapes[f"{lp}self_attn.{proj}.weight"] = (h, h)
            shapes[f"{lp}self_attn.{proj}.bias"] = (h,)
        for ln in ("layer_norm1", "layer_norm2"):
            shapes[f"{lp}{ln}.weight"] = (h,)
            shapes[f"{lp}{ln}.bias"] = (h,)
        shapes[f"{lp}mlp.fc1.weight"] = (i, h)
        shapes[f"{lp}mlp.fc1.bias"] = (i,)
        shapes[f"{lp}mlp.fc2.weight"] = (h, i)
        shapes[f"{lp}mlp.fc2.bias"] = (h,)
    return shapes
