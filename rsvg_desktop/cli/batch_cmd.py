"""``rsvg batch``: GeoChat over folders of scenes or tiles into a resumable GeoPackage run store.

Argument parsing and output only; the work is :func:`rsvg_desktop.engine.batch.batch_detect`.

Exit status: 0 every input done; 3 some inputs failed (listed in the summary; rerun to retry them);
2 bad arguments or bad input (nothing run; a model that cannot be found or loaded included); 1 the
run stopped early (the model kept failing, the store could not be written, or an internal error);
130 interrupted; 143 stopped by SIGTERM. Rerunning the same command resumes in every case.
"""

from __future__ import annotations

import argparse
import itertools
import json
import logging
import os
import shlex
import sys
import tempfile
from collections.abc import Callable, Generator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsvg_desktop.cli._common import (
    EXIT_FAILED_INPUTS,
    EXIT_INTERNAL,
    EXIT_OK,
    EXIT_USAGE,
    Progress,
    notice,
)
from rsvg_desktop.cli.interrupts import EXIT_INTERRUPTED, exit_status, first_interrupt_stops
from rsvg_desktop.cli.model_cmds import (
    TASK_CHOICES,
    add_model_run_options,
    model_spec,
    report_model_loaded,
    run_settings,
)
from rsvg_desktop.cli.progress_json import current
from rsvg_desktop.engine.events import (
    BatchFinished,
    BatchProgress,
    BatchStarted,
    BatchSummary,
    InputFinished,
    ModelLoaded,
    ModelSpec,
)
from rsvg_desktop.errors import ConfigError, ExportError, GenerationError, ModelError, RsvgError

if TYPE_CHECKING:
    from rsvg_desktop.engine.batch import BatchConfig
    from rsvg_desktop.engine.inputs import Query

log = logging.getLogger("rsvg_desktop.cli")

_EXIT_FOR_STATUS = {
    "complete": EXIT_OK,
    "partial": EXIT_FAILED_INPUTS,
    "aborted": EXIT_INTERNAL,
    "cancelled": EXIT_INTERRUPTED,
    "interrupted": EXIT_INTERRUPTED,
}


def add_batch_command(
    sub: argparse._SubParsersAction, grid_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser(
        "batch",
        help="ask GeoChat about every tile of many scenes/tiles; resumable GeoPackage output",
        description="Run GeoChat over scenes, folders of scenes or pre-cut tiles (searched recursively) "
        "and globs. Results go into a GeoPackage run store tile by tile; rerunning the same "
        "command resumes where it stopped. Exit status: 0 all done, 3 some inputs failed, "
        "2 bad arguments, 1 stopped early, 130 interrupted, 143 stopped by SIGTERM.",
    )
    p.add_argument(
        "inputs",
        nargs="+",
        metavar="INPUT",
        help="scene or tile files, folders (searched recursively) or glob patterns",
    )
    p.add_argument(
        "--query", action="append", default=[], help="the question or object description (repeat for several)"
    )
    p.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default="refer",
        help="task of --query and of plain lines in --queries (default refer)",
    )
    p.add_argument(
        "--queries",
        metavar="FILE",
        default=None,
        help='questions, one per line, or JSON Lines {"task": ..., "query": ..., "classes": [...]}',
    )
    add_model_run_options(p)
    p.add_argument(
        "--assume-crs",
        default=None,
        metavar="CRS",
        help="CRS (e.g. EPSG:32633) of inputs that have a world file but no CRS (default: such "
        "inputs are processed in pixel coordinates)",
    )
    p.add_argument(
        "--crs",
        default=None,
        metavar="CRS",
        help="output CRS of a new store (default: the CRS of the first georeferenced input)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT.gpkg", help="the run store (GeoPackage)")
    p.add_argument("--overwrite", action="store_true", help="start a new store instead of resuming")
    p.add_argument("--json", action="store_true", help="print the summary as one line of JSON on stdout")
    p.add_argument("--summary", default=None, metavar="FILE", help="also write the JSON summary to FILE")
    p.add_argument(
        "--ray",
        nargs="?",
        const="local",
        default=None,
        metavar="ADDRESS",
        help="answer on Ray workers, one model each (needs pip install 'rsvg-desktop[cluster]'): without "
        "ADDRESS a local Ray instance; 'auto' or ray://host:10001 joins a running cluster. Inputs must "
        "be readable by every worker under the same path (see docs/batch.md)",
    )
    p.add_argument(
        "--workers", type=int, default=None, metavar="N", help="with --ray: workers (default one per GPU)"
    )
    p.add_argument(
        "--worker-device",
        default="auto",
        choices=("auto", "cuda", "cpu"),
        help="with --ray: device of each worker (default: --device; GPUs when the cluster has them)",
    )
    grid_options(p)
    for action in p._actions:
        if action.dest == "pixel_mode":
            action.help = "accepted for symmetry: a batch always processes inputs without CRS in pixel mode"
    p.set_defaults(func=cmd_batch)


