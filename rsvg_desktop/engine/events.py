"""Run configuration and the events a scene job yields.

A job is a generator: each yielded event is a progress report and a cancellation point. The CLI, the
model worker process and the GUI all consume the same events. Everything here is a small frozen,
picklable value so it can cross a process boundary (multiprocessing queues).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE
from rsvg_desktop.core.types import GridBox, Tile

if TYPE_CHECKING:  # the events stay light to import (no shapely for the GUI's and worker's queues)
    from rsvg_desktop.core.geo.change.types import TargetGrid

DEFAULT_TILE_SIZE = 504
DEFAULT_OVERLAP = 64


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """What model to load and how: folder, precision, device, quantization options.

    ``group_size``: int4wo's weights per scale; ``compiled``: the compiled generation path (CUDA only,
    static KV cache + ``torch.compile``, batches padded to fixed shapes; off by default).
    """

    model_dir: str
    precision: str = "nf4"
    device: str = "auto"
    int8_threshold: float = 6.0
    double_quant: bool = True
    use_cache: bool = True
    group_size: int = DEFAULT_INT4_GROUP_SIZE
    compiled: bool = False


@dataclass(frozen=True, slots=True)
class RunConfig:
    """One question asked of one scene.

    ``scope`` restricts the run to tiles that intersect a pixel window ``(col_off, row_off, width,
    height)`` of the scene (the visible extent or a drawn rectangle); ``None`` means the whole scene.
    ``output`` is the vector file the merged detections go to; the answer log is written next to it
    (``out.gpkg`` → ``out.answers.jsonl``). ``history`` carries earlier (question, answer) turns for a
    follow-up question on one tile. ``tile`` asks about that one tile instead of the grid (``scope`` is
    then not used): its window is read and resampled to ``tile.size``, so a region larger than a grid
    tile reaches the model whole, in one input. ``nodata`` (``--nodata``): pixels equal to it in every
    display band are nodata, in place of the file's own nodata and mask (``None``: the file's).
    """

    scene: str
    query: str
    task: str = "refer"
    output: str | None = None
    overwrite: bool = False
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    target_gsd: float | None = None
    max_nodata_fraction: float = 1.0
    scope: tuple[int, int, int, int] | None = None
    pixel_mode: bool = False
    bands: tuple[int, int, int] | None = None
    batch_size: int | None = None
    max_new_tokens: int = 256
    classes: tuple[str, ...] = ()
    region: GridBox | None = None
    history: tuple[tuple[str, str], ...] = ()
    angle_convention: str = "ccw"
    run_id: str | None = None
    tile: Tile | None = None
    nodata: float | None = None
    warp_to: TargetGrid | None = None
    resume: bool = False
    export: bool = True


@dataclass(frozen=True, slots=True)
class ModelInfo:
    """What is loaded, for the model panel."""

    model_dir: str
    precision: str
    device: str
    device_name: str
    dtype: str
    param_bytes: int
    load_seconds: float
    from_cache: bool
    random_weights: bool
    description: str
    notes: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class ModelLoaded:
    info: ModelInfo


@dataclass(frozen=True, slots=True)
class RunStarted:
    run_id: str
    scene: str
    total: int  # tiles that will be sent to the model
    skipped: int  # tiles skipped as nodata
    tiles: tuple[Tile, ...] = ()
    skipped_tiles: tuple[Tile, ...] = ()
    crs_wkt: str | None = None
    transform: tuple[float, float, float, float, float, float] | None = None
    answer_log: str | None = None
    reused: int = 0  # tiles answered by an earlier, interrupted run (``RunConfig.resume``), not asked


@dataclass(frozen=True, slots=True)
class TileStarted:
    tiles: tuple[Tile, ...]  # the batch now in the model


@dataclass(frozen=True, slots=True)
class TileDone:
    """One tile answered. ``polygons_wkb``: its detections' polygons (scene CRS) as WKB, in the order of
    ``phrases``/``angles`` (WKB keeps the event cheap to pickle)."""

    tile: Tile
    answer: str
    text: str
    phrases: tuple[str | None, ...]
    angles: tuple[float | None, ...]
    polygons_wkb: tuple[bytes, ...]
    done: int
    total: int
    seconds: float
    input_tokens: int = 0
    output_tokens: int = 0


@dataclass(frozen=True, slots=True)
class RunFinished:
    run_id: str
    done: int
    total: int
    skipped: int
    failed: int
    detections: int  # after merging
    raw_detections: int  # before merging
    seconds: float
    cancelled: bool = False
    output: str | None = None
    answer_log: str | None = None
    errors: tuple[str, ...] = field(default_factory=tuple)
    #: Why the output file could not be written (``None``: written); the answer log is complete and
    #: ``rsvg export`` rebuilds the output from it.
    export_error: str | None = None


@dataclass(frozen=True, slots=True)
class RunFailed:
    """The run stopped on an error; what finished before it is on disk (answer log, output)."""

    message: str
    done: int = 0
    answer_log: str | None = None


Event = RunStarted | TileStarted | TileDone | RunFinished | RunFailed


# --- batch runs (rsvg batch) -------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class BatchStarted:
    output: str
    answer_log: str
    runs: tuple[tuple[str, str, str], ...]  # (run_id, task, query)
    inputs: int


@dataclass(frozen=True, slots=True)
class InputStarted:
    path: str
    index: int  # 0-based position among the inputs
    tiles: int  # (tile, question) pairs to answer now
    skipped: int  # tiles skipped as nodata
    pixel_mode: bool
    georef_source: str


@dataclass(frozen=True, slots=True)
class BatchProgress:
    tiles_done: int  # (tile, question) pairs answered in this session
    tiles_expected: int  # estimate for the whole session (grows as inputs are tiled)
    inputs_finished: int
    inputs_total: int
    raw_detections: int  # boxes found in this session
    path: str = ""


@dataclass(frozen=True, slots=True)
class InputFinished:
    path: str
    status: str  # done | failed | already_done
    tiles_done: int = 0
    detections: int = 0
    stage: str | None = None
    reason: str | None = None


@dataclass(frozen=True, slots=True)
class Failure:
    input: str
    stage: str  # open | plan | read | model
    reason: str


@dataclass(frozen=True, slots=True)
class BatchSummary:
    """What a batch did (JSON: :meth:`to_dict`). Tile counts are (tile, question) pairs.

    ``status``: ``complete`` (every input done), ``partial`` (some inputs failed), ``aborted`` (the
    model kept failing) or ``cancelled``. ``tiles_done``/``raw_detections``: this session;
    ``tiles_already_done``: pairs of these inputs that earlier sessions had answered;
    ``detections``/``store_tiles_done``: totals in the store for these runs, after this session.
    ``timings``: seconds spent loading the model, reading tiles, in the model, building polygons, and
    writing the store (merging and the answer log included). ``tiles_per_second`` leaves the model's
    loading out.
    """

    status: str
    output: str
    answer_log: str
    runs: tuple[dict[str, str], ...]
    model: str
    precision: str
    device: str
    batch_size: int
    inputs_total: int
    inputs_done: int
    inputs_already_done: int
    inputs_failed: int
    inputs_pixel_mode: int
    tiles_done: int
    tiles_already_done: int
    tiles_skipped_nodata: int
    tiles_failed: int
    raw_detections: int
    detections: int
    store_tiles_done: int
    failures: tuple[Failure, ...]
    seconds: float
    tiles_per_second: float
    timings: dict[str, float] = field(default_factory=dict)
    message: str = ""

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["failures"] = [asdict(f) for f in self.failures]
        d["runs"] = [dict(r) for r in self.runs]
        return d


@dataclass(frozen=True, slots=True)
class BatchFinished:
    summary: BatchSummary


BatchEvent = BatchStarted | InputStarted | BatchProgress | InputFinished | BatchFinished | ModelLoaded
