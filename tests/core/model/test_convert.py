"""Converting the original GeoChat layout to transformers' Llava: tensors, config, processor, logits, errors.

The reference in this file is written independently of ``convert.py``: its own key mapping, its own
position-embedding interpolation, its own pure-torch CLIP + projector + LLaMA forward pass on the original
``.bin`` tensors, its own pixel preprocessing and GeoChat-style (``tokenizer_image_token``) tokenization.
"""

from __future__ import annotations

import hashlib
import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from rsvg_desktop.core.model.checkpoint import ModelKind, identify, open_geochat
from rsvg_desktop.core.model.convert import (
    CHAT_TEMPLATE,
    GEOCHAT_SYSTEM,
    MANIFEST_NAME,
    ConversionProgress,
    convert_geochat,
)
from rsvg_desktop.errors import CheckpointError, OutputExistsError, TokenizerError

STALE = "model.vision_tower.vision_tower.vision_model."
SHARDS = ("pytorch_model-00001-of-00002.bin", "pytorch_model-00002-of-00002.bin")
CLIP_MEAN = (0.48145466, 0.4578275, 0.40821073)
CLIP_STD = (0.26862954, 0.26130258, 0.27577711)


# --------------------------------------------------------------------------------------------------
# helpers (independent of the code under test)
# --------------------------------------------------------------------------------------------------
def original_state(model_dir: Path) -> dict[str, torch.Tensor]:
    state: dict[str, torch.Tensor] = {}
    for name in SHARDS:
        state.update(torch.load(model_dir / name, map_location="cpu", weights_only=True))
    return state


def converted_state(model_dir: Path) -> dict[str, torch.Tensor]:
    from safetensors.torch import load_file

    state: dict[str, torch.Tensor] = {}
    for f in sorted(model_dir.glob("*.safetensors")):
        state.update(load_file(f))
    return state


def geochat_pos_interp(table: torch.Tensor, new_grid: int = 36) -> torch.Tensor:
    """GeoChat's clip_interpolate_embeddings, written out again: (1+g²,C) → (1+new²,C), float32."""
    n, c = table.shape
    g = round(math.sqrt(n - 1))
    grid = table[1:].float().reshape(g, g, c).permute(2, 0, 1).unsqueeze(0)  # (1, C, g, g)
    new = F.interpolate(grid, size=new_grid, mode="bicubic", align_corners=True)
    new = new.squeeze(0).permute(1, 2, 0).reshape(new_grid * new_grid, c)
    return torch.cat([table[:1].float(), new], 0)


def expected_name(key: str) -> str | None:
    if key.endswith("inv_freq") or key.endswith("position_ids"):
        return None
    if key.startswith(STALE):
        return "model.vision_tower." + key.removeprefix(STALE)
    if key.startswith("model.mm_projector."):
        idx = key.split(".")[2]
        return f"model.multi_modal_projector.linear_{ {'0': 1, '2': 2}[idx] }." + key.split(".", 3)[3]
    if key == "lm_head.weight":
        return key
    return "model.language_model." + key.removeprefix("model.")


