"""A whole comparison in this process: the model loaded once, then both dates (like ``detect`` in
:mod:`rsvg_desktop.engine.model_jobs`; the app's worker runs :func:`run_change` with its own model)."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from typing import Any

from rsvg_desktop.engine.change.config import ChangeConfig, check_change
from rsvg_desktop.engine.change.job import run_change
from rsvg_desktop.engine.change.placing import Placement, place_dates
from rsvg_desktop.engine.events import ModelSpec


def change(
    config: ChangeConfig,
    spec: ModelSpec,
    *,
    cancel: Callable[[], bool] | None = None,
    placement: Placement | None = None,
) -> Generator[Any, None, None]:
    """Check everything that can be checked without the model (the settings, the output, both scenes
    and their overlap, the question's length, the device), load the model, then run the comparison;
    yields :class:`ModelLoaded` first, then :func:`run_change`'s events. ``placement``: as
    :func:`place_dates` found it, when the caller has."""
    from rsvg_desktop.core.model.generate import auto_batch_size
    from rsvg_desktop.engine import preflight
    from rsvg_desktop.engine.model_jobs import check_question, job_facts, load_for_job

    check_change(config)
    if placement is None:  # scenes that cannot be compared fail before the (slow) model load
        placement = place_dates(config)
    preflight.check_machine(spec.device, spec.precision, compiled=spec.compiled, group_size=spec.group_size)
    check_question(spec.model_dir, task=config.task, query=config.query, max_new_tokens=config.max_new_tokens)
    loaded, generator = yield from load_for_job(spec, cancel)
    if config.batch_size is None:
        config = dataclasses.replace(config, batch_size=auto_batch_size(loaded, config.max_new_tokens))
    yield from run_change(config, generator, **job_facts(spec, loaded), cancel=cancel, placement=placement)
