"""Reading GeoChat checkpoints in their published (original LLaVA) layout, safely and one shard at a time.

* The model family comes from ``config.json`` (``architectures``, ``model_type``, the ``mm_*`` fields), never
  from the folder's name.
* Weights are read only with ``torch.load(path, map_location="cpu", weights_only=True, mmap=True)`` (pickle
  shards) or ``safetensors`` (safetensors files): nothing in a checkpoint can run code, and
  ``trust_remote_code`` is never used. ``mmap`` keeps a shard's tensors on disk until they are touched.
* Every failure names the file (and the key) and says what was found and what was expected:
  :class:`CheckpointError` for configs, indexes, shards and shapes, :class:`TokenizerError` for the
  tokenizer.
"""

from __future__ import annotations

import enum
import json
import logging
import pickle
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any, Literal

import torch

from rsvg_desktop.core.model.tower import check_tower_shapes, tower_dims_from_tensors, warn_if_name_disagrees
from rsvg_desktop.core.model.vision_dims import VisionDims, clip_vision_shapes
from rsvg_desktop.errors import CheckpointError, TokenizerError

log = logging.getLogger(__name__)

__all__ = [
    "GEOCHAT_ARCHITECTURE",
    "LLAVA_ARCHITECTURE",
    "STALE_CLIP_PREFIX",
    "ST_DTYPES",
    "GeoChatCheckpoint",
    "ModelKind",
    "ShardInfo",
    "TextDims",
    "identify",
    "load_sentencepiece",
    "open_geochat",
    "open_weights",
    "read_config",
    "scan_weights",
    "tensor_meta",
]

#: Where GeoChat's shard keeps its (stale, 336 px) copy of the CLIP vision transformer.
STALE_CLIP_PREFIX = "model.vision_tower.vision_tower.vision_model."
GEOCHAT_ARCHITECTURE = "GeoChatLlamaForCausalLM"
LLAVA_ARCHITECTURE = "LlavaForConditionalGeneration"


class ModelKind(enum.StrEnum):
    """What a model folder holds, decided from its ``config.json``."""

    GEOCHAT_ORIGINAL = "geochat-original"
    """GeoChat as published (``GeoChatLlamaForCausalLM``, pickle shards): convert before loading."""
    LLAVA_CONVERTED = "llava-converted"
    """A transformers ``LlavaForConditionalGeneration`` folder (e.g. written by ``convert_geochat``)."""


@dataclass(frozen=True, slots=True)
class TextDims:
    """The LLaMA language model's dimensions, read from GeoChat's ``config.json``."""

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_hidden_layers: int
    num_attention_heads: int
    num_key_value_heads: int
    max_position_embeddings: int
    rms_norm_eps: float = 1e-5
    rope_theta: float = 10000.0
    hidden_act: str = "silu"
    bos_token_id: int = 1
    eos_token_id: int = 2

    @property
    def head_dim(self) -> int:
        return self.hidden_size // self.num_attention_heads


@dataclass(frozen=True, slots=True)
class ShardInfo:
    """One weights file: its tensors' shapes and dtypes (read without touching the data)."""

    path: Path
    tensors: Mapping[str, tuple[tuple[int, ...], torch.dtype]]

    @property
    def nbytes(self) -> int:
        total = 0
        for shape, dtype in self.tensors.values():
            n = 1
            for d in shape:
                n *= d
            total += n * dtype.itemsize
        return total


# --------------------------------------------------------------------------------------------------
# config and identification
# --------------------------------------------------------------------------------------------------
def read_config(model_dir: str | Path) -> dict[str, Any]:
    """``config.json`` of ``model_dir`` as a dict; :class:`CheckpointError` if missing or not JSON."""
    path = Path(model_dir) / "config.json"
    if not path.is_file():
        raise CheckpointError(f"{path}: missing (not a model folder)")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise CheckpointError(f"{path}: unreadable ({exc})") from None
    if not isinstance(data, dict):
        raise CheckpointError(f"{path}: expected a JSON object, found {type(data).__name__}")
    return data


