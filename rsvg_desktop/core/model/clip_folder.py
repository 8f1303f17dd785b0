"""A CLIP folder given with ``--clip`` (``clip_dir``): its config's vision dimensions, its weight files, and
the ``vision_model.*`` tensors GeoChat's tower uses (checked against the checkpoint's tower)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import torch

from rsvg_desktop.core.model.checkpoint import read_config, scan_weights
from rsvg_desktop.core.model.vision_dims import VisionDims, clip_vision_shapes
from rsvg_desktop.errors import CheckpointError

__all__ = ["ClipSource", "clip_vision_dims", "open_clip"]

_CLIP_PREFIXES = ("vision_model.", "model.vision_model.", "vision_tower.vision_model.", "")


def _clip_files(clip_dir: Path) -> list[Path]:
    for index_name in ("model.safetensors.index.json", "pytorch_model.bin.index.json"):
        index = clip_dir / index_name
        if index.is_file():
            try:
                files = sorted(set(json.loads(index.read_text(encoding="utf-8"))["weight_map"].values()))
            except (OSError, ValueError, KeyError, TypeError) as exc:
                raise CheckpointError(f"{index}: not a valid weights index ({exc})") from None
            for f in files:
                if not (clip_dir / f).is_file():
                    raise CheckpointError(f"{index}: names shard {f}, which is missing from {clip_dir}")
            return [clip_dir / f for f in files]
    for name in ("model.safetensors", "pytorch_model.bin"):
        if (clip_dir / name).is_file():
            return [clip_dir / name]
    raise CheckpointError(f"{clip_dir}: no CLIP weights (expected model.safetensors or pytorch_model.bin)")


def clip_vision_dims(clip_dir: Path) -> VisionDims:
    if not clip_dir.is_dir():
        raise CheckpointError(f"{clip_dir}: CLIP folder not found")
    config = read_config(clip_dir)
    where = str(clip_dir / "config.json")
    model_type = config.get("model_type")
    if model_type == "clip":
        vc = dict(config.get("vision_config") or {})
    elif model_type == "clip_vision_model":
        vc = dict(config)
    else:
        raise CheckpointError(
            f"{where}: model_type is {model_type!r}, expected a CLIP ('clip' or 'clip_vision_model')"
        )
    # config.json files written by transformers leave CLIPVisionConfig's defaults out: fill them in.
    defaults = {
        "hidden_size": 768,
        "intermediate_size": 3072,
        "num_hidden_layers": 12,
        "num_attention_heads": 12,
        "image_size": 224,
        "patch_size": 32,
        "num_channels": 3,
        "layer_norm_eps": 1e-5,
        "hidden_act": "quick_gelu",
        "projection_dim": config.get("projection_dim", 512),
    }
    return VisionDims.from_mapping({**defaults, **vc}, where=where)


@dataclass(frozen=True)
class ClipSource:
    dir: Path
    dims: VisionDims
    files: list[Path]
    keys: dict[str, tuple[Path, str, tuple[int, ...], torch.dtype]]
    """Key relative to ``model.vision_tower.`` → (file, key in that file, shape, dtype)."""


def open_clip(clip_dir: Path, want: VisionDims) -> ClipSource:
    """Check a CLIP folder against GeoChat's tower and find the vision tensors GeoChat uses."""
    if not clip_dir.is_dir():
        raise CheckpointError(f"{clip_dir}: CLIP folder not found")
    dims = clip_vision_dims(clip_dir)
    where = str(clip_dir / "config.json")
    for f in ("hidden_size", "intermediate_size", "num_attention_heads", "patch_size", "image_size"):
        if getattr(dims, f) != getattr(want, f):
            raise CheckpointError(
                f"{where}: vision {f} is {getattr(dims, f)}, GeoChat needs {getattr(want, f)} "
                "(use openai/clip-vit-large-patch14-336)"
            )
    if dims.num_hidden_layers < want.num_hidden_layers:
        raise CheckpointError(
            f"{where}: {dims.num_hidden_layers} vision layers, GeoChat needs {want.num_hidden_layers}"
        )
    files = _clip_files(clip_dir)
    # The tensors GeoChat uses: no position_ids buffer, no layers past GeoChat's depth.
    used = {
        rel: shape
        for rel, shape in clip_vision_shapes(dims).items()
        if not rel.endswith("position_ids")
        and not (rel.startswith("encoder.layers.") and int(rel.split(".")[2]) >= want.num_hidden_layers)
    }
    keys: dict[str, tuple[Path, str, tuple[int, ...], torch.dtype]] = {}
    for path in files:
        for key, (shape, dtype) in scan_weights(path).tensors.items():
            rel = next(
                (key[len(p) :] for p in _CLIP_PREFIXES if key.startswith(p) and key[len(p) :] in used), None
            )
            if rel is None or rel in keys:
                continue
            if tuple(shape) != used[rel]:
                raise CheckpointError(
                    f"{path}: tensor {key} has shape {list(shape)}, "
                    f"expected {list(used[rel] or ())} from {where}"
                )
            keys[rel] = (path, key, tuple(shape), dtype)
    missing = [k for k in used if k not in keys]
    if missing:
        raise CheckpointError(f"{clip_dir}: no CLIP vision tensor {missing[0]} (looked for vision_model.*)")
    return ClipSource(clip_dir, dims, files, keys)
