"""torchao precisions (int8wo, int4wo, fp8) on the tiny model, on the CPU; the compiled path's CPU parts."""

from __future__ import annotations

import logging
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from torchao.utils import TorchAOBaseTensor

from rsvg_desktop.core.model.generate import (
    COMPILED_BATCH_BUCKETS,
    COMPILED_SEQ_MULTIPLE,
    GenerationRequest,
    GeoChatGenerator,
    bucket_size,
    expand_to_square,
)
from rsvg_desktop.core.model.loader import LoadSpec, cache_entry_dir, check_quantized_layout, load_model
from rsvg_desktop.core.model.memory import estimate_weight_bytes, geochat7b_config
from rsvg_desktop.core.model.precision import DeviceInfo, Precision, plan_precision
from rsvg_desktop.errors import ConfigError, ModelError, PrecisionError

SKIPPED = ("vision_tower", "multi_modal_projector", "lm_head")
TORCHAO_CPU = ("int8wo", "int4wo")
#: The tiny model's linears have 64 or 128 inputs: int4wo groups of 32.
GROUP = 32
#: Stated tolerance of the last-position logits against fp32, as a fraction of fp32's largest |logit|
#: (random weights: the logits are spread, so this bounds the quantization error of the whole stack).
LOGIT_TOLERANCE = {"int8wo": 0.02, "int4wo": 0.15}


def _spec(model_dir: Path, precision: str, **kw: object) -> LoadSpec:
    return LoadSpec(model_dir, precision, "cpu", group_size=GROUP, **kw)  # type: ignore[arg-type]


def _requests(n: int = 3, seed: int = 3) -> list[GenerationRequest]:
    rng = np.random.default_rng(seed)
    queries = ["ships near the pier", "the runway", "small white buildings along the coast"]
    return [
        GenerationRequest(rng.integers(0, 256, (504, 504, 3), dtype=np.uint8), "refer", queries[i % 3])
        for i in range(n)
    ]


# --- plans (no model) ------------------------------------------------------------------------------


def test_fp8_on_the_cpu_is_a_one_line_error() -> None:
    with pytest.raises(PrecisionError) as info:
        plan_precision("fp8", "cpu")
    text = str(info.value)
    assert "\n" not in text
    assert "8.9" in text and "CPU" in text


@pytest.mark.parametrize("capability", [(7, 5), (8, 0), (8, 6)])
def test_fp8_on_an_older_gpu_is_refused(capability: tuple[int, int]) -> None:
    dev = DeviceInfo("cuda:0", "Old GPU", True, capability)
    with pytest.raises(PrecisionError, match=r"compute capability 8\.9 or newer.*Old GPU"):
        plan_precision("fp8", dev)


def test_fp8_plan_on_ada_and_hopper() -> None:
    ada = plan_precision("fp8", DeviceInfo("cuda:0", "L4", True, (8, 9)))
    hopper = plan_precision("fp8", DeviceInfo("cuda:0", "H100", True, (9, 0)))
    assert ada.dtype is torch.bfloat16 and hopper.dtype is torch.bfloat16
    assert ada.quant["granularity"] == "per_tensor"
    assert hopper.quant["granularity"] == "per_row"
    assert ada.options() != hopper.options()  # different cache entries


def test_int4wo_plans_and_cache_keys(tmp_path: Path) -> None:
    cpu = plan_precision("int4wo", "cpu", group_size=64)
    assert cpu.quant["layout"] == "cpu_opaque"
    assert cpu.options()["group_size"] == 64
    gpu = plan_precision("int4wo", DeviceInfo("cuda:0", "A100", True, (8, 0)), group_size=64)
    assert gpu.quant["layout"] == "tile_packed_to_4d"
    assert gpu.dtype is torch.bfloat16
    spec = LoadSpec(tmp_path, "int4wo", "cpu")
    keys = {
        cache_entry_dir(spec, plan_precision("int4wo", "cpu", group_size=g, int4_hqq=h))
        for g in (32, 64)
        for h in (False, True)
    }
    assert len(keys) == 4
    with pytest.raises(PrecisionError, match="group size"):
        plan_precision("int4wo", "cpu", group_size=48)


# --- memory estimates ------------------------------------------------------------------------------


def test_geochat7b_estimates_order() -> None:
    cfg = geochat7b_config()
    est = {p: estimate_weight_bytes(cfg, p) for p in ("bf16", "int8", "int8wo", "fp8", "nf4", "int4wo")}
    assert est["bf16"].total_bytes > est["int8wo"].total_bytes > est["int4wo"].total_bytes
    # the same quantized linears as bitsandbytes (everything but vision tower, projector, lm_head)
    assert est["int8wo"].n_quantized_params == est["int8"].n_quantized_params > 6e9
    assert est["int4wo"].n_quantized_params == est["nf4"].n_quantized_params
    # int4wo's scale+zero per 128 weights (bf16) cost more than nf4's double-quantized absmax
    assert est["int4wo"].quant_state_bytes > est["nf4"].quant_state_bytes
    assert est["fp8"].total_bytes == pytest.approx(est["int8wo"].total_bytes, rel=0.01)


