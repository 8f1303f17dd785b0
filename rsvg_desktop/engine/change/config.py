"""What a two-date comparison is asked to do (:class:`ChangeConfig`), where it writes, and the checks that
refuse it before anything is read or written.

Files beside the output ``OUT.gpkg`` (``OUT`` stands for the output's name without its extension):
``OUT.before.answers.jsonl`` and ``OUT.after.answers.jsonl`` (each date's scene job, resumable; ``rsvg
export`` rebuilds a date's detections from it) and ``OUT.verify.answers.jsonl`` (the verification's
questions). Nothing else: the dates' scene jobs write their answer logs only.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

from rsvg_desktop.core.geo.export.change import check_change_output
from rsvg_desktop.core.paths import refuse_same_file
from rsvg_desktop.engine import preflight
from rsvg_desktop.engine.detect import answer_log_path
from rsvg_desktop.engine.events import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE
from rsvg_desktop.errors import ConfigError

TASKS = ("refer", "grounding")
GRIDS = ("before", "after")
DEFAULT_MATCH_IOU = 0.3


@dataclass(frozen=True, slots=True)
class ChangeConfig:
    """One question asked of two dates of one place, and how their answers are compared.

    ``grid``: whose pixel grid both dates are read on (the other is warped onto it). ``match_iou``:
    the rotated-polygon IoU at which two dates' objects are the same object. ``verify``: ask the other
    date about every unmatched object's place. The grid and run options are ``rsvg detect``'s. A rerun
    reuses the answers the answer logs already hold; ``overwrite`` starts over.
    """

    before: str
    after: str
    query: str
    output: str
    task: str = "refer"
    grid: str = "before"
    match_iou: float = DEFAULT_MATCH_IOU
    verify: bool = True
    overwrite: bool = False
    tile_size: int = DEFAULT_TILE_SIZE
    overlap: int = DEFAULT_OVERLAP
    target_gsd: float | None = None
    max_nodata_fraction: float = 1.0
    nodata: float | None = None
    pixel_mode: bool = False
    batch_size: int | None = None
    max_new_tokens: int = 256
    angle_convention: str = "ccw"


def _stem(output: Path) -> str:
    return output.name[: -len(output.suffix)] if output.suffix else output.name


def date_output(output: str | Path, date: str) -> Path:
    """The name a date's scene job runs under (``OUT.before.gpkg``): it names the date's answer log
    (``OUT.before.answers.jsonl``); the job writes no file of that name."""
    out = Path(output)
    return out.with_name(f"{_stem(out)}.{date}.gpkg")


def date_answer_log(output: str | Path, date: str) -> Path:
    """``OUT.before.answers.jsonl`` / ``OUT.after.answers.jsonl``."""
    return answer_log_path(date_output(output, date))


def date_answer_logs(output: str | Path) -> tuple[str, str]:
    """Both dates' answer logs, before first, as text."""
    return str(date_answer_log(output, "before")), str(date_answer_log(output, "after"))


def verify_log_path(output: str | Path) -> Path:
    """``OUT.verify.answers.jsonl``: the verification's questions and answers."""
    out = Path(output)
    return out.with_name(f"{_stem(out)}.verify.answers.jsonl")


def check_change(config: ChangeConfig) -> None:
    """Refuse a comparison that cannot run, before any scene is read: the choices and numbers, the
    output's name, format and folder, an existing output (without ``overwrite``), an output or log that
    would replace a scene. (Scenes that do not overlap, or a CRS on one side only, are refused when the
    grid is chosen.)"""
    if config.task not in TASKS:
        raise ConfigError(f"--task must be one of {', '.join(TASKS)} for a comparison, got {config.task!r}")
    if config.grid not in GRIDS:
        raise ConfigError(f"--grid must be before or after, got {config.grid!r}")
    iou = config.match_iou
    if (
        isinstance(iou, bool)
        or not isinstance(iou, int | float)
        or not math.isfinite(iou)
        or not 0 < iou <= 1
    ):
        raise ConfigError(f"--match-iou must be a number in (0, 1], got {iou!r}")
    if not config.query.strip():
        raise ConfigError("--query must not be empty")
    preflight.check_run_settings(config)
    preflight.check_output_name(config.output)
    logs = [date_answer_log(config.output, d) for d in GRIDS] + [verify_log_path(config.output)]
    refuse_same_file([config.output, *logs], [config.before, config.after])
    check_change_output(config.output, overwrite=config.overwrite)
