"""Calibrating a converted GeoChat to ``q4cal``: calibration set, capture, search, NF4 cache entry.

:func:`calibrate_model` loads the model in full precision (bf16 on a GPU, fp32 on the CPU), builds the
calibration set (:func:`calibration_set`: seeded (tile, question) pairs from the analyst's scenes or
folders, default the bundled sample scene), captures what enters the language model's first decoder
layer for each pair (vision tower and projector run as usual), runs the search of
:mod:`~rsvg_desktop.core.model.calibrate.search` on the decoder layers, then quantizes the adjusted
model with the ordinary bitsandbytes NF4 settings of ``nf4`` and writes it to the quantized-model cache
as the ``q4cal`` entry, with its record. The vision tower, the projector and ``lm_head`` are untouched
(they stay unquantized, as for NF4).
"""

from __future__ import annotations

import hashlib
import json
import logging
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import torch

from rsvg_desktop.core.model.calibrate.search import (
    CalibrationSettings,
    StackResult,
    calibrate_layers,
    capture_layer_inputs,
    decoder_layers,
)
from rsvg_desktop.core.precisions import Precision
from rsvg_desktop.errors import CalibrationError, CancelledError

if TYPE_CHECKING:
    from rsvg_desktop.core.model.loader import LoadSpec
    from rsvg_desktop.core.model.precision import PrecisionPlan

__all__ = [
    "CALIBRATION_QUESTIONS",
    "CalibrationReport",
    "CalibrationSample",
    "calibrate_model",
    "calibration_set",
    "default_calibration_inputs",
]

log = logging.getLogger(__name__)

Progress = Callable[[str, float], None]

#: Questions of the calibration set: (task, query) through the task templates (``""``: the default).
CALIBRATION_QUESTIONS: tuple[tuple[str, str], ...] = (
    ("grounding", ""),
    ("refer", "the buildings"),
    ("refer", "the road"),
    ("refer", "all vehicles"),
    ("vqa", "What is the main land cover in this image?"),
    ("vqa", "Are there any buildings? Answer yes or no."),
    ("chat", "Describe this image in detail."),
    ("classify", "Which land-use class is this? Classes: residential, industrial, forest, water."),
)
_RASTER_SUFFIXES = (".tif", ".tiff", ".jp2", ".img", ".vrt", ".png", ".jpg", ".jpeg")


@dataclass(frozen=True, slots=True)
class CalibrationSample:
    """One (tile, question) pair of the calibration set."""

    scene: str
    tile_id: str
    window: tuple[int, int, int, int]
    task: str
    query: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "scene": self.scene,
            "tile": self.tile_id,
            "window": list(self.window),
            "task": self.task,
            "query": self.query,
        }


@dataclass(frozen=True, slots=True)
class CalibrationReport:
    """What a calibration did: its id, where the q4cal entry is, the record, time and peak memory."""

    calibration_id: str
    entry: Path
    record: dict[str, Any]
    seconds: float
    search_seconds: float
    peak_bytes: int


def default_calibration_inputs() -> list[Path]:
    """The bundled sample scene (in the source tree, or in a frozen app's resources)."""
    roots = [Path(__file__).resolve().parents[4]]
    frozen = getattr(sys, "_MEIPASS", None)
    if frozen:
        roots.insert(0, Path(frozen))
    for root in roots:
        path = root / "resources" / "sample_scene.tif"
        if path.is_file():
            return [path]
    raise CalibrationError("the bundled sample scene is missing: pass scenes or folders to calibrate on")


def _expand(inputs: Sequence[str | Path]) -> list[Path]:
    out: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in _RASTER_SUFFIXES)
            if not found:
                raise CalibrationError(f"{path}: the folder holds no raster to calibrate on")
            out.extend(found)
        elif path.is_file():
            out.append(path)
        else:
            raise CalibrationError(f"{path}: no such file or folder")
    return out


