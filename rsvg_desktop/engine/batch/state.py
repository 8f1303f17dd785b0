"""The state of a batch under way, shared by its steps: the batch itself (:class:`BatchContext`), the
progress of each input (:class:`InputState`) and each (tile, question) pair on its way to the model
(:class:`WorkItem`). Mutable and private to one batch job; nothing here crosses a process."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rsvg_desktop.core.types import Tile
from rsvg_desktop.engine.batch.config import BatchConfig, ModelIdentity
from rsvg_desktop.engine.batch.store import BatchStore, RunRecord
from rsvg_desktop.engine.events import Failure
from rsvg_desktop.engine.inputs import Georeferencing


@dataclass
class Counters:
    """What this session did so far, and where its time went."""

    inputs_done: int = 0
    inputs_already_done: int = 0
    inputs_failed: int = 0
    inputs_pixel: int = 0
    inputs_finished: int = 0
    tiles_done: int = 0
    tiles_already_done: int = 0
    tiles_skipped: int = 0
    tiles_failed: int = 0
    tiles_known: int = 0
    inputs_planned: int = 0
    inputs_started: int = 0
    raw_detections: int = 0
    model_failures_in_a_row: int = 0
    failures: list[Failure] = field(default_factory=list)
    t_read: float = 0.0
    t_model: float = 0.0
    t_polygons: float = 0.0
    t_store: float = 0.0
    t_load: float = 0.0


@dataclass(eq=False)
class BatchContext:
    """One batch: its settings, the runs, the inputs, the open store, and what the steps learn and count
    on the way (``device`` and ``batch_size`` once the model is loaded)."""

    config: BatchConfig
    model: ModelIdentity
    store: BatchStore
    runs: tuple[RunRecord, ...]
    paths: list[str]
    output: Path
    read_tiles: bool = True  # False: workers read the tiles (an Answerer gets paths and windows)
    device: str = ""
    batch_size: int = 0
    counters: Counters = field(default_factory=Counters)
    run_ids: tuple[str, ...] = field(init=False)

    def __post_init__(self) -> None:
        self.run_ids = tuple(r.run_id for r in self.runs)


@dataclass(eq=False)
class InputState:
    """One input of this session, from opening to its status in the store."""

    path: str
    input_id: int
    georef: Georeferencing
    dst_crs: Any | None  # output CRS when it differs from the input's (None: same, or pixel mode)
    runs: tuple[int, ...]  # indices of the runs still open for this input
    tiles_planned: int | None = None  # tiles kept by the plan (None: not tiled)
    skipped: tuple[Tile, ...] = ()
    pairs: int = 0  # (tile, question) pairs open in this session
    outstanding: int = 0  # pairs handed to the model and not yet stored
    read_done: bool = False
    closed: bool = False
    failed: Failure | None = None
    tiles_done: int = 0
    detections: int = 0

    @property
    def ready(self) -> bool:
        return self.read_done and self.outstanding == 0 and not self.closed


@dataclass(frozen=True, eq=False)
class WorkItem:
    """One (tile, question) pair for the model: the input, the tile, its pixels (``None`` when the
    workers read) and the index of the run."""

    state: InputState
    tile: Tile
    image: Any
    run: int
