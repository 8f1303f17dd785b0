"""Tiny, randomly initialised GeoChat checkpoints for tests (never for analysis: the weights mean nothing).

:func:`write_tiny_geochat` writes a folder in the layout GeoChat is *published* in on the Hugging Face hub
(``MBZUAI/geochat-7B``): a ``config.json`` naming ``GeoChatLlamaForCausalLM``, two pickle ``.bin`` shards with
the original LLaVA key names (including the stale 336 px CLIP copy with its 577-row position embedding and
the ``rotary_emb.inv_freq`` buffers old checkpoints carry), ``pytorch_model.bin.index.json``, a LLaMA-style
SentencePiece ``tokenizer.model`` trained on the spot, and the tokenizer's JSON files. Only the sizes are
small: the vision tower still takes 336 px images with 14 px patches, so conversion meets the real
24×24 → 36×36 position-embedding grid.

The config is exactly the published one: it names ``openai/clip-vit-large-patch14-336`` although the tower
in the shard is tiny, as any checkpoint's name may be wrong; the converter reads the tower's dimensions from
its tensors (and warns about the name). The tower is 64 wide with one head, as the converter's
64-channels-per-head rule infers. ``rsvg_random_weights: true`` and the ``_name_or_path`` marker travel into
every converted copy so random weights can never be mistaken for GeoChat.

:func:`write_tiny_clip` writes a tiny CLIP (``CLIPModel`` layout, 336 px) standing in for
``openai/clip-vit-large-patch14-336`` so the ``--clip`` conversion path can be tested offline.
"""

from __future__ import annotations

import io
import json
import logging
import math
import shutil
from collections.abc import Iterator
from pathlib import Path

import torch

from rsvg_desktop.core.prompt import GEOCHAT_SYSTEM
from rsvg_desktop.errors import OutputExistsError

log = logging.getLogger(__name__)

__all__ = [
    "RANDOM_WEIGHTS_NAME",
    "TINY_VOCAB_SIZE",
    "write_tiny_clip",
    "write_tiny_geochat",
]

#: ``_name_or_path`` of every generated model: visible in any config dump or model card.
RANDOM_WEIGHTS_NAME = "rsvg-tiny-geochat (RANDOM WEIGHTS)"
#: Default SentencePiece vocabulary of the tiny model (256 byte pieces + 3 specials + merges).
TINY_VOCAB_SIZE = 384

_SHARD_NAMES = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
_STALE_CLIP = "model.vision_tower.vision_tower.vision_model."

# A short built-in corpus: GeoChat's prompt vocabulary (system text, roles, task prefixes, box grammar)
# and remote-sensing words, so the trained pieces look like what the model will be asked.
_CORPUS = (
    GEOCHAT_SYSTEM,
    "USER: <image>\nPlease describe the image in detail. ASSISTANT: The image shows an airport with "
    "several airplanes parked near the terminal building.",
    "[grounding]Please describe the image in detail.",
    "[refer] Give me the location of <p> the white ship near the harbor </p>",
    "[identify] What is the object present at {<10><70><26><82>|<90>}",
    "{<22><10><42><26>|<90>}{<30><10><50><26>|<90>} {<14><68><28><84>|<20>}{<30><58><46><74>|<21>}",
    "<p>airplane</p> {<16><69><30><85>|<73>}{<30><60><46><76>|<73>}",
    "Which class does this image belong to?\nClassify the image from the following classes. "
    "Answer in one word or a short phrase.",
    "Is there a road in the image?\nAnswer the question using a single word or phrase. Yes",
    "How many buildings are there? 12. Is it a rural or an urban area? Urban.",
    "There are 3 storage tanks, 2 harbors, 1 bridge over the river, farmland, forest, a residential area, "
    "a parking lot with many cars, a baseball diamond, a tennis court, a swimming pool and a roundabout.",
    "The satellite scene covers dense residential blocks, industrial warehouses, a railway station, "
    "a stadium, wetlands, meadows, desert, beach, chaparral, freeway, intersection, overpass, runway.",
    "Large vehicles, small vehicles, ships, helicopters, planes, ground track fields, soccer fields, "
    "basketball courts, windmills, dams, golf courses, churches, ports and mobile home parks.",
    "0 1 2 3 4 5 6 7 8 9 10 20 30 45 60 90 100 | { } < > [ ] ( ) : ; , . ! ? ' \" - _ / = + * # % & @",
)