def _kind_of(config: Mapping[str, Any], where: str) -> ModelKind:
    archs = config.get("architectures") or []
    if isinstance(archs, str):
        archs = [archs]
    model_type = config.get("model_type")
    if LLAVA_ARCHITECTURE in archs or (model_type == "llava" and "vision_config" in config):
        if "vision_config" not in config or "text_config" not in config:
            raise CheckpointError(f"{where}: {LLAVA_ARCHITECTURE} config without vision_config/text_config")
        return ModelKind.LLAVA_CONVERTED
    if GEOCHAT_ARCHITECTURE in archs or model_type == "geochat":
        missing = [k for k in ("mm_vision_tower", "mm_projector_type", "mm_hidden_size") if k not in config]
        if missing:
            raise CheckpointError(
                f"{where}: GeoChat config without the multimodal fields {', '.join(missing)}"
            )
        return ModelKind.GEOCHAT_ORIGINAL
    found = f"architectures={list(archs)}, model_type={model_type!r}"
    if "mm_vision_tower" in config:
        hint = " (an original LLaVA checkpoint, not GeoChat)"
    elif model_type == "llama" or any("Llama" in a for a in archs):
        hint = " (a text-only LLaMA, no vision tower)"
    else:
        hint = ""
    raise CheckpointError(
        f"{where}: found {found}{hint}; expected {GEOCHAT_ARCHITECTURE} (model_type 'geochat') "
        f"or a converted {LLAVA_ARCHITECTURE} (model_type 'llava')"
    )


def identify(model_dir: str | Path) -> ModelKind:
    """The kind of model in ``model_dir``, from its ``config.json`` only (never from the folder's name).

    Raises :class:`CheckpointError` when there is no config or it describes another model family.
    """
    return _kind_of(read_config(model_dir), str(Path(model_dir) / "config.json"))


# --------------------------------------------------------------------------------------------------
# weights files
# --------------------------------------------------------------------------------------------------
class _SafetensorsMapping(Mapping[str, torch.Tensor]):
    """Read-only mapping over an open safetensors file: a tensor is read when asked for."""

    def __init__(self, handle: Any) -> None:
        self._h = handle
        self._keys = list(handle.keys())

    def __getitem__(self, key: str) -> torch.Tensor:
        if key not in self._keys:
            raise KeyError(key)
        return self._h.get_tensor(key)

    def __iter__(self) -> Iterator[str]:
        return iter(self._keys)

    def __len__(self) -> int:
        return len(self._keys)

    def meta(self, key: str) -> tuple[tuple[int, ...], torch.dtype]:
        sl = self._h.get_slice(key)
        return tuple(sl.get_shape()), ST_DTYPES[sl.get_dtype()]


#: safetensors dtype names -> torch dtypes (the writer in ``convert`` uses the inverse).
ST_DTYPES = {
    "F64": torch.float64,
    "F32": torch.float32,
    "F16": torch.float16,
    "BF16": torch.bfloat16,
    "I64": torch.int64,
    "I32": torch.int32,
    "I16": torch.int16,
    "I8": torch.int8,
    "U8": torch.uint8,
    "BOOL": torch.bool,
}


@contextmanager
def open_weights(path: str | Path) -> Iterator[Mapping[str, torch.Tensor]]:
    """Open one weights file as a read-only ``{key: tensor}`` mapping whose data stays on disk until used.

    ``.bin``/``.pt``/``.pth``: ``torch.load(map_location="cpu", weights_only=True, mmap=True)``;
    ``.safetensors``: ``safetensors.safe_open``. A missing, truncated or corrupt file raises
    :class:`CheckpointError` naming it.
    """
    p = Path(path)
    if not p.is_file():
        raise CheckpointError(f"{p}: weights file is missing")
    if p.suffix == ".safetensors":
        from safetensors import safe_open

        try:
            handle_cm = safe_open(str(p), framework="pt", device="cpu")
            handle = handle_cm.__enter__()
        except Exception as exc:  # safetensors raises its own SafetensorError and OSError
            raise CheckpointError(f"{p}: not a readable safetensors file ({exc})") from None
        try:
            yield _SafetensorsMapping(handle)
        finally:
            handle_cm.__exit__(None, None, None)
        return
    try:
        state = torch.load(p, map_location="cpu", weights_only=True, mmap=True)
    except pickle.UnpicklingError:  # weights_only refused a global: the file holds more than tensors
        raise CheckpointError(
            f"{p}: refused: the file holds Python objects besides tensors (pickled code), which are "
            "never loaded; only plain tensor files are accepted"
        ) from None
    except Exception as exc:  # truncated zip, bad pickle: all mean "unusable shard"
        first = (str(exc).strip().splitlines() or [""])[0][:200]
        raise CheckpointError(
            f"{p}: cannot be read as a PyTorch weights file (truncated or corrupt?): "
            f"{type(exc).__name__}: {first}"
        ) from None
    if not isinstance(state, Mapping) or not all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in state.items()
    ):
        raise CheckpointError(f"{p}: expected a state dict of named tensors, found {type(state).__name__}")
    try:
        yield state
    finally:
        del state