def clip_forward(
    sd: dict[str, torch.Tensor],
    prefix: str,
    pixels: torch.Tensor,
    pos: torch.Tensor,
    layers: int,
    heads: int,
    eps: float = 1e-5,
) -> list[torch.Tensor]:
    """Hidden states of a CLIP vision transformer (HF semantics: [pre_layrnorm output, layer 1, ...])."""
    w = {k.removeprefix(prefix): v.float() for k, v in sd.items() if k.startswith(prefix)}
    x = F.conv2d(pixels, w["embeddings.patch_embedding.weight"], stride=14).flatten(2).transpose(1, 2)
    b, _, c = x.shape
    x = torch.cat([w["embeddings.class_embedding"].expand(b, 1, c), x], 1) + pos
    x = F.layer_norm(x, (c,), w["pre_layrnorm.weight"], w["pre_layrnorm.bias"], eps)
    states = [x]
    hd = c // heads
    for i in range(layers):
        p = f"encoder.layers.{i}."
        h = F.layer_norm(x, (c,), w[p + "layer_norm1.weight"], w[p + "layer_norm1.bias"], eps)

        def proj(name: str, t: torch.Tensor, p: str = p) -> torch.Tensor:
            return t @ w[f"{p}self_attn.{name}.weight"].T + w[f"{p}self_attn.{name}.bias"]

        q, k, v = (proj(n, h).view(b, -1, heads, hd).transpose(1, 2) for n in ("q_proj", "k_proj", "v_proj"))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd), -1) @ v
        x = x + proj("out_proj", att.transpose(1, 2).reshape(b, -1, c))
        h = F.layer_norm(x, (c,), w[p + "layer_norm2.weight"], w[p + "layer_norm2.bias"], eps)
        h = h @ w[p + "mlp.fc1.weight"].T + w[p + "mlp.fc1.bias"]
        h = h * torch.sigmoid(1.702 * h)  # quick_gelu
        x = x + h @ w[p + "mlp.fc2.weight"].T + w[p + "mlp.fc2.bias"]
        states.append(x)
    return states


def llama_forward(sd: dict[str, torch.Tensor], embeds: torch.Tensor, cfg: dict) -> torch.Tensor:
    """Logits of the original LLaMA (original key names) for input embeddings (1, L, H)."""
    w = {k: v.float() for k, v in sd.items()}
    h_, heads, eps = cfg["hidden_size"], cfg["num_attention_heads"], cfg["rms_norm_eps"]
    hd = h_ // heads
    length = embeds.shape[1]

    def rms(x: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
        return x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps) * weight

    inv = 1.0 / (10000.0 ** (torch.arange(0, hd, 2).float() / hd))
    freqs = torch.arange(length).float()[:, None] * inv[None]
    cos, sin = torch.cat([freqs, freqs], -1).cos(), torch.cat([freqs, freqs], -1).sin()

    def rope(t: torch.Tensor) -> torch.Tensor:
        t1, t2 = t[..., : hd // 2], t[..., hd // 2 :]
        return t * cos + torch.cat([-t2, t1], -1) * sin

    mask = torch.full((length, length), float("-inf")).triu(1)
    x = embeds
    for i in range(cfg["num_hidden_layers"]):
        p = f"model.layers.{i}."
        h = rms(x, w[p + "input_layernorm.weight"])
        q, k, v = (
            (h @ w[f"{p}self_attn.{n}_proj.weight"].T).view(1, length, heads, hd).transpose(1, 2)
            for n in "qkv"
        )
        q, k = rope(q), rope(k)
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hd) + mask, -1) @ v
        x = x + att.transpose(1, 2).reshape(1, length, h_) @ w[p + "self_attn.o_proj.weight"].T
        h = rms(x, w[p + "post_attention_layernorm.weight"])
        gate, up = h @ w[p + "mlp.gate_proj.weight"].T, h @ w[p + "mlp.up_proj.weight"].T
        x = x + (F.silu(gate) * up) @ w[p + "mlp.down_proj.weight"].T
    return rms(x, w["model.norm.weight"]) @ w["lm_head.weight"].T


def geochat_input_ids(model_dir: Path, prompt: str, image_token_id: int, n_image_tokens: int) -> list[int]:
    """GeoChat's tokenizer_image_token: SentencePiece on the chunks around <image>, one BOS, expanded."""
    import sentencepiece as spm

    sp = spm.SentencePieceProcessor(model_file=str(model_dir / "tokenizer.model"))
    ids = [1]
    for i, chunk in enumerate(prompt.split("<image>")):
        if i:
            ids.extend([image_token_id] * n_image_tokens)
        ids.extend(sp.encode(chunk))
    return ids


