"""``rsvg``: the command line. Argument parsing and output only; each command calls one engine function.

Exit status: 0 success; 2 bad arguments or bad input (one line on stderr, no traceback); 3 some inputs
of a batch failed; 1 an internal error; 130 interrupted (Ctrl-C), 143 stopped by SIGTERM (detect,
batch, change).
``--progress json``: the run as JSON Lines events on stdout (:mod:`~rsvg_desktop.cli.progress_json`).
"""

from __future__ import annotations

import argparse
import json
import logging
import math
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from rsvg_desktop import __version__
from rsvg_desktop.cli._common import EXIT_OK, run_guarded, setup_logging
from rsvg_desktop.cli.batch_cmd import add_batch_command
from rsvg_desktop.cli.bench_cmd import add_bench_commands
from rsvg_desktop.cli.change_cmd import add_change_command
from rsvg_desktop.cli.doctor_cmd import add_doctor_command
from rsvg_desktop.cli.interrupts import EXIT_TERMINATED, exit_at_once
from rsvg_desktop.cli.model_cmds import add_model_commands
from rsvg_desktop.cli.progress_json import (
    PROGRESS_COMMANDS,
    add_progress_option,
    current,
    end_of_command,
    json_progress,
    writer_for,
)
from rsvg_desktop.engine.events import DEFAULT_OVERLAP, DEFAULT_TILE_SIZE

if TYPE_CHECKING:
    from rsvg_desktop.core.geo.scene.info import SceneInfo

log = logging.getLogger("rsvg_desktop.cli")


def _nodata_value(text: str) -> float:
    """``--nodata``'s value: a finite number, or ``nan``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
    if math.isinf(value):
        raise argparse.ArgumentTypeError(f"must be finite or nan: {text!r}")
    return value


def _add_grid_options(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--tile-size",
        type=int,
        default=DEFAULT_TILE_SIZE,
        metavar="N",
        help=f"tile side in pixels sent to the model (default {DEFAULT_TILE_SIZE})",
    )
    p.add_argument(
        "--overlap",
        type=int,
        default=DEFAULT_OVERLAP,
        metavar="N",
        help=f"overlap between neighbouring tiles in pixels (default {DEFAULT_OVERLAP})",
    )
    p.add_argument(
        "--target-gsd",
        type=float,
        default=None,
        metavar="M",
        help="resample tiles to this ground sample distance in metres (default: native)",
    )
    p.add_argument(
        "--max-nodata",
        type=float,
        default=1.0,
        metavar="F",
        help="skip tiles whose nodata fraction is at least F (default 1.0: only all-nodata tiles)",
    )
    p.add_argument(
        "--nodata",
        type=_nodata_value,
        default=None,
        metavar="VALUE",
        help="pixels equal to VALUE in every display band are nodata (a black collar: 0), in place of "
        "the file's own nodata and mask: their tiles are skipped (default: the file's)",
    )
    p.add_argument(
        "--pixel-mode", action="store_true", help="accept scenes without a CRS and work in pixel coordinates"
    )


_VERBOSE_HELP = "more log output (-vv: debug)"
_QUIET_HELP = "only warnings and errors: no progress bar, no info lines"
_DEBUG_HELP = "show tracebacks of internal errors"


def _add_output_options(p: argparse.ArgumentParser, *, after_command: bool) -> None:
    """``-v``, ``-q`` and ``--debug``: before the command, and again after it (``rsvg info X --debug``,
    as the "rerun with --debug" hint reads). After it they land in ``after_*`` (absent unless given);
    :func:`_merge_output_options` adds them to the ones before."""
    prefix = "after_" if after_command else ""
    unset: dict[str, Any] = {"default": argparse.SUPPRESS} if after_command else {}
    count_from = unset or {"default": 0}
    p.add_argument(
        "-v", "--verbose", dest=f"{prefix}verbose", action="count", help=_VERBOSE_HELP, **count_from
    )
    p.add_argument("-q", "--quiet", dest=f"{prefix}quiet", action="store_true", help=_QUIET_HELP, **unset)
    p.add_argument("--debug", dest=f"{prefix}debug", action="store_true", help=_DEBUG_HELP, **unset)


def _commands(parser: argparse.ArgumentParser) -> list[argparse.ArgumentParser]:
    """Every command's own parser (``info``, ``model info``, ``bench agree``, ...): the leaves."""
    subs = [a for a in parser._actions if isinstance(a, argparse._SubParsersAction)]
    if not subs:
        return [parser]
    children = [child for sub in subs for child in dict.fromkeys(sub.choices.values())]
    return [leaf for child in children for leaf in _commands(child)]


