"""The two-date comparison job: one grid, the scene job on both dates, matching, verification, the
change GeoPackage (see the package docs and docs/change.md)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from typing import Any

from rsvg_desktop.core.geo.change import ChangeSet, Matches, match_objects
from rsvg_desktop.core.geo.detections import DetectionTable
from rsvg_desktop.core.geo.export.change import write_change
from rsvg_desktop.core.geo.merge import MergeConfig
from rsvg_desktop.engine.change.config import (
    ChangeConfig,
    check_change,
    date_answer_log,
    date_answer_logs,
    verify_log_path,
)
from rsvg_desktop.engine.change.dates import (
    compared_only,
    compared_window,
    date_objects,
    date_run_config,
    scene_of,
)
from rsvg_desktop.engine.change.events import (
    DATES,
    ChangeEvent,
    ChangeFinished,
    ChangeStarted,
    ChangeWarning,
    DateStarted,
)
from rsvg_desktop.engine.change.placing import Placement, place_dates
from rsvg_desktop.engine.change.summary import ChangeSummary
from rsvg_desktop.engine.change.verify import Verification, verify
from rsvg_desktop.engine.detect import AnswerGenerator, run_scene
from rsvg_desktop.engine.detect.planning import new_run_id
from rsvg_desktop.engine.events import Event, RunFailed, RunFinished
from rsvg_desktop.errors import CancelledError

log = logging.getLogger(__name__)


@dataclass
class _Run:
    """What the job has learnt so far, for its last event."""

    config: ChangeConfig
    placement: Placement
    facts: dict[str, Any]
    started: float = field(default_factory=time.monotonic)
    warnings: list[str] = field(default_factory=list)

    @property
    def logs(self) -> tuple[str, str]:
        return date_answer_logs(self.config.output)

    def finished(self, summary: ChangeSummary | None, outside: int = 0, **how: Any) -> ChangeFinished:
        """The last event: written (``summary``), or stopped before writing (``cancelled``/``error``)."""
        config = self.config
        return ChangeFinished(
            output=config.output,
            summary=summary,
            outside_compared=outside,
            compared_fraction=self.placement.area.compared_fraction,
            answer_logs=self.logs,
            verify_log=str(verify_log_path(config.output)) if config.verify else None,
            warnings=tuple(self.warnings),
            **how,
        )


def run_change(
    config: ChangeConfig,
    generator: AnswerGenerator,
    *,
    model: str = "",
    precision: str = "",
    device: str = "",
    random_weights: bool = False,
    cancel: Callable[[], bool] | None = None,
    placement: Placement | None = None,
) -> Iterator[Event | ChangeEvent]:
    """Compare two dates of one place; yields :mod:`~rsvg_desktop.engine.change.events` and, between a
    :class:`DateStarted` and that date's ``RunFinished``, the scene job's own events.

    Every yield is a cancellation point (``cancel()`` is checked between batches): a cancelled run ends
    with ``ChangeFinished(cancelled=True)`` and keeps every answer in the answer logs; the same call
    again resumes from them. Bad input raises :class:`~rsvg_desktop.errors.ChangeInputError` or
    another :class:`~rsvg_desktop.errors.ConfigError` before anything is written. ``placement``: the
    dates' grid, common area and shift when the caller has found them already (:func:`place_dates`)."""
    check_change(config)
    if placement is None:
        placement = place_dates(config)
    facts = {"run_id": new_run_id(), "model": model, "precision": precision, "device": device}
    run = _Run(config, placement, facts)
    _make_room(config)
    yield _started(config, placement)
    warning = _shift_warning(config, placement)
    if warning is not None:
        run.warnings.append(warning)
        yield ChangeWarning(warning)

    scope = compared_window(placement.grid, placement.area.compared)
    for index, date in enumerate(DATES):
        yield DateStarted(date, scene_of(config, date), str(date_answer_log(config.output, date)), index)
        ended = yield from _run_date(config, date, placement, scope, generator, facts, random_weights, cancel)
        if ended is not None:
            yield run.finished(None, cancelled=ended == "", error=ended or None)
            return

    tables = {d: date_objects(config, d, placement.grid, model=model, precision=precision) for d in DATES}
    b, a = tables["before"], tables["after"]
    found = match_objects(b.geometry, list(b.phrase), a.geometry, list(a.phrase), min_iou=config.match_iou)
    matches, outside = compared_only(found, b, a, placement.area.compared)
    outcome = Verification()
    if config.verify and (matches.appeared or matches.disappeared):
        try:
            yield from verify(
                config,
                placement.grid,
                tables,
                matches,
                generator,
                facts=facts,
                outcome=outcome,
                batch_size=max(1, config.batch_size or 4),
                cancel=cancel,
            )
        except CancelledError:  # the generator stopped inside a batch: that batch is dropped
            outcome.cancelled = True
        if outcome.cancelled:
            yield run.finished(None, cancelled=True)
            return
    yield _write(run, tables, matches, outcome, outside)