def geochat_pixels(image: np.ndarray) -> torch.Tensor:
    """expand2square with the CLIP mean colour, then /255 and CLIP normalisation (a 504-side image only)."""
    h, w, _ = image.shape
    side = max(h, w)
    assert side == 504
    canvas = np.empty((side, side, 3), np.uint8)
    canvas[:] = [int(m * 255) for m in CLIP_MEAN]  # (122, 116, 104)
    top, left = (side - h) // 2, (side - w) // 2
    canvas[top : top + h, left : left + w] = image
    x = torch.from_numpy(canvas).float().permute(2, 0, 1) / 255.0
    return ((x - torch.tensor(CLIP_MEAN)[:, None, None]) / torch.tensor(CLIP_STD)[:, None, None]).unsqueeze(0)


def tile(h: int = 504, w: int = 504, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (h, w, 3), dtype=np.uint8)


# --------------------------------------------------------------------------------------------------
# layout and tensors
# --------------------------------------------------------------------------------------------------
def test_converted_keys_match_installed_llava(tiny_converted_dir: Path) -> None:
    from transformers import AutoConfig, LlavaForConditionalGeneration

    config = AutoConfig.from_pretrained(tiny_converted_dir)
    with torch.device("meta"):
        model = LlavaForConditionalGeneration(config)
    want = {k: tuple(v.shape) for k, v in model.state_dict().items()}
    got = {k: tuple(v.shape) for k, v in converted_state(tiny_converted_dir).items()}
    assert got == want
    index = json.loads((tiny_converted_dir / "model.safetensors.index.json").read_text())
    assert set(index["weight_map"]) == set(got)


def test_each_tensor_matches_the_original(tiny_geochat_dir: Path, tiny_converted_dir: Path) -> None:
    orig = original_state(tiny_geochat_dir)
    conv = converted_state(tiny_converted_dir)
    vocab = orig["model.embed_tokens.weight"].shape[0]
    seen = set()
    for key, tensor in orig.items():
        new = expected_name(key)
        if new is None:
            assert all(not k.endswith(("inv_freq", "position_ids")) for k in conv)
            continue
        seen.add(new)
        out = conv[new]
        assert out.dtype == torch.float16, new
        if key in ("model.embed_tokens.weight", "lm_head.weight"):
            assert out.shape == (vocab + 2, tensor.shape[1])
            assert torch.equal(out[:vocab], tensor)
            mean = tensor.float().mean(0).half()
            assert torch.equal(out[vocab], mean) and torch.equal(out[vocab + 1], mean)
        elif key.endswith("position_embedding.weight"):
            assert tensor.shape[0] == 577 and out.shape[0] == 1297
            assert torch.equal(out[0], tensor[0])  # CLS row kept apart
            assert torch.equal(out, geochat_pos_interp(tensor).half())
        else:
            assert torch.equal(out, tensor), new
    assert seen == set(conv)


def test_config_processor_and_manifest(tiny_geochat_dir: Path, tiny_converted_dir: Path) -> None:
    cfg = json.loads((tiny_converted_dir / "config.json").read_text())
    src = json.loads((tiny_geochat_dir / "config.json").read_text())
    vocab = src["vocab_size"]
    assert cfg["architectures"] == ["LlavaForConditionalGeneration"]
    assert cfg["model_type"] == "llava"
    assert cfg["image_token_index"] == vocab
    assert cfg["text_config"]["vocab_size"] == vocab + 2
    assert cfg["text_config"]["pad_token_id"] == vocab + 1
    assert cfg["vision_config"]["image_size"] == 504
    assert cfg["vision_config"]["patch_size"] == 14
    assert cfg["vision_feature_layer"] == -2
    assert cfg["vision_feature_select_strategy"] == "default"
    assert cfg["projector_hidden_act"] == "gelu"
    assert cfg["image_seq_length"] == 1296
    assert cfg["rsvg_random_weights"] is True
    assert "RANDOM WEIGHTS" in cfg["_name_or_path"]
    assert identify(tiny_converted_dir) is ModelKind.LLAVA_CONVERTED

    manifest = json.loads((tiny_converted_dir / MANIFEST_NAME).read_text())
    import transformers

    import rsvg_desktop

    assert manifest["versions"]["rsvg_desktop"] == rsvg_desktop.__version__
    assert manifest["versions"]["transformers"] == transformers.__version__
    assert manifest["random_weights"] is True
    assert manifest["vision_source"]["kind"] == "stale-copy"
    assert manifest["changes"]["position_embeddings"]["from_rows"] == 577
    assert manifest["changes"]["position_embeddings"]["to_rows"] == 1297
    assert manifest["changes"]["tokens_added"] == {"<image>": vocab, "<pad>": vocab + 1}
    assert any(k.endswith("inv_freq") for k in manifest["changes"]["keys_dropped"])
    for name in (*SHARDS, "config.json", "tokenizer.model"):
        digest = hashlib.sha256((tiny_geochat_dir / name).read_bytes()).hexdigest()
        assert manifest["source"]["files"][name]["sha256"] == digest
    assert manifest["created"]


