"""Model operations behind ``rsvg model …`` and ``rsvg detect``: memory estimates, conversion, download,
and a whole detect run in this process (the GUI uses the worker process instead)."""

from __future__ import annotations

import functools
import logging
import os
from collections.abc import Callable, Generator, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from rsvg_desktop.core.precisions import PRECISIONS, Precision
from rsvg_desktop.engine.events import Event, ModelInfo, ModelLoaded, ModelSpec, RunConfig

log = logging.getLogger(__name__)


def memory_estimates(
    model_dir: str | os.PathLike[str] | None,
    precisions: Sequence[str] = PRECISIONS,
    *,
    double_quant: bool = True,
) -> list[Any]:
    """Exact weight memory per precision, computed on the meta device (no weights read). ``model_dir``
    ``None`` → the published GeoChat-7B configuration, so a user can size it before downloading."""
    from rsvg_desktop.core.model.memory import estimate_weight_bytes, geochat7b_config

    config: Any = geochat7b_config() if model_dir is None else Path(model_dir)
    return [estimate_weight_bytes(config, p, double_quant=double_quant) for p in precisions]


def convert_model(
    src: str | os.PathLike[str],
    out: str | os.PathLike[str],
    *,
    clip: str | os.PathLike[str] | None = None,
    overwrite: bool = False,
    progress: Callable[[Any], None] | None = None,
) -> Any:
    from rsvg_desktop.core.model.convert import convert_geochat

    return convert_geochat(
        Path(src),
        Path(out),
        clip_dir=None if clip is None else Path(clip),
        overwrite=overwrite,
        progress=progress,
    )


@dataclass(frozen=True, slots=True)
class CalibrationProgress:
    """One progress report of a calibration: what it is doing and how far (0-1)."""

    stage: str
    fraction: float


@dataclass(frozen=True, slots=True)
class CalibrationSummary:
    """What ``rsvg model calibrate`` (and the app) report when a calibration is written."""

    calibration_id: str
    entry: str
    samples: int
    blocks: tuple[tuple[int, ...], ...]
    loss_nf4: float
    loss: float
    seconds: float
    search_seconds: float
    peak_bytes: int
    device: str


def calibrate(
    model_dir: str | os.PathLike[str],
    inputs: Sequence[str | os.PathLike[str]] = (),
    *,
    samples: int = 32,
    seed: int = 0,
    device: str = "auto",
    progress: Callable[[CalibrationProgress], None] | None = None,
    cancel: Callable[[], bool] | None = None,
) -> CalibrationSummary:
    """Calibrate a converted model to ``q4cal`` and write its cache entry (see
    :mod:`rsvg_desktop.core.model.calibrate`). Cancellable between search steps (CancelledError)."""
    from rsvg_desktop.core.model.calibrate.geochat import calibrate_model

    def report(stage: str, fraction: float) -> None:
        if progress is not None:
            progress(CalibrationProgress(stage, fraction))

    rep = calibrate_model(
        Path(model_dir),
        [Path(p) for p in inputs],
        samples=samples,
        seed=seed,
        device=device,
        progress=report,
        cancel=cancel,
    )
    blocks = rep.record["calibration"]["blocks"]
    return CalibrationSummary(
        calibration_id=rep.calibration_id,
        entry=str(rep.entry),
        samples=int(rep.record["calibration"]["samples"]),
        blocks=tuple(tuple(b["layers"]) for b in blocks),
        loss_nf4=sum(b["loss_nf4"] for b in blocks) / max(len(blocks), 1),
        loss=sum(b["loss"] for b in blocks) / max(len(blocks), 1),
        seconds=rep.seconds,
        search_seconds=rep.search_seconds,
        peak_bytes=rep.peak_bytes,
        device=str(rep.record["calibration"]["device"]),
    )


def run_precision(spec: ModelSpec) -> str:
    """The precision a run records: ``q4cal@<calibration id>`` for a calibrated model, else its name
    (reads only the calibration's small record, not the weights)."""
    precision = Precision.parse(spec.precision)
    if not precision.needs_calibration:
        return precision.value
    from rsvg_desktop.core.model.loader import calibration_record

    record = calibration_record(load_spec(spec))
    return f"{precision.value}@{record['id']}" if record and record.get("id") else precision.value


def load_spec(spec: ModelSpec) -> Any:
    """The loader's :class:`~rsvg_desktop.core.model.loader.LoadSpec` for a model spec (the plain,
    picklable request that crosses from the app or the CLI)."""
    from rsvg_desktop.core.model.loader import LoadSpec

    return LoadSpec(
        Path(spec.model_dir),
        Precision.parse(spec.precision),
        spec.device,
        int8_threshold=spec.int8_threshold,
        double_quant=spec.double_quant,
        use_cache=spec.use_cache,
        group_size=spec.group_size,
    )


