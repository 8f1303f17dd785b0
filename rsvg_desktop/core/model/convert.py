"""Convert GeoChat's published checkpoint into a transformers ``LlavaForConditionalGeneration`` folder.

What the conversion does (each step is listed in the folder's ``rsvg_manifest.json``):

* **Keys** are renamed to the installed transformers' Llava layout::

      model.embed_tokens.*                           -> model.language_model.embed_tokens.*
      model.layers.N.*                               -> model.language_model.layers.N.*
      model.norm.*                                   -> model.language_model.norm.*
      lm_head.weight                                 -> lm_head.weight
      model.mm_projector.0.* / model.mm_projector.2.* -> model.multi_modal_projector.linear_1.* / linear_2.*
      model.vision_tower.vision_tower.vision_model.* -> model.vision_tower.*

  ``*.rotary_emb.inv_freq`` and the CLIP ``embeddings.position_ids`` buffers are dropped (recomputed).
* **Tokens**: ``<image>`` gets id ``vocab_size`` (32000 for GeoChat-7B) and ``<pad>`` id ``vocab_size + 1``.
  ``embed_tokens`` and ``lm_head`` grow by two rows, each new row the mean of the existing rows (in float32).
  Deterministic; the ``<image>`` row of ``embed_tokens`` is never read (image features replace it), and
  a mean ``lm_head`` row gives the mean logit, which is never above the best one (greedy decoding never
  picks ``<image>``/``<pad>``).
* **Vision at 504 px**: GeoChat resizes CLIP's 24×24 patch position embeddings to 36×36 with
  ``torch.nn.functional.interpolate(mode="bicubic", align_corners=True)`` (CLS row kept apart, float32),
  giving 1 + 1296 = 1297 rows. The table is baked in and the vision config says ``image_size: 504``, so
  transformers' own (different) ``interpolate_pos_encoding`` is never needed. The tower is the stale CLIP
  copy inside GeoChat's shard, or the ``vision_model.*`` weights of a CLIP ViT-L/14-336 folder given as
  ``clip_dir``.
* **Projector** ``mlp2x_gelu`` → ``multi_modal_projector`` with ``projector_hidden_act="gelu"``;
  ``vision_feature_layer=-2``, ``vision_feature_select_strategy="default"`` (CLS dropped): 1296 image tokens.
* **Processor**: ``LlavaProcessor`` = ``LlavaImageProcessor`` at 504 (GeoChat's pad-to-square with the CLIP
  mean colour, resize, CLIP mean/std) + a LLaMA tokenizer built from ``tokenizer.model`` (``<image>``,
  ``<pad>``, left padding, ``legacy=True`` so text after ``<image>`` is tokenized as GeoChat's own
  ``tokenizer_image_token`` does) + the ``llava_v1`` chat template.

The conversion streams: input shards are memory-mapped a batch of tensors at a time (``_BATCH_BYTES``; the
mapping is dropped after each batch), each output tensor is cast and written to its safetensors shard in row
blocks (``_BLOCK_BYTES``) by a streaming writer, so peak memory stays near 100 MB whatever the model's size
(``benchmarks/bench_convert.py``). One output shard is written per input file. Output goes to a hidden
sibling folder renamed into place at the end: a failure leaves no half folder and keeps an old output.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import logging
import math
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal

import torch

from rsvg_desktop.core.model.checkpoint import (
    STALE_CLIP_PREFIX,
    GeoChatCheckpoint,
    TextDims,
    VisionDims,
    clip_vision_shapes,
    load_sentencepiece,
    open_geochat,
    open_weights,
    read_config,
    scan_weights,
)
from rsvg_desktop.errors import CheckpointError, ConfigError, OutputExistsError

log = logging.getLogger(__name__)

__all__ = [
    "CHAT_TEMPLATE",
    "GEOCHAT_IMAGE_SIZE",
    "GEOCHAT_SYSTEM",
    "IMAGE_TOKEN",
    "MANIFEST_NAME",
    "PAD_TOKEN",
    "ConversionProgress",
    "ConversionReport",
    "convert_geochat",
    "interpolate_position_embedding",
]

GEOCHAT_IMAGE_SIZE = 504
IMAGE_TOKEN = "<image>"
PAD_TOKEN = "<pad>"
MANIFEST_NAME = "rsvg_manifest.json"
GEOCHAT_SYSTEM = (
    "A chat between a curious human and an artificial intelligence assistant. "
    "The assistant gives helpful, detailed, and polite answers to the human's questions."
)

#: GeoChat's ``llava_v1`` conversation as a Jinja chat template:
#: ``{SYSTEM} USER: <image>\n{query} ASSISTANT: {answer}</s>USER: {query} ASSISTANT:``.
#: A leading ``system`` message replaces the default system text; image items of a user message become
#: ``<image>\n`` before its text (GeoChat always puts the image first). No ``<s>``: the tokenizer adds it.
CHAT_TEMPLATE = (
    '{%- set ns = namespace(system="' + GEOCHAT_SYSTEM.replace('"', '\\"') + '") -%}'
    "{%- if messages and messages[0]['role'] == 'system' -%}"
    "{%- if messages[0]['content'] is string -%}{%- set ns.system = messages[0]['content'] -%}"
    "{%- else -%}{%- set ns.system = messages[0]['content'] | selectattr('type', 'equalto', 'text')"
    " | map(attribute='text') | join(' ') -%}{%- endif -%}"
    "{%- set messages = messages[1:] -%}"
    "{%- endif -%}"
    "{{- ns.system + ' ' -}}"
    "{%- for message in messages -%}"
    "{%- if message['content'] is string -%}{%- set text = message['content'] -%}{%- set n_images = 0 -%}"
    "{%- else -%}"
    "{%- set text = message['content'] | selectattr('type', 'equalto', 'text') | map(attribute='text')"
    " | join(' ') -%}"
    "{%- set n_images = message['content'] | selectattr('type', 'equalto', 'image') | list | length -%}"
    "{%- endif -%}"
    "{%- if message['role'] == 'user' -%}"
    "{{- 'USER: ' + ('<image>\\n' * n_images) + text + ' ' -}}"
    "{%- elif message['role'] == 'assistant' -%}"
    "{{- 'ASSISTANT: ' + text + '</s>' -}}"
    "{%- endif -%}"
    "{%- endfor -%}"
    "{%- if add_generation_prompt -%}{{- 'ASSISTANT:' -}}{%- endif -%}"
)

_LLAVA_VISION = "model.vision_tower."
_CLIP_PREFIXES = ("vision_model.", "model.vision_model.", "vision_tower.vision_model.", "")


@dataclass(frozen=True, slots=True)
class ConversionProgress:
    """One progress event: ``done``/``total`` bytes of source tensors processed, and what is happening."""

    done: int
    total: int
    message: str

    @property
    def fraction(self) -> float:
        return self.done / self.total if self.total else 1.0


@dataclass(frozen=True)
class ConversionReport:
    """What :func:`convert_geochat` did (the same facts are in ``rsvg_manifest.json``)."""

    out_dir: Path
    source_dir: Path
    vision_source: str
    """``"stale-copy"`` (the CLIP copy inside GeoChat's shard) or the CLIP folder's path."""
    random_weights: bool
    image_token_id: int
    pad_token_id: int
    position_embeddings: tuple[int, int]
    """Rows before and after interpolation, e.g. ``(577, 1297)``."""
    tensors_written: int
    keys_renamed: int
    keys_dropped: tuple[str, ...] = field(repr=False)
    shards: tuple[str, ...] = ()
    bytes_written: int = 0
    seconds: float = 0.0
    manifest: Mapping[str, Any] = field(default_factory=dict, repr=False, compare=False)


# --------------------------------------------------------------------------------------------------
# tensor transforms
# --------------------------------------------------------------------------------------------------
def interpolate_position_embedding(table: torch.Tensor, grid: int) -> torch.Tensor:
    """GeoChat's CLIP position-embedding resize: ``(1 + g*g, C)`` → ``(1 + grid*grid, C)``, float32.

    The CLS row is kept apart; the ``g×g`` patch rows are resized with bicubic interpolation,
    ``align_corners=True``, in float32 (GeoChat resizes the float32 CLIP it has just loaded).
    """
    rows, width = table.shape
    g = math.isqrt(rows - 1)
    if g * g != rows - 1:
        raise CheckpointError(f"position embedding with {rows} rows is not 1 + a square grid")
    t = table.to(torch.float32)
    if g == grid:
        return t.clone()
    patches = t[1:].T.reshape(1, width, g, g)
    resized = torch.nn.functional.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=True)
    return torch.cat([t[:1], resized.reshape(width, grid * grid).T], dim=0)


def _row_blocks(t: torch.Tensor, dtype: torch.dtype, max_bytes: int | None = None) -> Iterator[torch.Tensor]:
    """``t`` cast to ``dtype``, as consecutive blocks of rows of at most about ``max_bytes`` each.

    Casting block by block keeps the extra memory of a dtype change to one block; with no change the
    blocks are views of ``t`` (no copy at all).
    """
    if t.dim() == 0 or t.shape[0] == 0:
        yield t.to(dtype) if t.is_floating_point() else t
        return
    max_bytes = _BLOCK_BYTES if max_bytes is None else max_bytes
    row_bytes = max(1, t[0].numel() * max(t.element_size(), dtype.itemsize))
    step = max(1, max_bytes // row_bytes)
    for start in range(0, t.shape[0], step):
        block = t[start : start + step]
        yield block.to(dtype) if block.is_floating_point() else block


def _row_mean(matrix: torch.Tensor, max_bytes: int | None = None) -> torch.Tensor:
    """The mean of ``matrix``'s rows, accumulated in float32 block by block, shape ``(1, columns)``."""
    total = torch.zeros(matrix.shape[1], dtype=torch.float32)
    for block in _row_blocks(matrix, torch.float32, max_bytes):
        total += block.sum(dim=0)
    return (total / matrix.shape[0]).unsqueeze(0)


# --------------------------------------------------------------------------------------------------
# streaming safetensors writer
# --------------------------------------------------------------------------------------------------
_ST_NAMES = {
    torch.float64: "F64",
    torch.float32: "F32",
    torch.float16: "F16",
    torch.bfloat16: "BF16",
    torch.int64: "I64",
    torch.int32: "I32",
    torch.int16: "I16",
    torch.int8: "I8",
    torch.uint8: "U8",
    torch.bool: "BOOL",
}
#: Source bytes read under one memory mapping before it is released (bounds the file-backed RSS).
_BATCH_BYTES = 64 << 20
#: Rows of a tensor are cast and written in blocks of about this size (bounds the anonymous RSS).
_BLOCK_BYTES = 32 << 20


@dataclass(frozen=True, slots=True)
class _Planned:
    """One output tensor: name, shape and dtype (known before any data is read) and how to make it."""

    name: str
    shape: tuple[int, ...]
    dtype: torch.dtype
    source: Path
    """The weights file it is made from."""
    make: Callable[[Mapping[str, torch.Tensor]], Iterator[torch.Tensor]]
    """Yields the tensor as blocks of rows, from that file's (memory-mapped) tensors."""
    src_nbytes: int

    @property
    def nbytes(self) -> int:
        return math.prod(self.shape) * self.dtype.itemsize


class _SafetensorsWriter:
    """Writes a safetensors file tensor by tensor: the header first (from the plan), then each tensor's
    bytes as soon as it is made, so only one tensor needs to be in memory at a time."""

    def __init__(self, path: Path, plan: list[_Planned], metadata: Mapping[str, str]) -> None:
        header: dict[str, Any] = {"__metadata__": dict(metadata)}
        offset = 0
        for p in plan:
            if p.dtype not in _ST_NAMES:
                raise CheckpointError(f"{p.name}: dtype {p.dtype} cannot be stored in safetensors")
            header[p.name] = {
                "dtype": _ST_NAMES[p.dtype],
                "shape": list(p.shape),
                "data_offsets": [offset, offset + p.nbytes],
            }
            offset += p.nbytes
        raw = json.dumps(header, separators=(",", ":")).encode("utf-8")
        raw += b" " * (-len(raw) % 8)  # the format pads the header with spaces to a multiple of 8
        self.path = path
        self._plan = plan
        self._next = 0
        self._file = path.open("wb")
        self._file.write(len(raw).to_bytes(8, "little"))
        self._file.write(raw)

    def write(self, name: str, blocks: Iterable[torch.Tensor]) -> None:
        """Write the next planned tensor, given as consecutive blocks of rows (dim 0) in the planned dtype."""
        p = self._plan[self._next]
        if name != p.name:
            raise RuntimeError(f"{self.path}: got {name}, planned {p.name}")
        rows = 0
        for block in blocks:
            if block.dtype != p.dtype or (block.dim() > 0 and tuple(block.shape[1:]) != p.shape[1:]):
                raise RuntimeError(f"{self.path}: {name} block {tuple(block.shape)} {block.dtype} vs {p}")
            rows += block.shape[0] if block.dim() else 1
            if block.numel():
                data = block.detach().contiguous().reshape(-1).view(torch.uint8)
                self._file.write(data.numpy().tobytes())
        if rows != (p.shape[0] if p.shape else 1):
            raise RuntimeError(f"{self.path}: {name} got {rows} rows, planned shape {p.shape}")
        self._next += 1

    def close(self) -> None:
        self._file.close()
        if self._next != len(self._plan):
            raise RuntimeError(f"{self.path}: {len(self._plan) - self._next} planned tensors not written")

    def abort(self) -> None:
        self._file.close()


def _batches(plan: list[_Planned]) -> Iterator[list[_Planned]]:
    """Consecutive runs of ``plan`` from one source file, each reading at most ``_BATCH_BYTES``."""
    batch: list[_Planned] = []
    size = 0
    for p in plan:
        if batch and (p.source != batch[0].source or size + p.src_nbytes > _BATCH_BYTES):
            yield batch
            batch, size = [], 0
        batch.append(p)
        size += p.src_nbytes
    if batch:
        yield batch


def _write_batch(writer: _SafetensorsWriter, batch: list[_Planned], tick: Callable[[_Planned], None]) -> None:
    """Make and write ``batch`` under one fresh mapping of its source file, then let the mapping go.

    Re-opening the (memory-mapped) file for each batch unmaps the pages the previous batch touched, so the
    resident size stays near ``_BATCH_BYTES`` however large the shard is.
    """
    with open_weights(batch[0].source) as weights:
        for p in batch:
            writer.write(p.name, p.make(weights))
            tick(p)


# --------------------------------------------------------------------------------------------------
# CLIP folder (``clip_dir``)
# --------------------------------------------------------------------------------------------------
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


def _clip_vision_dims(clip_dir: Path) -> VisionDims:
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
class _ClipSource:
    dir: Path
    dims: VisionDims
    files: list[Path]
    keys: dict[str, tuple[Path, str, tuple[int, ...], torch.dtype]]
    """Key relative to ``model.vision_tower.`` → (file, key in that file, shape, dtype)."""


def _open_clip(clip_dir: Path, want: VisionDims) -> _ClipSource:
    """Check a CLIP folder against GeoChat's tower and find the vision tensors GeoChat uses."""
    if not clip_dir.is_dir():
        raise CheckpointError(f"{clip_dir}: CLIP folder not found")
    dims = _clip_vision_dims(clip_dir)
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
    return _ClipSource(clip_dir, dims, files, keys)


# --------------------------------------------------------------------------------------------------
# key mapping and plans
# --------------------------------------------------------------------------------------------------
def _rename(key: str) -> str | None:
    """The Llava name of an original GeoChat key (``None``: dropped)."""
    if key.endswith(".rotary_emb.inv_freq") or key.endswith("embeddings.position_ids"):
        return None
    if key.startswith(STALE_CLIP_PREFIX):
        return _LLAVA_VISION + key[len(STALE_CLIP_PREFIX) :]
    if key.startswith("model.mm_projector.0."):
        return "model.multi_modal_projector.linear_1." + key[len("model.mm_projector.0.") :]
    if key.startswith("model.mm_projector.2."):
        return "model.multi_modal_projector.linear_2." + key[len("model.mm_projector.2.") :]
    if key == "lm_head.weight":
        return key
    if key.startswith("model."):
        return "model.language_model." + key[len("model.") :]
    raise CheckpointError(f"no Llava name for key {key}")


class _Planner:
    """Turns source tensors (by metadata) into :class:`_Planned` output tensors."""

    def __init__(self, out_dtype: torch.dtype, grid: int, extra_rows: int) -> None:
        self.out_dtype = out_dtype
        self.grid = grid
        self.extra_rows = extra_rows
        self.position_rows: tuple[int, int] = (0, 0)

    def plan(self, source: Path, key: str, new: str, shape: tuple[int, ...], dtype: torch.dtype) -> _Planned:
        src_nbytes = math.prod(shape) * dtype.itemsize
        out_dtype = self.out_dtype if dtype.is_floating_point else dtype
        grid, extra = self.grid, self.extra_rows
        if new in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            shape = (shape[0] + extra, shape[1])

            def make(w: Mapping[str, torch.Tensor]) -> Iterator[torch.Tensor]:
                matrix = w[key]
                yield from _row_blocks(matrix, out_dtype)
                yield _row_mean(matrix).to(out_dtype).expand(extra, -1)
        elif new == _LLAVA_VISION + "embeddings.position_embedding.weight":
            self.position_rows = (shape[0], 1 + grid * grid)
            shape = (1 + grid * grid, shape[1])

            def make(w: Mapping[str, torch.Tensor]) -> Iterator[torch.Tensor]:
                yield interpolate_position_embedding(w[key], grid).to(out_dtype)
        else:

            def make(w: Mapping[str, torch.Tensor]) -> Iterator[torch.Tensor]:
                yield from _row_blocks(w[key], out_dtype)

        return _Planned(new, tuple(shape), out_dtype, source, make, src_nbytes)


# --------------------------------------------------------------------------------------------------
# config, processor, manifest
# --------------------------------------------------------------------------------------------------
def llava_config(
    t: TextDims,
    vision: VisionDims,
    dtype: torch.dtype | None = None,
    *,
    vision_feature_layer: int = -2,
    vision_feature_select_strategy: Literal["default", "full"] = "default",
) -> Any:
    """The converted ``LlavaConfig`` for GeoChat's text and vision dimensions: ``<image>`` and ``<pad>``
    appended to the vocabulary, the vision tower at 504 px, layer −2 features. The one definition of the
    converted layout: the conversion writes it, the memory estimate instantiates it on the meta device."""
    from transformers import CLIPVisionConfig, LlamaConfig, LlavaConfig

    text_config = LlamaConfig(
        vocab_size=t.vocab_size + 2,
        hidden_size=t.hidden_size,
        intermediate_size=t.intermediate_size,
        num_hidden_layers=t.num_hidden_layers,
        num_attention_heads=t.num_attention_heads,
        num_key_value_heads=t.num_key_value_heads,
        max_position_embeddings=t.max_position_embeddings,
        rms_norm_eps=t.rms_norm_eps,
        rope_parameters={"rope_type": "default", "rope_theta": t.rope_theta},
        hidden_act=t.hidden_act,
        bos_token_id=t.bos_token_id,
        eos_token_id=t.eos_token_id,
        pad_token_id=t.vocab_size + 1,
        tie_word_embeddings=False,
    )
    vision_config = CLIPVisionConfig(
        hidden_size=vision.hidden_size,
        intermediate_size=vision.intermediate_size,
        num_hidden_layers=vision.num_hidden_layers,
        num_attention_heads=vision.num_attention_heads,
        num_channels=vision.num_channels,
        image_size=GEOCHAT_IMAGE_SIZE,
        patch_size=vision.patch_size,
        projection_dim=vision.projection_dim,
        hidden_act=vision.hidden_act,
        layer_norm_eps=vision.layer_norm_eps,
    )
    grid = GEOCHAT_IMAGE_SIZE // vision.patch_size
    config = LlavaConfig(
        vision_config=vision_config,
        text_config=text_config,
        image_token_index=t.vocab_size,
        image_seq_length=grid * grid,
        projector_hidden_act="gelu",
        vision_feature_layer=vision_feature_layer,
        vision_feature_select_strategy=vision_feature_select_strategy,
        multimodal_projector_bias=True,
        tie_word_embeddings=False,
    )
    config.architectures = ["LlavaForConditionalGeneration"]
    if dtype is not None:
        config.dtype = str(dtype).removeprefix("torch.")
    return config


def _build_tokenizer(ckpt: GeoChatCheckpoint) -> Any:
    """A transformers LLaMA tokenizer equal to GeoChat's ``tokenizer.model``, plus ``<image>`` and ``<pad>``.

    Built from the SentencePiece pieces directly (vocabulary + merges in piece order): no protobuf needed.
    """
    from tokenizers import AddedToken
    from transformers import LlamaTokenizer
    from transformers.tokenization_utils_base import generate_merges

    sp = load_sentencepiece(ckpt.path, vocab_size=ckpt.text.vocab_size)
    if sp.id_to_piece(3) != "<0x00>":
        log.warning("%s/tokenizer.model has no byte-fallback pieces at ids 3..258", ckpt.path)
    vocab = {sp.id_to_piece(i): i for i in range(sp.get_piece_size())}
    max_len = ckpt.config.get("max_position_embeddings", 2048)
    try:
        src_cfg = json.loads((ckpt.path / "tokenizer_config.json").read_text(encoding="utf-8"))
        max_len = int(src_cfg.get("model_max_length", max_len))
    except (OSError, ValueError, TypeError):
        log.info("%s: no usable tokenizer_config.json; model_max_length=%s", ckpt.path, max_len)
    if max_len > 10**9:
        max_len = int(ckpt.config.get("max_position_embeddings", 2048))
    tok = LlamaTokenizer(
        vocab=vocab,
        merges=generate_merges(vocab),
        unk_token="<unk>",
        bos_token="<s>",
        eos_token="</s>",
        add_bos_token=True,
        add_eos_token=False,
        legacy=True,
        padding_side="left",
        model_max_length=max_len,
    )
    tok.add_tokens([AddedToken(IMAGE_TOKEN, special=True, normalized=False)], special_tokens=True)
    tok.add_special_tokens({"pad_token": AddedToken(PAD_TOKEN, special=True, normalized=False)})
    ids = tok.convert_tokens_to_ids([IMAGE_TOKEN, PAD_TOKEN])
    want = [ckpt.text.vocab_size, ckpt.text.vocab_size + 1]
    if ids != want:
        raise CheckpointError(f"{ckpt.path}/tokenizer.model: <image>/<pad> got ids {ids}, expected {want}")
    return tok


def _write_processor(ckpt: GeoChatCheckpoint, vision: VisionDims, out: Path) -> Any:
    from transformers import LlavaProcessor
    from transformers.models.llava.image_processing_pil_llava import LlavaImageProcessorPil

    size = GEOCHAT_IMAGE_SIZE
    image_processor = LlavaImageProcessorPil(
        do_pad=True,  # GeoChat's image_aspect_ratio "pad": square with the CLIP mean colour (122, 116, 104)
        do_resize=True,
        size={"shortest_edge": size},
        do_center_crop=True,
        crop_size={"height": size, "width": size},
        do_convert_rgb=True,
    )
    processor = LlavaProcessor(
        image_processor=image_processor,
        tokenizer=_build_tokenizer(ckpt),
        patch_size=vision.patch_size,
        vision_feature_select_strategy=ckpt.vision_feature_select_strategy,
        # CLIP's CLS token: (504/14)^2 + 1 - 1 (dropped by "default") = 1296 <image> tokens per image.
        num_additional_image_tokens=1,
        chat_template=CHAT_TEMPLATE,
        image_token=IMAGE_TOKEN,
    )
    processor.save_pretrained(out)
    # transformers does not persist ``legacy``; without it a reload tokenizes "\n" after <image> without the
    # leading "▁" that GeoChat's training prompts had.
    tc_path = out / "tokenizer_config.json"
    tc = json.loads(tc_path.read_text(encoding="utf-8"))
    tc.update(
        {
            "legacy": True,
            "add_bos_token": True,
            "add_eos_token": False,
            "padding_side": "left",
            "chat_template": CHAT_TEMPLATE,
        }
    )
    tc_path.write_text(json.dumps(tc, indent=2) + "\n", encoding="utf-8")
    return processor


def _sha256(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    import transformers

    import rsvg_desktop

    return {
        "rsvg_desktop": rsvg_desktop.__version__,
        "transformers": transformers.__version__,
        "torch": torch.__version__,
    }


# --------------------------------------------------------------------------------------------------
# the conversion
# --------------------------------------------------------------------------------------------------
# --------------------------------------------------------------------------------------------------
# the conversion
# --------------------------------------------------------------------------------------------------
def _dtype_of(name: str | None) -> torch.dtype:
    table = {"float16": torch.float16, "bfloat16": torch.bfloat16, "float32": torch.float32}
    if name is None:
        return torch.float16
    if name not in table:
        raise CheckpointError(f"unsupported torch_dtype {name!r} in config.json")
    return table[name]


def _check_out(out: Path, src: Path, clip: Path | None, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists (pass overwrite=True to replace it)")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    o = out.resolve()
    for other, what in ((src, "source checkpoint"), (clip, "CLIP folder")):
        if other is None:
            continue
        r = other.resolve()
        if o == r or o in r.parents or r in o.parents:
            raise ConfigError(f"{out}: output folder overlaps the {what} {other}")


def convert_geochat(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    clip_dir: str | Path | None = None,
    overwrite: bool = False,
    progress: Callable[[ConversionProgress], None] | None = None,
    dtype: torch.dtype | None = None,
) -> ConversionReport:
    """Convert the original GeoChat checkpoint in ``src_dir`` to a Llava folder ``out_dir`` (see module doc).

    ``clip_dir``: a CLIP ViT-L/14-336 folder whose ``vision_model.*`` weights replace the stale copy.
    ``dtype``: dtype of every floating tensor written (default: the source's ``torch_dtype``, float16).
    ``progress`` receives :class:`ConversionProgress` events (source bytes processed). Raises
    :class:`OutputExistsError` when ``out_dir`` exists and ``overwrite`` is false, :class:`ConfigError`
    when it overlaps the input, :class:`CheckpointError` / :class:`TokenizerError` for bad input.
    """
    started = time.monotonic()
    src, out = Path(src_dir), Path(out_dir)
    clip = Path(clip_dir) if clip_dir is not None else None
    _check_out(out, src, clip, overwrite)

    # 1. Validate everything that can be validated without reading tensor data.
    ckpt = open_geochat(src)
    infos = ckpt.scan()
    out_dtype = dtype or _dtype_of(ckpt.torch_dtype)
    clip_src = _open_clip(clip, ckpt.vision) if clip is not None else None
    has_stale = any(STALE_CLIP_PREFIX + "embeddings.class_embedding" in i.tensors for i in infos)
    if clip_src is None and not has_stale:
        raise CheckpointError(f"{src}: the checkpoint holds no CLIP tower; pass clip_dir (CLIP ViT-L/14-336)")
    base = clip_src.dims if clip_src else ckpt.vision
    # GeoChat's tower depth: a deeper CLIP's extra layers are never used (features come from layer -2).
    vision = replace(base, num_hidden_layers=ckpt.vision.num_hidden_layers)
    grid = GEOCHAT_IMAGE_SIZE // vision.patch_size
    planner = _Planner(out_dtype, grid, extra_rows=2)  # <image>, <pad>

    # 2. Plan every output tensor, one output part per input file.
    parts: list[list[_Planned]] = []
    dropped: list[str] = []
    renamed = 0
    total = dropped_bytes = 0
    for info in infos:
        plan = []
        for key, (shape, dt) in info.tensors.items():
            total += math.prod(shape) * dt.itemsize
            new = _rename(key)
            if new is None or (clip_src is not None and key.startswith(STALE_CLIP_PREFIX)):
                dropped.append(key)
                dropped_bytes += math.prod(shape) * dt.itemsize
                continue
            plan.append(planner.plan(info.path, key, new, shape, dt))
        renamed += len(plan)
        if plan:
            parts.append(plan)
    if clip_src is not None:
        by_file: dict[Path, list[_Planned]] = {}
        for rel, (path, key, shape, dt) in clip_src.keys.items():
            total += math.prod(shape) * dt.itemsize
            by_file.setdefault(path, []).append(planner.plan(path, key, _LLAVA_VISION + rel, shape, dt))
        for path in clip_src.files:
            if by_file.get(path):
                parts.append(by_file[path])
                renamed += len(by_file[path])

    # 3. Write into a hidden sibling folder; rename it into place only when everything is there.
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.converting-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    done = dropped_bytes

    def emit(message: str) -> None:
        if progress is not None:
            progress(ConversionProgress(done, total, message))

    def tick(p: _Planned) -> None:
        nonlocal done
        done += p.src_nbytes
        emit(p.name)

    writer: _SafetensorsWriter | None = None
    try:
        n = len(parts)
        shard_names: list[str] = []
        weight_map: dict[str, str] = {}
        tensor_bytes = 0
        for i, plan in enumerate(parts, start=1):
            name = "model.safetensors" if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
            emit(f"writing {name} from {plan[0].source.name}")
            writer = _SafetensorsWriter(tmp / name, plan, {"format": "pt"})
            for batch in _batches(plan):
                _write_batch(writer, batch, tick)
            writer.close()
            writer = None
            shard_names.append(name)
            weight_map.update(dict.fromkeys((p.name for p in plan), name))
            tensor_bytes += sum(p.nbytes for p in plan)
            log.info("wrote %s (%d tensors from %s)", name, len(plan), plan[0].source.name)
        if n > 1:
            index = {"metadata": {"total_size": tensor_bytes}, "weight_map": dict(sorted(weight_map.items()))}
            _write_json(tmp / "model.safetensors.index.json", index)
        bytes_written = sum((tmp / s).stat().st_size for s in shard_names)

        _write_config(ckpt, vision, out_dtype, tmp)
        _write_generation_config(ckpt, tmp)
        _write_processor(ckpt, vision, tmp)
        emit("hashing source files")
        manifest = _manifest(
            ckpt,
            clip_src,
            out_dtype,
            grid,
            planner.position_rows,
            renamed,
            dropped,
            shard_names,
            bytes_written,
        )
        _write_json(tmp / MANIFEST_NAME, manifest)
        if ckpt.random_weights:
            (tmp / "RANDOM_WEIGHTS.txt").write_text(
                "Converted from a random-weights test checkpoint: its answers mean nothing.\n",
                encoding="utf-8",
            )
        _swap_into_place(tmp, out)
    except BaseException:
        if writer is not None:
            writer.abort()
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    log.info(
        "converted %s -> %s in %.1f s (%d tensors, %.1f MB)",
        src,
        out,
        seconds,
        len(weight_map),
        bytes_written / 1e6,
    )
    done = total
    emit("done")
    return ConversionReport(
        out_dir=out,
        source_dir=src,
        vision_source=str(clip_src.dir) if clip_src else "stale-copy",
        random_weights=ckpt.random_weights,
        image_token_id=ckpt.text.vocab_size,
        pad_token_id=ckpt.text.vocab_size + 1,
        position_embeddings=planner.position_rows,
        tensors_written=len(weight_map),
        keys_renamed=renamed,
        keys_dropped=tuple(dropped),
        shards=tuple(shard_names),
        bytes_written=bytes_written,
        seconds=seconds,
        manifest=manifest,
    )


def _write_json(path: Path, data: Mapping[str, Any], *, sort_keys: bool = False) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=sort_keys) + "\n", encoding="utf-8")


def _write_config(ckpt: GeoChatCheckpoint, vision: VisionDims, dtype: torch.dtype, out: Path) -> None:
    llava_config(
        ckpt.text,
        vision,
        dtype,
        vision_feature_layer=ckpt.vision_feature_layer,
        vision_feature_select_strategy=ckpt.vision_feature_select_strategy,
    ).save_pretrained(out)
    path = out / "config.json"
    cfg = json.loads(path.read_text(encoding="utf-8"))
    if ckpt.random_weights:
        cfg["_name_or_path"] = ckpt.config.get("_name_or_path") or "rsvg test model (RANDOM WEIGHTS)"
    else:
        cfg["_name_or_path"] = "MBZUAI/geochat-7B (converted by rsvg-desktop)"
    cfg["rsvg_source_architecture"] = "GeoChatLlamaForCausalLM"
    cfg["rsvg_random_weights"] = ckpt.random_weights
    _write_json(path, cfg, sort_keys=True)


def _write_generation_config(ckpt: GeoChatCheckpoint, out: Path) -> None:
    from transformers import GenerationConfig

    GenerationConfig(
        bos_token_id=ckpt.text.bos_token_id,
        eos_token_id=ckpt.text.eos_token_id,
        pad_token_id=ckpt.text.vocab_size + 1,
        do_sample=False,  # GeoChat's evaluation decodes greedily
        num_beams=1,
    ).save_pretrained(out)


def _manifest(
    ckpt: GeoChatCheckpoint,
    clip_src: _ClipSource | None,
    dtype: torch.dtype,
    grid: int,
    position_rows: tuple[int, int],
    renamed: int,
    dropped: list[str],
    shards: list[str],
    bytes_written: int,
) -> dict[str, Any]:
    g = math.isqrt(max(position_rows[0] - 1, 0))
    rules = {
        "model.embed_tokens.": "model.language_model.embed_tokens.",
        "model.layers.": "model.language_model.layers.",
        "model.norm.": "model.language_model.norm.",
        "model.mm_projector.0.": "model.multi_modal_projector.linear_1.",
        "model.mm_projector.2.": "model.multi_modal_projector.linear_2.",
        ("vision_model." if clip_src else STALE_CLIP_PREFIX): _LLAVA_VISION,
        "lm_head.": "lm_head.",
    }
    sources = sorted(p for p in ckpt.path.iterdir() if p.is_file())
    return {
        "format": "rsvg-geochat-llava/1",
        "created": _dt.datetime.now(_dt.UTC).isoformat(timespec="seconds"),
        "tool": "rsvg_desktop.core.model.convert",
        "versions": _versions(),
        "random_weights": ckpt.random_weights,
        "source": {
            "path": str(ckpt.path.resolve()),
            "architecture": "GeoChatLlamaForCausalLM",
            "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in sources},
        },
        "vision_source": (
            {
                "kind": "clip_dir",
                "path": str(clip_src.dir.resolve()),
                "files": {p.name: {"sha256": _sha256(p), "bytes": p.stat().st_size} for p in clip_src.files},
            }
            if clip_src
            else {"kind": "stale-copy", "prefix": STALE_CLIP_PREFIX}
        ),
        "changes": {
            "keys_renamed": renamed,
            "rename_rules": rules,
            "keys_dropped": dropped,
            "tokens_added": {IMAGE_TOKEN: ckpt.text.vocab_size, PAD_TOKEN: ckpt.text.vocab_size + 1},
            "embedding_rows_added": "embed_tokens, lm_head: new rows = mean of the existing rows (float32)",
            "position_embeddings": {
                "from_rows": position_rows[0],
                "to_rows": position_rows[1],
                "method": f"CLS row kept; {g}x{g} -> {grid}x{grid} with torch.nn.functional.interpolate("
                "mode='bicubic', align_corners=True) in float32",
            },
            "image_size": GEOCHAT_IMAGE_SIZE,
            "image_tokens_per_image": grid * grid,
            "dtype": str(dtype).removeprefix("torch."),
        },
        "output": {"shards": shards, "bytes": bytes_written},
    }


def _swap_into_place(tmp: Path, out: Path) -> None:
    """Rename the finished ``tmp`` to ``out``, replacing an old ``out`` only now that all is written."""
    old = None
    if out.exists():
        old = out.parent / f".{out.name}.old-{uuid.uuid4().hex[:8]}"
        out.rename(old)
    try:
        tmp.rename(out)
    except OSError:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
