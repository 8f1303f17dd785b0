"""Benchmark file names and the task and dataset each stands for.

GeoChat-Bench as published holds ``referring.jsonl`` (referring), ``grounding_description.jsonl``
(grounding), ``region_captioning.jsonl`` (region-caption), ``UCmerced.jsonl`` and ``aid.jsonl``
(scene: datasets UCMerced and AID) and ``lrben.jsonl`` and ``hrben.jsonl`` (vqa: datasets LRBEN and
HRBEN). The project's own names keep working: ``<task>.jsonl`` (``region_caption`` with an underscore
too) and ``<task>/<dataset>.jsonl``. Names are matched case-insensitively. Answer files are named the
same way; ``dior-rsvg.jsonl`` names answers to a DIOR-RSVG folder's questions.
"""

from __future__ import annotations

from pathlib import Path

__all__ = ["DIOR_FILE", "GEOCHAT_BENCH_FILES", "TASKS", "accepted_names", "task_of_name", "task_of_path"]

TASKS: tuple[str, ...] = ("referring", "grounding", "region-caption", "scene", "vqa")

#: GeoChat-Bench's file stems (lower-case) → (task, dataset).
GEOCHAT_BENCH_FILES: dict[str, tuple[str, str]] = {
    "referring": ("referring", ""),
    "grounding_description": ("grounding", ""),
    "region_captioning": ("region-caption", ""),
    "ucmerced": ("scene", "UCMerced"),
    "aid": ("scene", "AID"),
    "lrben": ("vqa", "LRBEN"),
    "hrben": ("vqa", "HRBEN"),
}

#: The question-file key of a DIOR-RSVG folder's questions (its ``Annotations``).
DIOR_FILE = "DIOR-RSVG"

_OWN_NAMES: dict[str, str] = {t: t for t in TASKS} | {
    "region_caption": "region-caption",
    "dior-rsvg": "referring",
}


def task_of_name(stem: str, folder: str = "") -> tuple[str, str] | None:
    """(task, dataset) of a file named ``stem`` (no suffix) in a subfolder ``folder`` ("" at the top),
    or None when neither name tells the task."""
    key = stem.lower()
    if key in GEOCHAT_BENCH_FILES:
        return GEOCHAT_BENCH_FILES[key]
    if key in _OWN_NAMES:
        return _OWN_NAMES[key], ""
    task = _OWN_NAMES.get(folder.lower())
    return (task, stem) if task is not None else None


def task_of_path(path: Path) -> tuple[str, str] | None:
    """(task, dataset) of a ``.jsonl`` file by its name, or by its folder's name
    (``scene/UCMerced.jsonl``)."""
    return task_of_name(path.stem, path.parent.name)


def accepted_names() -> str:
    """The file names a task is told from, for messages."""
    geochat = ", ".join(
        f"{n}.jsonl" for n in ("referring", "grounding_description", "region_captioning", "UCmerced", "aid")
    )
    own = f"<task>.jsonl or <task>/<dataset>.jsonl (tasks: {', '.join(TASKS)})"
    return f"{geochat}, lrben.jsonl, hrben.jsonl, {own}"