def tensor_meta(weights: Mapping[str, torch.Tensor], key: str) -> tuple[tuple[int, ...], torch.dtype]:
    """Shape and dtype of ``weights[key]`` without reading its data."""
    if isinstance(weights, _SafetensorsMapping):
        return weights.meta(key)
    t = weights[key]
    return tuple(t.shape), t.dtype


def scan_weights(path: str | Path) -> ShardInfo:
    """Shapes and dtypes of every tensor in one weights file, without reading tensor data."""
    with open_weights(path) as w:
        return ShardInfo(Path(path), {k: tensor_meta(w, k) for k in w})


# --------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------
def load_sentencepiece(model_dir: str | Path, *, vocab_size: int | None = None) -> Any:
    """Load ``tokenizer.model`` of ``model_dir`` as a ``SentencePieceProcessor``.

    Checks LLaMA's special ids (0 ``<unk>``, 1 ``<s>``, 2 ``</s>``) and, when given, that the piece count
    equals ``vocab_size``. Raises :class:`TokenizerError` naming the file otherwise.
    """
    import sentencepiece as spm

    path = Path(model_dir) / "tokenizer.model"
    if not path.is_file():
        raise TokenizerError(f"{path}: missing (GeoChat's LLaMA SentencePiece tokenizer is required)")
    try:
        sp = spm.SentencePieceProcessor(model_proto=path.read_bytes())
    except Exception as exc:  # sentencepiece raises RuntimeError/OSError for a bad proto
        raise TokenizerError(f"{path}: not a readable SentencePiece model ({exc})") from None
    specials = {0: "<unk>", 1: "<s>", 2: "</s>"}
    n = sp.get_piece_size()
    found = {i: sp.id_to_piece(i) for i in specials if i < n}
    if found != specials:
        raise TokenizerError(f"{path}: special pieces are {found}, expected {specials} (a LLaMA tokenizer)")
    if vocab_size is not None and n != vocab_size:
        raise TokenizerError(f"{path}: has {n} pieces but config.json says vocab_size={vocab_size}")
    return sp


# --------------------------------------------------------------------------------------------------
# the original GeoChat checkpoint
# --------------------------------------------------------------------------------------------------
_INDEX_NAMES = ("pytorch_model.bin.index.json", "model.safetensors.index.json")
_SINGLE_NAMES = ("pytorch_model.bin", "model.safetensors")