def _merge_output_options(args: argparse.Namespace) -> None:
    args.verbose += getattr(args, "after_verbose", 0)
    args.quiet = args.quiet or getattr(args, "after_quiet", False)
    args.debug = args.debug or getattr(args, "after_debug", False)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="rsvg", description="Ask GeoChat about georeferenced scenes.")
    parser.add_argument("--version", action="version", version=f"rsvg {__version__}")
    _add_output_options(parser, after_command=False)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)

    p = sub.add_parser("info", help="describe a scene: CRS, size, bands, nodata, pixel size, tiles")
    p.add_argument("scene")
    _add_grid_options(p)
    p.add_argument("--json", action="store_true", help="print the description as JSON")
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("tiles", help="write the scene's tile footprints as a vector file")
    p.add_argument("scene")
    _add_grid_options(p)
    p.add_argument("-o", "--output", required=True, metavar="FILE", help=".gpkg, .geojson or .shp")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.set_defaults(func=cmd_tiles)

    p = sub.add_parser("export", help="rebuild merged polygons from an answer log (no model run)")
    p.add_argument("answers", metavar="ANSWERS.jsonl")
    p.add_argument("-o", "--output", required=True, metavar="OUT", help=".gpkg, .geojson or .shp")
    p.add_argument("--overwrite", action="store_true", help="replace an existing output")
    p.add_argument(
        "--format",
        choices=("gpkg", "geojson", "shp"),
        default=None,
        help="output format (default: from OUT's extension; a format the extension contradicts is refused)",
    )
    p.add_argument("--no-merge", action="store_true", help="keep every box (no seam merging)")
    p.add_argument("--iou", type=float, default=0.5, help="rotated-IoU merge threshold (default 0.5)")
    p.add_argument(
        "--ios", type=float, default=0.8, help="intersection-over-smaller merge threshold (default 0.8)"
    )
    p.add_argument(
        "--angle-convention",
        choices=("ccw", "cw"),
        default=None,
        help="direction of GeoChat's angle (default: as recorded in the log, else ccw)",
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="read a scene the log names by URL or GDAL network path (/vsicurl/, /vsis3/...) when a record "
        "lacks georeferencing (default: refused)",
    )
    p.set_defaults(func=cmd_export)

    add_model_commands(sub, _add_grid_options)
    add_batch_command(sub, _add_grid_options)
    add_change_command(sub, _add_grid_options)
    add_bench_commands(sub)
    add_doctor_command(sub)
    for name in PROGRESS_COMMANDS:
        add_progress_option(sub.choices[name])
    for command in _commands(parser):
        _add_output_options(command, after_command=True)
    return parser


def _fmt_size(n: float) -> str:
    return f"{n:,.0f}" if abs(n) >= 100 else f"{n:.4g}"


def _pixel_size_text(info: SceneInfo) -> str:
    """A pixel's size in the CRS's units and, where that reads differently, on the ground at the centre."""
    size = f"{_fmt_size(info.gsd[0])} × {_fmt_size(info.gsd[1])}"
    if info.crs_wkt is None:
        return size
    units = f"map units: {info.gsd_unit or 'unknown'}"
    if info.gsd_m is None:
        return f"{size} ({units}; not measurable on the ground)"
    ground = f"{_fmt_size(info.gsd_m[0])} × {_fmt_size(info.gsd_m[1])} m"
    if info.gsd_unit == "metre" and ground == f"{size} m":
        return f"{ground} (map units and on the ground)"
    return f"{size} ({units}), {ground} on the ground at the centre"


def _check_grid_options(args: argparse.Namespace) -> None:
    from rsvg_desktop.engine.preflight import check_grid

    check_grid(
        tile_size=args.tile_size,
        overlap=args.overlap,
        target_gsd=args.target_gsd,
        max_nodata_fraction=args.max_nodata,
    )


def _json_number(value: float | None) -> float | str | None:
    """A number as JSON can hold it: NaN and the infinities (a float raster's nodata) as text."""
    if value is None or math.isfinite(value):
        return value
    return "nan" if math.isnan(value) else ("inf" if value > 0 else "-inf")


