"""The values the run store takes and gives: a run, an input file, an answered tile, and counts."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.types import Tile

__all__ = ["InputOutcome", "InputRecord", "RunRecord", "StoreTotals", "TileAnswer"]


@dataclass(frozen=True, slots=True)
class RunRecord:
    """One run id: everything that decides the answers (see ``engine.batch.run_identity``)."""

    run_id: str
    task: str
    query: str
    classes: tuple[str, ...]
    prompt: str
    prompt_sha256: str
    model: str
    model_id: str
    precision: str
    angle_convention: str
    tile_size: int
    overlap: int
    target_gsd: float | None
    max_new_tokens: int
    assume_crs: str | None
    random_weights: bool
    #: ``--nodata`` as text (``"0"``, ``"nan"``); ``None``: the files' own nodata and masks.
    nodata: str | None = None


@dataclass(frozen=True, slots=True)
class InputRecord:
    """What the store keeps about an input file."""

    path: str
    driver: str | None = None
    width: int | None = None
    height: int | None = None
    bands: int | None = None
    dtype: str | None = None
    crs: str | None = None
    crs_wkt: str | None = None
    transform: tuple[float, ...] | None = None
    georef_source: str | None = None
    pixel_mode: bool = False
    size_bytes: int | None = None
    mtime_ns: int | None = None
    content_id: str | None = None
    rel_path: str | None = None


@dataclass(frozen=True, eq=False)
class TileAnswer:
    """One answered (tile, question) to store: the ledger row, its raw detections (in the output CRS,
    or pixels) and, for georeferenced inputs, the tile footprint (output CRS)."""

    run_id: str
    input_id: int
    scene: str
    tile: Tile
    answer: str
    detections: DetectionTable
    pixel_mode: bool
    input_tokens: int | None = None
    output_tokens: int | None = None
    seconds: float | None = None
    batch_size: int | None = None
    device: str = ""
    footprint: Any | None = None


@dataclass(frozen=True, slots=True)
class InputOutcome:
    """What :meth:`BatchStore.finish_input` recorded for one (run, input)."""

    status: str
    tiles_done: int
    tiles_skipped: int
    raw_detections: int
    detections: int


@dataclass(frozen=True, slots=True)
class StoreTotals:
    """Counts in the store for some run ids."""

    tiles_done: int
    tiles_skipped: int
    raw_detections: int
    detections: int
    inputs_done: int
    inputs_failed: int