@dataclass(frozen=True)
class GeoChatCheckpoint:
    """A GeoChat checkpoint folder in its published layout, validated down to the file list.

    Tensor shapes are checked by :meth:`scan` (cheap: metadata only) and again as shards are streamed.
    """

    path: Path
    config: Mapping[str, Any] = field(repr=False)
    text: TextDims
    vision: VisionDims
    weight_files: tuple[Path, ...]
    weight_map: Mapping[str, str] = field(repr=False)
    """Key → file name, from the index (empty for a single-file checkpoint)."""
    random_weights: bool = False

    @property
    def mm_hidden_size(self) -> int:
        return int(self.config["mm_hidden_size"])

    @property
    def vision_feature_layer(self) -> int:
        return int(self.config.get("mm_vision_select_layer", -2))

    @property
    def vision_feature_select_strategy(self) -> Literal["default", "full"]:
        feature = self.config.get("mm_vision_select_feature", "patch")
        return "full" if feature == "cls_patch" else "default"

    @property
    def torch_dtype(self) -> str | None:
        return self.config.get("torch_dtype") or self.config.get("dtype")

    def expected_shapes(self) -> dict[str, tuple[int, ...] | None]:
        """Every key the original layout may hold → its shape from the config (``None``: not checked)."""
        return dict(self._shapes)

    @cached_property
    def _shapes(self) -> dict[str, tuple[int, ...] | None]:
        t, v = self.text, self.vision
        h, hd = t.hidden_size, t.head_dim
        kv = t.num_key_value_heads * hd
        shapes: dict[str, tuple[int, ...] | None] = {
            "model.embed_tokens.weight": (t.vocab_size, h),
            "model.norm.weight": (h,),
            "lm_head.weight": (t.vocab_size, h),
            "model.mm_projector.0.weight": (h, self.mm_hidden_size),
            "model.mm_projector.0.bias": (h,),
            "model.mm_projector.2.weight": (h, h),
            "model.mm_projector.2.bias": (h,),
        }
        for i in range(t.num_hidden_layers):
            p = f"model.layers.{i}."
            shapes[p + "self_attn.q_proj.weight"] = (t.num_attention_heads * hd, h)
            shapes[p + "self_attn.k_proj.weight"] = (kv, h)
            shapes[p + "self_attn.v_proj.weight"] = (kv, h)
            shapes[p + "self_attn.o_proj.weight"] = (h, t.num_attention_heads * hd)
            shapes[p + "self_attn.rotary_emb.inv_freq"] = (hd // 2,)
            shapes[p + "mlp.gate_proj.weight"] = (t.intermediate_size, h)
            shapes[p + "mlp.up_proj.weight"] = (t.intermediate_size, h)
            shapes[p + "mlp.down_proj.weight"] = (h, t.intermediate_size)
            shapes[p + "input_layernorm.weight"] = (h,)
            shapes[p + "post_attention_layernorm.weight"] = (h,)
        shapes.update({STALE_CLIP_PREFIX + k: s for k, s in clip_vision_shapes(v).items()})
        return shapes

    def optional_keys(self) -> set[str]:
        """Keys that may be absent: buffers (dropped anyway) and the stale CLIP copy (``clip_dir``)."""
        return {k for k in self._shapes if k.endswith(".inv_freq") or k.startswith(STALE_CLIP_PREFIX)}

    def scan(self) -> list[ShardInfo]:
        """Open every weights file (metadata only) and check it against the index and the config.

        Raises :class:`CheckpointError` for an unreadable shard, a key the index puts in a shard that lacks
        it, a key found twice, an unknown key, a required key missing, or a shape that disagrees with the
        config.
        """
        expected = self.expected_shapes()
        seen: dict[str, Path] = {}
        infos = []
        for path in self.weight_files:
            info = scan_weights(path)
            for key, (shape, _dtype) in info.tensors.items():
                if key in seen:
                    raise CheckpointError(f"{path}: tensor {key} also appears in {seen[key].name}")
                seen[key] = path
                self.check_shape(path, key, shape)
            if self.weight_map:
                listed = {k for k, f in self.weight_map.items() if f == path.name}
                absent = sorted(listed - set(info.tensors))
                if absent:
                    raise CheckpointError(
                        f"{path}: the index lists {len(absent)} tensor(s) in this shard that it lacks, "
                        f"e.g. {absent[0]}"
                    )
            infos.append(info)
        missing = sorted(k for k in expected if k not in seen and k not in self.optional_keys())
        if missing:
            more = f" and {len(missing) - 3} more" if len(missing) > 3 else ""
            raise CheckpointError(f"{self.path}: required tensor(s) missing: {', '.join(missing[:3])}{more}")
        stale = [k for k in expected if k.startswith(STALE_CLIP_PREFIX) and not k.endswith("position_ids")]
        present = [k for k in stale if k in seen]
        if present and len(present) != len(stale):
            first = next(k for k in stale if k not in seen)
            raise CheckpointError(f"{self.path}: the checkpoint's CLIP copy is incomplete: {first} missing")
        return infos

    def check_shape(self, path: Path, key: str, shape: tuple[int, ...]) -> None:
        """Raise :class:`CheckpointError` when ``key`` is unknown or its shape disagrees with the config."""
        expected = self._shapes
        if key not in expected:
            raise CheckpointError(f"{path}: unexpected tensor {key} {list(shape)} (not in GeoChat's layout)")
        want = expected[key]
        if want is not None and tuple(shape) != want:
            raise CheckpointError(
                f"{path}: tensor {key} has shape {list(shape)}, expected {list(want)} from config.json"
            )

    def iter_shards(self) -> Iterator[tuple[Path, Mapping[str, torch.Tensor]]]:
        """Yield ``(file, {key: tensor})`` one weights file at a time; the previous one is released first.

        Tensors are memory-mapped: their data is read from disk only when used. Shapes are checked.
        """
        for path in self.weight_files:
            with open_weights(path) as weights:
                for key in weights:
                    self.check_shape(path, key, tensor_meta(weights, key)[0])
                yield path, weights


def _int(config: Mapping[str, Any], key: str, where: str, default: int | None = None) -> int:
    value = config.get(key, default)
    if not isinstance(value, int) or isinstance(value, bool) or value <= 0:
        raise CheckpointError(f"{where}: field {key} must be a positive integer, found {value!r}")
    return value


def _weight_files(model_dir: Path) -> tuple[tuple[Path, ...], dict[str, str]]:
    for name in _INDEX_NAMES:
        index_path = model_dir / name
        if not index_path.is_file():
            continue
        try:
            index = json.loads(index_path.read_text(encoding="utf-8"))
            weight_map = index["weight_map"]
            if not isinstance(weight_map, dict) or not weight_map:
                raise TypeError("weight_map is empty or not an object")
        except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
            raise CheckpointError(f"{index_path}: not a valid weights index ({exc})") from None
        files = sorted(set(weight_map.values()))
        for f in files:
            if not isinstance(f, str) or Path(f).name != f:
                raise CheckpointError(f"{index_path}: names an invalid shard file {f!r}")
            if not (model_dir / f).is_file():
                raise CheckpointError(f"{index_path}: names shard {f}, which is missing from {model_dir}")
        return tuple(model_dir / f for f in files), dict(weight_map)
    for name in _SINGLE_NAMES:
        if (model_dir / name).is_file():
            return (model_dir / name,), {}
    raise CheckpointError(
        f"{model_dir}: no weights found (expected {_INDEX_NAMES[0]} with its shards, or {_SINGLE_NAMES[0]})"
    )


def open_geochat(
    model_dir: str | Path,
    *,
    check_tokenizer: bool = True,
    clip_vision: VisionDims | None = None,
    clip_where: str = "the CLIP folder's config.json",
) -> GeoChatCheckpoint:
    """Validate an original GeoChat checkpoint folder (config, index, shard files, tokenizer) and describe it.

    The vision tower's dimensions come from ``clip_vision`` (a CLIP folder's config, described by
    ``clip_where``) when given, otherwise from the shapes of the tower tensors in the shard (metadata only;
    see :mod:`rsvg_desktop.core.model.tower`), and must agree with ``mm_hidden_size``.

    Raises :class:`CheckpointError` (wrong family, bad config, index naming a missing shard) or
    :class:`TokenizerError`. Shards are not read here: see :meth:`GeoChatCheckpoint.scan`.
    """
    path = Path(model_dir)
    config = read_config(path)
    where = str(path / "config.json")
    kind = _kind_of(config, where)
    if kind is not ModelKind.GEOCHAT_ORIGINAL:
        raise CheckpointError(
            f"{where}: this is already a converted {LLAVA_ARCHITECTURE}; "
            "expected an original GeoChat checkpoint"
        )
    if config.get("mm_projector_type") != "mlp2x_gelu":
        raise CheckpointError(
            f"{where}: mm_projector_type is {config.get('mm_projector_type')!r}, expected 'mlp2x_gelu'"
        )
    if config.get("mm_vision_select_feature", "patch") not in ("patch", "cls_patch"):
        raise CheckpointError(
            f"{where}: unknown mm_vision_select_feature {config['mm_vision_select_feature']!r}"
        )
    if config.get("mm_use_im_start_end"):
        raise CheckpointError(f"{where}: mm_use_im_start_end=true is not supported (GeoChat uses false)")
    rope = config.get("rope_scaling")
    if rope:
        raise CheckpointError(f"{where}: rope_scaling={rope!r} is not supported (GeoChat uses none)")
    heads = _int(config, "num_attention_heads", where)
    text = TextDims(
        vocab_size=_int(config, "vocab_size", where),
        hidden_size=_int(config, "hidden_size", where),
        intermediate_size=_int(config, "intermediate_size", where),
        num_hidden_layers=_int(config, "num_hidden_layers", where),
        num_attention_heads=heads,
        num_key_value_heads=_int(config, "num_key_value_heads", where, heads),
        max_position_embeddings=_int(config, "max_position_embeddings", where, 4096),
        rms_norm_eps=float(config.get("rms_norm_eps", 1e-5)),
        rope_theta=float(config.get("rope_theta", 10000.0)),
        hidden_act=str(config.get("hidden_act", "silu")),
        bos_token_id=int(config.get("bos_token_id", 1)),
        eos_token_id=int(config.get("eos_token_id", 2)),
    )
    if text.hidden_size % heads:
        raise CheckpointError(f"{where}: hidden_size {text.hidden_size} is not a multiple of {heads} heads")
    files, weight_map = _weight_files(path)
    vision = _tower_dims(path, config, files, weight_map, clip_vision, clip_where)
    if check_tokenizer:
        load_sentencepiece(path, vocab_size=text.vocab_size)
    return GeoChatCheckpoint(
        path=path,
        config=config,
        text=text,
        vision=vision,
        weight_files=files,
        weight_map=weight_map,
        random_weights=bool(config.get("rsvg_random_weights", False)),
    )


def _tower_dims(
    path: Path,
    config: Mapping[str, Any],
    files: tuple[Path, ...],
    weight_map: Mapping[str, str],
    clip_vision: VisionDims | None,
    clip_where: str,
) -> VisionDims:
    """The tower's dims from the CLIP config or the shard's tower tensors, checked against each other,
    against ``mm_hidden_size`` and (a warning only) against the name ``mm_vision_tower``."""
    where = str(path / "config.json")
    if weight_map:
        names = {f for k, f in weight_map.items() if k.startswith(STALE_CLIP_PREFIX)}
        holders = [f for f in files if f.name in names]
    else:
        holders = list(files)
    shapes: dict[str, tuple[int, ...]] = {}
    for f in holders:
        for key, (shape, _dtype) in scan_weights(f).tensors.items():
            if key.startswith(STALE_CLIP_PREFIX):
                shapes[key[len(STALE_CLIP_PREFIX) :]] = shape
    shard_where = ", ".join(str(f) for f in holders)
    if clip_vision is not None:
        vision, source = clip_vision, clip_where
        if shapes:
            depth = 1 + max(
                (int(k.split(".")[2]) for k in shapes if k.startswith("encoder.layers.")), default=-1
            )
            if depth > clip_vision.num_hidden_layers:
                raise CheckpointError(
                    f"{clip_where}: {clip_vision.num_hidden_layers} vision layers, "
                    f"the checkpoint's own tower has {depth}"
                )
            vision = replace(clip_vision, num_hidden_layers=depth)
            check_tower_shapes(shapes, vision, prefix=STALE_CLIP_PREFIX, where=shard_where, source=clip_where)
    elif shapes:
        vision = tower_dims_from_tensors(shapes, prefix=STALE_CLIP_PREFIX, where=shard_where)
        source = f"tensor {STALE_CLIP_PREFIX}embeddings.class_embedding"
    else:
        raise CheckpointError(
            f"{path}: the checkpoint holds no CLIP tower; pass clip_dir (CLIP ViT-L/14-336)"
        )
    warn_if_name_disagrees(config.get("mm_vision_tower"), vision, where=where)
    if vision.hidden_size != _int(config, "mm_hidden_size", where):
        raise CheckpointError(
            f"{where}: mm_hidden_size {config['mm_hidden_size']} differs from the vision tower's width "
            f"{vision.hidden_size} (from {source})"
        )
    return vision
