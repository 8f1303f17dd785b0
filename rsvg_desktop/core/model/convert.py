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

The conversion runs in two steps: :func:`plan_conversion` reads configs and tensor shapes, validates
everything and decides every output tensor without writing anything; :func:`write_conversion` carries the
plan out. It streams (:mod:`~rsvg_desktop.core.model.safetensors_stream`): input shards are memory-mapped a
batch of tensors at a time (the mapping is dropped after each batch), each output tensor is cast and written
to its safetensors shard in row blocks by a streaming writer, so peak memory stays near 100 MB whatever
the model's size (``benchmarks/bench_convert.py``). One output shard is written per input file. Output
goes to a hidden sibling folder renamed into place at the end: a failure leaves no half folder and keeps
an old output.
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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

import torch

from rsvg_desktop.core.model.checkpoint import (
    STALE_CLIP_PREFIX,
    GeoChatCheckpoint,
    TextDims,
    open_geochat,
)
from rsvg_desktop.core.model.clip_folder import ClipSource, clip_vision_dims, open_clip
from rsvg_desktop.core.model.llava_processor import (
    CHAT_TEMPLATE,
    GEOCHAT_IMAGE_SIZE,
    PAD_TOKEN,
    write_processor,
)
from rsvg_desktop.core.model.precision import parse_dtype
from rsvg_desktop.core.model.safetensors_stream import (
    Planned,
    SafetensorsWriter,
    batches,
    row_blocks,
    row_mean,
    write_batch,
)
from rsvg_desktop.core.model.versions import library_versions
from rsvg_desktop.core.model.vision_dims import VisionDims
from rsvg_desktop.core.prompt import GEOCHAT_SYSTEM, IMAGE_TOKEN
from rsvg_desktop.errors import CheckpointError, ConfigError, OutputExistsError, PrecisionError

log = logging.getLogger(__name__)

__all__ = [
    "CHAT_TEMPLATE",
    "GEOCHAT_IMAGE_SIZE",
    "GEOCHAT_SYSTEM",
    "IMAGE_TOKEN",
    "MANIFEST_NAME",
    "PAD_TOKEN",
    "ConversionPlan",
    "ConversionProgress",
    "ConversionReport",
    "convert_geochat",
    "interpolate_position_embedding",
    "plan_conversion",
    "write_conversion",
]

MANIFEST_NAME = "rsvg_manifest.json"

_LLAVA_VISION = "model.vision_tower."


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
    """Turns source tensors (by metadata) into :class:`Planned` output tensors."""

    def __init__(self, out_dtype: torch.dtype, grid: int, extra_rows: int) -> None:
        self.out_dtype = out_dtype
        self.grid = grid
        self.extra_rows = extra_rows
        self.position_rows: tuple[int, int] = (0, 0)

    def plan(self, source: Path, key: str, new: str, shape: tuple[int, ...], dtype: torch.dtype) -> Planned:
        src_nbytes = math.prod(shape) * dtype.itemsize
        out_dtype = self.out_dtype if dtype.is_floating_point else dtype
        grid, extra = self.grid, self.extra_rows
        if new in ("model.language_model.embed_tokens.weight", "lm_head.weight"):
            shape = (shape[0] + extra, shape[1])

            def make(w: Mapping[str, torch.Tensor]) -> Iterator[torch.Tensor]:
                matrix = w[key]
                yield from row_blocks(matrix, out_dtype)
                yield row_mean(matrix).to(out_dtype).expand(extra, -1)
        elif new == _LLAVA_VISION + "embeddings.position_embedding.weight":
            self.position_rows = (shape[0], 1 + grid * grid)
            shape = (1 + grid * grid, shape[1])

            def make(w: Mapping[str, torch.Tensor]) -> Iterator[torch.Tensor]:
                yield interpolate_position_embedding(w[key], grid).to(out_dtype)
        else:

            def make(w: Mapping[str, torch.Tensor]) -> Iterator[torch.Tensor]:
                yield from row_blocks(w[key], out_dtype)

        return Planned(new, tuple(shape), out_dtype, source, make, src_nbytes)


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


def _sha256(path: Path, chunk: int = 8 << 20) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def _versions() -> dict[str, str]:
    return library_versions("rsvg_desktop", "transformers", "torch")


