"""The tiny GeoChat generator writes the published layout, deterministically."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
import torch

from rsvg_desktop.core.model.checkpoint import ModelKind, identify
from rsvg_desktop.core.model.testmodel import (
    RANDOM_WEIGHTS_NAME,
    TINY_VOCAB_SIZE,
    write_tiny_clip,
    write_tiny_geochat,
)
from rsvg_desktop.errors import OutputExistsError

SHARDS = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
STALE = "model.vision_tower.vision_tower.vision_model."


def _load_all(model_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for name in SHARDS:
        state.update(torch.load(model_dir / name, map_location="cpu", weights_only=True))
    return state


def test_published_files_and_config(tiny_geochat_dir: Path) -> None:
    names = {p.name for p in tiny_geochat_dir.iterdir()}
    assert {
        "config.json",
        "generation_config.json",
        "pytorch_model.bin.index.json",
        *SHARDS,
        "tokenizer.model",
        "tokenizer_config.json",
        "special_tokens_map.json",
    } <= names
    cfg = json.loads((tiny_geochat_dir / "config.json").read_text())
    assert cfg["architectures"] == ["GeoChatLlamaForCausalLM"]
    assert cfg["model_type"] == "geochat"
    assert cfg["mm_vision_tower"] == "openai/clip-vit-large-patch14-336"
    assert cfg["mm_vision_select_layer"] == -2
    assert cfg["mm_vision_select_feature"] == "patch"
    assert cfg["mm_projector_type"] == "mlp2x_gelu"
    assert cfg["image_aspect_ratio"] == "pad"
    assert cfg["mm_use_im_start_end"] is False
    assert "rsvg_test_vision_config" not in cfg  # the published layout: no private keys for the tower
    assert cfg["vocab_size"] == TINY_VOCAB_SIZE
    # the random-weights markers
    assert cfg["rsvg_random_weights"] is True
    assert cfg["_name_or_path"] == RANDOM_WEIGHTS_NAME
    assert "RANDOM WEIGHTS" in cfg["_name_or_path"]
    assert identify(tiny_geochat_dir) is ModelKind.GEOCHAT_ORIGINAL


def test_original_key_names_and_shapes(tiny_geochat_dir: Path) -> None:
    state = _load_all(tiny_geochat_dir)
    cfg = json.loads((tiny_geochat_dir / "config.json").read_text())
    h, v, vh = cfg["hidden_size"], cfg["vocab_size"], cfg["mm_hidden_size"]
    assert state["model.embed_tokens.weight"].shape == (v, h)
    assert state["lm_head.weight"].shape == (v, h)
    assert state["model.norm.weight"].shape == (h,)
    for i in range(cfg["num_hidden_layers"]):
        for proj in "qkvo":
            assert state[f"model.layers.{i}.self_attn.{proj}_proj.weight"].shape == (h, h)
        for proj in ("gate_proj", "up_proj", "down_proj"):
            assert f"model.layers.{i}.mlp.{proj}.weight" in state
        assert f"model.layers.{i}.input_layernorm.weight" in state
        assert f"model.layers.{i}.post_attention_layernorm.weight" in state
        assert f"model.layers.{i}.self_attn.rotary_emb.inv_freq" in state  # old checkpoints carry it
    assert state["model.mm_projector.0.weight"].shape == (h, vh)
    assert state["model.mm_projector.0.bias"].shape == (h,)
    assert state["model.mm_projector.2.weight"].shape == (h, h)
    assert state["model.mm_projector.2.bias"].shape == (h,)
    # the stale 336 px CLIP copy: 24 x 24 + 1 = 577 positions
    assert state[STALE + "embeddings.position_embedding.weight"].shape == (577, vh)
    assert state[STALE + "embeddings.position_ids"].shape == (1, 577)
    assert state[STALE + "embeddings.patch_embedding.weight"].shape == (vh, 3, 14, 14)
    assert state[STALE + "embeddings.class_embedding"].shape == (vh,)
    for key in (
        "pre_layrnorm.weight",
        "post_layernorm.bias",
        "encoder.layers.1.mlp.fc2.weight",
        "encoder.layers.0.self_attn.out_proj.bias",
    ):
        assert STALE + key in state
    assert state["model.embed_tokens.weight"].dtype == torch.float16
    # small, non-degenerate random values
    std = state["model.layers.0.mlp.up_proj.weight"].float().std().item()
    assert 0.015 < std < 0.025


def test_index_is_consistent(tiny_geochat_dir: Path) -> None:
    index = json.loads((tiny_geochat_dir / "pytorch_model.bin.index.json").read_text())
    total = 0
    for name in SHARDS:
        shard = torch.load(tiny_geochat_dir / name, map_location="cpu", weights_only=True)
        assert {k for k, f in index["weight_map"].items() if f == name} == set(shard)
        total += sum(t.numel() * t.element_size() for t in shard.values())
    assert index["metadata"]["total_size"] == total
    # as in the real checkpoint, embed_tokens and lm_head live in different shards
    assert index["weight_map"]["model.embed_tokens.weight"] != index["weight_map"]["lm_head.weight"]


def test_tokenizer_is_llama_style(tiny_geochat_dir: Path) -> None:
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(tiny_geochat_dir / "tokenizer.model"))
    assert sp.get_piece_size() == TINY_VOCAB_SIZE
    assert [sp.id_to_piece(i) for i in range(3)] == ["<unk>", "<s>", "</s>"]
    assert sp.id_to_piece(3) == "<0x00>"  # byte fallback
    texts = (
        "{<10><70><26><82>|<90>}",
        "[grounding]Please describe the image",
        "<p> ship </p> 0123456789",
        "Ünïcödé façade 東京",
    )
    for text in texts:
        ids = sp.encode(text)
        assert 0 not in ids, text  # nothing falls back to <unk>
        assert sp.decode(ids) == text
    special = json.loads((tiny_geochat_dir / "special_tokens_map.json").read_text())
    assert special["eos_token"]["content"] == "</s>"
    tc = json.loads((tiny_geochat_dir / "tokenizer_config.json").read_text())
    assert tc["tokenizer_class"] == "LlamaTokenizer"


def _digest(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.iterdir())}


def test_deterministic_given_seed(tmp_path: Path, tiny_geochat_dir: Path) -> None:
    again = write_tiny_geochat(tmp_path / "again", seed=0)
    assert _digest(again) == _digest(tiny_geochat_dir)
    other = write_tiny_geochat(tmp_path / "other", seed=1)
    a, b = _load_all(tiny_geochat_dir), _load_all(other)
    assert not torch.equal(a["lm_head.weight"], b["lm_head.weight"])


def test_refuses_non_empty_folder(tmp_path: Path) -> None:
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "keep.txt").write_text("precious")
    with pytest.raises(OutputExistsError, match=r"not empty"):
        write_tiny_geochat(tmp_path / "x")
    assert (tmp_path / "x" / "keep.txt").read_text() == "precious"


def test_tiny_clip_is_a_transformers_clip(tiny_clip_dir: Path) -> None:
    from transformers import CLIPVisionModel

    model = CLIPVisionModel.from_pretrained(tiny_clip_dir)
    assert model.config.image_size == 336
    assert model.embeddings.position_embedding.weight.shape == (577, 64)
    cfg = json.loads((tiny_clip_dir / "config.json").read_text())
    assert cfg["model_type"] == "clip" and cfg["rsvg_random_weights"] is True


def test_tiny_clip_bin_format(tmp_path: Path) -> None:
    out = write_tiny_clip(tmp_path / "clip-bin", file_format="bin")
    state = torch.load(out / "pytorch_model.bin", map_location="cpu", weights_only=True)
    assert state["vision_model.embeddings.position_embedding.weight"].shape == (577, 64)
