"""One loader for every precision and device: :func:`load_model` (LoadSpec) → :class:`LoadedModel`.

The model folder is a converted GeoChat (transformers ``LlavaForConditionalGeneration`` safetensors,
processor, tokenizer, ``rsvg_manifest.json``). :func:`~rsvg_desktop.core.model.precision.plan_precision`
decides dtypes and bitsandbytes settings; this module loads, places and checks the model.

Quantize once, reuse (``use_cache=True``)
    Quantizing on load reads the 16-bit weights and quantizes every layer. The quantized model is then
    saved (bitsandbytes' or torchao's safetensors serialisation via ``save_pretrained``; torchao's CPU
    int4 layout is registered with torchao's serialiser by
    :func:`~rsvg_desktop.core.model.precision.torchao_config`) to a cache entry::

        <model_dir>/.rsvg-cache/<precision>-<12 hex of sha256(options)>/
            config.json, model.safetensors, rsvg_cache.json

    (``LoadSpec.cache_dir`` replaces ``<model_dir>/.rsvg-cache``, e.g. for a read-only model folder).
    The options are everything that changes the stored weights: precision, compute dtype, device type
    (cpu/cuda), int8 threshold, double quantization, block size, torchao config, int4 layout, group size
    and HQQ, skipped modules. ``rsvg_cache.json``
    records what the entry was built from: the size and modification time (ns) of the source's
    ``config.json`` and every ``*.safetensors`` / index file, the SHA-256 of ``rsvg_manifest.json``,
    and the transformers, bitsandbytes and torchao versions. An entry whose record differs from the current
    source or versions, or that is incomplete, is stale: it is deleted and rebuilt. Entries are written
    to a temporary folder and renamed into place, so a crash never leaves a half entry that looks valid.
    A cache that cannot be written (read-only folder) only costs a warning and a note.

Calibrated 4-bit (``q4cal``)
    ``q4cal`` is never quantized on load: its cache entry (``q4cal-<hash>``, same layout) is written by
    ``rsvg model calibrate`` (:func:`rsvg_desktop.core.model.calibrate.geochat.calibrate_model`) and its
    record holds a ``calibration`` section (inputs, seed, blocks, parameters, losses) and its ``id``.
    Without a valid entry, loading raises :class:`~rsvg_desktop.errors.CalibrationMissingError`, whose
    message says how to make one. A loaded q4cal model's :attr:`LoadedModel.run_precision` is
    ``q4cal@<calibration id>``: what a run's ``run`` table records.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import shutil
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from safetensors import SafetensorError

from rsvg_desktop.core.model.memory import (
    estimate_weight_bytes,
    load_llava_config,
    meta_model,
    quant_state_bytes,
    torchao_weight_bytes,
)
from rsvg_desktop.core.model.precision import (
    DEFAULT_INT4_GROUP_SIZE,
    DEFAULT_INT8_THRESHOLD,
    SKIP_MODULES,
    Precision,
    PrecisionPlan,
    bnb_config,
    dtype_name,
    is_skipped_module,
    plan_precision,
    torchao_config,
)
from rsvg_desktop.core.model.versions import library_versions
from rsvg_desktop.errors import (
    CalibrationMissingError,
    CheckpointError,
    DeviceFailure,
    ModelError,
    ModelNotFoundError,
    PrecisionError,
    TokenizerError,
)

__all__ = [
    "CACHE_DIRNAME",
    "CACHE_RECORD",
    "LoadSpec",
    "LoadedModel",
    "ProgressCallback",
    "cache_entry_dir",
    "calibration_record",
    "check_quantized_layout",
    "load_model",
    "read_random_weights_flag",
    "source_fingerprint",
]

log = logging.getLogger(__name__)

CACHE_DIRNAME = ".rsvg-cache"
CACHE_RECORD = "rsvg_cache.json"
MANIFEST = "rsvg_manifest.json"
_CACHE_FORMAT = 1

#: ``progress(stage, fraction)``: stage is a short text, fraction in [0, 1].
ProgressCallback = Callable[[str, float], None]


@dataclass(frozen=True, slots=True)
class LoadSpec:
    """What to load and how. ``precision`` and ``model_dir`` are normalised on creation.

    ``device``: ``auto`` | ``cpu`` | ``cuda`` | ``cuda:N``. ``int8_threshold``: LLM.int8 outlier
    threshold. ``double_quant``: 4-bit double quantization. ``use_cache``: reuse/write the quantized
    cache (quantized precisions only). ``cache_dir``: cache root (default ``<model_dir>/.rsvg-cache``).
    ``compute_dtype``: override the automatic compute dtype of quantized precisions (``bf16``/``fp16``
    /``fp32``). ``attn_implementation``: transformers' attention backend. ``group_size``: int4wo's
    weights per scale (32, 64, 128, 256); ``int4_hqq``: int4wo's scales chosen by HQQ.
    """

    model_dir: Path
    precision: Precision = Precision.BF16
    device: str = "auto"
    int8_threshold: float = DEFAULT_INT8_THRESHOLD
    double_quant: bool = True
    use_cache: bool = True
    cache_dir: Path | None = None
    compute_dtype: str | None = None
    attn_implementation: str = "sdpa"
    group_size: int = DEFAULT_INT4_GROUP_SIZE
    int4_hqq: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "model_dir", Path(self.model_dir))
        object.__setattr__(self, "precision", Precision.parse(self.precision))
        if self.cache_dir is not None:
            object.__setattr__(self, "cache_dir", Path(self.cache_dir))


@dataclass(frozen=True, eq=False)
class LoadedModel:
    """A model ready for generation, and what it cost.

    ``device``: torch device (``cpu``/``cuda:N``); ``device_name``: GPU model name or ``"CPU"``.
    ``dtype``: dtype of the unquantized weights and activations. ``param_bytes``:
    ``model.get_memory_footprint()``; ``quant_state_bytes``: bitsandbytes scales/absmax outside the
    parameters; ``load_seconds``: wall time of the load (cache writing excluded, see ``notes``);
    ``from_cache``: loaded from a quantized cache entry; ``random_weights``: the converted checkpoint
    says its weights are random (a test model); ``notes``: fallbacks and facts to show the user.
    """

    model: Any
    processor: Any
    spec: LoadSpec
    plan: PrecisionPlan
    device: str
    device_name: str
    dtype: torch.dtype
    precision: Precision
    param_bytes: int
    quant_state_bytes: int
    load_seconds: float
    from_cache: bool
    random_weights: bool
    cache_path: Path | None = None
    notes: tuple[str, ...] = field(default_factory=tuple)
    calibration_id: str | None = None

    @property
    def run_precision(self) -> str:
        """The precision as a run records it: ``q4cal@<calibration id>`` for q4cal, else its name."""
        if self.calibration_id:
            return f"{self.precision.value}@{self.calibration_id}"
        return self.precision.value

    @property
    def weight_bytes(self) -> int:
        """Bytes the weights really occupy: parameters + buffers + quantization state."""
        return self.param_bytes + self.quant_state_bytes

    def describe(self) -> str:
        """One line for a status bar, e.g. ``NF4 (bf16) on NVIDIA H100 80GB HBM3 (4.21 GiB, from cache)``."""
        src = ", from cache" if self.from_cache else ""
        rnd = ", RANDOM WEIGHTS" if self.random_weights else ""
        size = self.weight_bytes
        size_text = f"{size / 2**30:.2f} GiB" if size >= 2**30 else f"{size / 2**20:.1f} MiB"
        what = f"{self.precision.label} ({dtype_name(self.dtype)})"
        if self.calibration_id:
            what += f" calibration {self.calibration_id}"
        return f"{what} on {self.device_name} ({size_text}{src}{rnd})"


# --- helpers ----------------------------------------------------------------------------------
def _find_key(obj: Any, key: str) -> Any:
    if isinstance(obj, dict):
        if key in obj:
            return obj[key]
        for value in obj.values():
            found = _find_key(value, key)
            if found is not None:
                return found
    return None


def read_random_weights_flag(model_dir: Path, config: Any = None) -> bool:
    """True when ``rsvg_manifest.json`` (any level, key ``random_weights``) or the config says so."""
    manifest = Path(model_dir) / MANIFEST
    if manifest.is_file():
        try:
            data = json.loads(manifest.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise CheckpointError(f"{manifest}: unreadable manifest: {exc}") from exc
        flag = _find_key(data, "random_weights")
        if flag is not None:
            return bool(flag)
    for name in ("rsvg_random_weights", "random_weights"):
        if config is not None and getattr(config, name, None) is not None:
            return bool(getattr(config, name))
    return False


def source_fingerprint(model_dir: Path) -> dict[str, Any]:
    """What a cache entry is built from: sizes/mtimes of config and weights, the manifest's hash."""
    model_dir = Path(model_dir)
    files: dict[str, list[int]] = {}
    for path in sorted(model_dir.iterdir()):
        if path.is_file() and (
            path.name == "config.json"
            or path.suffix == ".safetensors"
            or path.name.endswith(".safetensors.index.json")
        ):
            st = path.stat()
            files[path.name] = [st.st_size, st.st_mtime_ns]
    manifest = model_dir / MANIFEST
    digest = hashlib.sha256(manifest.read_bytes()).hexdigest() if manifest.is_file() else None
    return {"files": files, "manifest_sha256": digest}