def test_processor_expands_one_tile_to_1296_image_tokens(
    tiny_geochat_dir: Path, tiny_converted_dir: Path
) -> None:
    from PIL import Image
    from transformers import AutoProcessor

    processor = AutoProcessor.from_pretrained(tiny_converted_dir)
    vocab = json.loads((tiny_geochat_dir / "config.json").read_text())["vocab_size"]
    assert processor.tokenizer.convert_tokens_to_ids(["<image>", "<pad>"]) == [vocab, vocab + 1]
    assert processor.tokenizer.pad_token == "<pad>"
    assert processor.tokenizer.padding_side == "left"
    query = "[grounding]Please describe the image in detail."
    messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": query}]}]
    prompt = processor.apply_chat_template(messages, add_generation_prompt=True)
    assert prompt == f"{GEOCHAT_SYSTEM} USER: <image>\n{query} ASSISTANT:"
    for shape in ((504, 504), (300, 504), (504, 200)):
        batch = processor(images=Image.fromarray(tile(*shape)), text=prompt, return_tensors="pt")
        assert int((batch["input_ids"] == vocab).sum()) == 1296
        assert batch["pixel_values"].shape == (1, 3, 504, 504)
        # pixels as GeoChat prepares them (pad to square with the mean colour, CLIP normalisation)
        torch.testing.assert_close(batch["pixel_values"], geochat_pixels(tile(*shape)), atol=1e-5, rtol=0)
        # token ids exactly as GeoChat's tokenizer_image_token makes them
        assert batch["input_ids"][0].tolist() == geochat_input_ids(tiny_geochat_dir, prompt, vocab, 1296)


def test_chat_template_multi_turn_and_system() -> None:
    from jinja2 import Environment

    template = Environment().from_string(CHAT_TEMPLATE)
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": "What is this?"}]},
        {"role": "assistant", "content": [{"type": "text", "text": "An airport."}]},
        {"role": "user", "content": "How many planes?"},
    ]
    text = template.render(messages=messages, add_generation_prompt=True)
    assert text == (
        f"{GEOCHAT_SYSTEM} USER: <image>\nWhat is this? ASSISTANT: An airport.</s>"
        "USER: How many planes? ASSISTANT:"
    )
    custom = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hi"}]
    assert template.render(messages=custom, add_generation_prompt=False) == "Be brief. USER: Hi "