# --------------------------------------------------------------------------------------------------
# random tensors
# --------------------------------------------------------------------------------------------------
class _Init:
    """Deterministic small random tensors (std 0.02) drawn from one seeded generator, in call order."""

    def __init__(self, seed: int, dtype: torch.dtype) -> None:
        self._gen = torch.Generator().manual_seed(seed)
        self._dtype = dtype

    def normal(self, *shape: int, std: float = 0.02) -> torch.Tensor:
        return (torch.randn(*shape, generator=self._gen) * std).to(self._dtype)

    def norm_weight(self, n: int) -> torch.Tensor:
        # Around one, not exactly one: a conversion that swaps two norms would go unnoticed otherwise.
        return (1.0 + torch.randn(n, generator=self._gen) * 0.05).to(self._dtype)


def _clip_vision_tensors(init: _Init, prefix: str, vc: dict) -> Iterator[tuple[str, torch.Tensor]]:
    """A CLIP vision transformer's state dict (``*.vision_model.*`` naming) with random values."""
    h, inter, p = vc["hidden_size"], vc["intermediate_size"], vc["patch_size"]
    n_pos = (vc["image_size"] // p) ** 2 + 1
    yield f"{prefix}embeddings.class_embedding", init.normal(h)
    yield f"{prefix}embeddings.patch_embedding.weight", init.normal(h, vc["num_channels"], p, p)
    yield f"{prefix}embeddings.position_embedding.weight", init.normal(n_pos, h)
    # Checkpoints written by transformers < 4.31 carry the (then persistent) position_ids buffer.
    yield f"{prefix}embeddings.position_ids", torch.arange(n_pos, dtype=torch.int64).unsqueeze(0)
    yield f"{prefix}pre_layrnorm.weight", init.norm_weight(h)
    yield f"{prefix}pre_layrnorm.bias", init.normal(h)
    for i in range(vc["num_hidden_layers"]):
        lp = f"{prefix}encoder.layers.{i}."
        for proj in ("k_proj", "v_proj", "q_proj", "out_proj"):
            yield f"{lp}self_attn.{proj}.weight", init.normal(h, h)
            yield f"{lp}self_attn.{proj}.bias", init.normal(h)
        yield f"{lp}layer_norm1.weight", init.norm_weight(h)
        yield f"{lp}layer_norm1.bias", init.normal(h)
        yield f"{lp}mlp.fc1.weight", init.normal(inter, h)
        yield f"{lp}mlp.fc1.bias", init.normal(inter)
        yield f"{lp}mlp.fc2.weight", init.normal(h, inter)
        yield f"{lp}mlp.fc2.bias", init.normal(h)
        yield f"{lp}layer_norm2.weight", init.norm_weight(h)
        yield f"{lp}layer_norm2.bias", init.normal(h)
    yield f"{prefix}post_layernorm.weight", init.norm_weight(h)
    yield f"{prefix}post_layernorm.bias", init.normal(h)


def _inv_freq(head_dim: int, theta: float = 10000.0) -> torch.Tensor:
    return 1.0 / (theta ** (torch.arange(0, head_dim, 2, dtype=torch.float32) / head_dim))


# --------------------------------------------------------------------------------------------------
# tokenizer
# --------------------------------------------------------------------------------------------------
def _train_sentencepiece(vocab_size: int) -> bytes:
    """Train a LLaMA-style SentencePiece BPE model (byte fallback, ids 0 <unk>, 1 <s>, 2 </s>)."""
    import sentencepiece as spm

    if vocab_size < 300:
        raise ValueError(f"vocab_size must be at least 300 (256 bytes + specials + merges), got {vocab_size}")
    model = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(_CORPUS * 8),
        model_writer=model,
        model_type="bpe",
        vocab_size=vocab_size,
        # LLaMA's trainer settings that change how text is encoded:
        byte_fallback=True,
        split_digits=True,
        add_dummy_prefix=True,
        remove_extra_whitespaces=False,
        normalization_rule_name="identity",
        allow_whitespace_only_pieces=True,
        character_coverage=1.0,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        num_threads=1,
        minloglevel=2,
    )
    data = model.getvalue()
    got = spm.SentencePieceProcessor(model_proto=data).get_piece_size()
    if got != vocab_size:
        raise ValueError(f"the built-in corpus yields {got} pieces, not vocab_size={vocab_size}")
    return data


