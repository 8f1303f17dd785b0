"""Conversion of GeoChat-layout checkpoints written by a second generator that shares no code with the
converter or ``testmodel``: keys are spelled out here by hand, tensors written with ``torch.save`` /
``safetensors`` directly, the tokenizer trained here on its own corpus.

The tower is stored with its real (tiny) shapes while the config names the usual
``openai/clip-vit-large-patch14-336``, as issue 10 §1 describes.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest
import torch

from rsvg_desktop.core.model.convert import convert_geochat
from rsvg_desktop.errors import CheckpointError

TOWER = "model.vision_tower.vision_tower.vision_model."
# the dimensions, chosen here: LLaMA 96 wide, 3 heads, 1 layer; CLIP tower 192 wide (3 heads of 64), 3 layers
H, INTER, LAYERS, HEADS = 96, 160, 1, 3
VH, VINTER, VLAYERS, PATCH, GRID = 192, 320, 3, 14, 24


def _sentencepiece() -> tuple[bytes, int]:
    import sentencepiece as spm

    lines = [f"USER: <image>\nhow many ships are in harbour {i}? ASSISTANT: {i} ships" for i in range(40)]
    buf = io.BytesIO()
    spm.SentencePieceTrainer.train(
        sentence_iterator=iter(lines),
        model_writer=buf,
        model_type="bpe",
        vocab_size=320,
        byte_fallback=True,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        hard_vocab_limit=False,
        minloglevel=2,
    )
    n = spm.SentencePieceProcessor(model_proto=buf.getvalue()).get_piece_size()
    return buf.getvalue(), n


def _tower(g: torch.Generator, prefix: str, layers: int) -> dict[str, torch.Tensor]:
    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    t = {
        prefix + "embeddings.class_embedding": r(VH),
        prefix + "embeddings.patch_embedding.weight": r(VH, 3, PATCH, PATCH),
        prefix + "embeddings.position_embedding.weight": r(GRID * GRID + 1, VH),
        prefix + "pre_layrnorm.weight": 1 + r(VH),
        prefix + "pre_layrnorm.bias": r(VH),
        prefix + "post_layernorm.weight": 1 + r(VH),
        prefix + "post_layernorm.bias": r(VH),
    }
    for i in range(layers):
        p = f"{prefix}encoder.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "out_proj"):
            t[f"{p}self_attn.{name}.weight"] = r(VH, VH)
            t[f"{p}self_attn.{name}.bias"] = r(VH)
        t[p + "layer_norm1.weight"] = 1 + r(VH)
        t[p + "layer_norm1.bias"] = r(VH)
        t[p + "layer_norm2.weight"] = 1 + r(VH)
        t[p + "layer_norm2.bias"] = r(VH)
        t[p + "mlp.fc1.weight"] = r(VINTER, VH)
        t[p + "mlp.fc1.bias"] = r(VINTER)
        t[p + "mlp.fc2.weight"] = r(VH, VINTER)
        t[p + "mlp.fc2.bias"] = r(VH)
    return t


def write_geochat_by_hand(out: Path, *, tower: bool = True, mm_hidden: int = VH) -> Path:
    """One ``pytorch_model.bin`` (float16), config as GeoChat publishes it, tokenizer trained here."""
    out.mkdir(parents=True)
    spm_bytes, vocab = _sentencepiece()
    g = torch.Generator().manual_seed(11)

    def r(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, generator=g) * 0.02

    sd = {
        "model.embed_tokens.weight": r(vocab, H),
        "model.norm.weight": 1 + r(H),
        "lm_head.weight": r(vocab, H),
    }
    for i in range(LAYERS):
        p = f"model.layers.{i}."
        for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
            sd[f"{p}self_attn.{name}.weight"] = r(H, H)
        sd[p + "mlp.gate_proj.weight"] = r(INTER, H)
        sd[p + "mlp.up_proj.weight"] = r(INTER, H)
        sd[p + "mlp.down_proj.weight"] = r(H, INTER)
        sd[p + "input_layernorm.weight"] = 1 + r(H)
        sd[p + "post_attention_layernorm.weight"] = 1 + r(H)
    sd["model.mm_projector.0.weight"] = r(H, VH)
    sd["model.mm_projector.0.bias"] = r(H)
    sd["model.mm_projector.2.weight"] = r(H, H)
    sd["model.mm_projector.2.bias"] = r(H)
    if tower:
        sd.update(_tower(g, TOWER, VLAYERS))
    torch.save({k: v.half() for k, v in sd.items()}, out / "pytorch_model.bin")
    config = {
        "_name_or_path": "hand-written test checkpoint (RANDOM WEIGHTS)",
        "architectures": ["GeoChatLlamaForCausalLM"],
        "model_type": "geochat",
        "hidden_size": H,
        "intermediate_size": INTER,
        "num_hidden_layers": LAYERS,
        "num_attention_heads": HEADS,
        "num_key_value_heads": HEADS,
        "max_position_embeddings": 2048,
        "vocab_size": vocab,
        "mm_hidden_size": mm_hidden,
        "mm_projector_type": "mlp2x_gelu",
        "mm_vision_tower": "openai/clip-vit-large-patch14-336",
        "mm_vision_select_layer": -2,
        "mm_vision_select_feature": "patch",
        "mm_use_im_start_end": False,
        "mm_use_im_patch_token": False,
        "image_aspect_ratio": "pad",
        "torch_dtype": "float16",
        "rsvg_random_weights": True,
    }
    (out / "config.json").write_text(json.dumps(config))
    (out / "tokenizer.model").write_bytes(spm_bytes)
    return out


def write_clip_by_hand(out: Path) -> tuple[Path, dict[str, torch.Tensor]]:
    """A CLIP folder (``CLIPModel`` config, ``vision_model.*`` in model.safetensors) with the same dims."""
    from safetensors.torch import save_file

    out.mkdir(parents=True)
    t = _tower(torch.Generator().manual_seed(5), "vision_model.", VLAYERS)
    save_file(t, str(out / "model.safetensors"))
    vision = {
        "hidden_size": VH,
        "intermediate_size": VINTER,
        "num_hidden_layers": VLAYERS,
        "num_attention_heads": 6,  # what the config says wins over the 64-per-head rule
        "image_size": GRID * PATCH,
        "patch_size": PATCH,
    }
    (out / "config.json").write_text(json.dumps({"model_type": "clip", "vision_config": vision}))
    return out, t


def _converted_state(out: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    return {k: v for f in sorted(out.glob("*.safetensors")) for k, v in load_file(f).items()}


def _converted_config(out: Path) -> dict:
    return json.loads((out / "config.json").read_text())["vision_config"]


def test_hand_written_checkpoint_converts_from_its_tensors(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    src = write_geochat_by_hand(tmp_path / "src")
    with caplog.at_level(logging.WARNING):
        report = convert_geochat(src, tmp_path / "out")
    assert "openai/clip-vit-large-patch14-336" in caplog.text and "hidden_size 1024 vs 192" in caplog.text
    vc = _converted_config(tmp_path / "out")
    assert (vc["hidden_size"], vc["intermediate_size"], vc["num_hidden_layers"]) == (VH, VINTER, VLAYERS)
    assert vc["num_attention_heads"] == VH // 64 and vc["patch_size"] == PATCH
    assert report.position_embeddings == (GRID * GRID + 1, 36 * 36 + 1)
    conv = _converted_state(tmp_path / "out")
    orig = torch.load(src / "pytorch_model.bin", weights_only=True)
    for k in ("encoder.layers.2.mlp.fc2.weight", "embeddings.patch_embedding.weight"):
        assert torch.equal(conv["model.vision_tower." + k], orig[TOWER + k])


def test_hand_written_checkpoint_with_clip_folder(tmp_path: Path) -> None:
    src = write_geochat_by_hand(tmp_path / "src", tower=False)
    clip, clip_sd = write_clip_by_hand(tmp_path / "clip")
    convert_geochat(src, tmp_path / "out", clip_dir=clip)
    vc = _converted_config(tmp_path / "out")
    assert vc["num_attention_heads"] == 6 and vc["hidden_size"] == VH
    conv = _converted_state(tmp_path / "out")
    k = "encoder.layers.1.self_attn.q_proj.weight"
    assert torch.equal(conv["model.vision_tower." + k], clip_sd["vision_model." + k].half())


def test_mm_hidden_size_against_the_tensors(tmp_path: Path) -> None:
    src = write_geochat_by_hand(tmp_path / "src", mm_hidden=1024)
    with pytest.raises(
        CheckpointError, match=r"mm_hidden_size 1024 differs from the vision tower's width 192"
    ):
        convert_geochat(src, tmp_path / "out")


def test_a_tower_tensor_with_a_wrong_shape_is_named(tmp_path: Path) -> None:
    src = write_geochat_by_hand(tmp_path / "src")
    sd = torch.load(src / "pytorch_model.bin", weights_only=True)
    bad = TOWER + "encoder.layers.1.mlp.fc2.weight"
    sd[bad] = torch.zeros(VH, VINTER + 1, dtype=torch.float16)
    torch.save(sd, src / "pytorch_model.bin")
    with pytest.raises(CheckpointError, match=rf"tensor {bad} has shape \[{VH}, {VINTER + 1}\]"):
        convert_geochat(src, tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_a_clip_folder_that_disagrees_with_the_shard_is_named(tmp_path: Path) -> None:
    src = write_geochat_by_hand(tmp_path / "src")
    clip, _ = write_clip_by_hand(tmp_path / "clip")
    cfg = json.loads((clip / "config.json").read_text())
    cfg["vision_config"]["intermediate_size"] = 4 * VH
    (clip / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(
        CheckpointError, match=r"tensor model\.vision_tower\.vision_tower\.vision_model\.encoder"
    ):
        convert_geochat(src, tmp_path / "out", clip_dir=clip)


def test_no_tower_and_no_clip_folder(tmp_path: Path) -> None:
    src = write_geochat_by_hand(tmp_path / "src", tower=False)
    with pytest.raises(CheckpointError, match="holds no CLIP tower"):
        convert_geochat(src, tmp_path / "out")