# --------------------------------------------------------------------------------------------------
# the conversion
# --------------------------------------------------------------------------------------------------
def _dtype_of(name: str | None) -> torch.dtype:
    if name is None:
        return torch.float16
    try:
        return parse_dtype(name)
    except PrecisionError:
        raise CheckpointError(f"unsupported torch_dtype {name!r} in config.json") from None


def _check_out(out: Path, src: Path, clip: Path | None, overwrite: bool) -> None:
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: exists (use --overwrite to replace it)")
    if out.exists() and not out.is_dir():
        raise OutputExistsError(f"{out}: exists and is not a folder")
    o = out.resolve()
    for other, what in ((src, "source checkpoint"), (clip, "CLIP folder")):
        if other is None:
            continue
        r = other.resolve()
        if o == r or o in r.parents or r in o.parents:
            raise ConfigError(f"{out}: output folder overlaps the {what} {other}")


@dataclass(frozen=True)
class ConversionPlan:
    """Everything a conversion will do, decided from configs and tensor shapes alone (nothing written)."""

    source_dir: Path
    out_dir: Path
    ckpt: GeoChatCheckpoint
    clip_src: ClipSource | None
    out_dtype: torch.dtype
    grid: int
    parts: tuple[tuple[Planned, ...], ...]
    """Output tensors, one output shard per input file."""
    dropped: tuple[str, ...]
    renamed: int
    total_bytes: int
    """Source tensor bytes, for progress."""
    dropped_bytes: int
    position_rows: tuple[int, int]


