"""q4cal mechanics on tiny models: NF4 rounding, blocks, folded scales, error vs plain NF4."""

from __future__ import annotations

import pytest
import torch

from rsvg_desktop.core.model.calibrate.nf4 import fake_nf4
from rsvg_desktop.core.model.calibrate.search import (
    CalibrationSettings,
    calibrate_layers,
    capture_layer_inputs,
    decoder_layers,
    group_blocks,
)
from rsvg_desktop.errors import CalibrationError


def test_fake_nf4_matches_bitsandbytes() -> None:
    import bitsandbytes.functional as bf

    w = torch.randn(48, 130, generator=torch.Generator().manual_seed(3))
    q, state = bf.quantize_4bit(w, blocksize=64, quant_type="nf4")
    want = bf.dequantize_4bit(q, state, blocksize=64, quant_type="nf4")
    assert torch.equal(fake_nf4(w), want)


def test_blocks_group_high_entropy_layers_and_cut_at_low_ones() -> None:
    ent = [5.0, 6.0, 7.0, 7.5, 8.0, 2.0, 6.0, 6.5]
    blocks = group_blocks(ent, factor=1.0, max_depth=3)
    assert [i for b in blocks for i in b] == list(range(len(ent)))
    assert [5] in blocks  # the low-entropy layer stands alone
    assert max(len(b) for b in blocks) <= 3 and any(len(b) > 1 for b in blocks)


def test_bad_settings_raise() -> None:
    with pytest.raises(CalibrationError):
        CalibrationSettings(clip_ratios=(0.2,))


def _tiny_llama() -> tuple[torch.nn.Module, torch.Tensor]:
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(0)
    cfg = LlamaConfig(
        vocab_size=64,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=64,
    )
    model = LlamaForCausalLM(cfg).eval()
    with torch.no_grad():  # planted outlier channels, as trained LLMs have
        for layer in model.model.layers:
            layer.input_layernorm.weight[:4] = 20.0
            layer.post_attention_layernorm.weight[5:8] = 15.0
    return model, torch.randint(0, 64, (6, 24), generator=torch.Generator().manual_seed(1))


@torch.no_grad()
def _nf4_logits(model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    import copy

    q = copy.deepcopy(model)
    for layer in decoder_layers(q):
        for mod in layer.modules():
            if isinstance(mod, torch.nn.Linear):
                mod.weight.copy_(fake_nf4(mod.weight))
    return q(input_ids=ids).logits


@torch.no_grad()
def test_scales_fold_without_changing_the_function_and_beat_plain_nf4() -> None:
    model, ids = _tiny_llama()
    ref = model(input_ids=ids).logits
    plain_err = float((_nf4_logits(model, ids) - ref).abs().mean())
    inputs = capture_layer_inputs(model, [{"input_ids": row[None]} for row in ids])
    result = calibrate_layers(decoder_layers(model), inputs, CalibrationSettings(use_clip=False))
    assert any(a > 0 for b in result.blocks for a in b.alphas.values())  # scales were chosen
    assert torch.allclose(model(input_ids=ids).logits, ref, atol=1e-4)  # full precision unchanged
    assert all(b.loss <= b.loss_nf4 for b in result.blocks)
    cal_err = float((_nf4_logits(model, ids) - ref).abs().mean())
    assert cal_err < plain_err


def test_q4cal_end_to_end_on_the_tiny_geochat(test_model_dir, tmp_path, data_dir) -> None:
    """No calibration → a clear error naming the command; calibrate → q4cal loads from the cache with
    the same kernels and the same weight memory as nf4, and the run names its calibration."""
    import shutil

    import bitsandbytes as bnb

    from rsvg_desktop.core.model.loader import LoadSpec, load_model
    from rsvg_desktop.core.precisions import Precision
    from rsvg_desktop.engine.model_jobs import calibrate
    from rsvg_desktop.errors import CalibrationMissingError

    model = tmp_path / "model"
    shutil.copytree(test_model_dir, model, ignore=shutil.ignore_patterns(".rsvg-cache"))
    with pytest.raises(CalibrationMissingError, match="rsvg model calibrate"):
        load_model(LoadSpec(model, Precision.Q4CAL, "cpu"))
    summary = calibrate(model, [data_dir / "RGB.byte.tif"], samples=2, device="cpu")
    assert summary.loss <= summary.loss_nf4
    cal = load_model(LoadSpec(model, Precision.Q4CAL, "cpu"))
    nf4 = load_model(LoadSpec(model, Precision.NF4, "cpu"))
    assert cal.from_cache and cal.weight_bytes == nf4.weight_bytes
    assert cal.run_precision == f"q4cal@{summary.calibration_id}"
    kinds = {type(m).__name__ for m in cal.model.modules() if isinstance(m, bnb.nn.Linear4bit)}
    assert kinds == {"Linear4bit"}
    from PIL import Image

    from rsvg_desktop.core.model.generate import GenerationRequest, GeoChatGenerator

    image = Image.new("RGB", (504, 504), (90, 120, 80))
    (answer,) = GeoChatGenerator(cal).generate(
        [GenerationRequest(image=image, task="refer", query="cars")], max_new_tokens=3, batch_size=1
    )
    assert answer.output_tokens >= 1