def _tokenizer_files(max_len: int) -> dict[str, dict]:
    """``tokenizer_config.json`` and ``special_tokens_map.json`` as LLaVA-1.5 / GeoChat publish them."""

    def added(content: str) -> dict:
        return {
            "__type": "AddedToken",
            "content": content,
            "lstrip": False,
            "normalized": False,
            "rstrip": False,
            "single_word": False,
        }

    return {
        "tokenizer_config.json": {
            "add_bos_token": True,
            "add_eos_token": False,
            "bos_token": added("<s>"),
            "clean_up_tokenization_spaces": False,
            "eos_token": added("</s>"),
            "legacy": False,
            "model_max_length": max_len,
            "pad_token": None,
            "padding_side": "right",
            "sp_model_kwargs": {},
            "tokenizer_class": "LlamaTokenizer",
            "unk_token": added("<unk>"),
        },
        "special_tokens_map.json": {
            "bos_token": added("<s>"),
            "eos_token": added("</s>"),
            "pad_token": added("<unk>"),
            "unk_token": added("<unk>"),
        },
    }


# --------------------------------------------------------------------------------------------------
# writers
# --------------------------------------------------------------------------------------------------
def _prepare_dir(out_dir: Path, overwrite: bool) -> None:
    if out_dir.exists():
        if not overwrite and any(out_dir.iterdir()):
            raise OutputExistsError(f"{out_dir}: folder exists and is not empty (pass overwrite=True)")
        if overwrite:
            shutil.rmtree(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)


def _write_json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n", encoding="utf-8")