def plan_conversion(
    src_dir: str | Path,
    out_dir: str | Path,
    *,
    clip_dir: str | Path | None = None,
    overwrite: bool = False,
    dtype: torch.dtype | None = None,
) -> ConversionPlan:
    """Read configs and tensor shapes, validate them, and decide every output tensor; writes nothing.

    Raises what :func:`convert_geochat` raises for bad input or output.
    """
    src, out = Path(src_dir), Path(out_dir)
    clip = Path(clip_dir) if clip_dir is not None else None
    _check_out(out, src, clip, overwrite)
    clip_dims = clip_vision_dims(clip) if clip is not None else None
    ckpt = open_geochat(src, clip_vision=clip_dims, clip_where=str(clip / "config.json") if clip else "")
    infos = ckpt.scan()
    out_dtype = dtype or _dtype_of(ckpt.torch_dtype)
    clip_src = open_clip(clip, ckpt.vision) if clip is not None else None
    grid = GEOCHAT_IMAGE_SIZE // ckpt.vision.patch_size
    planner = _Planner(out_dtype, grid, extra_rows=2)  # <image>, <pad>

    parts: list[tuple[Planned, ...]] = []
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
            parts.append(tuple(plan))
    if clip_src is not None:
        by_file: dict[Path, list[Planned]] = {}
        for rel, (path, key, shape, dt) in clip_src.keys.items():
            total += math.prod(shape) * dt.itemsize
            by_file.setdefault(path, []).append(planner.plan(path, key, _LLAVA_VISION + rel, shape, dt))
        for path in clip_src.files:
            if by_file.get(path):
                parts.append(tuple(by_file[path]))
                renamed += len(by_file[path])
    return ConversionPlan(
        source_dir=src,
        out_dir=out,
        ckpt=ckpt,
        clip_src=clip_src,
        out_dtype=out_dtype,
        grid=grid,
        parts=tuple(parts),
        dropped=tuple(dropped),
        renamed=renamed,
        total_bytes=total,
        dropped_bytes=dropped_bytes,
        position_rows=planner.position_rows,
    )


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

    ``clip_dir``: a CLIP folder (e.g. ViT-L/14-336) whose ``vision_model.*`` weights replace the stale copy.
    ``dtype``: dtype of every floating tensor written (default: the source's ``torch_dtype``, float16).
    ``progress`` receives :class:`ConversionProgress` events (source bytes processed). Raises
    :class:`OutputExistsError` when ``out_dir`` exists and ``overwrite`` is false, :class:`ConfigError`
    when it overlaps the input, :class:`CheckpointError` / :class:`TokenizerError` for bad input.
    """
    started = time.monotonic()
    plan = plan_conversion(src_dir, out_dir, clip_dir=clip_dir, overwrite=overwrite, dtype=dtype)
    return write_conversion(plan, progress=progress, started=started)


def write_conversion(
    plan: ConversionPlan,
    *,
    progress: Callable[[ConversionProgress], None] | None = None,
    started: float | None = None,
) -> ConversionReport:
    """Carry out ``plan``: write into a hidden sibling folder, renamed into place only when all is there."""
    started = time.monotonic() if started is None else started
    out, ckpt, clip_src, total = plan.out_dir, plan.ckpt, plan.clip_src, plan.total_bytes
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.converting-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    done = plan.dropped_bytes

    def emit(message: str) -> None:
        if progress is not None:
            progress(ConversionProgress(done, total, message))

    def tick(p: Planned) -> None:
        nonlocal done
        done += p.src_nbytes
        emit(p.name)

    try:
        shard_names, weight_map = _write_shards(plan, tmp, emit, tick)
        bytes_written = sum((tmp / s).stat().st_size for s in shard_names)
        manifest = _write_companions(plan, tmp, shard_names, bytes_written, emit)
        _swap_into_place(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    seconds = time.monotonic() - started
    log.info(
        "converted %s -> %s in %.1f s (%d tensors, %.1f MB)",
        plan.source_dir,
        out,
        seconds,
        len(weight_map),
        bytes_written / 1e6,
    )
    done = total
    emit("done")
    return ConversionReport(
        out_dir=out,
        source_dir=plan.source_dir,
        vision_source=str(clip_src.dir) if clip_src else "stale-copy",
        random_weights=ckpt.random_weights,
        image_token_id=ckpt.text.vocab_size,
        pad_token_id=ckpt.text.vocab_size + 1,
        position_embeddings=plan.position_rows,
        tensors_written=len(weight_map),
        keys_renamed=plan.renamed,
        keys_dropped=plan.dropped,
        shards=tuple(shard_names),
        bytes_written=bytes_written,
        seconds=seconds,
        manifest=manifest,
    )


def _write_shards(
    plan: ConversionPlan, tmp: Path, emit: Callable[[str], None], tick: Callable[[Planned], None]
) -> tuple[list[str], dict[str, str]]:
    """Write one safetensors shard per part of ``plan`` into ``tmp``, and the index when there are several.

    Returns the shard names and the weight map (tensor name → shard name).
    """
    n = len(plan.parts)
    shard_names: list[str] = []
    weight_map: dict[str, str] = {}
    tensor_bytes = 0
    for i, part in enumerate(plan.parts, start=1):
        name = "model.safetensors" if n == 1 else f"model-{i:05d}-of-{n:05d}.safetensors"
        emit(f"writing {name} from {part[0].source.name}")
        writer = SafetensorsWriter(tmp / name, part, {"format": "pt"})
        try:
            for batch in batches(part):
                write_batch(writer, batch, tick)
            writer.close()
        except BaseException:
            writer.abort()
            raise
        shard_names.append(name)
        weight_map.update(dict.fromkeys((p.name for p in part), name))
        tensor_bytes += sum(p.nbytes for p in part)
        log.info("wrote %s (%d tensors from %s)", name, len(part), part[0].source.name)
    if n > 1:
        index = {"metadata": {"total_size": tensor_bytes}, "weight_map": dict(sorted(weight_map.items()))}
        _write_json(tmp / "model.safetensors.index.json", index)
    return shard_names, weight_map


def _write_companions(
    plan: ConversionPlan, tmp: Path, shard_names: list[str], bytes_written: int, emit: Callable[[str], None]
) -> dict[str, Any]:
    """Write everything beside the weights into ``tmp``: config, generation config, processor, manifest
    (returned) and, for a random-weights checkpoint, ``RANDOM_WEIGHTS.txt``."""
    ckpt = plan.ckpt
    _write_config(ckpt, ckpt.vision, plan.out_dtype, tmp)
    _write_generation_config(ckpt, tmp)
    write_processor(ckpt, ckpt.vision, tmp)
    emit("hashing source files")
    manifest = _manifest(
        ckpt,
        plan.clip_src,
        plan.out_dtype,
        plan.grid,
        plan.position_rows,
        plan.renamed,
        list(plan.dropped),
        shard_names,
        bytes_written,
    )
    _write_json(tmp / MANIFEST_NAME, manifest)
    if ckpt.random_weights:
        (tmp / "RANDOM_WEIGHTS.txt").write_text(
            "Converted from a random-weights test checkpoint: its answers mean nothing.\n",
            encoding="utf-8",
        )
    return manifest


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
    clip_src: ClipSource | None,
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