# --- the compiled path: what runs on the CPU -------------------------------------------------------


@pytest.mark.parametrize(("n", "want"), [(1, 1), (2, 2), (3, 4), (5, 8), (8, 8), (9, 16), (33, 64), (64, 64)])
def test_bucket_size(n: int, want: int) -> None:
    assert bucket_size(n) == want


def test_bucket_size_beyond_and_bad() -> None:
    assert bucket_size(65) == 128
    assert bucket_size(3, (2, 6)) == 6
    assert all(bucket_size(b) == b for b in COMPILED_BATCH_BUCKETS)
    for bad in (0, -1):
        with pytest.raises(ConfigError):
            bucket_size(bad)


# --- loading the tiny model ------------------------------------------------------------------------


@pytest.fixture(scope="module")
def loaded_models(tiny_converted_dir: Path, tmp_path_factory: pytest.TempPathFactory):
    cache = tmp_path_factory.mktemp("torchao-cache")
    made: dict[str, object] = {}

    def get(precision: str):
        if precision not in made:
            made[precision] = load_model(_spec(tiny_converted_dir, precision, cache_dir=cache))
        return made[precision]

    return get


def test_fp8_load_on_the_cpu_is_a_precision_error(tiny_converted_dir: Path) -> None:
    with pytest.raises(PrecisionError, match=r"8\.9"):
        load_model(LoadSpec(tiny_converted_dir, "fp8", "cpu"))


@pytest.mark.parametrize("precision", TORCHAO_CPU)
def test_quantized_layers_are_exactly_the_language_models_linears(loaded_models, precision: str) -> None:
    loaded = loaded_models(precision)
    model = loaded.model
    quantized = {
        n for n, m in model.named_modules() if isinstance(getattr(m, "weight", None), TorchAOBaseTensor)
    }
    lm_linears = {
        n
        for n, m in model.named_modules()
        if n.startswith("model.language_model.") and isinstance(m, torch.nn.Linear)
    }
    assert lm_linears and quantized == lm_linears
    for name, param in model.named_parameters():
        if any(part in SKIPPED for part in name.split(".")):
            assert not isinstance(param, TorchAOBaseTensor), name
            assert param.dtype is loaded.dtype
    assert type(model.lm_head.weight) is torch.nn.Parameter
    assert check_quantized_layout(model, Precision(precision)) == len(lm_linears)
    assert loaded.quant_state_bytes > 0
    assert loaded.weight_bytes < load_model_fp32_bytes(loaded)


def load_model_fp32_bytes(loaded) -> int:
    return sum(p.numel() for p in loaded.model.parameters()) * 4


@pytest.mark.parametrize("precision", TORCHAO_CPU)
def test_estimate_matches_the_loaded_weights(loaded_models, tiny_converted_dir: Path, precision: str) -> None:
    loaded = loaded_models(precision)
    est = estimate_weight_bytes(tiny_converted_dir, precision, compute_dtype=loaded.dtype, group_size=GROUP)
    assert est.param_bytes == loaded.param_bytes
    assert est.quant_state_bytes == loaded.quant_state_bytes


def test_layout_check_catches_a_quantized_skip_module(loaded_models) -> None:
    model = loaded_models("int8wo").model
    saved = model.lm_head.weight
    q_weight = model.model.language_model.layers[0].mlp.up_proj.weight
    try:
        model.lm_head.weight = q_weight
        with pytest.raises(ModelError, match="lm_head"):
            check_quantized_layout(model, Precision.INT8WO)
    finally:
        model.lm_head.weight = saved


@pytest.mark.parametrize("precision", TORCHAO_CPU)
def test_logits_within_tolerance_of_fp32(loaded_models, tiny_converted_dir: Path, precision: str) -> None:
    ref = load_model(LoadSpec(tiny_converted_dir, "fp32", "cpu"))
    gen = GeoChatGenerator(ref)
    reqs = _requests(2)
    inputs = ref.processor(
        images=[expand_to_square(r.image) for r in reqs],
        text=[gen.build_prompt(r) for r in reqs],
        padding=True,
        return_tensors="pt",
    )
    with torch.inference_mode():
        want = ref.model(**inputs).logits[:, -1, :].float()
        got = loaded_models(precision).model(**inputs).logits[:, -1, :].float()
    scale = float(want.abs().max())
    err = float((got - want).abs().max())
    assert err <= LOGIT_TOLERANCE[precision] * scale, (err, scale)
    assert err > 0  # it really is quantized


@pytest.mark.parametrize("precision", TORCHAO_CPU)
def test_batched_equals_one_at_a_time(loaded_models, precision: str) -> None:
    gen = GeoChatGenerator(loaded_models(precision))
    reqs = _requests(3)
    batched = gen.generate(reqs, max_new_tokens=6, batch_size=3)
    single = gen.generate(reqs, max_new_tokens=6, batch_size=1)
    assert [r.token_ids for r in batched] == [r.token_ids for r in single]
    assert [r.batch_size for r in batched] == [3, 3, 3]