def _versions() -> dict[str, str]:
    return library_versions("transformers", "bitsandbytes", "torchao")


def cache_entry_dir(spec: LoadSpec, plan: PrecisionPlan) -> Path:
    """The cache entry folder for ``spec`` loaded by ``plan`` (it may not exist)."""
    root = spec.cache_dir if spec.cache_dir is not None else spec.model_dir / CACHE_DIRNAME
    key = hashlib.sha256(json.dumps(plan.options(), sort_keys=True).encode()).hexdigest()[:12]
    return root / f"{plan.precision.value}-{key}"


def _cache_record(spec: LoadSpec, plan: PrecisionPlan) -> dict[str, Any]:
    return {
        "format": _CACHE_FORMAT,
        "options": plan.options(),
        "source": source_fingerprint(spec.model_dir),
        "versions": _versions(),
    }


def _cache_is_valid(entry: Path, want: dict[str, Any]) -> tuple[bool, str]:
    record_path = entry / CACHE_RECORD
    if not entry.is_dir():
        return False, "absent"
    try:
        record = json.loads(record_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return False, "no readable record"
    for key in ("format", "options", "source", "versions"):
        if record.get(key) != want[key]:
            return False, f"{key} changed"
    if not (entry / "config.json").is_file() or not any(entry.glob("*.safetensors")):
        return False, "incomplete"
    return True, "valid"


def calibration_record(spec: LoadSpec) -> dict[str, Any] | None:
    """The calibration section of ``spec``'s valid q4cal cache entry (None when there is none).

    Reads only the small JSON record: used to name the calibration before (or without) loading.
    """
    if not spec.precision.needs_calibration:
        return None
    plan = plan_precision(
        spec.precision,
        spec.device,
        int8_threshold=spec.int8_threshold,
        double_quant=spec.double_quant,
        compute_dtype=spec.compute_dtype,
    )
    entry = cache_entry_dir(spec, plan)
    valid, _ = _cache_is_valid(entry, _cache_record(spec, plan))
    if not valid:
        return None
    try:
        record = json.loads((entry / CACHE_RECORD).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    calibration = record.get("calibration")
    return calibration if isinstance(calibration, dict) else None


def _missing_calibration(spec: LoadSpec, why: str) -> CalibrationMissingError:
    return CalibrationMissingError(
        f"{spec.model_dir}: no q4cal calibration ({why}); make one with "
        f"`rsvg model calibrate {spec.model_dir} [SCENE_OR_FOLDER...]` (or Model panel → Calibrate…), "
        "or choose nf4"
    )


@contextlib.contextmanager
def _quiet_transformers() -> Iterator[None]:
    """Hide transformers' progress bars during a load (the caller gets ``progress`` instead)."""
    from transformers.utils import logging as hf_logging

    enabled = hf_logging.is_progress_bar_enabled()
    if enabled:
        hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if enabled:
            hf_logging.enable_progress_bar()


class _DropInt8CastWarning(logging.Filter):
    """bitsandbytes logs 'inputs will be cast … to float16' at every LLM.int8 matmul: once is enough."""

    seen = False

    def filter(self, record: logging.LogRecord) -> bool:
        if "will be cast" in record.getMessage():
            if _DropInt8CastWarning.seen:
                return False
            _DropInt8CastWarning.seen = True
        return True


def _install_bnb_log_filter() -> None:
    logger = logging.getLogger("bitsandbytes.autograd._functions")
    if not any(isinstance(f, _DropInt8CastWarning) for f in logger.filters):
        logger.addFilter(_DropInt8CastWarning())


def check_quantized_layout(model: Any, precision: Precision) -> int:
    """Check that only language-model linear layers are quantized layers; return how many are.

    bitsandbytes: raises ModelError when a skipped module (vision tower, projector, lm_head) was
    quantized or when a quantized precision produced no bitsandbytes layer: both mean the skip patterns
    did not match this transformers version's module names. torchao: the linears whose weight is a
    torchao tensor must be exactly the language model's linears (every one of them, nothing else).
    """
    if not precision.quantized:
        return 0
    if precision.backend == "torchao":
        return _check_torchao_layout(model, precision)
    import bitsandbytes as bnb

    kind = bnb.nn.Linear8bitLt if precision is Precision.INT8 else bnb.nn.Linear4bit
    count = 0
    for name, module in model.named_modules():
        if isinstance(module, bnb.nn.Linear8bitLt | bnb.nn.Linear4bit):
            if is_skipped_module(name):
                raise ModelError(f"{name} was quantized although {SKIP_MODULES} must stay unquantized")
            if not isinstance(module, kind):
                raise ModelError(f"{name} is a {type(module).__name__}, expected {kind.__name__}")
            count += 1
    if count == 0:
        raise ModelError(f"precision {precision.value}: no layer was quantized")
    return count


def _check_torchao_layout(model: Any, precision: Precision) -> int:
    from torchao.utils import TorchAOBaseTensor

    quantized: set[str] = set()
    expected: set[str] = set()
    for name, module in model.named_modules():
        weight = getattr(module, "weight", None)
        if isinstance(weight, TorchAOBaseTensor):
            quantized.add(name)
            if is_skipped_module(name):
                raise ModelError(f"{name} was quantized although {SKIP_MODULES} must stay unquantized")
        if isinstance(module, torch.nn.Linear) and not is_skipped_module(name):
            expected.add(name)
    if not quantized:
        raise ModelError(f"precision {precision.value}: no layer was quantized")
    missing = sorted(expected - quantized)
    if missing:
        raise ModelError(
            f"precision {precision.value}: {len(missing)} language-model linear(s) stayed unquantized, "
            f"e.g. {missing[0]}"
        )
    extra = sorted(quantized - expected)
    if extra:
        raise ModelError(f"precision {precision.value}: {extra[0]} is quantized but is not a linear layer")
    return len(quantized)


def _check_group_size(config: Any, plan: PrecisionPlan) -> None:
    """int4wo: every language-model linear's input size must be a multiple of the group size."""
    if plan.precision is not Precision.INT4WO:
        return
    for name, module in meta_model(config).named_modules():
        if (
            isinstance(module, torch.nn.Linear)
            and not is_skipped_module(name)
            and module.in_features % plan.group_size
        ):
            raise PrecisionError(
                f"int4wo group size {plan.group_size} does not divide the input size "
                f"{module.in_features} of {name}: choose a group size that does"
            )


def available_ram_bytes() -> int | None:
    """Memory the system can give this process now (``MemAvailable``); None when unknown."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except (ImportError, OSError):
        return None


def _check_cpu_memory(spec: LoadSpec, config: Any, plan: PrecisionPlan) -> None:
    """Refuse, before reading any weight, a CPU load whose weights alone exceed the free memory.

    Without this the system's out-of-memory killer ends the process (or a neighbour) minutes into
    the load, with no message at all.
    """
    need = estimate_weight_bytes(
        config,
        plan.precision,
        double_quant=spec.double_quant,
        compute_dtype=plan.dtype,
        group_size=plan.group_size,
    ).total_bytes
    free = available_ram_bytes()
    if free is not None and need > free:
        raise PrecisionError(
            f"{spec.model_dir}: {plan.precision.value} needs {need / 2**30:.1f} GiB of memory for its "
            f"weights on the CPU ({dtype_name(plan.dtype)} where unquantized), but only "
            f"{free / 2**30:.1f} GiB is free: choose a smaller precision (int8 or int8wo take about half "
            "of bf16, nf4 or int4wo about a quarter) or a GPU"
        )


def _quantization_config(plan: PrecisionPlan, module_names: list[str]) -> Any:
    if plan.backend == "torchao":
        return torchao_config(plan, module_names)
    return bnb_config(plan, module_names)


# --- loading ----------------------------------------------------------------------------------
def _load_processor(model_dir: Path) -> Any:
    from transformers import AutoProcessor

    try:
        processor = AutoProcessor.from_pretrained(str(model_dir), local_files_only=True)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise TokenizerError(f"{model_dir}: cannot load the processor/tokenizer: {exc}") from exc
    tokenizer = getattr(processor, "tokenizer", None)
    if tokenizer is None or not hasattr(processor, "image_processor"):
        raise TokenizerError(f"{model_dir}: the processor has no tokenizer or image processor")
    tokenizer.padding_side = "left"
    return processor


def _from_pretrained(path: Path, plan: PrecisionPlan, spec: LoadSpec, quantization_config: Any) -> Any:
    from transformers import LlavaForConditionalGeneration

    kwargs: dict[str, Any] = {
        "dtype": plan.dtype,
        "device_map": {"": plan.device.torch_device},
        "local_files_only": True,
        "attn_implementation": spec.attn_implementation,
    }
    if quantization_config is not None:
        kwargs["quantization_config"] = quantization_config
    try:
        with _quiet_transformers():
            model = LlavaForConditionalGeneration.from_pretrained(str(path), **kwargs)
    except torch.OutOfMemoryError as exc:
        raise PrecisionError(
            f"{path}: not enough memory on {plan.device.name} for {plan.precision.value}: {exc}"
        ) from exc
    except torch.AcceleratorError as exc:
        raise DeviceFailure(f"{path}: the device {plan.device.name} failed while loading: {exc}") from exc
    except (OSError, ValueError, KeyError, RuntimeError, SafetensorError) as exc:
        raise CheckpointError(f"{path}: cannot load the model: {exc}") from exc
    model.eval()
    return model


def _write_cache(model: Any, entry: Path, record: dict[str, Any]) -> float:
    """Save ``model`` into ``entry`` atomically; return seconds spent."""
    t0 = time.perf_counter()
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = entry.parent / f".tmp-{entry.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    try:
        with _quiet_transformers():
            model.save_pretrained(str(tmp))
        record = dict(record, created=time.strftime("%Y-%m-%dT%H:%M:%S%z"))
        (tmp / CACHE_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True), encoding="utf-8")
        if entry.exists():
            shutil.rmtree(entry)
        os.replace(tmp, entry)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
    return time.perf_counter() - t0


def _load_from_cache(
    spec: LoadSpec,
    plan: PrecisionPlan,
    entry: Path,
    record: dict[str, Any],
    notes: list[str],
    report: ProgressCallback,
) -> Any:
    """The quantized model from its valid cache ``entry``; None when there is none or it is unusable.

    q4cal has no fallback: a missing, stale or unreadable entry raises CalibrationMissingError.
    """
    valid, why = _cache_is_valid(entry, record)
    if plan.precision.needs_calibration and not valid:
        raise _missing_calibration(spec, why if why != "absent" else "none made yet")
    if valid:
        report(f"loading {plan.precision.value} from cache", 0.1)
        try:
            if plan.backend == "torchao":
                torchao_config(plan)  # registers what reading this torchao layout needs
            return _from_pretrained(entry, plan, spec, None)
        except CheckpointError as exc:
            if plan.precision.needs_calibration:
                raise _missing_calibration(spec, f"the calibrated entry is unreadable: {exc}") from exc
            log.warning("cache entry %s unusable, rebuilding: %s", entry, exc)
            notes.append(f"cache entry was unusable and rebuilt: {exc}")
    elif why != "absent":
        log.info("cache entry %s is stale (%s): rebuilding", entry, why)
        notes.append(f"quantization cache was stale ({why}) and rebuilt")
    return None


def _load_quantized(
    spec: LoadSpec, config: Any, plan: PrecisionPlan, notes: list[str], report: ProgressCallback
) -> tuple[Any, bool, Path | None, dict[str, Any] | None]:
    """A quantized model, from the cache when it can, else quantized while loading; layout checked.

    Returns ``(model, from_cache, cache entry, cache record)``; entry and record are None without
    ``use_cache``.
    """
    if plan.backend == "bitsandbytes":
        _install_bnb_log_filter()
    cache_path: Path | None = None
    record: dict[str, Any] | None = None
    model = None
    if spec.use_cache:
        cache_path = cache_entry_dir(spec, plan)
        record = _cache_record(spec, plan)
        model = _load_from_cache(spec, plan, cache_path, record, notes, report)
    elif plan.precision.needs_calibration:
        raise CalibrationMissingError(
            f"{spec.model_dir}: q4cal needs the quantization cache (it holds the calibration): "
            "load it with the cache enabled"
        )
    from_cache = model is not None
    if model is None:
        report(f"quantizing to {plan.precision.value} while loading", 0.1)
        module_names = [name for name, _ in meta_model(config).named_modules()]
        quant_config = _quantization_config(plan, module_names)
        model = _from_pretrained(spec.model_dir, plan, spec, quant_config)
    check_quantized_layout(model, plan.precision)
    return model, from_cache, cache_path, record


def _save_to_cache(
    model: Any, entry: Path, record: dict[str, Any], notes: list[str], report: ProgressCallback
) -> Path | None:
    """Write a model quantized on load to its cache ``entry``; the entry, or None when it could not be."""
    report("writing quantization cache", 0.9)
    try:
        seconds = _write_cache(model, entry, record)
    except (OSError, RuntimeError, ValueError) as exc:
        log.warning("cannot write the quantization cache %s: %s", entry, exc)
        notes.append(f"quantization cache not written: {exc}")
        return None
    notes.append(f"quantized weights cached in {entry} ({seconds:.1f} s)")
    return entry


def _calibration_id(spec: LoadSpec, plan: PrecisionPlan, cache_path: Path | None) -> str | None:
    """The id of the calibration a q4cal model was loaded with (None for other precisions)."""
    if not plan.precision.needs_calibration or cache_path is None:
        return None
    calibration = calibration_record(spec)
    return str(calibration.get("id")) if calibration else None


def _measured_weight_bytes(model: Any, plan: PrecisionPlan) -> tuple[int, int]:
    """``(param_bytes, quant_state_bytes)`` of a loaded model (see :class:`LoadedModel`)."""
    if plan.backend == "torchao":
        return torchao_weight_bytes(model)
    param_bytes = int(model.get_memory_footprint())
    return param_bytes, quant_state_bytes(model) if plan.quantized else 0


def load_model(spec: LoadSpec, progress: ProgressCallback | None = None) -> LoadedModel:
    """Load the converted model in ``spec.model_dir`` at ``spec.precision`` on ``spec.device``.

    Quantized precisions come from the cache when a valid entry exists (``from_cache=True``), else
    they are quantized on load and, with ``use_cache``, saved to the cache. Raises ModelNotFoundError
    (no model), CheckpointError/TokenizerError (unreadable), PrecisionError (bad precision or device,
    or out of memory while loading), ModelError (quantization layout wrong).
    """

    def report(stage: str, fraction: float) -> None:
        log.info("load %s: %s", spec.model_dir.name, stage)
        if progress is not None:
            progress(stage, fraction)

    t0 = time.perf_counter()
    if not spec.model_dir.is_dir():
        raise ModelNotFoundError(f"{spec.model_dir}: model folder not found")
    report("reading configuration", 0.0)
    config = load_llava_config(spec.model_dir)
    plan = plan_precision(
        spec.precision,
        spec.device,
        int8_threshold=spec.int8_threshold,
        double_quant=spec.double_quant,
        compute_dtype=spec.compute_dtype,
        group_size=spec.group_size,
        int4_hqq=spec.int4_hqq,
    )
    _check_group_size(config, plan)
    if not plan.device.is_cuda:
        _check_cpu_memory(spec, config, plan)
    notes = list(plan.notes)
    random_weights = read_random_weights_flag(spec.model_dir, config)
    if random_weights:
        notes.append("the checkpoint has RANDOM weights (a test model): answers are meaningless")
    processor = _load_processor(spec.model_dir)

    from_cache = False
    cache_path: Path | None = None
    record: dict[str, Any] | None = None
    if plan.quantized:
        model, from_cache, cache_path, record = _load_quantized(spec, config, plan, notes, report)
    else:
        report(f"loading {dtype_name(plan.dtype)} weights", 0.1)
        model = _from_pretrained(spec.model_dir, plan, spec, None)
    load_seconds = time.perf_counter() - t0
    if not from_cache and cache_path is not None and record:
        cache_path = _save_to_cache(model, cache_path, record, notes, report)

    calibration_id = _calibration_id(spec, plan, cache_path)
    param_bytes, state_bytes = _measured_weight_bytes(model, plan)
    loaded = LoadedModel(
        model=model,
        processor=processor,
        spec=spec,
        plan=plan,
        device=plan.device.torch_device,
        device_name=plan.device.name,
        dtype=plan.dtype,
        precision=plan.precision,
        param_bytes=param_bytes,
        quant_state_bytes=state_bytes,
        load_seconds=load_seconds,
        from_cache=from_cache,
        random_weights=random_weights,
        cache_path=cache_path,
        notes=tuple(notes),
        calibration_id=calibration_id,
    )
    report("ready", 1.0)
    log.info("loaded %s in %.2f s", loaded.describe(), load_seconds)
    return loaded