def downloaded_model_dirs() -> list[Path]:
    """The converted, then original, folders of every known model downloaded into the data folder."""
    from rsvg_desktop.engine.model_files import model_place

    places = [model_place(m) for m in sorted(known_models())]
    return [p.converted for p in places] + [p.download for p in places]


def resolve_model_dir(explicit: str | os.PathLike[str] | None, *, smoke: bool = False) -> Path:
    """The converted model folder to load: the built-in random-weights test model with ``smoke``, else
    the first found of explicit path, ``$RSVG_MODEL_DIR``, the Hugging Face cache. An original GeoChat
    checkpoint is refused with the command that converts it."""
    from rsvg_desktop.core.model.locate import find_model
    from rsvg_desktop.engine.model_files import ensure_test_model
    from rsvg_desktop.errors import ModelNotFoundError

    if smoke:
        return ensure_test_model()
    found = find_model(explicit, downloaded=downloaded_model_dirs())
    if found.needs_conversion:
        raise ModelNotFoundError(
            f"{found.path} is an original GeoChat checkpoint: convert it once with "
            f"`rsvg model convert {found.path} -o CONVERTED_DIR`, then pass --model CONVERTED_DIR"
        )
    return found.path


def model_info(loaded: Any) -> ModelInfo:
    """The picklable description of a :class:`~rsvg_desktop.core.model.loader.LoadedModel`."""
    from rsvg_desktop.core.model.precision import dtype_name

    return ModelInfo(
        model_dir=str(loaded.spec.model_dir),
        precision=str(loaded.precision),
        device=loaded.device,
        device_name=loaded.device_name,
        dtype=dtype_name(loaded.dtype),
        param_bytes=loaded.weight_bytes,
        load_seconds=loaded.load_seconds,
        from_cache=loaded.from_cache,
        random_weights=loaded.random_weights,
        description=loaded.describe(),
        notes=tuple(loaded.notes),
    )


def check_run(config: RunConfig, spec: ModelSpec) -> None:
    """Everything a detect run can be refused for, before the model loads or anything is written (see
    :mod:`rsvg_desktop.engine.preflight`): the numbers, the output's name, format and folder, existing
    outputs, the scene (no CRS, not a raster, no valid pixels), GeoJSON for a scene in pixel
    coordinates, and the device and precision on this machine."""
    from rsvg_desktop.core.geo.grid import plan_tiles
    from rsvg_desktop.core.geo.scene import open_scene
    from rsvg_desktop.core.paths import refuse_same_file
    from rsvg_desktop.engine import preflight
    from rsvg_desktop.engine.detect import answer_log_path
    from rsvg_desktop.errors import ConfigError

    preflight.check_run_settings(config)
    if config.output is None:
        raise ConfigError("a run needs an output file (.gpkg, .geojson or .shp)")
    preflight.check_output_name(config.output)
    answer_log = answer_log_path(config.output)
    refuse_same_file([config.output, answer_log], [config.scene])
    preflight.check_output_file(config.output, overwrite=config.overwrite, also=(answer_log,))
    with open_scene(
        config.scene, pixel_mode=config.pixel_mode, bands=config.bands, nodata=config.nodata
    ) as scene:
        pixel_mode = scene.info.crs_wkt is None
        plan_tiles(
            scene,
            tile_size=config.tile_size,
            overlap=config.overlap,
            target_gsd=config.target_gsd,
            max_nodata_fraction=config.max_nodata_fraction,
        )
    preflight.check_output_file(config.output, overwrite=True, pixel_mode=pixel_mode)
    preflight.check_machine(spec.device, spec.precision, compiled=spec.compiled, group_size=spec.group_size)


@functools.lru_cache(maxsize=4)
def _context_of(model_dir: str) -> tuple[Any, int, int]:
    """(tokenizer, context length, image tokens per tile) of a model folder, read once per process."""
    from transformers import AutoTokenizer

    from rsvg_desktop.core.model.memory import image_tokens, load_llava_config
    from rsvg_desktop.errors import TokenizerError

    config = load_llava_config(model_dir)
    try:
        tokenizer = AutoTokenizer.from_pretrained(model_dir)
    except (OSError, ValueError) as exc:
        raise TokenizerError(f"{model_dir}: the tokenizer cannot be read ({exc})") from exc
    return tokenizer, int(config.text_config.max_position_embeddings), image_tokens(config)