def _run_date(
    config: ChangeConfig,
    date: str,
    placement: Placement,
    scope: tuple[int, int, int, int],
    generator: AnswerGenerator,
    facts: dict[str, Any],
    random_weights: bool,
    cancel: Callable[[], bool] | None,
) -> Generator[Event, None, str | None]:
    """One date's scene job; returns ``None`` when it answered every tile, ``""`` when cancelled, else
    its error."""
    finished: RunFinished | None = None
    failed: RunFailed | None = None
    events = run_scene(
        date_run_config(config, date, placement.grid, scope),
        generator,
        model=facts["model"],
        precision=facts["precision"],
        device=facts["device"],
        random_weights=random_weights,
        cancel=cancel,
    )
    for event in events:
        if isinstance(event, RunFinished):
            finished = event
        elif isinstance(event, RunFailed):
            failed = event
        yield event
    if failed is not None:
        return f"{scene_of(config, date)}: {failed.message}"
    if finished is None or finished.cancelled:
        return ""
    return None


def _make_room(config: ChangeConfig) -> None:
    """The output's folder exists; with ``overwrite`` the verification log of an earlier run is gone (the
    dates' scene jobs remove their own logs)."""
    verify_log = verify_log_path(config.output)
    verify_log.parent.mkdir(parents=True, exist_ok=True)
    if config.overwrite and verify_log.exists():
        verify_log.unlink()


def _started(config: ChangeConfig, placement: Placement) -> ChangeStarted:
    grid, shift = placement.grid, placement.shift
    return ChangeStarted(
        before=config.before,
        after=config.after,
        grid=grid.source,
        crs_wkt=grid.crs_wkt,
        width=grid.width,
        height=grid.height,
        compared_fraction=placement.area.compared_fraction,
        shift_dx=shift.dx,
        shift_dy=shift.dy,
        shift_confidence=shift.confidence,
        output=config.output,
        answer_logs=date_answer_logs(config.output),
        verify_log=str(verify_log_path(config.output)) if config.verify else None,
    )


def _shift_warning(config: ChangeConfig, placement: Placement) -> str | None:
    from rsvg_desktop.core.geo.change.shift import shift_warning_px

    limit = shift_warning_px(config.tile_size)
    shift = placement.shift
    if shift.magnitude <= limit:
        return None
    return (
        f"the dates are {shift.magnitude:.1f} px apart after placing them on one grid (dx {shift.dx:.1f}, "
        f"dy {shift.dy:.1f}), more than a third of a model grid cell ({limit:.1f} px): matches will suffer; "
        "co-register the scenes for a better comparison"
    )


def _write(
    run: _Run, tables: dict[str, DetectionTable], matches: Matches, outcome: Verification, outside: int
) -> ChangeFinished:
    """Build the change set, write it (``write_change``) and say what it holds."""
    config, placement = run.config, run.placement
    verified = (tuple(sorted(outcome.confirmed["before"])), tuple(sorted(outcome.confirmed["after"])))
    changeset = ChangeSet(
        before=tables["before"],
        after=tables["after"],
        matches=matches,
        verified_disappeared=verified[0],
        verified_appeared=verified[1],
        unknown_area=placement.area.unknown,
        crs_wkt=placement.grid.crs_wkt,
        run=run_facts(run, verification_removed=len(verified[0]) + len(verified[1]), outside=outside),
    )
    files = write_change(config.output, changeset, overwrite=config.overwrite)
    summary = ChangeSummary.from_changeset(
        changeset, files, shift=placement.shift, seconds=time.monotonic() - run.started
    )
    log.info("change: %s → %s", summary, ", ".join(map(str, files)))
    return run.finished(summary, outside)


def run_facts(run: _Run, *, verification_removed: int, outside: int) -> dict[str, Any]:
    """The ``run`` layer's row: both scenes, the grid used, the residual shift, model, precision,
    thresholds and counts."""
    config, placement = run.config, run.placement
    grid, shift = placement.grid, placement.shift
    return {
        "run_id": run.facts["run_id"],
        "before": config.before,
        "after": config.after,
        "task": config.task,
        "query": config.query,
        "grid": grid.source,
        "grid_width": grid.width,
        "grid_height": grid.height,
        "grid_transform": ",".join(repr(float(v)) for v in grid.transform),
        "compared_fraction": placement.area.compared_fraction,
        "shift_dx": shift.dx,
        "shift_dy": shift.dy,
        "shift_px": shift.magnitude,
        "shift_confidence": shift.confidence,
        "model": run.facts["model"],
        "precision": run.facts["precision"],
        "device": run.facts["device"],
        "match_iou": config.match_iou,
        "merge_iou": MergeConfig().iou_threshold,
        "verify": config.verify,
        "tile_size": config.tile_size,
        "overlap": config.overlap,
        "verification_removed": verification_removed,
        "outside_compared": outside,
    }
