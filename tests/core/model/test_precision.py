"""Precision names, device strings, dtype plans, skip patterns and weight estimates (no weights loaded)."""

from __future__ import annotations

import pytest
import torch

from rsvg_desktop.core.model.memory import (
    GIB,
    estimate_weight_bytes,
    geochat7b_config,
    image_tokens,
    kv_cache_bytes_per_token,
    tile_bytes,
)
from rsvg_desktop.core.model.precision import (
    SKIP_MODULES,
    Precision,
    bnb_config,
    cpu_matmul_works,
    parse_dtype,
    plan_precision,
    resolve_device,
    skip_module_patterns,
)
from rsvg_desktop.errors import PrecisionError

# --- names --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "want"),
    [
        ("bf16", Precision.BF16),
        ("BF16", Precision.BF16),
        (" bfloat16 ", Precision.BF16),
        ("fp16", Precision.FP16),
        ("half", Precision.FP16),
        ("fp32", Precision.FP32),
        ("int8", Precision.INT8),
        ("LLM.int8", Precision.INT8),
        ("nf4", Precision.NF4),
        ("fp4", Precision.FP4),
        (Precision.NF4, Precision.NF4),
    ],
)
def test_parse_precision(text: str, want: Precision) -> None:
    assert Precision.parse(text) is want


@pytest.mark.parametrize("bad", ["", "int4", "bf32", "q8", "gptq", "4-bit"])
def test_unknown_precision_raises(bad: str) -> None:
    with pytest.raises(PrecisionError, match="unknown precision"):
        Precision.parse(bad)


def test_q4cal_is_calibrated_nf4() -> None:
    q = Precision.parse("q4cal")
    assert q.is_4bit and q.quantized and q.needs_calibration and q.bnb_quant_type == "nf4"
    assert not Precision.NF4.needs_calibration


def test_precision_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        Precision.parse("int3")
    with pytest.raises(PrecisionError):
        Precision.parse(8)  # type: ignore[arg-type]


def test_quantized_flags() -> None:
    bnb = {Precision.INT8, Precision.NF4, Precision.FP4, Precision.Q4CAL}
    torchao = {Precision.INT8WO, Precision.INT4WO, Precision.FP8}
    assert {p for p in Precision if p.quantized} == bnb | torchao
    assert {p for p in Precision if p.backend == "bitsandbytes"} == bnb
    assert {p for p in Precision if p.backend == "torchao"} == torchao
    assert {p for p in Precision if p.is_4bit} == {Precision.NF4, Precision.FP4, Precision.Q4CAL}
    assert {p for p in Precision if p.bits == 4} == {
        Precision.NF4,
        Precision.FP4,
        Precision.INT4WO,
        Precision.Q4CAL,
    }


# --- devices ------------------------------------------------------------------------------------


def test_cpu_device() -> None:
    dev = resolve_device("cpu")
    assert dev.torch_device == "cpu"
    assert dev.name == "CPU"
    assert not dev.is_cuda


def test_auto_device_matches_availability() -> None:
    dev = resolve_device("auto")
    assert dev.is_cuda == torch.cuda.is_available()


@pytest.mark.parametrize("bad", ["gpu", "mps", "tpu", "cuda:x", "cuda:-1", "", "cpu:0"])
def test_unknown_device_raises(bad: str) -> None:
    with pytest.raises(PrecisionError):
        resolve_device(bad)


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
@pytest.mark.parametrize("device", ["cuda", "cuda:0", "CUDA:1"])
def test_cuda_unavailable_raises(device: str) -> None:
    with pytest.raises(PrecisionError, match="CUDA is not available"):
        resolve_device(device)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_index_out_of_range_raises() -> None:
    with pytest.raises(PrecisionError, match="exist"):
        resolve_device(f"cuda:{torch.cuda.device_count()}")


def test_bad_device_in_plan_raises() -> None:
    with pytest.raises(PrecisionError):
        plan_precision("bf16", "vulkan")


# --- dtype plans on the CPU -----------------------------------------------------------------------


def test_cpu_bf16_matmul_works() -> None:
    # The decision "bf16 stays bf16 on the CPU" rests on this (torch >= 2.1).
    assert cpu_matmul_works(torch.bfloat16)


def test_cpu_plans() -> None:
    plans = {p: plan_precision(p, "cpu") for p in Precision if p is not Precision.FP8}
    assert plans[Precision.FP32].dtype is torch.float32
    assert plans[Precision.BF16].dtype is torch.bfloat16
    # fp16 falls back to fp32 on the CPU and says so.
    assert plans[Precision.FP16].dtype is torch.float32
    assert any("fp16" in n and "fp32" in n for n in plans[Precision.FP16].notes)
    for p in (Precision.INT8, Precision.NF4, Precision.FP4, Precision.INT8WO, Precision.INT4WO):
        assert plans[p].dtype is torch.float32
        assert plans[p].quantized
        assert any("CPU" in n for n in plans[p].notes)
    assert not plans[Precision.BF16].quantized


def test_fp16_fallback_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level("WARNING", logger="rsvg_desktop.core.model.precision"):
        plan_precision("fp16", "cpu")
    assert any("fp16" in r.getMessage() for r in caplog.records)


def test_compute_dtype_override_on_cpu() -> None:
    assert plan_precision("nf4", "cpu", compute_dtype="bf16").dtype is torch.bfloat16
    # fp16 compute is not used on the CPU.
    assert plan_precision("nf4", "cpu", compute_dtype="fp16").dtype is torch.float32
    with pytest.raises(PrecisionError):
        plan_precision("nf4", "cpu", compute_dtype="int8")


