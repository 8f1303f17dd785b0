"""``rsvg change``: two dates of one place compared (docs/change.md). Argument parsing and output only."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rsvg_desktop.cli._common import EXIT_OK, EXIT_USAGE, Progress, notice, notice_warning
from rsvg_desktop.cli.model_cmds import add_model_run_options, model_spec, report_model_loaded, run_settings
from rsvg_desktop.engine.events import ModelLoaded, RunStarted, TileDone
from rsvg_desktop.errors import ConfigError


def add_change_command(
    sub: argparse._SubParsersAction, grid_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    p = sub.add_parser(
        "change",
        help="compare two dates of one place: what appeared, disappeared and persisted",
        description="rsvg change BEFORE AFTER --query Q -o OUT.gpkg, or rsvg change --logs "
        "BEFORE.answers.jsonl AFTER.answers.jsonl -o OUT.gpkg (docs/change.md)",
    )
    p.add_argument("scenes", nargs="*", metavar="SCENE", help="the before and the after scene")
    p.add_argument(
        "--logs",
        nargs=2,
        default=None,
        metavar=("BEFORE_LOG", "AFTER_LOG"),
        help="compare two answer logs already made (detect, batch); no model, no verification",
    )
    p.add_argument("--query", default=None, help="the object description asked of both dates")
    p.add_argument("--task", default="refer", help="refer (default) or grounding")
    add_model_run_options(p)
    p.add_argument(
        "-o", "--output", required=True, metavar="OUT", help=".gpkg (default layers), .geojson or .shp"
    )
    p.add_argument("--overwrite", action="store_true", help="replace the outputs and start over (no resume)")
    grid_options(p)
    p.add_argument(
        "--grid", default="before", help="whose pixel grid both dates are read on: before (default) or after"
    )
    p.add_argument(
        "--match-iou",
        default="0.3",
        metavar="IOU",
        help="IoU at which two dates' objects are one (default 0.3)",
    )
    p.add_argument(
        "--no-verify", action="store_true", help="do not ask the other date about unmatched objects"
    )
    p.add_argument("--json", action="store_true", help="print the summary as JSON on stdout")
    p.set_defaults(func=cmd_change)


def _match_iou(text: str) -> float:
    try:
        return float(text)
    except ValueError:
        raise ConfigError(f"--match-iou must be a number in (0, 1], got {text!r}") from None


def _change_config(args: argparse.Namespace) -> Any:
    from rsvg_desktop.engine.change import ChangeConfig

    if len(args.scenes) != 2:
        raise ConfigError(
            f"give two scenes, BEFORE and AFTER (got {len(args.scenes)}), or --logs BEFORE_LOG AFTER_LOG"
        )
    if args.query is None:
        raise ConfigError("--query is needed to compare two scenes")
    if args.classes:
        raise ConfigError("--classes does not apply to rsvg change (its tasks are refer and grounding)")
    return ChangeConfig(
        before=args.scenes[0],
        after=args.scenes[1],
        query=args.query,
        output=args.output,
        task=args.task,
        grid=args.grid,
        match_iou=_match_iou(args.match_iou),
        verify=not args.no_verify,
        overwrite=args.overwrite,
        pixel_mode=args.pixel_mode,
        **run_settings(args),
    )


class _ChangeView:
    """Shows a comparison's events on stderr: a bar per date, then one for the verification."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.date = ""
        self.finished: Any = None
        self._reused = 0
        self._bar: Progress | None = None

    def _new_bar(self, total: int, label: str, done: int = 0) -> None:
        self.end_bar()
        self._bar = Progress(total + done, label=label, enabled=not self.quiet, done=done)
        self._bar.update(done)

    def end_bar(self) -> None:
        if self._bar is not None:
            self._bar.finish()
            self._bar = None

    def show(self, event: object) -> None:
        from rsvg_desktop.engine import change as ch

        if isinstance(event, ModelLoaded):
            report_model_loaded(event)
            return
        if isinstance(event, ch.ChangeStarted):
            notice(
                f"grid: the {event.grid} scene's ({event.width} × {event.height} px); "
                f"compared: {100 * event.compared_fraction:.1f} % of it; residual shift "
                f"{(event.shift_dx**2 + event.shift_dy**2) ** 0.5:.2f} px "
                f"(dx {event.shift_dx:.2f}, dy {event.shift_dy:.2f})"
            )
        elif isinstance(event, ch.ChangeWarning):
            notice_warning(f"rsvg: warning: {event.message}")
        elif isinstance(event, ch.DateStarted):
            self.date = event.date
        elif isinstance(event, RunStarted):
            reused = f", {event.reused} already answered" if event.reused else ""
            notice(
                f"{self.date} date ({event.scene}): {event.total} tiles to answer{reused}; "
                f"answer log {event.answer_log}"
            )
            self._reused = event.reused
            self._new_bar(event.total, f"{self.date} tiles", done=event.reused)
        elif isinstance(event, TileDone) and self._bar is not None:
            self._bar.update(
                self._reused + event.done, extra=f"{len(event.polygons_wkb)} boxes in {event.tile.id}"
            )
        elif isinstance(event, ch.VerifyStarted):
            notice(
                f"verification: {event.total} unmatched objects asked of the other date "
                f"({event.reused} already answered)"
            )
            self._new_bar(event.total, "verify", done=event.reused)
        elif isinstance(event, ch.VerifyProgress) and self._bar is not None:
            self._bar.update(event.done, extra=f"{event.confirmed} confirmed")
        elif isinstance(event, ch.ChangeFinished):
            self.end_bar()
            self.finished = event