def check_question(
    model_dir: str | os.PathLike[str],
    *,
    task: str,
    query: str,
    classes: Sequence[str] = (),
    region: Any = None,
    history: Sequence[tuple[str, str]] = (),
    max_new_tokens: int,
) -> int:
    """Refuse, before any weight is loaded, a question the model cannot take: an empty query for a task
    that needs one (and any other wrong task argument), or a prompt that does not fit the model's
    context once the image tokens and the answer budget are added. Reads only ``config.json`` and the
    tokenizer. Returns the prompt's text tokens."""
    from rsvg_desktop.core.prompt.templates import IMAGE_TOKEN, build_prompt
    from rsvg_desktop.errors import ConfigError

    prompt = build_prompt(task, query, history, classes=tuple(classes) or None, region=region)
    tokenizer, limit, images = _context_of(str(Path(model_dir).resolve()))
    text_tokens = len(tokenizer(prompt, verbose=False).input_ids) - prompt.count(IMAGE_TOKEN)
    total = text_tokens + images + int(max_new_tokens)
    if total > limit:
        room = limit - images - int(max_new_tokens)
        raise ConfigError(
            f"the question does not fit the model's context of {limit} tokens: {text_tokens} prompt "
            f"tokens + {images} image tokens + {max_new_tokens} answer tokens = {total}; shorten the "
            f"query (room for about {max(room, 0)} prompt tokens) or lower --max-new-tokens"
        )
    return text_tokens


def detect(
    config: RunConfig,
    spec: ModelSpec,
    *,
    cancel: Callable[[], bool] | None = None,
    batch_size: int | None = None,
) -> Generator[Any, None, None]:
    """Load the model in this process, then run the scene job; yields :class:`ModelLoaded` first, then
    the job's events (see :func:`rsvg_desktop.engine.detect.run_scene`)."""
    from rsvg_desktop.core.model.generate import auto_batch_size
    from rsvg_desktop.engine.detect import run_scene

    check_run(config, spec)  # a run that cannot succeed fails before the (slow) model load
    check_question(
        spec.model_dir,
        task=config.task,
        query=config.query,
        classes=config.classes,
        region=config.region,
        history=config.history,
        max_new_tokens=config.max_new_tokens,
    )
    loaded, generator = yield from load_for_job(spec, cancel)
    if config.batch_size is None:
        from dataclasses import replace

        config = replace(config, batch_size=batch_size or auto_batch_size(loaded, config.max_new_tokens))
    events: Iterator[Event] = run_scene(config, generator, **job_facts(spec, loaded), cancel=cancel)
    yield from events


def load_for_job(
    spec: ModelSpec, cancel: Callable[[], bool] | None
) -> Generator[ModelLoaded, None, tuple[Any, Any]]:
    """Load the model of a job in this process: yields :class:`ModelLoaded`, then returns the loaded
    model and its generator (stopped by ``cancel`` when given)."""
    from rsvg_desktop.core.model.generate import GeoChatGenerator
    from rsvg_desktop.core.model.loader import load_model

    loaded = load_model(load_spec(spec))
    yield ModelLoaded(model_info(loaded))
    generator = GeoChatGenerator(loaded, compiled=spec.compiled)
    if cancel is not None:
        generator.should_stop = cancel
    return loaded, generator


def job_facts(spec: ModelSpec, loaded: Any) -> dict[str, Any]:
    """What a job records of the model that answers it (``run_scene``'s and ``run_change``'s
    ``model``, ``precision``, ``device`` and ``random_weights``)."""
    return {
        "model": str(spec.model_dir),
        "precision": loaded.run_precision,
        "device": loaded.device_name,
        "random_weights": loaded.random_weights,
    }


# --- known models (models/*.json) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class KnownModelStatus:
    """What ``rsvg model list`` and the app's model manager show for one known model."""

    id: str
    name: str
    license: str
    download_dir: str
    downloaded: bool  # every file fetched and checked
    partial: bool  # some files or .part files present, not complete
    converted_dir: str
    converted: bool
    cached_precisions: tuple[str, ...]
    size_hint: int | None
    # what the files are checked against: "manifest" (its sha256 for every file), or "first download"
    # (some have none: the hashes the hub stated at the first download, recorded then, are the reference)
    reference: str = "manifest"
    commit: str | None = None  # the commit the download is pinned to (None before any download)


def known_models() -> dict[str, Any]:
    """The manifests of every known model, the user's own included."""
    from rsvg_desktop.core.model.manifest import known_models as load_known
    from rsvg_desktop.engine.model_files import models_home

    return load_known(user_dir=models_home())