def write_tiny_geochat(
    out_dir: str | Path,
    *,
    seed: int = 0,
    vocab_size: int = TINY_VOCAB_SIZE,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 4,
    max_position_embeddings: int = 2048,
    vision_hidden_size: int = 64,
    vision_intermediate_size: int = 128,
    vision_num_hidden_layers: int = 2,
    vision_num_attention_heads: int = 1,
    vision_image_size: int = 336,
    patch_size: int = 14,
    dtype: torch.dtype = torch.float16,
    overwrite: bool = False,
) -> Path:
    """Write a tiny random GeoChat checkpoint in the published layout into ``out_dir`` and return it.

    Deterministic for a given ``seed`` and sizes. ``dtype`` is the weights' dtype (GeoChat ships float16).
    Raises :class:`OutputExistsError` when ``out_dir`` is a non-empty folder and ``overwrite`` is false.
    """
    out = Path(out_dir)
    if hidden_size % num_attention_heads:
        raise ValueError(f"hidden_size {hidden_size} is not a multiple of {num_attention_heads} heads")
    _prepare_dir(out, overwrite)
    init = _Init(seed, dtype)
    head_dim = hidden_size // num_attention_heads
    vision = {
        "hidden_size": vision_hidden_size,
        "intermediate_size": vision_intermediate_size,
        "num_hidden_layers": vision_num_hidden_layers,
        "num_attention_heads": vision_num_attention_heads,
        "image_size": vision_image_size,
        "patch_size": patch_size,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": 768,
    }

    # Tensors in the order GeoChatLlamaForCausalLM.state_dict() lists them: the LLaMA body, then the
    # multimodal parts LlavaMetaModel adds, then lm_head (so embed_tokens and lm_head land in different
    # shards, as in the real checkpoint).
    body: list[tuple[str, torch.Tensor]] = [
        ("model.embed_tokens.weight", init.normal(vocab_size, hidden_size)),
    ]
    for i in range(num_hidden_layers):
        lp = f"model.layers.{i}."
        for proj in ("q_proj", "k_proj", "v_proj", "o_proj"):
            body.append((f"{lp}self_attn.{proj}.weight", init.normal(hidden_size, hidden_size)))
        body.append((f"{lp}self_attn.rotary_emb.inv_freq", _inv_freq(head_dim)))
        body.append((f"{lp}mlp.gate_proj.weight", init.normal(intermediate_size, hidden_size)))
        body.append((f"{lp}mlp.up_proj.weight", init.normal(intermediate_size, hidden_size)))
        body.append((f"{lp}mlp.down_proj.weight", init.normal(hidden_size, intermediate_size)))
        body.append((f"{lp}input_layernorm.weight", init.norm_weight(hidden_size)))
        body.append((f"{lp}post_attention_layernorm.weight", init.norm_weight(hidden_size)))
    body.append(("model.norm.weight", init.norm_weight(hidden_size)))
    body.extend(_clip_vision_tensors(init, _STALE_CLIP, vision))
    body.append(("model.mm_projector.0.weight", init.normal(hidden_size, vision_hidden_size)))
    body.append(("model.mm_projector.0.bias", init.normal(hidden_size)))
    body.append(("model.mm_projector.2.weight", init.normal(hidden_size, hidden_size)))
    body.append(("model.mm_projector.2.bias", init.normal(hidden_size)))
    body.append(("lm_head.weight", init.normal(vocab_size, hidden_size)))

    # Split like transformers' sharding does: in order, the first shard taking about 70 % of the bytes.
    sizes = [t.numel() * t.element_size() for _, t in body]
    total = sum(sizes)
    cut, acc = len(body) - 1, 0
    for i, n in enumerate(sizes):
        acc += n
        if acc >= 0.7 * total:
            cut = max(1, min(i + 1, len(body) - 1))
            break
    shards = (dict(body[:cut]), dict(body[cut:]))
    weight_map: dict[str, str] = {}
    for name, shard in zip(_SHARD_NAMES, shards, strict=True):
        torch.save(shard, out / name)
        weight_map.update(dict.fromkeys(shard, name))
    _write_json(
        out / "pytorch_model.bin.index.json",
        {"metadata": {"total_size": total}, "weight_map": dict(sorted(weight_map.items()))},
    )

    config = {
        "_name_or_path": RANDOM_WEIGHTS_NAME,
        "architectures": ["GeoChatLlamaForCausalLM"],
        "bos_token_id": 1,
        "eos_token_id": 2,
        "freeze_mm_mlp_adapter": False,
        "hidden_act": "silu",
        "hidden_size": hidden_size,
        "image_aspect_ratio": "pad",
        "initializer_range": 0.02,
        "intermediate_size": intermediate_size,
        "max_length": max_position_embeddings,
        "max_position_embeddings": max_position_embeddings,
        "mm_hidden_size": vision_hidden_size,
        "mm_projector_type": "mlp2x_gelu",
        "mm_use_im_patch_token": False,
        "mm_use_im_start_end": False,
        "mm_vision_select_feature": "patch",
        "mm_vision_select_layer": -2,
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "model_type": "geochat",
        "num_attention_heads": num_attention_heads,
        "num_hidden_layers": num_hidden_layers,
        "num_key_value_heads": num_attention_heads,
        "pad_token_id": 0,
        "pretraining_tp": 1,
        "rms_norm_eps": 1e-5,
        "rope_scaling": None,
        "tie_word_embeddings": False,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "transformers_version": "4.31.0",
        "tune_mm_mlp_adapter": False,
        "use_cache": True,
        "use_mm_proj": True,
        "vocab_size": vocab_size,
        # rsvg test-model markers (absent from the real checkpoint):
        "rsvg_random_weights": True,
        "rsvg_seed": seed,
    }
    _write_json(out / "config.json", config)
    _write_json(
        out / "generation_config.json",
        {
            "_from_model_config": True,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
            "max_length": max_position_embeddings,
            "transformers_version": "4.31.0",
        },
    )
    (out / "tokenizer.model").write_bytes(_train_sentencepiece(vocab_size))
    for name, data in _tokenizer_files(max_position_embeddings).items():
        _write_json(out / name, data)
    (out / "RANDOM_WEIGHTS.txt").write_text(
        "This checkpoint was generated by rsvg_desktop.core.model.testmodel for tests.\n"
        "Its weights are random: its answers mean nothing.\n",
        encoding="utf-8",
    )
    log.info("wrote tiny random GeoChat checkpoint (%d tensors, %.1f MB) to %s", len(body), total / 1e6, out)
    return out


