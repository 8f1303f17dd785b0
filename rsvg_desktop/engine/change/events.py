"""The events a two-date comparison yields besides the scene job's own (see :func:`run_change`).

The sequence: :class:`ChangeStarted`; then per date a :class:`DateStarted` followed by that date's scene
job events (``RunStarted`` … ``RunFinished``, :mod:`rsvg_desktop.engine.events`); then, when verifying,
:class:`VerifyStarted` and a :class:`VerifyProgress` per batch; :class:`ChangeWarning` where something
lowers the result's quality; :class:`ChangeFinished` last. Small frozen values: they cross the worker's
process boundary like the scene job's.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from rsvg_desktop.engine.change.summary import ChangeSummary

DATES = ("before", "after")


@dataclass(frozen=True, slots=True)
class ChangeStarted:
    """The two scenes are on one grid: whose grid, what they share and how far apart they are."""

    before: str
    after: str
    grid: str  # "before" or "after": whose pixel grid both are read on
    crs_wkt: str | None
    width: int
    height: int
    compared_fraction: float  # of the grid's extent, valid on both dates
    shift_dx: float  # residual shift of after against before, grid pixels
    shift_dy: float
    shift_confidence: float
    output: str
    answer_logs: tuple[str, str]  # before's, after's
    verify_log: str | None = None


@dataclass(frozen=True, slots=True)
class DateStarted:
    """The scene job's events that follow (up to its ``RunFinished``) are this date's."""

    date: str  # "before" or "after"
    scene: str
    answer_log: str
    index: int  # 0 for before, 1 for after


@dataclass(frozen=True, slots=True)
class ChangeWarning:
    message: str


@dataclass(frozen=True, slots=True)
class VerifyStarted:
    """Unmatched objects whose place is now asked of the other date (``total`` questions)."""

    total: int
    reused: int = 0  # answered by an earlier, interrupted run (not asked again)


@dataclass(frozen=True, slots=True)
class VerifyProgress:
    done: int
    total: int
    confirmed: int  # of the ``done`` questions, how many the other date confirmed


@dataclass(frozen=True, slots=True)
class ChangeFinished:
    """How the comparison ended. ``summary``: what it found and the files it wrote (its counts are after
    verification: ``persisting`` includes the ``verified`` objects); ``None`` when it stopped before
    writing (``cancelled``, or ``error``): what finished is in the answer logs, and the same command
    goes on from them. ``outside_compared``: objects dropped because they lie outside the area both dates
    cover."""

    output: str
    summary: ChangeSummary | None
    outside_compared: int
    compared_fraction: float
    answer_logs: tuple[str, str]
    verify_log: str | None = None
    cancelled: bool = False
    error: str | None = None
    warnings: tuple[str, ...] = field(default_factory=tuple)

    def to_dict(self) -> dict[str, Any]:
        """The summary's fields, then the run's: JSON-ready (``rsvg change --json``)."""
        out: dict[str, Any] = self.summary.as_dict() if self.summary is not None else {}
        out.update(
            output=self.output,
            outside_compared=self.outside_compared,
            compared_fraction=self.compared_fraction,
            answer_logs=list(self.answer_logs),
            verify_log=self.verify_log,
            cancelled=self.cancelled,
            error=self.error,
            warnings=list(self.warnings),
        )
        return out


ChangeEvent = ChangeStarted | DateStarted | ChangeWarning | VerifyStarted | VerifyProgress | ChangeFinished