def known_model(model_id: str) -> Any:
    from rsvg_desktop.errors import ModelNotFoundError

    models = known_models()
    if model_id not in models:
        names = ", ".join(sorted(models)) or "none"
        raise ModelNotFoundError(f"{model_id}: not a known model (known: {names}; manifests live in models/)")
    return models[model_id]


def _cached_precisions(converted: Path) -> tuple[str, ...]:
    from rsvg_desktop.core.model.loader import CACHE_DIRNAME

    cache = converted / CACHE_DIRNAME
    if not cache.is_dir():
        return ()
    return tuple(sorted({p.name.split("-", 1)[0] for p in cache.iterdir() if p.is_dir()}))


def model_status(manifest: Any) -> KnownModelStatus:
    from rsvg_desktop.core.model.fetch import is_complete, read_record, reference_is_first_download
    from rsvg_desktop.engine.model_files import model_place

    place = model_place(manifest.id)
    downloaded = is_complete(place.download)
    first = any(reference_is_first_download(c) for _, c in manifest.components())
    commit = (read_record(place.download) or {}).get("commit")
    partial = not downloaded and place.download.is_dir() and any(place.download.iterdir())
    converted = (place.converted / "rsvg_manifest.json").is_file()
    return KnownModelStatus(
        id=manifest.id,
        name=manifest.name,
        license=manifest.license,
        download_dir=str(place.download),
        downloaded=downloaded,
        partial=partial,
        converted_dir=str(place.converted),
        converted=converted,
        cached_precisions=_cached_precisions(place.converted) if converted else (),
        size_hint=manifest.model.size_hint,
        reference="first download" if first else "manifest",
        commit=commit if isinstance(commit, str) else None,
    )


def checked_against(status: KnownModelStatus) -> str:
    """What ``rsvg model verify`` checks a known model's files against, in words."""
    pinned = f" at commit {status.commit}" if status.commit else ""
    if status.reference == "manifest":
        return f"the sha256 in its manifest{pinned}"
    if status.downloaded:
        return (
            f"the record of its first download{pinned} (the hashes the hub stated then; the manifest has "
            "none yet)"
        )
    return "the manifest has no sha256 yet: the first download's record will be the reference"


def list_models() -> list[KnownModelStatus]:
    return [model_status(m) for _, m in sorted(known_models().items())]


def download_known(
    model_id: str,
    dest: str | os.PathLike[str] | None = None,
    *,
    progress: Callable[[Any], None] | None = None,
    should_stop: Callable[[], bool] | None = None,
    with_clip: bool = True,
) -> Path:
    """Download a known model (and the vision tower its manifest names, into ``<dest>/../clip`` or the
    model's own ``clip`` folder); returns the folder of the original checkpoint. Resumable."""
    from rsvg_desktop.core.model.fetch import download_component
    from rsvg_desktop.engine.model_files import model_place

    manifest = known_model(model_id)
    place = model_place(model_id)
    target = Path(dest) if dest is not None else place.download
    download_component(
        manifest.model, target, progress=progress, should_stop=should_stop, label=manifest.hub_label
    )
    if with_clip and manifest.vision_tower is not None:
        clip_dir = target.parent / "clip" if dest is not None else place.clip
        download_component(
            manifest.vision_tower,
            clip_dir,
            progress=progress,
            should_stop=should_stop,
            label=manifest.vision_tower.hub.repository,
        )
    return target


def convert_known(
    model_id: str,
    *,
    progress: Callable[[Any], None] | None = None,
    overwrite: bool = False,
) -> Path:
    """Convert a downloaded known model into its ``converted`` folder (with its CLIP folder when one
    was downloaded); returns the converted folder."""
    from rsvg_desktop.core.model.fetch import is_complete
    from rsvg_desktop.engine.model_files import model_place
    from rsvg_desktop.errors import ModelNotFoundError

    place = model_place(model_id)
    if not is_complete(place.download):
        raise ModelNotFoundError(f"{model_id}: not downloaded yet (rsvg model download {model_id})")
    clip = place.clip if is_complete(place.clip) else None
    convert_model(place.download, place.converted, clip=clip, overwrite=overwrite, progress=progress)
    return place.converted


def verify_known(model_id: str, *, should_stop: Callable[[], bool] | None = None) -> list[str]:
    """Problems with a downloaded known model's files (empty: the files match what was recorded)."""
    from rsvg_desktop.core.model.fetch import verify_component
    from rsvg_desktop.engine.model_files import model_place

    manifest = known_model(model_id)
    place = model_place(model_id)
    problems = verify_component(manifest.model, place.download, should_stop=should_stop)
    if manifest.vision_tower is not None and place.clip.is_dir():
        problems += verify_component(manifest.vision_tower, place.clip, should_stop=should_stop)
    return problems