def _queries(args: argparse.Namespace) -> tuple[Query, ...]:
    from rsvg_desktop.engine.inputs import Query, read_queries, unique_queries

    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else ()
    found = [Query(args.task, q, classes) for q in args.query]
    if args.queries:
        found.extend(read_queries(args.queries, args.task))
    if not found:
        raise ConfigError("no question: give --query Q or --queries FILE")
    return unique_queries(found)


def _write_summary(path: str, text: str) -> None:
    """Write the summary through a temporary sibling (removed again when the write fails)."""
    target = Path(path)
    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", suffix=".tmp", dir=target.parent or None)
    except OSError as exc:
        raise ExportError(f"--summary {path}: cannot be written ({exc.strerror or exc})") from exc
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text + "\n")
        os.replace(tmp, target)
    except OSError as exc:
        Path(tmp).unlink(missing_ok=True)
        raise ExportError(f"--summary {path}: cannot be written ({exc.strerror or exc})") from exc


def cmd_batch(args: argparse.Namespace) -> int:
    _check_batch_args(args)
    spec = model_spec(args)
    config = _batch_config(args)
    events = _batch_events(args, config, spec)
    writer = current()
    view = _BatchView(quiet=args.quiet or writer is not None)
    with first_interrupt_stops():  # a second Ctrl-C cannot cut short the recording of what finished
        try:
            try:
                _show_all(events, view, writer)
            except KeyboardInterrupt as exc:
                # The signal landed here, between two events: it is handed to the engine, which ends
                # as when it lands there (the session recorded as interrupted, its BatchFinished last).
                _show_all(events, view, writer, first=_handed_over(events, view, exc))
        except RsvgError as exc:
            if not view.started:
                raise  # bad arguments or input: exit status 2
            return _stopped_early(exc)
    if view.finished is None:  # pragma: no cover - the engine always ends with BatchFinished
        return EXIT_INTERNAL
    return _report(args, view.finished, view.workers)


def _show_all(events: Generator[Any, None, None], view: Any, writer: Any, first: Any = None) -> None:
    """Show ``first`` (when given) and every event left (the bar, and the ``--progress json`` lines)."""
    for event in itertools.chain(() if first is None else (first,), events):
        view.show(event)
        if writer is not None:
            writer.engine_event(event)


def _handed_over(events: Generator[Any, None, None], view: Any, exc: KeyboardInterrupt) -> Any:
    """The engine's next event once ``exc`` is raised inside it. Where it cannot take it (it had not
    started its session, or has ended), the batch is closed and ``exc`` goes on (exit status 130/143)."""
    try:
        return events.throw(exc)
    except (KeyboardInterrupt, StopIteration):
        view.stop()
        events.close()  # finished batches are in the store; the session is recorded as cancelled
        raise exc from None


def _check_batch_args(args: argparse.Namespace) -> None:
    """Refuse, before the store is opened, options that do not go together, a --summary that cannot be
    written, and a device or precision this machine does not have (:mod:`~rsvg_desktop.engine.preflight`)."""
    if args.ray is None and (args.workers is not None or args.worker_device != "auto"):
        raise ConfigError("--workers and --worker-device need --ray")
    from rsvg_desktop.engine.preflight import check_device_name, check_machine, check_writable_file

    if args.summary:
        from rsvg_desktop.core.paths import refuse_same_file

        check_writable_file(args.summary, "--summary")
        refuse_same_file([args.summary], [p for p in args.inputs if Path(p).is_file()])
    if args.ray is None:  # Ray workers run on their own machines and check there
        check_machine(args.device, args.precision, compiled=args.compiled, group_size=args.group_size)
    else:
        check_device_name(args.device)


def _batch_config(args: argparse.Namespace) -> BatchConfig:
    from rsvg_desktop.engine.batch import BatchConfig

    return BatchConfig(
        inputs=tuple(args.inputs),
        queries=_queries(args),
        output=args.output,
        overwrite=args.overwrite,
        assume_crs=args.assume_crs,
        crs=args.crs,
        command=shlex.join(["rsvg", *sys.argv[1:]]),
        **run_settings(args),
    )


def _batch_events(
    args: argparse.Namespace, config: BatchConfig, spec: ModelSpec
) -> Generator[Any, None, None]:
    """The batch's events: in this process, or with the model on Ray workers (``--ray``)."""
    if args.ray is None:
        from rsvg_desktop.engine.batch import batch_detect

        return batch_detect(config, spec)
    from rsvg_desktop.engine.ray_batch import RayOptions, ray_batch_detect

    options = RayOptions(
        address=None if args.ray == "local" else args.ray,
        workers=args.workers,
        worker_device=args.worker_device,
    )
    return ray_batch_detect(config, spec, options)