def calibration_set(inputs: Sequence[str | Path], samples: int, seed: int) -> list[CalibrationSample]:
    """``samples`` seeded (tile, question) pairs drawn from the kept tiles of ``inputs``' scenes."""
    from rsvg_desktop.core.geo.grid import plan_tiles
    from rsvg_desktop.core.geo.scene import open_scene

    if samples < 1:
        raise CalibrationError(f"--samples must be at least 1, got {samples}")
    pool: list[tuple[str, Any]] = []
    for path in _expand(inputs):
        with open_scene(path, pixel_mode=True) as scene:
            plan = plan_tiles(scene, max_nodata_fraction=0.5, allow_empty=True)
        pool.extend((str(path), tile) for tile in plan.kept)
    if not pool:
        raise CalibrationError("the calibration inputs hold no tile with valid pixels")
    rng = random.Random(seed)
    chosen: list[tuple[str, Any]] = []
    while len(chosen) < samples:  # every tile once before any repeats
        batch = list(pool)
        rng.shuffle(batch)
        chosen.extend(batch[: samples - len(chosen)])
    out = []
    for scene_path, tile in chosen:
        task, query = CALIBRATION_QUESTIONS[rng.randrange(len(CALIBRATION_QUESTIONS))]
        out.append(CalibrationSample(scene_path, tile.id, tile.window, task, query))
    return out


def _sample_batches(
    samples: Sequence[CalibrationSample], processor: Any, device: str, dtype: torch.dtype
) -> Any:
    """Model inputs of each sample, one at a time (a generator: only one tile is in memory)."""
    from rsvg_desktop.core.geo.scene import open_scene
    from rsvg_desktop.core.model.generate import expand_to_square
    from rsvg_desktop.core.prompt.templates import build_prompt
    from rsvg_desktop.core.types import Tile

    image_token = getattr(processor, "image_token", "<image>")
    for sample in samples:
        col_off, row_off, width, height = sample.window
        with open_scene(sample.scene, pixel_mode=True) as scene:
            tile = Tile(0, 0, col_off, row_off, width, height, size=max(width, height))
            image, _valid = scene.read_tile(tile)
        from PIL import Image

        prompt = build_prompt(sample.task, sample.query, image_token=image_token)
        inputs = processor(
            images=[expand_to_square(Image.fromarray(image))], text=[prompt], return_tensors="pt"
        )
        yield {
            "input_ids": inputs["input_ids"].to(device),
            "attention_mask": inputs["attention_mask"].to(device),
            "pixel_values": inputs["pixel_values"].to(device, dtype=dtype),
        }


def calibrate_model(
    model_dir: str | Path,
    inputs: Sequence[str | Path] = (),
    *,
    samples: int = 32,
    seed: int = 0,
    device: str = "auto",
    cache_dir: str | Path | None = None,
    settings: CalibrationSettings | None = None,
    progress: Progress | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CalibrationReport:
    """Calibrate ``model_dir`` to q4cal and write its cache entry (see the module doc)."""
    from rsvg_desktop.core.model import loader
    from rsvg_desktop.core.model.precision import dtype_name, plan_precision

    def report(stage: str, fraction: float) -> None:
        log.info("calibrate %s: %s", Path(model_dir).name, stage)
        if progress is not None:
            progress(stage, fraction)

    def check() -> None:
        if cancel is not None and cancel():
            raise CancelledError("calibration cancelled")

    t0 = time.perf_counter()
    model_dir = Path(model_dir)
    settings = settings or CalibrationSettings(seed=seed)
    spec = loader.LoadSpec(
        model_dir, Precision.Q4CAL, device, cache_dir=Path(cache_dir) if cache_dir is not None else None
    )
    if not model_dir.is_dir():
        from rsvg_desktop.errors import ModelNotFoundError

        raise ModelNotFoundError(f"{model_dir}: model folder not found")
    plan = plan_precision(Precision.Q4CAL, device)
    input_paths = _expand(inputs) if inputs else default_calibration_inputs()
    report("choosing calibration tiles", 0.0)
    chosen = calibration_set(input_paths, samples, seed)

    if plan.device.is_cuda:
        torch.cuda.reset_peak_memory_stats(plan.device.torch_device)
    fp_dtype = torch.bfloat16 if plan.device.is_cuda and plan.device.bf16_supported else torch.float32
    report(f"loading the full-precision model ({dtype_name(fp_dtype)})", 0.02)
    processor = loader._load_processor(model_dir)
    model = _load_full_precision(model_dir, fp_dtype, plan.device.torch_device)
    result = _capture_and_search(
        model, processor, chosen, plan.device.torch_device, settings, report, check, cancel
    )
    check()
    calibration = _calibration_section(model_dir, input_paths, chosen, seed, plan.device.name, result)

    report("quantizing the calibrated weights to NF4", 0.87)
    entry = loader.cache_entry_dir(spec, plan)
    entry.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=".calibrated-", dir=entry.parent))
    try:
        model.save_pretrained(str(tmp))
        del model  # the full-precision model goes before the quantized one is loaded
        if plan.device.is_cuda:
            torch.cuda.empty_cache()
        check()
        record = _write_q4cal_entry(tmp, entry, spec, plan, calibration, report)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    peak = (
        int(torch.cuda.max_memory_allocated(plan.device.torch_device)) if plan.device.is_cuda else _peak_rss()
    )
    seconds = time.perf_counter() - t0
    report(f"calibration {calibration['id']} written", 1.0)
    return CalibrationReport(calibration["id"], entry, record, seconds, result.seconds, peak)