# --------------------------------------------------------------------------------------------------
# the round trip: transformers on the converted folder vs a hand-written forward on the original
# --------------------------------------------------------------------------------------------------
def test_logits_match_independent_reference(tiny_geochat_dir: Path, tiny_converted_dir: Path) -> None:
    from PIL import Image
    from transformers import AutoProcessor, LlavaForConditionalGeneration

    src_cfg = json.loads((tiny_geochat_dir / "config.json").read_text())
    vocab = src_cfg["vocab_size"]
    orig = original_state(tiny_geochat_dir)
    # the tower's depth and heads, from the tensors (64 channels per head, as in every OpenAI CLIP ViT)
    depth = len({k.split(".")[6] for k in orig if k.startswith(STALE + "encoder.layers.")})
    heads = orig[STALE + "embeddings.class_embedding"].shape[0] // 64

    model = LlavaForConditionalGeneration.from_pretrained(tiny_converted_dir, dtype=torch.float32).eval()
    processor = AutoProcessor.from_pretrained(tiny_converted_dir)
    prompt = f"{GEOCHAT_SYSTEM} USER: <image>\nHow many airplanes are there? ASSISTANT:"
    image = tile(seed=3)
    batch = processor(images=Image.fromarray(image), text=prompt, return_tensors="pt")
    with torch.no_grad():
        out = model(**batch, output_hidden_states=False)

    # reference, from the original tensors only
    pixels = geochat_pixels(image)
    ids = torch.tensor(geochat_input_ids(tiny_geochat_dir, prompt, vocab, 1296))
    assert torch.equal(batch["input_ids"][0], ids)
    pos = geochat_pos_interp(orig[STALE + "embeddings.position_embedding.weight"]).half().float()
    states = clip_forward(orig, STALE, pixels, pos, depth, heads)
    feats = states[src_cfg["mm_vision_select_layer"]][:, 1:]  # layer -2, CLS dropped
    assert feats.shape[1] == 1296
    w0, b0 = orig["model.mm_projector.0.weight"].float(), orig["model.mm_projector.0.bias"].float()
    w2, b2 = orig["model.mm_projector.2.weight"].float(), orig["model.mm_projector.2.bias"].float()
    img_emb = F.gelu(feats @ w0.T + b0) @ w2.T + b2
    with torch.no_grad():
        got_feats = model.get_image_features(pixel_values=batch["pixel_values"]).pooler_output[0]
    torch.testing.assert_close(got_feats, img_emb[0], atol=1e-5, rtol=1e-4)

    is_img = ids == vocab
    embeds = orig["model.embed_tokens.weight"].float()[ids.clamp(max=vocab - 1)].unsqueeze(0)
    embeds[0, is_img] = img_emb[0]
    ref = llama_forward(orig, embeds, src_cfg)[0]
    logits = out.logits[0]
    assert logits.shape == (len(ids), vocab + 2)
    torch.testing.assert_close(logits[:, :vocab], ref, atol=2e-5, rtol=1e-4)
    # the added rows are mean rows: their logit is (about) the mean logit, never the greedy choice
    torch.testing.assert_close(logits[:, vocab], ref.mean(-1), atol=1e-3, rtol=1e-2)
    assert int(logits[-1].argmax()) < vocab
    assert float(ref[-1].std()) > 1e-2  # non-degenerate


# --------------------------------------------------------------------------------------------------
# --clip, identification, output handling
# --------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fmt", ["safetensors", "bin"])
def test_clip_dir_replaces_the_stale_copy(tiny_geochat_dir: Path, tmp_path: Path, fmt: str) -> None:
    from safetensors.torch import load_file

    from rsvg_desktop.core.model.testmodel import write_tiny_clip

    clip = write_tiny_clip(tmp_path / "clip", seed=7, file_format=fmt)
    clip_sd = (
        load_file(clip / "model.safetensors")
        if fmt == "safetensors"
        else torch.load(clip / "pytorch_model.bin", weights_only=True)
    )
    report = convert_geochat(tiny_geochat_dir, tmp_path / "out", clip_dir=clip)
    conv = converted_state(tmp_path / "out")
    orig = original_state(tiny_geochat_dir)
    for key, tensor in clip_sd.items():
        if not key.startswith("vision_model."):
            continue
        new = "model.vision_tower." + key.removeprefix("vision_model.")
        if key.endswith("position_embedding.weight"):
            assert torch.equal(conv[new], geochat_pos_interp(tensor).half())
        else:
            assert torch.equal(conv[new], tensor.half()), new
    stale = orig[STALE + "encoder.layers.0.mlp.fc1.weight"]
    assert not torch.equal(conv["model.vision_tower.encoder.layers.0.mlp.fc1.weight"], stale)
    assert not any(k.startswith(("text_model", "visual_projection", "logit_scale")) for k in conv)
    manifest = json.loads((tmp_path / "out" / MANIFEST_NAME).read_text())
    assert manifest["vision_source"]["kind"] == "clip_dir"
    assert report.vision_source == str(clip) and report.position_embeddings == (577, 1297)
    from transformers import LlavaForConditionalGeneration

    _, info = LlavaForConditionalGeneration.from_pretrained(tmp_path / "out", output_loading_info=True)
    assert not info["missing_keys"] and not info["unexpected_keys"]