class _BatchView:
    """Shows a batch's events on stderr (a progress bar unless ``quiet``) and keeps what the summary
    needs: whether it started, its :class:`BatchSummary`, and the Ray workers' statistics."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.started = False
        self.finished: BatchSummary | None = None
        self.workers: list[dict[str, Any]] | None = None
        self._bar: Progress | None = None
        self._per_worker = ""

    def show(self, event: Any) -> None:
        bar = self._bar
        if isinstance(event, BatchStarted):
            self._start(event)
        elif isinstance(event, ModelLoaded):
            report_model_loaded(event)
            if bar is not None:
                bar.restart_clock()  # the model loads when the first batch needs it: not tiles' time
        elif isinstance(event, BatchProgress) and bar is not None:
            bar.total = max(event.tiles_expected, 1)
            bar.update(
                event.tiles_done,
                extra=f"inputs {event.inputs_finished}/{event.inputs_total}, "
                f"{event.raw_detections} boxes{self._per_worker}",
            )
        elif hasattr(event, "workers") and hasattr(event, "retried_batches"):  # --ray: WorkersProgress
            self.workers = [w.to_dict() for w in event.workers]
            self._per_worker = "; " + " ".join(
                f"w{i} {w.tiles_per_second:.2f}/s" for i, w in enumerate(event.workers) if w.batches
            )
        elif isinstance(event, InputFinished) and event.status == "failed":
            log.info("%s failed (%s): %s", event.path, event.stage, event.reason)
        elif isinstance(event, BatchFinished):
            self._finish(event.summary)

    def _finish(self, finished: BatchSummary) -> None:
        self.finished = finished
        bar = self._bar
        if bar is None:
            return
        if finished.status in ("complete", "partial"):  # went through: the total was an estimate
            if finished.tiles_done:
                bar.total = finished.tiles_done
                bar.update(finished.tiles_done, extra=f"{finished.raw_detections} boxes")
        else:  # stopped: the bar stays where it got to
            bar.finish(finished.tiles_done, extra=f"{finished.raw_detections} boxes, {finished.status}")

    def stop(self) -> None:
        """End the bar's line where it got to (the batch was interrupted)."""
        if self._bar is not None:
            self._bar.finish()

    def _start(self, event: BatchStarted) -> None:
        self.started = True
        notice(
            f"batch: {event.inputs} inputs, {len(event.runs)} question(s) → {event.output} "
            f"(answers: {event.answer_log})"
        )
        for run_id, task, query in event.runs:
            notice(f"batch: run {run_id}: {task} {query!r}")
        self._bar = Progress(1, label="tiles", enabled=not self.quiet)


def _stopped_early(exc: RsvgError) -> int:
    """Report an error after the batch started; the exit status (finished results are kept)."""
    # The model is loaded when the first batch needs it: a model that cannot be loaded (at this
    # precision, on this device) is a bad argument, like one that cannot be found. The same command
    # would fail the same way, so it is suggested only once the model is fixed.
    loading = isinstance(exc, ModelError) and not isinstance(exc, GenerationError)
    then = "once the model loads, the same command resumes" if loading else "rerun the same command to resume"
    message = f"{exc} (finished results are kept; {then})"
    print(f"rsvg: error: {message}", file=sys.stderr)
    code = EXIT_USAGE if loading else EXIT_INTERNAL
    writer = current()
    if writer is not None:
        writer.error(message, code)
    return code


def _report(args: argparse.Namespace, finished: BatchSummary, workers: list[dict[str, Any]] | None) -> int:
    """Write and print the summary (JSON or text); the exit status for its status."""
    from rsvg_desktop.engine.batch import summary_json

    code = _EXIT_FOR_STATUS.get(finished.status, EXIT_INTERNAL)
    if code == EXIT_INTERRUPTED:
        code = exit_status()  # 143 when SIGTERM stopped it
    extra: dict[str, Any] = {"exit_code": code}
    if workers is not None:
        extra["workers"] = workers
    text = summary_json(finished, **extra)
    if args.summary:
        _write_summary(args.summary, text)
    if args.json:
        print(text)
    else:
        _print_summary(finished)
    if finished.status == "aborted":
        print(f"rsvg: error: {finished.message}", file=sys.stderr)
    writer = current()
    if writer is not None and code not in (EXIT_OK, EXIT_FAILED_INPUTS):
        writer.error(finished.message or finished.status, code)
    elif writer is not None:
        writer.finished(
            code,
            output=finished.output,
            answer_log=finished.answer_log,
            summary=args.summary,
            status=finished.status,
            report=json.loads(text),
        )
    return code


def _print_summary(s: BatchSummary) -> None:
    print(
        f"{s.status}: {s.inputs_done} inputs done, {s.inputs_already_done} already done, "
        f"{s.inputs_failed} failed ({s.inputs_pixel_mode} in pixel coordinates); {s.tiles_done} tiles "
        f"answered ({s.tiles_per_second:.2f}/s), {s.tiles_already_done} done before, "
        f"{s.tiles_skipped_nodata} skipped as nodata; {s.raw_detections} boxes, {s.detections} "
        f"detections in the store → {s.output}"
    )
    for f in s.failures:
        print(f"failed: {f.input} ({f.stage}): {f.reason}")
    if s.message:
        print(f"note: {s.message}")
