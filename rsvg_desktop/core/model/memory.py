"""Memory estimates without weights: what a precision costs before anything is downloaded.

:func:`estimate_weight_bytes` instantiates the model on the meta device (no memory, no weights) and
sums every parameter and buffer by the precision's storage rule:

* Linear layers of the language model (``q/k/v/o_proj``, ``gate/up/down_proj``), quantized:
  ``int8``: 1 byte per weight + one fp32 scale per output row (bitsandbytes ``SCB``).
  ``nf4``/``fp4``: 0.5 byte per weight + one absmax per block of 64 weights: fp32 without double
  quantization; with it, one uint8 per block + one fp32 per 256 blocks + a 256-entry fp32 code table
  and an fp32 offset per layer. Each layer also keeps its 16-entry fp32 4-bit code table.
  ``int8wo`` (torchao): 1 byte per weight + per output row a scale at the compute dtype and an int8
  zero point.
  ``int4wo`` (torchao): 0.5 byte per weight + per group of ``group_size`` weights (along the input) a
  scale and a zero point, both at the compute dtype (the CUDA tile-packed and CPU layouts alike).
  ``fp8`` (torchao): 1 byte per weight + one fp32 scale per output row (per tensor: one per layer, on
  compute capability 8.9).
  Their biases stay at the compute dtype.
* Everything else (vision tower, projector, ``lm_head``, embeddings, norms) at the compute dtype;
  buffers (rotary frequencies, position ids) at their own dtype.

``MemoryEstimate.param_bytes`` is what ``model.get_memory_footprint()`` reports once loaded (it counts
parameters and buffers, not bitsandbytes' scales and absmax, which live outside the parameters);
``quant_state_bytes`` is those scales and absmax; ``total_bytes`` is both.

For GeoChat-7B (:func:`geochat7b_config`), see ``estimate_weight_bytes(geochat7b_config(), p)``.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch

from rsvg_desktop.core.model.checkpoint import TextDims
from rsvg_desktop.core.model.precision import (
    DEFAULT_INT4_GROUP_SIZE,
    Precision,
    dtype_name,
    is_skipped_module,
    parse_dtype,
)
from rsvg_desktop.core.model.vision_dims import CLIP_L14_336
from rsvg_desktop.errors import CheckpointError, ModelNotFoundError

__all__ = [
    "FOUR_BIT_BLOCKSIZE",
    "GIB",
    "MemoryEstimate",
    "activation_bytes_per_tile",
    "default_compute_dtype",
    "estimate_weight_bytes",
    "geochat7b_config",
    "image_tokens",
    "kv_cache_bytes_per_token",
    "load_llava_config",
    "meta_model",
    "quant_state_bytes",
    "tile_bytes",
    "torchao_weight_bytes",
]

GIB = 1024**3
FOUR_BIT_BLOCKSIZE = 64
_NESTED_BLOCKSIZE = 256  # bitsandbytes' second-level blocks (double quantization)
_NESTED_CODE_BYTES = 256 * 4  # fp32 dynamic code table of the nested absmax quantization
_FOUR_BIT_CODE_BYTES = 16 * 4  # fp32 nf4/fp4 code table kept in each layer's quant state


@dataclass(frozen=True, slots=True)
class MemoryEstimate:
    """Bytes of a model's weights at one precision (see the module doc for the rules).

    ``by_part`` splits ``total_bytes`` into ``language_model_quantized`` (quantized linear layers with
    their scales), ``language_model_other`` (embeddings, norms), ``lm_head``, ``vision_tower``,
    ``projector`` and ``buffers``. ``kv_cache_bytes_per_token`` is for one sequence at ``dtype``.
    """

    precision: Precision
    dtype: str
    param_bytes: int
    quant_state_bytes: int
    n_params: int
    n_quantized_params: int
    kv_cache_bytes_per_token: int
    by_part: dict[str, int] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    @property
    def total_bytes(self) -> int:
        return self.param_bytes + self.quant_state_bytes

    @property
    def total_gib(self) -> float:
        return self.total_bytes / GIB

    @property
    def total_gb(self) -> float:
        return self.total_bytes / 1e9

    def summary(self) -> str:
        """One line for the user, e.g. ``nf4: ≈ 4.20 GiB (4.51 GB) of weights, KV cache 0.50 MiB/token``."""
        return (
            f"{self.precision.value}: ≈ {self.total_gib:.2f} GiB ({self.total_gb:.2f} GB) of weights, "
            f"KV cache {self.kv_cache_bytes_per_token / 2**20:.2f} MiB/token"
        )


# --- configurations ---------------------------------------------------------------------------
#: GeoChat-7B's language model as its published ``config.json`` gives it (LLaMA-7B).
GEOCHAT_7B_TEXT = TextDims(
    vocab_size=32000,
    hidden_size=4096,
    intermediate_size=11008,
    num_hidden_layers=32,
    num_attention_heads=32,
    num_key_value_heads=32,
    max_position_embeddings=4096,
)


def geochat7b_config() -> Any:
    """The converted ``LlavaConfig`` of GeoChat-7B (LLaMA-7B + CLIP ViT-L/14 at 504 px), no weights.

    Text: hidden 4096, 32 layers, 32 heads, intermediate 11008, vocabulary 32000 + ``<image>`` (32000)
    + ``<pad>`` (32001), 4096 positions, RMS eps 1e-5. Vision: hidden 1024, 24 layers, 16 heads,
    intermediate 4096, patch 14, 504 px (1297 positions), quick-GELU. Projector 1024 → 4096 → 4096 GELU,
    features of layer −2 without CLS: 1296 image tokens.
    """
    from rsvg_desktop.core.model.convert import llava_config

    return llava_config(GEOCHAT_7B_TEXT, CLIP_L14_336)


def load_llava_config(config_or_model_dir: Any) -> Any:
    """A LlavaConfig from a config object, a converted model folder or its ``config.json``."""
    if not isinstance(config_or_model_dir, str | Path):
        return config_or_model_dir
    from transformers import LlavaConfig

    path = Path(config_or_model_dir)
    cfg_file = path / "config.json" if path.is_dir() else path
    if not cfg_file.is_file():
        raise ModelNotFoundError(f"{cfg_file}: no config.json (convert the checkpoint first)")
    try:
        model_type = json.loads(cfg_file.read_text(encoding="utf-8")).get("model_type")
    except (OSError, ValueError) as exc:
        raise CheckpointError(f"{cfg_file}: unreadable config: {exc}") from exc
    if model_type != "llava":
        raise CheckpointError(
            f"{cfg_file}: model_type {model_type!r} is not a converted LLaVA model (expected 'llava')"
        )
    return LlavaConfig.from_json_file(str(cfg_file))


def meta_model(config: Any) -> torch.nn.Module:
    """``LlavaForConditionalGeneration(config)`` on the meta device: shapes only, no memory."""
    from accelerate import init_empty_weights
    from transformers import LlavaForConditionalGeneration

    with init_empty_weights():
        return LlavaForConditionalGeneration(config)


def default_compute_dtype(precision: Precision) -> torch.dtype:
    """The dtype of unquantized weights on a bf16-capable GPU (what :func:`plan_precision` picks)."""
    if precision in (Precision.FP16, Precision.INT8):
        return torch.float16
    if precision is Precision.FP32:
        return torch.float32
    return torch.bfloat16


# --- the estimate -----------------------------------------------------------------------------
def _part_of(name: str) -> str:
    parts = name.split(".")
    if "vision_tower" in parts:
        return "vision_tower"
    if "multi_modal_projector" in parts:
        return "projector"
    if "lm_head" in parts:
        return "lm_head"
    return "language_model_other"


def _quantized_linears(model: torch.nn.Module) -> Iterator[tuple[str, torch.nn.Module]]:
    for name, module in model.named_modules():
        if isinstance(module, torch.nn.Linear) and not is_skipped_module(name):
            yield name, module


def _four_bit_state_bytes(n_weights: int, double_quant: bool) -> int:
    blocks = math.ceil(n_weights / FOUR_BIT_BLOCKSIZE)
    if double_quant:
        nested = math.ceil(blocks / _NESTED_BLOCKSIZE)
        return blocks * 1 + nested * 4 + _NESTED_CODE_BYTES + 4 + _FOUR_BIT_CODE_BYTES
    return blocks * 4 + _FOUR_BIT_CODE_BYTES


def estimate_weight_bytes(
    config_or_model_dir: Any,
    precision: str | Precision,
    *,
    double_quant: bool = True,
    compute_dtype: str | torch.dtype | None = None,
    group_size: int = DEFAULT_INT4_GROUP_SIZE,
    fp8_per_tensor: bool = False,
) -> MemoryEstimate:
    """Exact weight bytes of a converted LLaVA model at ``precision``, without loading weights.

    ``config_or_model_dir``: a LlavaConfig (e.g. :func:`geochat7b_config`), a converted model folder,
    or its ``config.json``. ``compute_dtype``: dtype of the unquantized parts; default what the loader
    picks on a bf16-capable GPU (:func:`default_compute_dtype`); pass the loaded model's dtype to
    compare with a model loaded on the CPU. ``group_size``: int4wo's group size; ``fp8_per_tensor``:
    fp8 with one scale per layer (compute capability 8.9) instead of one per row.
    """
    prec = Precision.parse(precision)
    config = load_llava_config(config_or_model_dir)
    dtype = default_compute_dtype(prec) if compute_dtype is None else parse_dtype(compute_dtype)
    elem = torch.empty((), dtype=dtype).element_size()
    model = meta_model(config)

    quantized_weights: set[int] = set()
    quant_param_bytes = 0
    quant_state = 0
    n_quant = 0
    if prec.quantized:
        for _name, linear in _quantized_linears(model):
            module: Any = linear
            quantized_weights.add(id(module.weight))
            n_quant += module.weight.numel()
            weight_bytes, state_bytes = _quantized_linear_bytes(
                module,
                prec,
                elem,
                double_quant=double_quant,
                group_size=group_size,
                fp8_per_tensor=fp8_per_tensor,
            )
            quant_param_bytes += weight_bytes
            quant_state += state_bytes

    by_part: dict[str, int] = {
        "language_model_quantized": quant_param_bytes + quant_state,
        "language_model_other": 0,
        "lm_head": 0,
        "vision_tower": 0,
        "projector": 0,
        "buffers": 0,
    }
    n_params, other_bytes = _add_unquantized_bytes(model, quantized_weights, elem, by_part)
    notes = []
    if prec.quantized:
        notes.append(
            f"unquantized parts (vision tower, projector, lm_head, embeddings) at {dtype_name(dtype)}"
        )
    return MemoryEstimate(
        precision=prec,
        dtype=dtype_name(dtype),
        param_bytes=quant_param_bytes + other_bytes,
        quant_state_bytes=quant_state,
        n_params=n_params,
        n_quantized_params=n_quant,
        kv_cache_bytes_per_token=kv_cache_bytes_per_token(config, dtype),
        by_part=by_part,
        notes=tuple(notes),
    )


def _quantized_linear_bytes(
    module: Any, prec: Precision, elem: int, *, double_quant: bool, group_size: int, fp8_per_tensor: bool
) -> tuple[int, int]:
    """``(weight bytes, scale and quant-state bytes)`` of one linear layer quantized to ``prec``
    (``elem``: bytes per value of the compute dtype); the rules are in the module doc."""
    n = module.weight.numel()
    if prec is Precision.INT8:
        return n, module.out_features * 4
    if prec is Precision.INT8WO:
        return n, module.out_features * (elem + 1)
    if prec is Precision.INT4WO:
        return math.ceil(n / 2), module.out_features * math.ceil(module.in_features / group_size) * 2 * elem
    if prec is Precision.FP8:
        return n, 4 if fp8_per_tensor else module.out_features * 4
    return math.ceil(n / 2), _four_bit_state_bytes(n, double_quant)


def _add_unquantized_bytes(
    model: torch.nn.Module, quantized_weights: set[int], elem: int, by_part: dict[str, int]
) -> tuple[int, int]:
    """Add the bytes of every parameter not in ``quantized_weights`` (floating ones at ``elem`` bytes per
    value) and of every buffer to ``by_part``; return ``(parameters counted, bytes added)``.

    Shared parameters count once; the parameter count includes the quantized weights.
    """
    added = 0
    n_params = 0
    seen: set[int] = set()
    for name, p in model.named_parameters(remove_duplicate=False):
        if id(p) in seen:
            continue
        seen.add(id(p))
        n_params += p.numel()
        if id(p) in quantized_weights:
            continue
        size = p.numel() * (elem if p.is_floating_point() else p.element_size())
        added += size
        by_part[_part_of(name)] += size
    for _name, b in model.named_buffers():
        size = b.numel() * b.element_size()
        added += size
        by_part["buffers"] += size
    return n_params, added


def _text_dims(config: Any) -> tuple[int, int, int, int]:
    text = config.text_config
    heads = text.num_attention_heads
    kv_heads = getattr(text, "num_key_value_heads", None) or heads
    head_dim = getattr(text, "head_dim", None) or text.hidden_size // heads
    return text.num_hidden_layers, kv_heads, head_dim, text.hidden_size


def kv_cache_bytes_per_token(config_or_model_dir: Any, dtype: str | torch.dtype = torch.bfloat16) -> int:
    """KV-cache bytes per token of one sequence: 2 (K and V) × layers × kv_heads × head_dim × bytes.

    GeoChat-7B at 16 bit: 2 × 32 × 4096 × 2 = 512 KiB per token, i.e. ≈ 0.8 GiB for a 504 px tile
    (1296 image tokens + ≈ 80 prompt tokens + 256 new tokens).
    """
    config = load_llava_config(config_or_model_dir)
    layers, kv_heads, head_dim, _ = _text_dims(config)
    elem = torch.empty((), dtype=parse_dtype(dtype)).element_size()
    return 2 * layers * kv_heads * head_dim * elem


def image_tokens(config_or_model_dir: Any) -> int:
    """Image tokens per tile: (image_size / patch)², CLS dropped (1296 for GeoChat at 504 px)."""
    config = load_llava_config(config_or_model_dir)
    v = config.vision_config
    n = (v.image_size // v.patch_size) ** 2
    return n if config.vision_feature_select_strategy == "default" else n + 1


def activation_bytes_per_tile(
    config_or_model_dir: Any, seq_len: int, dtype: str | torch.dtype = torch.bfloat16
) -> int:
    """A generous bound on the transient activations of one tile's prefill (the peak of a step).

    Language model: ``seq_len × (4 × hidden + 3 × intermediate)`` values (residual, norm, attention
    output and q/k/v; gate, up and their product) plus one row of fp32 logits. Vision tower: 1297 ×
    (6 × hidden + 2 × intermediate) values plus one layer's attention matrix (heads × 1297², as if the
    attention were not fused). Decoding steps need far less than the prefill. Not included: the
    allocator's fragmentation and bitsandbytes' per-layer dequantization buffers, which do not grow with
    the batch (they are covered by the fixed reserve of ``auto_batch_size``).
    """
    config = load_llava_config(config_or_model_dir)
    elem = torch.empty((), dtype=parse_dtype(dtype)).element_size()
    text = config.text_config
    lm = seq_len * (4 * text.hidden_size + 3 * text.intermediate_size) * elem + text.vocab_size * 4
    v = config.vision_config
    positions = (v.image_size // v.patch_size) ** 2 + 1
    vision = positions * (6 * v.hidden_size + 2 * v.intermediate_size) * elem
    vision += v.num_attention_heads * positions * positions * elem
    return int(lm + vision)


def tile_bytes(
    config_or_model_dir: Any,
    *,
    prompt_tokens: int,
    max_new_tokens: int,
    dtype: str | torch.dtype = torch.bfloat16,
) -> int:
    """Memory one more tile in a batch needs: its KV cache for the whole sequence + its activations.

    The sequence is the image tokens + ``prompt_tokens`` (text of the prompt) + ``max_new_tokens``.
    """
    config = load_llava_config(config_or_model_dir)
    seq = image_tokens(config) + int(prompt_tokens) + int(max_new_tokens)
    return kv_cache_bytes_per_token(config, dtype) * seq + activation_bytes_per_tile(config, seq, dtype)


# --- measuring a loaded model -----------------------------------------------------------------
def quant_state_bytes(model: torch.nn.Module) -> int:
    """Bytes of bitsandbytes' scales/absmax/code tables in a loaded model (not in its parameters).

    ``model.get_memory_footprint()`` + this is what the quantized weights really occupy. Tensors
    shared between layers are counted once.
    """
    try:
        import bitsandbytes as bnb
    except ImportError:  # pragma: no cover - dependency
        return 0
    seen: set[tuple[str, int]] = set()
    total = 0

    def add(t: Any) -> None:
        nonlocal total
        if isinstance(t, torch.Tensor) and t.numel():
            key = (str(t.device), t.data_ptr())
            if key not in seen:
                seen.add(key)
                total += t.numel() * t.element_size()

    for module in model.modules():
        if isinstance(module, bnb.nn.Linear8bitLt):
            add(getattr(module.weight, "SCB", None))
            add(getattr(getattr(module, "state", None), "SCB", None))
        elif isinstance(module, bnb.nn.Linear4bit):
            qs = getattr(module.weight, "quant_state", None)
            if qs is None:
                continue
            add(qs.absmax)
            add(qs.code)
            add(qs.offset)
            if qs.state2 is not None:
                add(qs.state2.absmax)
                add(qs.state2.code)
    return total


def torchao_weight_bytes(model: torch.nn.Module) -> tuple[int, int]:
    """``(param_bytes, quant_state_bytes)`` of a model with torchao-quantized weights, as stored.

    ``get_memory_footprint()`` counts a torchao weight at its nominal (bf16/fp32) size; here a torchao
    tensor counts the bytes of its inner tensors instead: its quantized data (``qdata``) in
    ``param_bytes``, its scales and zero points in ``quant_state_bytes``. Every other parameter and
    buffer counts at its own size. Shared tensors are counted once.
    """
    from torchao.utils import TorchAOBaseTensor

    seen: set[tuple[str, int]] = set()
    params = 0
    state = 0

    def size(t: torch.Tensor) -> int:
        key = (str(t.device), t.data_ptr())
        if key in seen:
            return 0
        seen.add(key)
        return t.numel() * t.element_size()

    for t in [*model.parameters(), *model.buffers()]:
        if isinstance(t, TorchAOBaseTensor):
            names, _ctx = t.__tensor_flatten__()
            for name in names:
                inner = getattr(t, name)
                if name == "qdata":
                    params += size(inner)
                else:
                    state += size(inner)
        else:
            params += size(t)
    return params, state