def test_identified_from_config_not_folder_name(
    tiny_geochat_dir: Path, tiny_converted_dir: Path, tmp_path: Path
) -> None:
    fake_converted = tmp_path / "llava-1.5-7b-hf-converted"
    shutil.copytree(tiny_geochat_dir, fake_converted)
    fake_original = tmp_path / "geochat-7B-original"
    shutil.copytree(tiny_converted_dir, fake_original)
    assert identify(fake_converted) is ModelKind.GEOCHAT_ORIGINAL
    assert identify(fake_original) is ModelKind.LLAVA_CONVERTED
    report = convert_geochat(fake_converted, tmp_path / "geochat-original-again")
    assert identify(report.out_dir) is ModelKind.LLAVA_CONVERTED
    with pytest.raises(CheckpointError, match="already a converted"):
        convert_geochat(fake_original, tmp_path / "x")


def test_output_exists_refused_unless_overwrite(tiny_geochat_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")
    with pytest.raises(OutputExistsError, match=str(out)):
        convert_geochat(tiny_geochat_dir, out)
    assert (out / "old.txt").exists()
    events: list[ConversionProgress] = []
    report = convert_geochat(tiny_geochat_dir, out, overwrite=True, progress=events.append)
    assert not (out / "old.txt").exists() and (out / "config.json").exists()
    assert report.shards and all((out / s).is_file() for s in report.shards)
    dones = [e.done for e in events]
    assert dones == sorted(dones) and events[-1].done == events[-1].total and events[-1].fraction == 1.0
    assert [p.name for p in tmp_path.iterdir()] == ["out"]  # no temp or backup folders left


# --------------------------------------------------------------------------------------------------
# bad checkpoints: each error names the file and the problem, and nothing is left behind
# --------------------------------------------------------------------------------------------------
@pytest.fixture
def broken(tiny_geochat_dir: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "src"
    shutil.copytree(tiny_geochat_dir, dst)
    return dst


def _assert_nothing_written(tmp_path: Path) -> None:
    assert sorted(p.name for p in tmp_path.iterdir()) == ["src"]


def test_missing_shard(broken: Path, tmp_path: Path) -> None:
    (broken / SHARDS[1]).unlink()
    with pytest.raises(CheckpointError, match=rf"pytorch_model.bin.index.json.*{SHARDS[1]}.*missing"):
        convert_geochat(broken, tmp_path / "out")
    _assert_nothing_written(tmp_path)


def test_truncated_shard(broken: Path, tmp_path: Path) -> None:
    shard = broken / SHARDS[1]
    data = shard.read_bytes()
    shard.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=rf"{SHARDS[1]}.*(truncated|corrupt)"):
        convert_geochat(broken, tmp_path / "out")
    _assert_nothing_written(tmp_path)


def test_wrong_architecture(broken: Path, tmp_path: Path) -> None:
    cfg = json.loads((broken / "config.json").read_text())
    cfg["architectures"], cfg["model_type"] = ["LlamaForCausalLM"], "llama"
    for key in [k for k in cfg if k.startswith("mm_")]:
        del cfg[key]
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match=r"config.json.*'LlamaForCausalLM'.*expected GeoChatLlama"):
        convert_geochat(broken, tmp_path / "out")
    _assert_nothing_written(tmp_path)


