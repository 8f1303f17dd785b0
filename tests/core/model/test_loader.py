"""Loading the tiny converted GeoChat at every precision on the CPU, the quantization cache, estimates."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import bitsandbytes as bnb
import numpy as np
import pytest
import torch

from rsvg_desktop.core.model.generate import GenerationRequest, GeoChatGenerator
from rsvg_desktop.core.model.loader import (
    CACHE_DIRNAME,
    CACHE_RECORD,
    LoadSpec,
    load_model,
    read_random_weights_flag,
)
from rsvg_desktop.core.model.memory import estimate_weight_bytes
from rsvg_desktop.core.model.precision import Precision
from rsvg_desktop.errors import CheckpointError, ModelNotFoundError, PrecisionError

SKIPPED = ("vision_tower", "multi_modal_projector", "lm_head")


def _is_bnb(module: torch.nn.Module) -> bool:
    return isinstance(module, bnb.nn.Linear8bitLt | bnb.nn.Linear4bit)


@pytest.fixture
def model_copy(tiny_converted_dir: Path, tmp_path: Path) -> Path:
    """A private copy of the converted tiny model (the cache writes next to it)."""
    return Path(shutil.copytree(tiny_converted_dir, tmp_path / "model"))


def _requests(n: int = 2) -> list[GenerationRequest]:
    rng = np.random.default_rng(7)
    return [
        GenerationRequest(rng.integers(0, 256, (504, 504, 3), dtype=np.uint8), "refer", f"ships {i}")
        for i in range(n)
    ]


def _answers(loaded) -> list[tuple[int, ...]]:
    results = GeoChatGenerator(loaded).generate(_requests(), max_new_tokens=6, batch_size=2)
    return [r.token_ids for r in results]


#: bitsandbytes and unquantized precisions (torchao's are tested in test_torchao.py).
# q4cal loads only from a calibration (tests/core/model/test_calibrate.py covers it end to end)
NOT_TORCHAO = [p.value for p in Precision if p.backend != "torchao" and not p.needs_calibration]


@pytest.mark.parametrize("precision", NOT_TORCHAO)
def test_every_precision_loads_on_cpu(tiny_converted_dir: Path, tmp_path: Path, precision: str) -> None:
    spec = LoadSpec(tiny_converted_dir, precision, "cpu", cache_dir=tmp_path / "cache")
    loaded = load_model(spec)
    model = loaded.model
    assert loaded.precision is Precision(precision)
    assert loaded.device == "cpu"
    assert loaded.device_name == "CPU"
    assert loaded.random_weights is True
    assert loaded.load_seconds > 0
    assert not model.training
    assert loaded.param_bytes == model.get_memory_footprint()
    assert loaded.dtype is loaded.plan.dtype
    assert model.model.vision_tower.embeddings.position_embedding.weight.dtype is loaded.dtype

    quantized = {name: m for name, m in model.named_modules() if _is_bnb(m)}
    if Precision(precision).quantized:
        want = bnb.nn.Linear8bitLt if precision == "int8" else bnb.nn.Linear4bit
        lm_linears = [
            name
            for name, m in model.named_modules()
            if name.startswith("model.language_model.") and isinstance(m, torch.nn.Linear)
        ]
        assert lm_linears, "the language model has linear layers"
        assert set(lm_linears) == set(quantized)
        assert all(isinstance(m, want) for m in quantized.values())
        if want is bnb.nn.Linear4bit:  # nf4 and fp4 share the class: the data type must be the one asked
            assert {m.weight.quant_type for m in quantized.values()} == {precision}
        assert loaded.quant_state_bytes > 0
    else:
        assert not quantized
        assert loaded.quant_state_bytes == 0
    for name, module in model.named_modules():
        if any(part in SKIPPED for part in name.split(".")):
            assert not _is_bnb(module), name
    assert type(model.lm_head) is torch.nn.Linear
    assert type(model.model.multi_modal_projector.linear_1) is torch.nn.Linear


def test_fp16_on_cpu_falls_back_to_fp32_with_a_note(tiny_converted_dir: Path) -> None:
    loaded = load_model(LoadSpec(tiny_converted_dir, "fp16", "cpu"))
    assert loaded.dtype is torch.float32
    assert loaded.model.dtype is torch.float32
    assert any("fp16" in n and "fp32" in n for n in loaded.notes)


def test_quantized_4bit_compute_dtype(tiny_converted_dir: Path, tmp_path: Path) -> None:
    loaded = load_model(LoadSpec(tiny_converted_dir, "nf4", "cpu", use_cache=False))
    layer = loaded.model.model.language_model.layers[0].mlp.up_proj
    assert layer.compute_dtype is torch.float32
    assert layer.weight.quant_state.quant_type == "nf4"
    assert layer.weight.quant_state.nested  # double quantization by default
    plain = load_model(LoadSpec(tiny_converted_dir, "fp4", "cpu", use_cache=False, double_quant=False))
    qs = plain.model.model.language_model.layers[0].mlp.up_proj.weight.quant_state
    assert qs.quant_type == "fp4"
    assert not qs.nested


def test_int8_threshold_reaches_the_layers(tiny_converted_dir: Path) -> None:
    loaded = load_model(LoadSpec(tiny_converted_dir, "int8", "cpu", use_cache=False, int8_threshold=3.5))
    layer = loaded.model.model.language_model.layers[0].self_attn.q_proj
    assert layer.state.threshold == 3.5


# --- estimates against the loaded model ----------------------------------------------------------


@pytest.mark.parametrize("precision", NOT_TORCHAO)
def test_estimate_matches_loaded_footprint(tiny_converted_dir: Path, precision: str) -> None:
    loaded = load_model(LoadSpec(tiny_converted_dir, precision, "cpu", use_cache=False))
    est = estimate_weight_bytes(tiny_converted_dir, precision, compute_dtype=loaded.dtype)
    # the rules are exact for this transformers/bitsandbytes; allow 2 % for other versions
    assert est.param_bytes == pytest.approx(loaded.param_bytes, rel=0.02)
    assert est.quant_state_bytes == pytest.approx(loaded.quant_state_bytes, rel=0.02, abs=64)
    assert est.total_bytes == pytest.approx(loaded.weight_bytes, rel=0.02)


def test_footprint_orders_bf16_int8_nf4(tiny_converted_dir: Path) -> None:
    # Compared at one dtype for the unquantized parts (bf16, as on a GPU): with the CPU's default fp32
    # compute dtype the tiny model's unquantized parts (embeddings, vision tower) would dominate.
    sizes = {}
    for precision in ("bf16", "int8", "nf4"):
        spec = LoadSpec(
            tiny_converted_dir,
            precision,
            "cpu",
            use_cache=False,
            compute_dtype=None if precision == "bf16" else "bf16",
        )
        loaded = load_model(spec)
        assert loaded.dtype is torch.bfloat16
        sizes[precision] = loaded.param_bytes
    assert sizes["bf16"] > sizes["int8"] > sizes["nf4"]


# --- cache -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("precision", ["int8", "nf4", "fp4"])
def test_cache_second_load_is_from_cache_and_equal(model_copy: Path, precision: str) -> None:
    first = load_model(LoadSpec(model_copy, precision, "cpu"))
    assert not first.from_cache
    assert first.cache_path is not None
    assert first.cache_path.parent == model_copy / CACHE_DIRNAME
    assert first.cache_path.name.startswith(f"{precision}-")
    record = json.loads((first.cache_path / CACHE_RECORD).read_text())
    assert record["options"]["precision"] == precision
    assert "model-00001-of-00002.safetensors" in record["source"]["files"]
    assert record["source"]["manifest_sha256"]

    second = load_model(LoadSpec(model_copy, precision, "cpu"))
    assert second.from_cache
    assert second.cache_path == first.cache_path
    assert second.param_bytes == first.param_bytes
    assert second.quant_state_bytes == first.quant_state_bytes
    for name, module in second.model.named_modules():
        if name.startswith("model.language_model.layers.0.mlp.up_proj"):
            assert _is_bnb(module)
        if any(part in SKIPPED for part in name.split(".")):
            assert not _is_bnb(module), name
    assert _answers(first) == _answers(second)


def test_cache_rebuilt_when_source_changes(model_copy: Path) -> None:
    first = load_model(LoadSpec(model_copy, "nf4", "cpu"))
    assert not first.from_cache
    shard = next(model_copy.glob("*.safetensors"))
    st = shard.stat()
    os.utime(shard, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    rebuilt = load_model(LoadSpec(model_copy, "nf4", "cpu"))
    assert not rebuilt.from_cache
    assert any("stale" in n for n in rebuilt.notes)
    again = load_model(LoadSpec(model_copy, "nf4", "cpu"))
    assert again.from_cache


def test_cache_rebuilt_when_manifest_changes(model_copy: Path) -> None:
    load_model(LoadSpec(model_copy, "int8", "cpu"))
    manifest = model_copy / "rsvg_manifest.json"
    data = json.loads(manifest.read_text())
    data["note"] = "re-converted"
    manifest.write_text(json.dumps(data))
    assert not load_model(LoadSpec(model_copy, "int8", "cpu")).from_cache


def test_cache_keyed_on_options(model_copy: Path, tmp_path: Path) -> None:
    cache = tmp_path / "elsewhere"
    a = load_model(LoadSpec(model_copy, "nf4", "cpu", cache_dir=cache))
    b = load_model(LoadSpec(model_copy, "nf4", "cpu", cache_dir=cache, double_quant=False))
    c = load_model(LoadSpec(model_copy, "int8", "cpu", cache_dir=cache, int8_threshold=4.0))
    assert not (a.from_cache or b.from_cache or c.from_cache)
    assert len({a.cache_path, b.cache_path, c.cache_path}) == 3
    assert all(p.parent == cache for p in (a.cache_path, b.cache_path, c.cache_path))
    assert not (model_copy / CACHE_DIRNAME).exists()


def test_incomplete_cache_entry_is_rebuilt(model_copy: Path) -> None:
    first = load_model(LoadSpec(model_copy, "nf4", "cpu"))
    for f in first.cache_path.glob("*.safetensors"):
        f.unlink()
    again = load_model(LoadSpec(model_copy, "nf4", "cpu"))
    assert not again.from_cache
    assert load_model(LoadSpec(model_copy, "nf4", "cpu")).from_cache


def test_no_cache_when_disabled_or_unquantized(model_copy: Path) -> None:
    loaded = load_model(LoadSpec(model_copy, "nf4", "cpu", use_cache=False))
    assert loaded.cache_path is None
    load_model(LoadSpec(model_copy, "bf16", "cpu"))
    assert not (model_copy / CACHE_DIRNAME).exists()


def test_unwritable_cache_only_warns(model_copy: Path, tmp_path: Path) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("x")
    loaded = load_model(LoadSpec(model_copy, "nf4", "cpu", cache_dir=blocker / "cache"))
    assert not loaded.from_cache
    assert loaded.cache_path is None
    assert any("not written" in n for n in loaded.notes)


# --- errors and metadata ---------------------------------------------------------------------------


def test_bad_precision_or_device_in_spec(tiny_converted_dir: Path) -> None:
    with pytest.raises(PrecisionError):
        LoadSpec(tiny_converted_dir, "int4")
    with pytest.raises(PrecisionError):
        load_model(LoadSpec(tiny_converted_dir, "bf16", "npu"))
    if not torch.cuda.is_available():
        with pytest.raises(PrecisionError):
            load_model(LoadSpec(tiny_converted_dir, "nf4", "cuda:0"))


def test_cpu_load_that_cannot_fit_is_refused_before_reading_weights(
    tiny_converted_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from rsvg_desktop.core.model import loader
    from rsvg_desktop.core.model.memory import estimate_weight_bytes

    need = estimate_weight_bytes(tiny_converted_dir, "nf4", compute_dtype=torch.float32).total_bytes
    monkeypatch.setattr(loader, "available_ram_bytes", lambda: need - 1)
    calls: list[object] = []
    monkeypatch.setattr(loader, "_from_pretrained", lambda *a, **k: calls.append(a))
    with pytest.raises(PrecisionError) as err:
        load_model(LoadSpec(tiny_converted_dir, "nf4", "cpu", use_cache=False))
    text = str(err.value)
    assert text.startswith(f"{tiny_converted_dir}: nf4 needs ")
    assert "GiB of memory for its weights on the CPU" in text and "choose a smaller precision" in text
    assert "\n" not in text and not calls
    # Exactly enough is enough.
    monkeypatch.setattr(loader, "available_ram_bytes", lambda: need)
    with pytest.raises(AttributeError):  # gets past the check, into the (stubbed) load
        load_model(LoadSpec(tiny_converted_dir, "nf4", "cpu", use_cache=False))
    assert calls


def test_missing_or_unconverted_model(tmp_path: Path, tiny_geochat_dir: Path) -> None:
    with pytest.raises(ModelNotFoundError):
        load_model(LoadSpec(tmp_path / "nothing", "bf16", "cpu"))
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(ModelNotFoundError):
        load_model(LoadSpec(empty, "bf16", "cpu"))
    with pytest.raises(CheckpointError, match="convert"):
        load_model(LoadSpec(tiny_geochat_dir, "bf16", "cpu"))


def test_random_weights_flag(model_copy: Path) -> None:
    assert read_random_weights_flag(model_copy)
    manifest = model_copy / "rsvg_manifest.json"
    data = json.loads(manifest.read_text())
    data["random_weights"] = False
    manifest.write_text(json.dumps(data))
    cfg = json.loads((model_copy / "config.json").read_text())
    cfg.pop("rsvg_random_weights", None)
    (model_copy / "config.json").write_text(json.dumps(cfg))
    assert not read_random_weights_flag(model_copy)


def test_progress_and_describe(tiny_converted_dir: Path) -> None:
    seen: list[tuple[str, float]] = []
    spec = LoadSpec(tiny_converted_dir, "bf16", "cpu")
    loaded = load_model(spec, progress=lambda s, f: seen.append((s, f)))
    assert seen[0][1] == 0.0
    assert seen[-1] == ("ready", 1.0)
    text = loaded.describe()
    assert "BF16" in text and "CPU" in text and "RANDOM" in text


def test_truncated_weights_give_checkpoint_error(tiny_converted_dir, tmp_path):
    """A damaged safetensors shard is a CheckpointError naming the folder, not a raw library error."""
    import shutil

    from rsvg_desktop.core.model.loader import LoadSpec, load_model
    from rsvg_desktop.errors import CheckpointError

    model = tmp_path / "m"
    shutil.copytree(tiny_converted_dir, model)
    shard = sorted(model.glob("*.safetensors"))[0]
    shard.write_bytes(shard.read_bytes()[:1000])
    with pytest.raises(CheckpointError, match=str(model)):
        load_model(LoadSpec(model, "fp32", "cpu", use_cache=False))
