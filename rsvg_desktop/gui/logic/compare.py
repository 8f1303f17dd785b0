"""Comparing two dates in the app, the Qt-free part: which tasks run on both dates, the comparison's
settings (:func:`change_config`), where it writes and when a rerun resumes (:class:`ResumeBook`), and
the progress of both dates in one line (:class:`ChangeProgress`).

The open scene is the *before* date and the comparison is read on its grid (``grid="before"``), so the
map, the tile grid and the change layers share its pixels; the other scene is the *after* date, warped
onto that grid when shown or read.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rsvg_desktop.core.geo.scene import SceneInfo
from rsvg_desktop.core.progress import format_duration
from rsvg_desktop.engine.change import DateStarted, VerifyProgress, VerifyStarted
from rsvg_desktop.engine.change.config import TASKS as CHANGE_TASKS
from rsvg_desktop.engine.change.config import ChangeConfig, date_answer_log

__all__ = [
    "CHANGE_TASKS",
    "DATE_LABELS",
    "ChangeProgress",
    "ResumeBook",
    "change_config",
    "compares",
]

#: How the two dates are named on screen.
DATE_LABELS = {"before": "Before", "after": "After"}


def compares(task: str) -> bool:
    """Whether a task runs on both dates in comparison mode (the tasks that find objects)."""
    return task in CHANGE_TASKS


def change_config(
    info: SceneInfo,
    other: str,
    *,
    task: str,
    query: str,
    output: str | Path,
    tile_size: int,
    overlap: int,
) -> ChangeConfig:
    """The comparison of the open scene (before, its grid) with ``other`` (after) for this question."""
    return ChangeConfig(
        before=info.path,
        after=other,
        query=query,
        output=str(output),
        task=task,
        grid="before",
        tile_size=tile_size,
        overlap=overlap,
        pixel_mode=info.pixel_mode,
    )


ResumeKey = tuple[str, str, str, str, int, int]


def _key(config: ChangeConfig) -> ResumeKey:
    return (config.before, config.after, config.task, config.query, config.tile_size, config.overlap)


@dataclass
class ResumeBook:
    """The outputs of comparisons that stopped before writing (cancelled, failed, worker gone): asking
    the same question of the same two scenes again reuses that output's name, so both dates' answer
    logs resume and only the tiles left are asked."""

    outputs: dict[ResumeKey, str] = field(default_factory=dict)

    def output_for(self, config: ChangeConfig) -> str | None:
        """The unfinished output of the same comparison whose answer logs still exist, if any."""
        output = self.outputs.get(_key(config))
        if output is None:
            return None
        if not any(date_answer_log(output, d).is_file() for d in ("before", "after")):
            return None
        return output

    def stopped(self, config: ChangeConfig) -> None:
        self.outputs[_key(config)] = config.output

    def finished(self, config: ChangeConfig) -> None:
        self.outputs.pop(_key(config), None)


@dataclass
class ChangeProgress:
    """Both dates' tiles and the verification's questions, as one line (``Before 3/9 · After 0/9``)."""

    totals: dict[str, int] = field(default_factory=lambda: {"before": 0, "after": 0})
    done: dict[str, int] = field(default_factory=lambda: {"before": 0, "after": 0})
    date: str | None = None
    verify: tuple[int, int] | None = None  # done, total

    def on_date(self, event: DateStarted) -> None:
        self.date = event.date

    def on_tile(self, done: int, total: int) -> None:
        if self.date is not None:
            self.done[self.date], self.totals[self.date] = done, total

    def on_verify(self, event: VerifyStarted | VerifyProgress) -> None:
        if isinstance(event, VerifyStarted):
            self.verify = (0, event.total)
        else:
            self.verify = (event.done, event.total)

    @property
    def value(self) -> tuple[int, int]:
        """``(done, total)`` over both dates' tiles and the verification's questions (the bar)."""
        done = sum(self.done.values()) + (self.verify[0] if self.verify else 0)
        total = sum(self.totals.values()) + (self.verify[1] if self.verify else 0)
        return done, max(total, 1)

    def text(self, seconds: float | None = None) -> str:
        parts = [f"{DATE_LABELS[d]} {self.done[d]}/{self.totals[d] or '?'}" for d in ("before", "after")]
        if self.verify is not None:
            parts.append(f"verifying {self.verify[0]}/{self.verify[1]}")
        if seconds is not None:
            parts.append(format_duration(seconds))
        return " · ".join(parts)