def test_original_llava_is_not_geochat(broken: Path) -> None:
    cfg = json.loads((broken / "config.json").read_text())
    cfg["architectures"], cfg["model_type"] = ["LlavaLlamaForCausalLM"], "llava"
    (broken / "config.json").write_text(json.dumps(cfg))
    with pytest.raises(CheckpointError, match="original LLaVA"):
        identify(broken)


def test_shape_mismatch(broken: Path, tmp_path: Path) -> None:
    key = "model.layers.1.mlp.up_proj.weight"
    index = json.loads((broken / "pytorch_model.bin.index.json").read_text())
    shard = broken / index["weight_map"][key]
    state = torch.load(shard, weights_only=True)
    state[key] = torch.zeros(3, 5, dtype=torch.float16)
    torch.save(state, shard)
    with pytest.raises(CheckpointError, match=rf"{shard.name}.*{key}.*\[3, 5\].*expected \[128, 64\]"):
        convert_geochat(broken, tmp_path / "out")
    _assert_nothing_written(tmp_path)


def test_missing_tensor(broken: Path) -> None:
    key = "model.norm.weight"
    index_path = broken / "pytorch_model.bin.index.json"
    index = json.loads(index_path.read_text())
    shard = broken / index["weight_map"][key]
    state = torch.load(shard, weights_only=True)
    del state[key]
    torch.save(state, shard)
    # still listed by the index: the shard is named
    with pytest.raises(CheckpointError, match=rf"{shard.name}: the index lists 1 tensor.*{key}"):
        open_geochat(broken).scan()
    # gone from the index too: reported as a required tensor missing from the checkpoint
    del index["weight_map"][key]
    index_path.write_text(json.dumps(index))
    with pytest.raises(CheckpointError, match=rf"required tensor\(s\) missing: {key}"):
        open_geochat(broken).scan()


@pytest.mark.parametrize("damage", ["missing", "garbage"])
def test_bad_tokenizer(broken: Path, tmp_path: Path, damage: str) -> None:
    tok = broken / "tokenizer.model"
    if damage == "missing":
        tok.unlink()
    else:
        tok.write_bytes(b"not a sentencepiece model")
    with pytest.raises(TokenizerError, match=r"tokenizer\.model"):
        convert_geochat(broken, tmp_path / "out")
    _assert_nothing_written(tmp_path)


def test_no_pickle_code_execution(broken: Path, tmp_path: Path) -> None:
    """A shard that would run code when unpickled is refused (weights_only=True)."""
    import pickle

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with (broken / SHARDS[1]).open("wb") as f:
        pickle.dump({"lm_head.weight": Evil()}, f)
    with pytest.raises(CheckpointError, match=SHARDS[1]):
        convert_geochat(broken, tmp_path / "out")