def test_quant_settings() -> None:
    int8 = plan_precision("int8", "cpu")
    assert int8.quant == {"load_in_8bit": True, "llm_int8_threshold": 6.0}
    assert plan_precision("int8", "cpu", int8_threshold=4.0).quant["llm_int8_threshold"] == 4.0
    nf4 = plan_precision("nf4", "cpu")
    assert nf4.quant["load_in_4bit"] is True
    assert nf4.quant["bnb_4bit_quant_type"] == "nf4"
    assert nf4.quant["bnb_4bit_use_double_quant"] is True
    assert nf4.quant["bnb_4bit_compute_dtype"] is torch.float32
    fp4 = plan_precision("fp4", "cpu", double_quant=False)
    assert fp4.quant["bnb_4bit_quant_type"] == "fp4"
    assert fp4.quant["bnb_4bit_use_double_quant"] is False
    with pytest.raises(PrecisionError):
        plan_precision("int8", "cpu", int8_threshold=-1)


def test_options_key_the_cache() -> None:
    a = plan_precision("nf4", "cpu").options()
    b = plan_precision("nf4", "cpu", double_quant=False).options()
    c = plan_precision("fp4", "cpu").options()
    assert a != b != c
    assert a["device_type"] == "cpu"
    assert plan_precision("int8", "cpu", int8_threshold=5.0).options()["int8_threshold"] == 5.0


def test_parse_dtype() -> None:
    assert parse_dtype("bf16") is torch.bfloat16
    assert parse_dtype(torch.float16) is torch.float16
    with pytest.raises(PrecisionError):
        parse_dtype(torch.int8)


# --- skip patterns --------------------------------------------------------------------------------


def test_skip_patterns_name_lm_head_and_full_paths() -> None:
    names = [
        "",
        "model",
        "model.vision_tower",
        "model.vision_tower.encoder",
        "model.multi_modal_projector",
        "model.language_model",
        "lm_head",
    ]
    patterns = skip_module_patterns(names)
    for bare in SKIP_MODULES:
        assert bare in patterns
    assert "model.vision_tower" in patterns
    assert "model.multi_modal_projector" in patterns
    assert "model.language_model" not in patterns


def test_bnb_config() -> None:
    cfg = bnb_config(plan_precision("nf4", "cpu"), ["model.vision_tower"])
    assert cfg.load_in_4bit
    assert "lm_head" in cfg.llm_int8_skip_modules
    assert "model.vision_tower" in cfg.llm_int8_skip_modules
    assert bnb_config(plan_precision("bf16", "cpu")) is None


def test_skip_patterns_match_transformers_rule() -> None:
    # The installed transformers decides with should_convert_module: check our patterns against it.
    from transformers.quantizers import quantizers_utils as qu

    rule = getattr(qu, "should_convert_module", None)
    if rule is None:
        pytest.skip("this transformers version has no should_convert_module")
    names = ["model.vision_tower", "model.multi_modal_projector", "lm_head"]
    patterns = skip_module_patterns(names)
    assert not rule("model.vision_tower.encoder.layers.0.mlp.fc1", patterns)
    assert not rule("model.multi_modal_projector.linear_1", patterns)
    assert not rule("lm_head", patterns)
    assert rule("model.language_model.layers.0.mlp.up_proj", patterns)


# --- GeoChat-7B estimates (no weights) ------------------------------------------------------------


@pytest.fixture(scope="module")
def config7b():
    return geochat7b_config()


def test_geochat7b_config_shapes(config7b) -> None:
    assert config7b.text_config.hidden_size == 4096
    assert config7b.text_config.num_hidden_layers == 32
    assert config7b.text_config.vocab_size == 32002
    assert config7b.vision_config.image_size == 504
    assert image_tokens(config7b) == 1296


def test_geochat7b_estimates_in_expected_ranges(config7b) -> None:
    est = {p: estimate_weight_bytes(config7b, p) for p in ("bf16", "int8", "nf4")}
    # Ranges from the project brief, in GiB (2**30 bytes); the exact values are in the docs.
    assert 13 * GIB <= est["bf16"].total_bytes <= 15 * GIB
    assert 7 * GIB <= est["int8"].total_bytes <= 8 * GIB
    assert 3.7 * GIB <= est["nf4"].total_bytes <= 4.5 * GIB
    assert est["bf16"].n_params == est["nf4"].n_params == 7_063_656_448
    assert est["bf16"].quant_state_bytes == 0
    # exact values (a change here means a change of the counting rules or of transformers' Llava)
    assert est["bf16"].total_bytes == 14_127_323_784
    assert est["int8"].total_bytes == 7_656_757_896
    assert est["nf4"].total_bytes == 4_516_328_968


def test_geochat7b_estimate_parts(config7b) -> None:
    nf4 = estimate_weight_bytes(config7b, "nf4")
    assert nf4.n_quantized_params == 32 * (4 * 4096 * 4096 + 3 * 4096 * 11008)
    assert nf4.by_part["lm_head"] == 32002 * 4096 * 2  # unquantized, bf16
    assert sum(nf4.by_part.values()) == nf4.total_bytes
    no_dq = estimate_weight_bytes(config7b, "nf4", double_quant=False)
    assert no_dq.total_bytes > nf4.total_bytes
    assert "GiB" in nf4.summary()


def test_kv_cache_and_tile_bytes(config7b) -> None:
    assert kv_cache_bytes_per_token(config7b, "bf16") == 2 * 32 * 4096 * 2 == 512 * 1024
    assert kv_cache_bytes_per_token(config7b, "fp32") == 1024 * 1024
    per_tile = tile_bytes(config7b, prompt_tokens=80, max_new_tokens=256)
    kv = 512 * 1024 * (1296 + 80 + 256)
    assert kv < per_tile < 2 * kv