def write_tiny_clip(
    out_dir: str | Path,
    *,
    seed: int = 1,
    hidden_size: int = 64,
    intermediate_size: int = 128,
    num_hidden_layers: int = 2,
    num_attention_heads: int = 1,
    image_size: int = 336,
    patch_size: int = 14,
    projection_dim: int = 16,
    dtype: torch.dtype = torch.float32,
    file_format: str = "safetensors",
    overwrite: bool = False,
) -> Path:
    """Write a tiny random CLIP in the ``CLIPModel`` layout of ``openai/clip-vit-large-patch14-336``.

    ``config.json`` (``model_type: "clip"`` with ``vision_config``/``text_config``) and one weights file,
    ``model.safetensors`` or ``pytorch_model.bin`` (``file_format="bin"``), holding ``vision_model.*``, a
    layer-less stub of ``text_model.*``, the projections and ``logit_scale``. Its vision dims match
    :func:`write_tiny_geochat`'s defaults, so it can replace the stale copy
    (``convert_geochat(..., clip_dir=...)``).
    """
    if file_format not in ("safetensors", "bin"):
        raise ValueError(f"file_format must be 'safetensors' or 'bin', got {file_format!r}")
    out = Path(out_dir)
    _prepare_dir(out, overwrite)
    init = _Init(seed, dtype)
    vision = {
        "hidden_size": hidden_size,
        "intermediate_size": intermediate_size,
        "num_hidden_layers": num_hidden_layers,
        "num_attention_heads": num_attention_heads,
        "image_size": image_size,
        "patch_size": patch_size,
        "num_channels": 3,
        "hidden_act": "quick_gelu",
        "layer_norm_eps": 1e-5,
        "projection_dim": projection_dim,
        "model_type": "clip_vision_model",
    }
    text_hidden, text_vocab, text_pos = 16, 64, 8
    tensors = dict(_clip_vision_tensors(init, "vision_model.", vision))
    # Modern CLIP checkpoints no longer store position_ids.
    del tensors["vision_model.embeddings.position_ids"]
    tensors["text_model.embeddings.token_embedding.weight"] = init.normal(text_vocab, text_hidden)
    tensors["text_model.embeddings.position_embedding.weight"] = init.normal(text_pos, text_hidden)
    tensors["text_model.final_layer_norm.weight"] = init.norm_weight(text_hidden)
    tensors["text_model.final_layer_norm.bias"] = init.normal(text_hidden)
    tensors["visual_projection.weight"] = init.normal(projection_dim, hidden_size)
    tensors["text_projection.weight"] = init.normal(projection_dim, text_hidden)
    tensors["logit_scale"] = torch.tensor(math.log(1 / 0.07), dtype=dtype)
    if file_format == "safetensors":
        from safetensors.torch import save_file

        save_file(tensors, str(out / "model.safetensors"), metadata={"format": "pt"})
    else:
        torch.save(tensors, out / "pytorch_model.bin")
    config = {
        "_name_or_path": "rsvg-tiny-clip (RANDOM WEIGHTS)",
        "architectures": ["CLIPModel"],
        "model_type": "clip",
        "projection_dim": projection_dim,
        "logit_scale_init_value": 2.6592,
        "initializer_factor": 1.0,
        "torch_dtype": str(dtype).removeprefix("torch."),
        "vision_config": vision,
        "text_config": {
            "model_type": "clip_text_model",
            "hidden_size": text_hidden,
            "intermediate_size": 2 * text_hidden,
            "num_hidden_layers": 0,
            "num_attention_heads": 2,
            "vocab_size": text_vocab,
            "max_position_embeddings": text_pos,
            "projection_dim": projection_dim,
            "bos_token_id": 1,
            "eos_token_id": 2,
            "pad_token_id": 0,
        },
        "rsvg_random_weights": True,
    }
    _write_json(out / "config.json", config)
    log.info("wrote tiny random CLIP (%d tensors) to %s", len(tensors), out)
    return out
