"""Precision and device: what the user asks for → how the model is loaded.

One function, :func:`plan_precision`, turns a precision name and a device string into a
:class:`PrecisionPlan`: the torch device, the dtype of every unquantized weight (vision tower, projector,
embeddings, norms, ``lm_head``), the bitsandbytes settings of the quantized language-model layers, and
the notes that explain any fallback. The loader (:mod:`rsvg_desktop.core.model.loader`) is the only user.

Precisions
    ``bf16``, ``fp16``, ``fp32``: every weight in that dtype.
    ``int8``: LLM.int8 (bitsandbytes ``Linear8bitLt``), outlier threshold ``int8_threshold`` (6.0).
    ``nf4``, ``fp4``: bitsandbytes 4-bit (``Linear4bit``), blocks of 64, double quantization on by
    default.
    ``int8wo``: torchao int8 weight-only (one int8 per weight, one scale per output row; activations stay
    at the compute dtype).
    ``int4wo``: torchao int4 weight-only, groups of ``group_size`` (128) weights along the input with a
    scale and a zero point each (``Int4WeightOnlyConfig``, tinygemm's tile-packed layout, on CUDA; on the
    CPU torchao's CPU layout, ``PrototypeInt4WeightOnlyConfig``, whose kernel is
    ``_weight_int4pack_mm_for_cpu``). ``int4_hqq`` chooses the scales and zero points with HQQ.
    ``fp8``: torchao float8 (e4m3) weights and dynamic float8 activations, one scale per row (per
    tensor on compute capability 8.9), CUDA of compute capability ≥ 8.9 only; elsewhere a one-line
    PrecisionError.
    The vision tower, the multimodal projector and ``lm_head`` are never quantized (only the language
    model's linear layers are).
    ``q4cal``: bitsandbytes NF4 exactly as ``nf4`` (same kernels, same memory), on weights that
    ``rsvg model calibrate`` adjusted first (:mod:`rsvg_desktop.core.model.calibrate`); it only loads
    from its cache entry, which the calibration writes.

Dtypes chosen per device (the *compute dtype*)
    CUDA with bf16 support (Ampere and newer): ``bf16`` → bf16, ``fp16`` → fp16, ``nf4``/``fp4`` →
    bf16, ``int8`` → fp16 (LLM.int8's matmul runs in fp16 and casts anything else to fp16 first).
    Older CUDA: bf16 is replaced by fp16 (with a note), for ``bf16`` too.
    CPU: ``bf16`` stays bf16 when a bf16 matmul works (it does in torch ≥ 2.1; a note says when the
    CPU has no native bf16 and it is emulated, i.e. slow); ``fp16`` falls back to fp32 (fp16 kernels
    on the CPU are slower than fp32 and some ops lack them; fp32 holds every fp16 value, so answers are
    at least as exact); ``int8``/``nf4``/``fp4``/``int8wo``/``int4wo`` compute in fp32 (measured on an
    AVX2 CPU: 4-bit generation was 3x faster with fp32 than with bf16 compute).
    torchao on CUDA: ``int8wo``/``int4wo``/``fp8`` compute in bf16 (fp16 without bf16 support).
    Every fallback is logged as a warning and listed in :attr:`PrecisionPlan.notes`.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import torch

from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE, PLANNED_PRECISIONS, Precision
from rsvg_desktop.errors import PrecisionError

__all__ = [
    "DEFAULT_INT4_GROUP_SIZE",
    "DEFAULT_INT8_THRESHOLD",
    "FP8_MIN_CAPABILITY",
    "INT4_GROUP_SIZES",
    "PLANNED_PRECISIONS",
    "SKIP_MODULES",
    "DeviceInfo",
    "Precision",
    "PrecisionPlan",
    "bnb_config",
    "cpu_bf16_native",
    "cpu_matmul_works",
    "dtype_name",
    "is_skipped_module",
    "parse_dtype",
    "plan_precision",
    "resolve_device",
    "skip_module_patterns",
    "torchao_config",
]

log = logging.getLogger(__name__)

DEFAULT_INT8_THRESHOLD = 6.0
#: int4wo: weights per scale/zero-point group (along the input dimension), and the sizes torchao's
#: kernels take.
INT4_GROUP_SIZES: tuple[int, ...] = (32, 64, 128, 256)
#: fp8 needs float8 tensor cores: Ada (8.9), Hopper (9.0) and newer.
FP8_MIN_CAPABILITY = (8, 9)
#: Module names (last path component) that are never quantized.
SKIP_MODULES: tuple[str, ...] = ("vision_tower", "multi_modal_projector", "lm_head")
_DTYPES = {
    "bf16": torch.bfloat16,
    "bfloat16": torch.bfloat16,
    "fp16": torch.float16,
    "float16": torch.float16,
    "fp32": torch.float32,
    "float32": torch.float32,
}


def parse_dtype(value: str | torch.dtype) -> torch.dtype:
    """A floating dtype from ``bf16``/``fp16``/``fp32`` (or torch's names); PrecisionError otherwise."""
    if isinstance(value, torch.dtype):
        if value not in (torch.bfloat16, torch.float16, torch.float32):
            raise PrecisionError(f"unsupported compute dtype {value}")
        return value
    try:
        return _DTYPES[str(value).strip().lower()]
    except KeyError:
        raise PrecisionError(f"unknown compute dtype {value!r}; valid: bf16, fp16, fp32") from None


def dtype_name(dtype: torch.dtype) -> str:
    """``bf16``/``fp16``/``fp32`` for a floating dtype (``str(dtype)`` for anything else)."""
    return {torch.bfloat16: "bf16", torch.float16: "fp16", torch.float32: "fp32"}.get(dtype, str(dtype))


# --- devices ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class DeviceInfo:
    """A resolved device: ``torch_device`` (``cpu`` or ``cuda:N``) and a name for the user."""

    torch_device: str
    name: str
    bf16_supported: bool
    #: CUDA compute capability (major, minor); None on the CPU.
    capability: tuple[int, int] | None = None

    @property
    def is_cuda(self) -> bool:
        return self.torch_device.startswith("cuda")

    @property
    def index(self) -> int | None:
        return int(self.torch_device.split(":")[1]) if self.is_cuda else None


def resolve_device(device: str = "auto") -> DeviceInfo:
    """``auto`` | ``cpu`` | ``cuda`` | ``cuda:N`` → DeviceInfo; PrecisionError when unknown or absent.

    ``auto`` picks the first CUDA device when there is one, else the CPU. ``name`` is the GPU's model
    name (``torch.cuda.get_device_name``) or ``"CPU"``.
    """
    if not isinstance(device, str):
        raise PrecisionError(f"device must be a string, not {type(device).__name__}")
    key = device.strip().lower()
    if key == "auto":
        key = "cuda:0" if torch.cuda.is_available() else "cpu"
    if key == "cpu":
        return DeviceInfo("cpu", "CPU", cpu_matmul_works(torch.bfloat16))
    if key == "cuda" or key.startswith("cuda:"):
        index_text = key.partition(":")[2] or "0"
        if not index_text.isdigit():
            raise PrecisionError(f"bad device {device!r}: expected cuda:N with N a number")
        if not torch.cuda.is_available():
            raise PrecisionError(
                f"device {device!r} requested but CUDA is not available (use 'cpu' or 'auto')"
            )
        index = int(index_text)
        count = torch.cuda.device_count()
        if index >= count:
            raise PrecisionError(f"device {device!r} requested but only {count} CUDA device(s) exist")
        with torch.cuda.device(index):
            bf16 = bool(torch.cuda.is_bf16_supported())
        major, minor = torch.cuda.get_device_capability(index)
        return DeviceInfo(f"cuda:{index}", torch.cuda.get_device_name(index), bf16, (major, minor))
    raise PrecisionError(f"unknown device {device!r}; valid devices: auto, cpu, cuda, cuda:N")


@functools.cache
def cpu_matmul_works(dtype: torch.dtype) -> bool:
    """True when a small matmul in ``dtype`` runs on the CPU and agrees with fp32."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(32, 48, generator=gen)
    b = torch.randn(48, 16, generator=gen)
    try:
        got = (a.to(dtype) @ b.to(dtype)).float()
        lin = torch.nn.functional.linear(a.to(dtype), b.t().to(dtype)).float()
    except (RuntimeError, NotImplementedError) as exc:  # pragma: no cover - depends on the build
        log.info("CPU matmul in %s unavailable: %s", dtype, exc)
        return False
    want = a @ b
    tol = 0.05 * float(want.abs().max())
    return bool((got - want).abs().max() <= tol and (lin - want).abs().max() <= tol)


@functools.cache
def cpu_bf16_native() -> bool:
    """True when oneDNN reports native bf16 on this CPU (AVX512-BF16 or AMX); False when unknown."""
    try:
        return bool(torch.ops.mkldnn._is_mkldnn_bf16_supported())
    except (AttributeError, RuntimeError):  # pragma: no cover - depends on the build
        return False


# --- the plan ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class PrecisionPlan:
    """How to load a model: device, dtype of unquantized weights, quantization settings, notes.

    ``dtype`` is the dtype of every unquantized weight and of the activations (the 4-bit compute
    dtype). ``quant`` holds the :class:`transformers.BitsAndBytesConfig` keyword arguments (empty for
    unquantized precisions) except ``llm_int8_skip_modules``, which :func:`bnb_config` adds; for the
    torchao precisions it holds the settings :func:`torchao_config` builds its config from
    (``config``: the torchao config class, plus ``group_size``, ``algorithm``, ``granularity``).
    """

    precision: Precision
    device: DeviceInfo
    dtype: torch.dtype
    int8_threshold: float = DEFAULT_INT8_THRESHOLD
    double_quant: bool = True
    quant: Mapping[str, Any] = field(default_factory=dict)
    notes: tuple[str, ...] = ()
    group_size: int = DEFAULT_INT4_GROUP_SIZE

    @property
    def quantized(self) -> bool:
        return self.precision.quantized

    @property
    def backend(self) -> str:
        """``bitsandbytes``, ``torchao`` or ``none``."""
        return self.precision.backend

    def options(self) -> dict[str, Any]:
        """The settings that change the loaded weights (what a quantization cache is keyed on)."""
        out: dict[str, Any] = {
            "precision": self.precision.value,
            "dtype": dtype_name(self.dtype),
            "device_type": "cuda" if self.device.is_cuda else "cpu",
        }
        if self.precision is Precision.INT8:
            out["int8_threshold"] = float(self.int8_threshold)
        if self.precision.is_4bit:
            out["double_quant"] = bool(self.double_quant)
            out["blocksize"] = 64
        if self.backend == "torchao":
            out.update({k: v for k, v in self.quant.items() if isinstance(v, str | int | float)})
        if self.quantized:
            out["skip_modules"] = list(SKIP_MODULES)
        return out


def plan_precision(
    precision: str | Precision,
    device: str | DeviceInfo = "auto",
    *,
    int8_threshold: float = DEFAULT_INT8_THRESHOLD,
    double_quant: bool = True,
    compute_dtype: str | torch.dtype | None = None,
    group_size: int = DEFAULT_INT4_GROUP_SIZE,
    int4_hqq: bool = False,
) -> PrecisionPlan:
    """Decide dtypes and quantization settings for ``precision`` on ``device`` (see the module doc).

    ``compute_dtype`` overrides the automatic choice of the unquantized/compute dtype for the
    quantized precisions (ignored, with a note, for bf16/fp16/fp32). ``group_size`` and ``int4_hqq``
    are int4wo's group size and HQQ choice of scales. Raises PrecisionError for an unknown precision or
    device, an unusable threshold or group size, bitsandbytes/torchao missing, or ``fp8`` on a device
    without float8 support.
    """
    prec = Precision.parse(precision)
    dev = device if isinstance(device, DeviceInfo) else resolve_device(device)
    if not isinstance(int8_threshold, int | float) or isinstance(int8_threshold, bool) or int8_threshold < 0:
        raise PrecisionError(f"int8 outlier threshold must be a number >= 0, got {int8_threshold!r}")
    if prec.backend == "torchao":
        return _plan_torchao(prec, dev, compute_dtype, group_size, int4_hqq, float(int8_threshold))
    if prec.quantized:
        return _plan_bitsandbytes(prec, dev, compute_dtype, float(int8_threshold), bool(double_quant))
    return _plan_unquantized(prec, dev, compute_dtype, float(int8_threshold), bool(double_quant))


def _note(notes: list[str], text: str) -> None:
    """Add a fallback note to ``notes`` and log it as a warning."""
    notes.append(text)
    log.warning("%s", text)


def _quantized_compute_dtype(
    dev: DeviceInfo, compute_dtype: str | torch.dtype | None, cuda_default: torch.dtype, notes: list[str]
) -> torch.dtype:
    """The compute dtype of a quantized precision: ``compute_dtype`` when given, else ``cuda_default``
    on CUDA and fp32 on the CPU; bf16 where it does not work falls back to fp16 (CUDA) or fp32 (CPU),
    fp16 on the CPU to fp32, each with a note."""
    if compute_dtype is not None:
        dtype = parse_dtype(compute_dtype)
    elif dev.is_cuda:
        dtype = cuda_default
    else:
        dtype = torch.float32
    if dev.is_cuda and dtype is torch.bfloat16 and not dev.bf16_supported:
        _note(notes, f"{dev.name} has no bf16 support: compute dtype fp16 instead of bf16")
        dtype = torch.float16
    if not dev.is_cuda and (dtype is torch.float16 or (dtype is torch.bfloat16 and not dev.bf16_supported)):
        _note(notes, f"compute dtype {dtype_name(dtype)} is not usable on this CPU: using fp32")
        dtype = torch.float32
    return dtype


def _plan_bitsandbytes(
    prec: Precision,
    dev: DeviceInfo,
    compute_dtype: str | torch.dtype | None,
    int8_threshold: float,
    double_quant: bool,
) -> PrecisionPlan:
    """int8 (LLM.int8) or 4-bit bitsandbytes: compute dtype, ``BitsAndBytesConfig`` settings, notes."""
    _require_bitsandbytes(prec)
    notes: list[str] = []
    # LLM.int8's matmul runs in fp16; 4-bit computes in bf16 where the GPU has it.
    cuda_default = torch.bfloat16 if prec is not Precision.INT8 and dev.bf16_supported else torch.float16
    dtype = _quantized_compute_dtype(dev, compute_dtype, cuda_default, notes)
    quant: dict[str, Any]
    if prec is Precision.INT8:
        quant = {"load_in_8bit": True, "llm_int8_threshold": int8_threshold}
    else:
        quant = {
            "load_in_4bit": True,
            "bnb_4bit_quant_type": prec.bnb_quant_type,
            "bnb_4bit_use_double_quant": double_quant,
            "bnb_4bit_compute_dtype": dtype,
            "bnb_4bit_quant_storage": torch.uint8,
        }
    if not dev.is_cuda:
        notes.append(f"{prec.label} on the CPU runs bitsandbytes' CPU kernels (correct but slow)")
    return PrecisionPlan(prec, dev, dtype, int8_threshold, double_quant, quant, tuple(notes))


def _plan_unquantized(
    prec: Precision,
    dev: DeviceInfo,
    compute_dtype: str | torch.dtype | None,
    int8_threshold: float,
    double_quant: bool,
) -> PrecisionPlan:
    """bf16, fp16 or fp32 for every weight, with the device's fallbacks (see the module doc)."""
    notes: list[str] = []
    if compute_dtype is not None:
        _note(notes, f"compute_dtype={compute_dtype!r} ignored: precision {prec.value} fixes the dtype")
    dtype = _UNQUANTIZED_DTYPES[prec]
    if dev.is_cuda:
        if dtype is torch.bfloat16 and not dev.bf16_supported:
            _note(notes, f"{dev.name} has no bf16 support: loading in fp16 instead of bf16")
            dtype = torch.float16
    elif dtype is torch.float16:
        _note(
            notes, "fp16 on the CPU falls back to fp32 (CPU fp16 kernels are slow or missing; fp32 is exact)"
        )
        dtype = torch.float32
    elif dtype is torch.bfloat16:
        if not dev.bf16_supported:
            _note(notes, "bf16 matmul does not work on this CPU: loading in fp32 instead of bf16")
            dtype = torch.float32
        elif not cpu_bf16_native():
            _note(
                notes, "this CPU has no native bf16 (AVX512-BF16/AMX): bf16 is emulated and slower than fp32"
            )
    return PrecisionPlan(prec, dev, dtype, int8_threshold, double_quant, {}, tuple(notes))


_UNQUANTIZED_DTYPES = {
    Precision.BF16: torch.bfloat16,
    Precision.FP16: torch.float16,
    Precision.FP32: torch.float32,
}


def _plan_torchao(
    prec: Precision,
    dev: DeviceInfo,
    compute_dtype: str | torch.dtype | None,
    group_size: int,
    int4_hqq: bool,
    int8_threshold: float,
) -> PrecisionPlan:
    notes: list[str] = []
    if prec is Precision.FP8:
        _require_fp8_device(dev)
    if isinstance(group_size, bool) or group_size not in INT4_GROUP_SIZES:
        raise PrecisionError(
            f"int4 group size must be one of {', '.join(map(str, INT4_GROUP_SIZES))}, got {group_size!r}"
        )
    _require_torchao(prec)
    cuda_default = torch.bfloat16 if dev.bf16_supported else torch.float16
    dtype = _quantized_compute_dtype(dev, compute_dtype, cuda_default, notes)
    quant: dict[str, Any]
    if prec is Precision.INT8WO:
        quant = {"config": "Int8WeightOnlyConfig", "granularity": "per_row"}
    elif prec is Precision.INT4WO:
        quant = {
            "config": "Int4WeightOnlyConfig" if dev.is_cuda else "PrototypeInt4WeightOnlyConfig",
            "layout": "tile_packed_to_4d" if dev.is_cuda else "cpu_opaque",
            "group_size": int(group_size),
            "algorithm": "hqq" if int4_hqq else "tinygemm",
        }
    else:
        cap = dev.capability or FP8_MIN_CAPABILITY
        quant = {
            "config": "Float8DynamicActivationFloat8WeightConfig",
            "granularity": "per_row" if cap >= (9, 0) else "per_tensor",
        }
    if not dev.is_cuda:
        notes.append(f"{prec.label} on the CPU runs torchao's CPU kernels")
    return PrecisionPlan(
        prec, dev, dtype, int8_threshold, True, quant, tuple(notes), group_size=int(group_size)
    )


def _require_fp8_device(dev: DeviceInfo) -> None:
    """PrecisionError unless ``dev`` is a CUDA GPU of compute capability 8.9 or newer."""
    cap = dev.capability
    if not dev.is_cuda or cap is None or cap < FP8_MIN_CAPABILITY:
        where = (
            "the CPU"
            if not dev.is_cuda
            else f"{dev.name} (compute capability {cap[0]}.{cap[1]})"
            if cap
            else dev.name
        )
        raise PrecisionError(
            f"precision fp8 needs a CUDA GPU of compute capability 8.9 or newer (Ada, Hopper), "
            f"not {where}: use int8wo or int4wo"
        )


def torchao_config(plan: PrecisionPlan, module_names: list[str] | tuple[str, ...] = ()) -> Any:
    """The :class:`transformers.TorchAoConfig` of a torchao plan (None for other precisions).

    ``modules_to_not_convert`` is :func:`skip_module_patterns` (vision tower, projector, lm_head);
    embeddings are never converted (``include_input_output_embeddings`` stays false).
    """
    if plan.backend != "torchao":
        return None
    from torchao.quantization import (
        Float8DynamicActivationFloat8WeightConfig,
        Int4WeightOnlyConfig,
        Int8WeightOnlyConfig,
        PerRow,
        PerTensor,
    )
    from torchao.quantization.quantize_.workflows import Int4ChooseQParamsAlgorithm, Int4PackingFormat
    from transformers import TorchAoConfig

    q = plan.quant
    config: Any
    if plan.precision is Precision.INT8WO:
        config = Int8WeightOnlyConfig(granularity=PerRow())
    elif plan.precision is Precision.INT4WO:
        algorithm = (
            Int4ChooseQParamsAlgorithm.HQQ if q["algorithm"] == "hqq" else Int4ChooseQParamsAlgorithm.TINYGEMM
        )
        if q["layout"] == "cpu_opaque":
            from torchao.prototype.quantization.int4 import PrototypeInt4WeightOnlyConfig

            _register_cpu_int4_serialisation()
            config = PrototypeInt4WeightOnlyConfig(
                group_size=plan.group_size, int4_choose_qparams_algorithm=algorithm
            )
        else:
            config = Int4WeightOnlyConfig(
                group_size=plan.group_size,
                int4_packing_format=Int4PackingFormat.TILE_PACKED_TO_4D,
                int4_choose_qparams_algorithm=algorithm,
            )
    else:
        granularity = PerRow() if q["granularity"] == "per_row" else PerTensor()
        config = Float8DynamicActivationFloat8WeightConfig(granularity=granularity)
    return TorchAoConfig(config, modules_to_not_convert=skip_module_patterns(module_names))


def _register_cpu_int4_serialisation() -> None:
    """Let torchao's safetensors (de)serialiser handle its CPU int4 tensor (``Int4OpaqueTensor``).

    torchao 0.18 lists the tensor classes its safetensors support may write and rebuild; its CPU int4
    layout is not among them (nor is its config's module among the modules torchao's config reader
    looks in) although it is an ordinary torchao tensor (packed ``qdata``, a
    ``scale_and_zero`` tensor and JSON-able attributes). Adding it lets the quantized-model cache store
    CPU int4wo like every other precision (tested by a round trip). Idempotent.
    """
    from torchao.core import config as ao_config
    from torchao.prototype.quantization.int4.int4_opaque_tensor import Int4OpaqueTensor
    from torchao.prototype.safetensors import safetensors_utils

    # The config class (PrototypeInt4WeightOnlyConfig) recorded in the cache's config.json.
    ao_config.ALLOWED_AO_MODULES.add("torchao.prototype.quantization.int4")
    safetensors_utils.ALLOWED_CLASSES.setdefault("Int4OpaqueTensor", Int4OpaqueTensor)
    if "Int4OpaqueTensor" not in safetensors_utils.ALLOWED_TENSORS_SUBCLASSES:
        safetensors_utils.ALLOWED_TENSORS_SUBCLASSES.append("Int4OpaqueTensor")


def _require_torchao(prec: Precision) -> None:
    try:
        import torchao  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise PrecisionError(f"precision {prec.value} needs the torchao package: {exc}") from exc


def _require_bitsandbytes(prec: Precision) -> None:
    try:
        import bitsandbytes  # noqa: F401
    except ImportError as exc:  # pragma: no cover - the package is a dependency
        raise PrecisionError(f"precision {prec.value} needs the bitsandbytes package: {exc}") from exc


def is_skipped_module(name: str) -> bool:
    """True when the module path ``name`` lies in a module that is never quantized (:data:`SKIP_MODULES`)."""
    return any(part in SKIP_MODULES for part in name.split("."))


def skip_module_patterns(module_names: list[str] | tuple[str, ...] = ()) -> list[str]:
    """``llm_int8_skip_modules`` for a model whose module names are ``module_names``.

    A custom list replaces transformers' default skips, so it names ``lm_head`` itself. Transformers 5
    matches a pattern as a prefix of the full module name (or a suffix), so the bare component names
    (``vision_tower``) would not match ``model.vision_tower.encoder…``: the full paths of the modules
    whose last component is a skipped name are added, and the bare names are kept for transformers
    versions that match components.
    """
    patterns = list(SKIP_MODULES)
    for name in module_names:
        last = name.rsplit(".", 1)[-1]
        if last in SKIP_MODULES and name not in patterns:
            patterns.append(name)
    return patterns


def bnb_config(plan: PrecisionPlan, module_names: list[str] | tuple[str, ...] = ()) -> Any:
    """The :class:`transformers.BitsAndBytesConfig` of a quantized plan (None when unquantized)."""
    if not plan.quantized:
        return None
    from transformers import BitsAndBytesConfig

    return BitsAndBytesConfig(**plan.quant, llm_int8_skip_modules=skip_module_patterns(module_names))