def _load_full_precision(model_dir: Path, dtype: torch.dtype, torch_device: str) -> Any:
    """The unquantized model to calibrate, in ``dtype`` on ``torch_device``, in eval mode."""
    from transformers import LlavaForConditionalGeneration

    try:
        model = LlavaForConditionalGeneration.from_pretrained(
            str(model_dir), dtype=dtype, device_map={"": torch_device}, local_files_only=True
        )
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise CalibrationError(f"{model_dir}: cannot load the model to calibrate: {exc}") from exc
    model.eval()
    return model


def _capture_and_search(
    model: Any,
    processor: Any,
    chosen: Sequence[CalibrationSample],
    torch_device: str,
    settings: CalibrationSettings,
    report: Progress,
    check: Callable[[], None],
    cancel: Callable[[], bool] | None,
) -> StackResult:
    """Capture what enters the first decoder layer for each sample, then run the search over the decoder
    layers (it adjusts ``model``'s weights in place). The captured inputs are freed on return."""
    vision_dtype = next(model.model.vision_tower.parameters()).dtype
    layers = decoder_layers(model.model.language_model)
    report(f"capturing {len(chosen)} calibration inputs", 0.05)
    check()
    captured = capture_layer_inputs(
        model, list(_sample_batches(chosen, processor, torch_device, vision_dtype)), layers
    )

    def search_progress(stage: str, fraction: float) -> None:
        report(stage, 0.1 + 0.75 * fraction)

    return calibrate_layers(layers, captured, settings, progress=search_progress, cancel=cancel)


def _calibration_section(
    model_dir: Path,
    input_paths: Sequence[Path],
    chosen: Sequence[CalibrationSample],
    seed: int,
    device_name: str,
    result: StackResult,
) -> dict[str, Any]:
    """The ``calibration`` section of the q4cal record, with its ``id``: 12 hex digits of the SHA-256
    of everything in it but the timings."""
    calibration = {
        "model": str(model_dir),
        "inputs": [str(p) for p in input_paths],
        "samples": len(chosen),
        "seed": seed,
        "device": device_name,
        "calibration_set": [s.to_dict() for s in chosen],
        **result.to_dict(),
    }
    calibration["id"] = hashlib.sha256(
        json.dumps({k: v for k, v in calibration.items() if k != "seconds"}, sort_keys=True).encode()
    ).hexdigest()[:12]
    return calibration


def _write_q4cal_entry(
    saved: Path,
    entry: Path,
    spec: LoadSpec,
    plan: PrecisionPlan,
    calibration: dict[str, Any],
    report: Progress,
) -> dict[str, Any]:
    """Load the calibrated model ``saved`` (full precision) quantized to NF4, check its layout and write
    it to the cache ``entry`` with its record (returned), whose ``calibration`` section is
    ``calibration``."""
    from rsvg_desktop.core.model import loader
    from rsvg_desktop.core.model.memory import load_llava_config, meta_model
    from rsvg_desktop.core.model.precision import bnb_config

    module_names = [name for name, _ in meta_model(load_llava_config(spec.model_dir)).named_modules()]
    quantized = loader._from_pretrained(saved, plan, spec, bnb_config(plan, module_names))
    loader.check_quantized_layout(quantized, plan.precision)
    record = loader._cache_record(spec, plan)
    record["calibration"] = calibration
    report("writing the q4cal cache entry", 0.95)
    loader._write_cache(quantized, entry, record)
    return record


def _peak_rss() -> int:
    """This process's peak resident memory in bytes (Linux/macOS; 0 where unknown)."""
    try:
        import resource

        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    except (ImportError, OSError):  # pragma: no cover - Windows
        return 0
    return int(peak) * (1 if sys.platform == "darwin" else 1024)