def cmd_info(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.scenes import describe_scene

    _check_grid_options(args)
    summary = describe_scene(
        args.scene,
        tile_size=args.tile_size,
        overlap=args.overlap,
        target_gsd=args.target_gsd,
        pixel_mode=args.pixel_mode,
        max_nodata_fraction=args.max_nodata,
        nodata=args.nodata,
    )
    info, plan = summary.info, summary.plan
    data = {
        "path": info.path,
        "driver": info.driver,
        "crs": info.crs_name or (info.crs_wkt and "custom"),
        "pixel_mode": info.pixel_mode,
        "width": info.width,
        "height": info.height,
        "bands": info.count,
        "dtype": info.dtype,
        "nodata": _json_number(info.nodata),
        "nodata_given": info.nodata_given,
        "mask": str(info.mask_kind),
        "pixel_size": list(info.gsd),
        "pixel_size_unit": info.gsd_unit,
        "pixel_size_m": list(info.gsd_m) if info.gsd_m else None,
        "transform": list(info.transform),
        "bounds": list(info.bounds),
        "overviews": list(info.overviews),
        "colorinterp": list(info.colorinterp),
        "display_bands": list(info.display_bands),
        "tile_size": plan.tile_size,
        "overlap": plan.overlap,
        "grid": [plan.n_rows, plan.n_cols],
        "tiles": plan.n_tiles,
        "tiles_kept": plan.n_kept,
        "tiles_skipped_nodata": plan.n_skipped,
    }
    if args.json:
        print(json.dumps(data, indent=2, default=str, allow_nan=False))
        return EXIT_OK
    gsd = _pixel_size_text(info)
    lines = [
        f"scene       {info.path}",
        f"format      {info.driver}",
        f"crs         {data['crs'] or 'none (pixel coordinates)'}",
        f"size        {info.width} × {info.height} px, {info.count} band(s) of {info.dtype}",
        f"nodata      {info.nodata if info.nodata is not None else '-'} "
        f"({'given with --nodata' if info.nodata_given else f'validity from {info.mask_kind}'})",
        f"pixel size  {gsd}",
        f"bounds      {', '.join(_fmt_size(v) for v in info.bounds)}",
        f"overviews   {', '.join(map(str, info.overviews)) or 'none'}",
        f"display     bands {', '.join(map(str, info.display_bands))} as R, G, B",
        f"tiles       {plan.n_tiles} ({plan.n_rows} rows × {plan.n_cols} cols of {plan.tile_size} px, "
        f"overlap {plan.overlap}): {plan.n_kept} to the model, {plan.n_skipped} skipped as nodata",
    ]
    if plan.n_kept == 0:
        lines.append("warning     the scene has no valid pixels: nothing would be sent to the model")
    print("\n".join(lines))
    return EXIT_OK


def cmd_tiles(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.preflight import check_output_file
    from rsvg_desktop.engine.scenes import write_tile_grid

    _check_grid_options(args)
    check_output_file(args.output, overwrite=args.overwrite)
    writer = current()
    if writer is not None:
        writer.started(None, scene=args.scene, output=args.output)
    summary, result = write_tile_grid(
        args.scene,
        args.output,
        tile_size=args.tile_size,
        overlap=args.overlap,
        target_gsd=args.target_gsd,
        pixel_mode=args.pixel_mode,
        max_nodata_fraction=args.max_nodata,
        overwrite=args.overwrite,
        nodata=args.nodata,
    )
    plan = summary.plan
    print(
        f"wrote {plan.n_tiles} tile footprints ({plan.n_kept} kept, {plan.n_skipped} skipped as nodata) "
        f"to {result.path}"
    )
    writer = current()
    if writer is not None:
        writer.finished(
            EXIT_OK, output=str(result.path), tiles=plan.n_tiles, kept=plan.n_kept, skipped=plan.n_skipped
        )
    return EXIT_OK


def cmd_export(args: argparse.Namespace) -> int:
    from rsvg_desktop.core.geo.merge import MergeConfig
    from rsvg_desktop.engine.results import export_answer_log

    merge = None if args.no_merge else MergeConfig(iou_threshold=args.iou, ios_threshold=args.ios)
    writer = current()
    if writer is not None:
        writer.started(None, answer_log=args.answers, output=args.output)
    summary = export_answer_log(
        args.answers,
        args.output,
        overwrite=args.overwrite,
        merge=merge,
        angle_convention=args.angle_convention,
        fmt=args.format,
        allow_remote=args.allow_remote,
    )
    print(
        f"{summary.records} answered tiles, {summary.raw_detections} boxes, "
        f"{summary.detections} after merging → {summary.result.path}"
    )
    writer = current()
    if writer is not None:
        writer.finished(
            EXIT_OK,
            output=str(summary.result.path),
            answer_log=args.answers,
            records=summary.records,
            raw_detections=summary.raw_detections,
            detections=summary.detections,
        )
    return EXIT_OK


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    _merge_output_options(args)
    setup_logging(-1 if args.quiet else args.verbose)
    writer = writer_for(args.command, getattr(args, "progress", None))
    with json_progress(writer):
        code = run_guarded(lambda: args.func(args), debug=args.debug)
        if writer is not None:
            end_of_command(writer, code)
    if code == EXIT_TERMINATED and argv is None:  # the rsvg process itself, not a caller of main()
        exit_at_once(code)
    return code


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