def cmd_change(args: argparse.Namespace) -> int:
    if args.logs is not None:
        return _change_from_logs(args)
    from rsvg_desktop.cli.interrupts import show_until_interrupted
    from rsvg_desktop.cli.progress_json import current
    from rsvg_desktop.engine.change import change, check_change, place_dates

    config = _change_config(args)
    check_change(config)  # bad settings and scenes that cannot be compared fail before a model is looked for
    placement = place_dates(config)
    spec = model_spec(args)
    writer = current()
    view = _ChangeView(quiet=args.quiet or writer is not None)
    events = change(config, spec, placement=placement)
    stopped = show_until_interrupted(
        events, view.show, writer, end_bar=view.end_bar, interrupted=lambda: _interrupted(config)
    )
    if stopped is not None:
        return stopped
    return _change_result(view.finished, args, writer)


def _interrupted(config: Any) -> str:
    from rsvg_desktop.engine.change import date_answer_log

    logs = [p for p in (date_answer_log(config.output, d) for d in ("before", "after")) if p.is_file()]
    if not logs:
        return "rsvg: interrupted before the first tile; nothing was written"
    return (
        f"rsvg: interrupted; the answers so far are in {', '.join(map(str, logs))}: "
        "run the same command again to go on from them"
    )


def _change_result(finished: Any, args: argparse.Namespace, writer: Any) -> int:
    """The last lines of a comparison that went to its end; the exit status."""
    if finished is None:
        raise ConfigError("the comparison ended without a result")
    if finished.summary is None:
        message = finished.error or "the comparison was cancelled; rerun the same command to go on"
        message = " ".join(message.split())
        print(f"rsvg: error: {message}", file=sys.stderr)
        if writer is not None:
            writer.error(message, EXIT_USAGE)
        return EXIT_USAGE
    data = finished.to_dict()
    _print_summary(data, as_json=args.json)
    if writer is not None:
        writer.finished(EXIT_OK, **data)
    return EXIT_OK


_SIDECARS = frozenset({".dbf", ".shx", ".prj", ".cpg", ".qml"})


def _print_summary(data: dict[str, Any], *, as_json: bool) -> None:
    """``--json``: the summary as JSON; else one line of counts and the files written."""
    if as_json:
        print(json.dumps(data, indent=2, allow_nan=False, default=str))
        return
    removed = data.get("verification_removed")
    verified = f" (verification removed {removed} candidates)" if removed else ""
    # A Shapefile's sidecars (.dbf, .shx, .prj, .cpg, .qml) are not named: its .shp stands for them.
    files = [f for f in data["outputs"] if Path(f).suffix.lower() not in _SIDECARS]
    print(
        f"{data['appeared']} appeared, {data['disappeared']} disappeared, {data['persisting']} persisting"
        f"{verified} → {', '.join(files)}"
    )


def _change_from_logs(args: argparse.Namespace) -> int:
    from rsvg_desktop.cli.progress_json import current
    from rsvg_desktop.engine.change.from_logs import change_from_logs

    if args.scenes:
        raise ConfigError("give either two scenes or --logs BEFORE_LOG AFTER_LOG, not both")
    before_log, after_log = args.logs
    writer = current()
    if writer is not None:
        writer.started(None, answer_logs=[before_log, after_log], output=args.output)
    summary = change_from_logs(
        before_log, after_log, args.output, match_iou=_match_iou(args.match_iou), overwrite=args.overwrite
    )
    data = summary.as_dict()
    _print_summary(data, as_json=args.json)
    if writer is not None:
        writer.finished(EXIT_OK, **data)
    return EXIT_OK