# --------------------------------------------------------------------------------------------------
# streaming: tiny batches and blocks give the same bytes; failures mid-way leave nothing
# --------------------------------------------------------------------------------------------------
def test_streaming_in_tiny_pieces_gives_the_same_tensors(
    tiny_geochat_dir: Path, tiny_converted_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsvg_desktop.core.model import safetensors_stream

    monkeypatch.setattr(safetensors_stream, "BATCH_BYTES", 4096)  # re-map the shard every few tensors
    monkeypatch.setattr(safetensors_stream, "BLOCK_BYTES", 512)  # write tensors a few rows at a time
    convert_geochat(tiny_geochat_dir, tmp_path / "pieces")
    a, b = converted_state(tiny_converted_dir), converted_state(tmp_path / "pieces")
    assert a.keys() == b.keys()
    for key in a:
        if key.endswith("embed_tokens.weight") or key == "lm_head.weight":
            # the mean row is summed block by block: same value up to float32 rounding, then float16
            torch.testing.assert_close(a[key], b[key], atol=1e-3, rtol=0)
        else:
            assert torch.equal(a[key], b[key]), key


def test_dtype_option(tiny_geochat_dir: Path, tmp_path: Path) -> None:
    convert_geochat(tiny_geochat_dir, tmp_path / "bf16", dtype=torch.bfloat16)
    conv = converted_state(tmp_path / "bf16")
    orig = original_state(tiny_geochat_dir)
    assert {t.dtype for t in conv.values()} == {torch.bfloat16}
    key = "model.layers.0.self_attn.q_proj.weight"
    new = "model.language_model." + key.removeprefix("model.")
    assert torch.equal(conv[new], orig[key].to(torch.bfloat16))
    assert json.loads((tmp_path / "bf16" / "config.json").read_text())["dtype"] == "bfloat16"


def test_failure_while_writing_leaves_nothing(tiny_geochat_dir: Path, tmp_path: Path) -> None:
    calls = []

    def progress(event: ConversionProgress) -> None:
        calls.append(event)
        if len(calls) == 20:
            raise RuntimeError("disk full (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        convert_geochat(tiny_geochat_dir, tmp_path / "out", progress=progress)
    assert list(tmp_path.iterdir()) == []


def test_failure_keeps_the_old_output(tiny_geochat_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "old.txt").write_text("old")

    def progress(event: ConversionProgress) -> None:
        if event.message == "hashing source files":
            raise RuntimeError("interrupted (simulated)")

    with pytest.raises(RuntimeError, match="simulated"):
        convert_geochat(tiny_geochat_dir, out, overwrite=True, progress=progress)
    assert [p.name for p in tmp_path.iterdir()] == ["out"] and (out / "old.txt").read_text() == "old"


def test_output_inside_source_is_refused(broken: Path) -> None:
    from rsvg_desktop.errors import ConfigError

    with pytest.raises(ConfigError, match="overlaps the source"):
        convert_geochat(broken, broken / "converted")
    with pytest.raises(ConfigError, match="overlaps the source"):
        convert_geochat(broken, broken, overwrite=True)
    assert (broken / "config.json").is_file()


def test_iter_shards_streams_one_file_at_a_time(tiny_geochat_dir: Path) -> None:
    ckpt = open_geochat(tiny_geochat_dir)
    seen = []
    for path, weights in ckpt.iter_shards():
        seen.append(path.name)
        assert all(isinstance(t, torch.Tensor) for t in weights.values())
    assert seen == list(SHARDS)
    assert ckpt.text.vocab_size == 384 and ckpt.vision.num_positions == 577 and ckpt.random_weights


def test_apply_chat_template_equals_build_prompt(tiny_converted_dir: Path) -> None:
    """The converted processor's Jinja template (built from LLAVA_V1) renders what build_prompt does."""
    from transformers import AutoProcessor

    from rsvg_desktop.core.prompt import build_prompt, build_query

    processor = AutoProcessor.from_pretrained(tiny_converted_dir)
    q1 = build_query("grounding", "")
    q2 = "How many planes are there?"
    q3 = "Which one is the largest? Say 'left' or \"right\"."
    messages = [
        {"role": "user", "content": [{"type": "image"}, {"type": "text", "text": q1}]},
        {"role": "assistant", "content": [{"type": "text", "text": "An airport {<1><2><3><4>|<0>}."}]},
        {"role": "user", "content": [{"type": "text", "text": q2}]},
        {"role": "assistant", "content": "Three."},
        {"role": "user", "content": q3},
    ]
    got = processor.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)
    history = [(q1, "An airport {<1><2><3><4>|<0>}."), (q2, "Three.")]
    assert got == build_prompt("chat", q3, history)
    one = processor.apply_chat_template(messages[:1], tokenize=False, add_generation_prompt=True)
    assert one == build_prompt("grounding", "")
