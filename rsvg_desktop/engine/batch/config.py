"""What a batch is told: the command's settings (:class:`BatchConfig`), which model answers
(:class:`ModelIdentity`) and what loading that model gives (:class:`ModelForBatch`)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rsvg_desktop.core.geo.boxes import AngleConvention
from rsvg_desktop.engine.events import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE, ModelInfo
from rsvg_desktop.engine.inputs import Query
from rsvg_desktop.errors import ConfigError

__all__ = ["CPU_BATCH_SIZE", "BatchConfig", "ModelForBatch", "ModelIdentity", "ModelLoader"]

#: The batch size when neither the command nor the model gives one.
CPU_BATCH_SIZE = 4


@dataclass(frozen=True, slots=True)
class BatchConfig:
    """One ``rsvg batch`` command. ``inputs`` are files, folders or globs; ``crs`` fixes the output CRS
    of a new store (default: the first georeferenced input's); ``assume_crs`` georeferences inputs that
    have a world file but no CRS (see :mod:`~rsvg_desktop.engine.inputs`)."""

    inputs: tuple[str, ...]
    queries: tuple[Query, ...]
    output: str
    overwrite: bool = False
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    target_gsd: float | None = None
    max_nodata_fraction: float = 1.0
    nodata: float | None = None
    batch_size: int | None = None
    max_new_tokens: int = 256
    angle_convention: str = "ccw"
    assume_crs: str | None = None
    crs: str | None = None
    command: str = ""

    def validate(self) -> None:
        """ConfigError for a setting that can never work and an output that cannot be written (checked
        before anything is opened; see :mod:`~rsvg_desktop.engine.preflight`)."""
        from rsvg_desktop.engine import preflight

        if not self.queries:
            raise ConfigError("no question: give --query or --queries FILE")
        preflight.check_run_settings(self)
        AngleConvention(self.angle_convention)
        preflight.check_output_file(self.output, overwrite=True, fmt="gpkg")  # a store resumes


@dataclass(frozen=True, slots=True)
class ModelIdentity:
    """Which model answers: ``model`` (its folder, as recorded), ``model_id`` (content fingerprint),
    the requested ``precision`` and whether its weights are random (the test model)."""

    model: str
    model_id: str
    precision: str
    random_weights: bool = False


@dataclass(frozen=True, slots=True)
class ModelForBatch:
    """What loading the model gives a batch: the generator, the model's description and the batch size it
    runs at. A batch asks for it through a :data:`ModelLoader`, only when its first batch needs the model."""

    generator: Any
    info: ModelInfo | None = None
    batch_size: int | None = None


#: Loads the model when called; a batch calls it only when it first needs the model.
ModelLoader = Callable[[], ModelForBatch]