@pytest.mark.parametrize("precision", TORCHAO_CPU)
def test_cache_round_trip(tiny_converted_dir: Path, tmp_path: Path, precision: str) -> None:
    model_dir = Path(shutil.copytree(tiny_converted_dir, tmp_path / "model"))
    first = load_model(_spec(model_dir, precision))
    assert not first.from_cache and first.cache_path is not None
    assert any(first.cache_path.glob("*.safetensors"))
    second = load_model(_spec(model_dir, precision))
    assert second.from_cache and second.cache_path == first.cache_path
    assert (second.param_bytes, second.quant_state_bytes) == (first.param_bytes, first.quant_state_bytes)
    assert check_quantized_layout(second.model, Precision(precision)) > 0
    for (name, a), (_, b) in zip(
        first.model.state_dict().items(), second.model.state_dict().items(), strict=True
    ):
        if isinstance(a, TorchAOBaseTensor):
            for inner in a.__tensor_flatten__()[0]:
                assert torch.equal(getattr(a, inner), getattr(b, inner)), name
        else:
            assert torch.equal(a, b), name
    reqs = _requests(2)
    answers = [
        [r.token_ids for r in GeoChatGenerator(m).generate(reqs, max_new_tokens=5, batch_size=2)]
        for m in (first, second)
    ]
    assert answers[0] == answers[1]


def test_group_size_must_divide_the_inputs(tiny_converted_dir: Path) -> None:
    with pytest.raises(PrecisionError, match="group size 128 does not divide"):
        load_model(LoadSpec(tiny_converted_dir, "int4wo", "cpu", group_size=128, use_cache=False))


def test_compiled_path_is_refused_on_the_cpu(loaded_models) -> None:
    with pytest.raises(ConfigError) as info:
        GeoChatGenerator(loaded_models("int8wo"), compiled=True)
    assert "CUDA" in str(info.value) and "\n" not in str(info.value)


def test_shape_padding_keeps_the_answers(loaded_models) -> None:
    """The compiled path's padding (rows to a bucket, prompt to a multiple of 64 tokens) runs on the CPU
    without the static cache: answers equal the unpadded ones; the padded rows are dropped."""
    loaded = loaded_models("int8wo")
    plain = GeoChatGenerator(loaded)
    padded = GeoChatGenerator(loaded)
    padded.pad_shapes = True
    reqs = _requests(3)
    want = plain.generate(reqs, max_new_tokens=5, batch_size=3)
    got = padded.generate(reqs, max_new_tokens=5, batch_size=3)
    assert [r.token_ids for r in got] == [r.token_ids for r in want]
    assert [r.index for r in got] == [0, 1, 2]
    assert [r.input_tokens for r in got] == [r.input_tokens for r in want]
    ((rows, tokens),) = padded.first_shape_seconds
    assert rows == bucket_size(3) == 4
    assert tokens % COMPILED_SEQ_MULTIPLE == 0


# --- library messages routed to the log ------------------------------------------------------------


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-W", "ignore", "-c", code], capture_output=True, text=True, timeout=300, check=True
    )


_BNB_REIMPORT = """
import importlib, logging, sys
{setup}
import bitsandbytes, bitsandbytes.functional as F
sys.modules["kernels"] = None  # the optional Hub-kernel package, absent (as offline)
F.has_avx512bf16 = lambda: True  # the CPUs where bitsandbytes tries the Hub kernel
del sys.modules["bitsandbytes.backends.cpu.ops"]
importlib.import_module("bitsandbytes.backends.cpu.ops")
"""


@pytest.mark.slow
def test_bitsandbytes_cpu_kernel_message_goes_to_the_log() -> None:
    """bitsandbytes' own import-time warning, re-emitted at its source: shown without the routing,
    only in the log (DEBUG) with it."""
    bare = _run(_BNB_REIMPORT.format(setup=""))
    assert "Failed to load CPU gemm_4bit_forward" in bare.stderr  # the message exists and is emitted
    logged = _run(
        _BNB_REIMPORT.format(
            setup="import rsvg_desktop.core.model\n"
            "logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format='%(levelname)s %(message)s')"
        )
    )
    assert "DEBUG Failed to load CPU gemm_4bit_forward" in logged.stdout
    assert "gemm_4bit_forward" not in logged.stderr


def test_int8_cast_notice_goes_to_the_log(caplog: pytest.LogCaptureFixture) -> None:
    import rsvg_desktop.core.model  # noqa: F401  (installs the routing)

    source = logging.getLogger("bitsandbytes.autograd._functions")
    with caplog.at_level(logging.INFO):
        source.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "fp32")
        source.warning("something else bitsandbytes says")
    assert [r.getMessage() for r in caplog.records] == ["something else bitsandbytes says"]
    with caplog.at_level(logging.DEBUG):
        source.warning("MatMul8bitLt: inputs will be cast from %s to float16 during quantization", "fp32")
    assert caplog.records[-1].levelno == logging.DEBUG


@pytest.mark.slow
def test_torchao_import_is_quiet() -> None:
    out = _run("import rsvg_desktop.core.model, torchao, torchao.quantization")
    assert "Failed to load" not in out.stderr
    assert "Detected no triton" not in out.stderr
    assert "is an Enum subclass" not in out.stderr
