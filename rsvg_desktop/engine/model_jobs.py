"""Model operations behind ``rsvg model …`` and ``rsvg detect``: memory estimates, conversion, download,
and a whole detect run in this process (the GUI uses the worker process instead)."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable, Generator, Iterator, Sequence
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
    )


def download_model(dest: str | os.PathLike[str] | None = None, *, progress: bool = True) -> Path:
    from rsvg_desktop.core.model.locate import download_geochat

    return download_geochat(dest, progress=progress)


def resolve_model_dir(explicit: str | os.PathLike[str] | None, *, smoke: bool = False) -> Path:
    """The converted model folder to load: the built-in random-weights test model with ``smoke``, else
    the first found of explicit path, ``$RSVG_MODEL_DIR``, the Hugging Face cache. An original GeoChat
    checkpoint is refused with the command that converts it."""
    from rsvg_desktop.core.model.locate import find_model
    from rsvg_desktop.engine.model_files import ensure_test_model
    from rsvg_desktop.errors import ModelNotFoundError

    if smoke:
        return ensure_test_model()
    found = find_model(explicit)
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


def _check_scene(config: RunConfig) -> None:
    """Open the scene and lay its grid once: raises the scene's own error (no CRS, not a raster, no
    valid pixels, existing output) without touching the model."""
    from rsvg_desktop.core.geo.grid import plan_tiles
    from rsvg_desktop.core.geo.scene import open_scene
    from rsvg_desktop.engine.detect import answer_log_path
    from rsvg_desktop.errors import OutputExistsError

    if config.output is not None and not config.overwrite:
        for path in (Path(config.output), answer_log_path(config.output)):
            if path.exists():
                raise OutputExistsError(f"{path} exists (use --overwrite to replace the run's outputs)")
    with open_scene(config.scene, pixel_mode=config.pixel_mode, bands=config.bands) as scene:
        plan_tiles(
            scene,
            tile_size=config.tile_size,
            overlap=config.overlap,
            target_gsd=config.target_gsd,
            max_nodata_fraction=config.max_nodata_fraction,
        )


def detect(
    config: RunConfig,
    spec: ModelSpec,
    *,
    cancel: Callable[[], bool] | None = None,
    batch_size: int | None = None,
) -> Generator[Any, None, None]:
    """Load the model in this process, then run the scene job; yields :class:`ModelLoaded` first, then
    the job's events (see :func:`rsvg_desktop.engine.detect.run_scene`)."""
    from rsvg_desktop.core.model.generate import GeoChatGenerator, auto_batch_size
    from rsvg_desktop.core.model.loader import load_model
    from rsvg_desktop.engine.detect import run_scene

    _check_scene(config)  # a scene that cannot run fails before the (slow) model load
    loaded = load_model(load_spec(spec))
    yield ModelLoaded(model_info(loaded))
    generator = GeoChatGenerator(loaded)
    if cancel is not None:
        generator.should_stop = cancel
    if config.batch_size is None:
        from dataclasses import replace

        config = replace(config, batch_size=batch_size or auto_batch_size(loaded, config.max_new_tokens))
    events: Iterator[Event] = run_scene(
        config,
        generator,
        model=str(spec.model_dir),
        precision=str(loaded.precision),
        device=loaded.device_name,
        random_weights=loaded.random_weights,
        cancel=cancel,
    )
    yield from events
