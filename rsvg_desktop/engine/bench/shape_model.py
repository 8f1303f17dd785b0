"""A converted checkpoint of GeoChat-7B's exact architecture with random weights (``--shape-of``).

``rsvg bench speed --shape-of geochat-7b`` measures speed and memory on it: they do not depend on the
weights' values. The checkpoint (bf16 safetensors in 2 GiB shards, memory flat while writing) takes the
test model's tokenizer and processor; the ``<image>`` token's id is the tokenizer's, the sizes are
GeoChat's (:func:`rsvg_desktop.core.model.memory.geochat7b_config`).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

from rsvg_desktop.errors import ConfigError

__all__ = ["SHAPES", "write_shape_model"]

SHAPES = ("geochat-7b",)
SHARD_BYTES = 2 << 30
_TEMPLATE_FILES = (
    "tokenizer.json",
    "tokenizer_config.json",
    "processor_config.json",
    "chat_template.jinja",
    "generation_config.json",
)


def write_shape_model(out_dir: str | Path, template_dir: str | Path, shape: str = "geochat-7b") -> Path:
    """Write (once) a converted checkpoint of ``shape`` with random bf16 weights into ``out_dir``."""
    import torch
    from safetensors.torch import save_file

    from rsvg_desktop.core.model.memory import geochat7b_config, meta_model

    if shape not in SHAPES:
        raise ConfigError(f"unknown shape {shape!r}; known: {', '.join(SHAPES)}")
    out = Path(out_dir)
    done = out / "rsvg_manifest.json"
    if done.is_file():
        return out
    template = Path(template_dir)
    tmp = out.with_name(out.name + ".partial")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    for name in _TEMPLATE_FILES:
        if (template / name).is_file():
            shutil.copy2(template / name, tmp / name)
    tiny = json.loads((template / "config.json").read_text(encoding="utf-8"))
    config = geochat7b_config()
    config.image_token_index = int(tiny["image_token_index"])
    for key in ("bos_token_id", "eos_token_id", "pad_token_id"):  # the tokenizer's special ids
        if tiny.get("text_config", {}).get(key) is not None:
            setattr(config.text_config, key, tiny["text_config"][key])
    config.rsvg_random_weights = True
    setattr(config, "dtype" if hasattr(config, "dtype") else "torch_dtype", "bfloat16")
    config.to_json_file(str(tmp / "config.json"))
    gen = torch.Generator().manual_seed(0)
    weight_map: dict[str, str] = {}
    shard: dict[str, torch.Tensor] = {}
    shard_bytes = 0
    total = 0
    n_shard = 0

    def flush() -> None:
        nonlocal shard, shard_bytes, n_shard
        if shard:
            n_shard += 1
            name = f"model-{n_shard:05d}.safetensors"
            save_file(shard, str(tmp / name), metadata={"format": "pt"})
            weight_map.update(dict.fromkeys(shard, name))
            shard, shard_bytes = {}, 0

    for key, meta in meta_model(config).state_dict().items():
        shape_ = tuple(meta.shape)
        if key.endswith("bias"):
            t = torch.zeros(shape_, dtype=torch.bfloat16)
        elif len(shape_) == 1:
            t = torch.ones(shape_, dtype=torch.bfloat16)
        else:
            t = (torch.randn(shape_, generator=gen, dtype=torch.float32) * 0.02).to(torch.bfloat16)
        size = t.numel() * 2
        if shard and shard_bytes + size > SHARD_BYTES:
            flush()
        shard[key] = t
        shard_bytes += size
        total += size
    flush()
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    (tmp / "model.safetensors.index.json").write_text(json.dumps(index, indent=1), encoding="utf-8")
    manifest = {"format": "rsvg-shape/1", "shape_of": shape, "random_weights": True, "weight_bytes": total}
    (tmp / "rsvg_manifest.json").write_text(json.dumps(manifest, indent=1), encoding="utf-8")
    if out.exists():
        shutil.rmtree(out)
    tmp.replace(out)
    return out
