"""``rsvg model …`` and ``rsvg detect``: argument parsing and output only."""

from __future__ import annotations

import argparse
import logging
import shlex
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rsvg_desktop.cli._common import EXIT_INTERNAL, EXIT_OK, EXIT_USAGE, Progress, notice, notice_warning
from rsvg_desktop.core.precisions import PRECISIONS
from rsvg_desktop.engine.events import (
    ModelLoaded,
    ModelSpec,
    RunConfig,
    RunFailed,
    RunFinished,
    RunStarted,
    TileDone,
)
from rsvg_desktop.errors import ConfigError

if TYPE_CHECKING:
    from rsvg_desktop.engine.model_jobs import KnownModelStatus

log = logging.getLogger("rsvg_desktop.cli")

TASK_CHOICES = ("grounding", "refer", "identify", "classify", "vqa", "chat")


def add_model_run_options(p: argparse.ArgumentParser) -> None:
    """Options shared by the commands that run the model (``detect``, ``batch``)."""
    p.add_argument("--classes", default=None, help="comma-separated class list for --task classify")
    p.add_argument(
        "--model",
        default=None,
        metavar="DIR",
        help="converted model folder (default: $RSVG_MODEL_DIR, then the HF cache)",
    )
    p.add_argument(
        "--smoke",
        action="store_true",
        help="use the built-in tiny test model with RANDOM WEIGHTS (answers are noise)",
    )
    p.add_argument("--precision", choices=PRECISIONS, default="nf4")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.add_argument(
        "--group-size",
        type=int,
        choices=(32, 64, 128, 256),
        default=128,
        help="int4wo: weights per scale and zero point (default 128)",
    )
    p.add_argument(
        "--compiled",
        action="store_true",
        help="CUDA only: static KV cache + torch.compile, batches padded to fixed shapes (experimental)",
    )
    p.add_argument("--batch-size", type=int, default=None, help="tiles per model batch (default: automatic)")
    p.add_argument("--max-new-tokens", type=int, default=256, help="longest answer in tokens (default 256)")
    p.add_argument(
        "--angle-convention",
        choices=("ccw", "cw"),
        default="ccw",
        help="direction of GeoChat's box angle (default ccw, as seen on screen)",
    )


def model_spec(args: argparse.Namespace) -> ModelSpec:
    """The model that :func:`add_model_run_options`' options ask for, ``--model``/``--smoke`` resolved to
    a converted model folder."""
    from rsvg_desktop.engine.model_jobs import resolve_model_dir

    model_dir = resolve_model_dir(args.model, smoke=args.smoke)
    return ModelSpec(
        str(model_dir), args.precision, args.device, group_size=args.group_size, compiled=args.compiled
    )


def run_settings(args: argparse.Namespace) -> dict[str, Any]:
    """The grid options' and :func:`add_model_run_options`' run settings, by the names the engine's
    configs (``RunConfig``, ``BatchConfig``, ``ChangeConfig``) give them."""
    return {
        "tile_size": args.tile_size,
        "overlap": args.overlap,
        "target_gsd": args.target_gsd,
        "max_nodata_fraction": args.max_nodata,
        "nodata": args.nodata,
        "batch_size": args.batch_size,
        "max_new_tokens": args.max_new_tokens,
        "angle_convention": args.angle_convention,
    }


def add_model_commands(
    sub: argparse._SubParsersAction, grid_options: Callable[[argparse.ArgumentParser], None]
) -> None:
    model = sub.add_parser("model", help="download, convert and size GeoChat")
    msub = model.add_subparsers(dest="model_command", metavar="ACTION", required=True)

    p = msub.add_parser("info", help="memory the weights take at each precision (no weights read)")
    p.add_argument(
        "model_dir",
        nargs="?",
        default=None,
        help="a converted model folder (default: the published GeoChat-7B configuration)",
    )
    p.add_argument(
        "--precision", choices=PRECISIONS, action="append", help="precision(s) to report (default: all)"
    )
    p.add_argument("--no-double-quant", action="store_true", help="4-bit without double quantization")
    p.set_defaults(func=cmd_model_info)

    p = msub.add_parser("convert", help="convert a GeoChat checkpoint to a transformers Llava folder")
    p.add_argument("geochat_dir")
    p.add_argument("-o", "--output", required=True, metavar="OUT_DIR")
    p.add_argument(
        "--clip",
        default=None,
        metavar="CLIP_DIR",
        help="a CLIP ViT-L/14-336 folder for the vision tower (default: GeoChat's own copy)",
    )
    p.add_argument("--overwrite", action="store_true")
    p.set_defaults(func=cmd_model_convert)

    p = msub.add_parser(
        "download", help="download a known model (default geochat-7b: MBZUAI/geochat-7B, ≈14 GB); resumable"
    )
    p.add_argument("model_id", nargs="?", default="geochat-7b", help="a known model (rsvg model list)")
    p.add_argument(
        "-o",
        "--output",
        default=None,
        metavar="DIR",
        help="target folder (default: the data folder's models/)",
    )
    p.add_argument("--no-clip", action="store_true", help="skip the vision tower's CLIP checkpoint")
    p.set_defaults(func=cmd_model_download)

    p = msub.add_parser("list", help="known models: on disk, converted, cached precisions")
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.set_defaults(func=cmd_model_list)

    p = msub.add_parser("verify", help="re-check a downloaded known model's files against their record")
    p.add_argument("model_id", help="a known model (rsvg model list)")
    p.set_defaults(func=cmd_model_verify)

    p = msub.add_parser(
        "calibrate",
        help="calibrate a converted model to q4cal (NF4 tuned on your tiles; written to the model's cache)",
    )
    p.add_argument("model_dir", metavar="MODEL_DIR", help="a converted model folder")
    p.add_argument(
        "inputs",
        nargs="*",
        metavar="INPUT",
        help="scenes or folders to draw calibration tiles from (default: the bundled sample scene)",
    )
    p.add_argument("--samples", type=int, default=32, help="(tile, question) pairs (default 32)")
    p.add_argument("--seed", type=int, default=0, help="seed of the tile and question choice (default 0)")
    p.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    p.set_defaults(func=cmd_model_calibrate)

    p = msub.add_parser("testmodel", help="build the tiny RANDOM-WEIGHTS test model and print its folder")
    p.set_defaults(func=cmd_model_testmodel)

    p = sub.add_parser("detect", help="ask GeoChat about every tile of a scene; write polygons")
    p.add_argument("scene")
    p.add_argument("--query", required=True, help="the question or object description")
    p.add_argument(
        "--task",
        choices=TASK_CHOICES,
        default="refer",
        help="grounding, refer (locate an object, default), identify, classify, vqa, chat",
    )
    add_model_run_options(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT", help=".gpkg, .geojson or .shp")
    p.add_argument("--overwrite", action="store_true")
    grid_options(p)
    p.add_argument(
        "--window",
        type=int,
        nargs=4,
        default=None,
        metavar=("COL", "ROW", "WIDTH", "HEIGHT"),
        help="ask only about the tiles that meet this pixel window of the scene (the grid stays the "
        "whole scene's; default: every tile)",
    )
    p.set_defaults(func=cmd_detect)


def report_model_loaded(event: ModelLoaded) -> None:
    """What was loaded, on stderr: precision, device, memory, load time, notes (``-q`` silences these),
    and the random-weights warning (kept under ``-q``)."""
    info = event.info
    notice(f"model: {info.description}, loaded in {info.load_seconds:.1f} s")
    if info.random_weights:
        notice_warning("model: RANDOM WEIGHTS (test model): answers are noise")
    for note in info.notes:
        notice(f"model: {note}")


def cmd_model_info(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.model_jobs import memory_estimates

    precs = args.precision or list(PRECISIONS)
    ests = memory_estimates(args.model_dir, precs, double_quant=not args.no_double_quant)
    what = args.model_dir or "GeoChat-7B (published configuration, computed without weights)"
    print(f"weights of {what}:")
    for est in ests:
        print(
            f"  {est.precision.value:5s} ≈ {est.total_gb:6.2f} GB ({est.total_gib:6.2f} GiB), "
            f"compute dtype {est.dtype}"
        )
    kv = ests[0].kv_cache_bytes_per_token
    print(
        f"  + KV cache ≈ {kv / 2**20:.2f} MiB per token per tile "
        f"(a 504 px tile is 1296 image tokens ≈ {1296 * kv / 2**30:.2f} GiB before the question)"
    )
    return EXIT_OK


def cmd_model_convert(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.model_jobs import convert_model

    bar = Progress(1, label="convert", enabled=not args.quiet)

    def progress(p: Any) -> None:
        bar.total = 1000
        bar.update(int(p.fraction * 1000))

    report = convert_model(
        args.geochat_dir, args.output, clip=args.clip, overwrite=args.overwrite, progress=progress
    )
    print(f"converted {args.geochat_dir} → {report.out_dir}")
    return EXIT_OK


def cmd_model_download(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.model_jobs import download_known

    bar = Progress(1, label="MB", enabled=not args.quiet)

    def progress(p: Any) -> None:
        bar.total = max(1, (p.total or p.done) // 1_000_000)
        bar.update(p.done // 1_000_000, extra=p.file)

    path = download_known(args.model_id, args.output, progress=progress, with_clip=not args.no_clip)
    print(f"downloaded to {path}; next: rsvg model convert {path} -o CONVERTED_DIR")
    return EXIT_OK


def cmd_model_list(args: argparse.Namespace) -> int:
    import json
    from dataclasses import asdict

    from rsvg_desktop.engine.model_jobs import list_models

    models = list_models()
    if args.json:
        print(json.dumps([asdict(m) for m in models], indent=2))
        return EXIT_OK
    for line in model_list_lines(models):
        print(line)
    return EXIT_OK


def model_list_lines(models: Sequence[KnownModelStatus]) -> list[str]:
    """``rsvg model list``'s text (``rsvg doctor`` shows it too)."""
    from rsvg_desktop.engine.model_jobs import checked_against

    if not models:
        return ["no known models (manifests live in models/)"]
    lines = []
    for m in models:
        size = f"≈{m.size_hint / 1e9:.1f} GB" if m.size_hint else "size unknown"
        state = "downloaded" if m.downloaded else ("partly downloaded" if m.partial else "not downloaded")
        lines.append(f"{m.id}: {m.name} ({size}) — {state}: {m.download_dir}")
        conv = f"converted: {m.converted_dir}" if m.converted else "not converted"
        cached = ", ".join(m.cached_precisions) or "none"
        lines.append(f"    {conv}; cached precisions: {cached}")
        lines.append(f"    checked against: {checked_against(m)}")
    return lines


def cmd_model_verify(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.model_jobs import verify_known

    problems = verify_known(args.model_id)
    if problems:
        for line in problems:
            print(f"rsvg: {line}", file=sys.stderr)
        return EXIT_USAGE
    print(f"{args.model_id}: every file matches")
    return EXIT_OK


def cmd_model_calibrate(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.model_jobs import calibrate

    if args.samples < 1:
        print(f"rsvg: error: --samples must be at least 1, got {args.samples}", file=sys.stderr)
        return EXIT_USAGE
    bar = Progress(1000, label="calibrate", enabled=not args.quiet)

    def progress(p: Any) -> None:
        bar.update(int(p.fraction * 1000), extra=p.stage)

    summary = calibrate(
        args.model_dir,
        args.inputs,
        samples=args.samples,
        seed=args.seed,
        device=args.device,
        progress=progress,
    )
    blocks = " ".join(
        "-".join(str(i) for i in (b[0], b[-1])) if len(b) > 1 else str(b[0]) for b in summary.blocks
    )
    gain = 100 * (1 - summary.loss / summary.loss_nf4) if summary.loss_nf4 > 0 else 0.0
    print(f"calibration {summary.calibration_id}: {summary.samples} samples on {summary.device}")
    print(f"  blocks (layers): {blocks}")
    print(
        f"  block loss (|err|^0.5, calibration set): plain NF4 {summary.loss_nf4:.5g}"
        f" -> q4cal {summary.loss:.5g}"
        f" ({gain:.1f} % lower)"
    )
    print(
        f"  time {summary.seconds:.1f} s (search {summary.search_seconds:.1f} s),"
        f" peak memory {summary.peak_bytes / 2**20:.0f} MiB"
    )
    print(f"  written to {summary.entry}; use it with --precision q4cal")
    return EXIT_OK


def cmd_model_testmodel(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.model_files import ensure_test_model

    print(ensure_test_model())
    return EXIT_OK


def _run_config(args: argparse.Namespace) -> RunConfig:
    classes = tuple(c.strip() for c in args.classes.split(",") if c.strip()) if args.classes else ()
    return RunConfig(
        scene=args.scene,
        query=args.query,
        task=args.task,
        output=args.output,
        overwrite=args.overwrite,
        pixel_mode=args.pixel_mode,
        classes=classes,
        scope=tuple(args.window) if args.window else None,
        **run_settings(args),
    )


def export_command(answer_log: str | Path, output: str | Path, *, pixel_mode: bool) -> str:
    """The ``rsvg export`` command that rebuilds ``output`` from ``answer_log``, written so that it can
    succeed: ``--overwrite`` when the output exists, a GeoPackage name for a GeoJSON of pixel coordinates."""
    target = Path(output)
    if pixel_mode and target.suffix.lower() in (".geojson", ".json"):
        target = target.with_suffix(".gpkg")
    words = ["rsvg", "export", str(answer_log), "-o", str(target)]
    if target.exists() or target.is_symlink():
        words.append("--overwrite")
    return shlex.join(words)


class _DetectView:
    """Shows a detect run's events on stderr and keeps what its last lines need."""

    def __init__(self, *, quiet: bool) -> None:
        self.quiet = quiet
        self.started: RunStarted | None = None
        self.done = 0
        self.finished: RunFinished | None = None
        self.failed: RunFailed | None = None
        self._bar: Progress | None = None

    def show(self, event: object) -> None:
        if isinstance(event, ModelLoaded):
            report_model_loaded(event)
        elif isinstance(event, RunStarted):
            self.started = event
            notice(
                f"{event.scene}: {event.total} tiles to answer, {event.skipped} skipped as nodata; "
                f"answer log {event.answer_log}"
            )
            self._bar = Progress(event.total, label="tiles", enabled=not self.quiet)
            self._bar.update(0)
        elif isinstance(event, TileDone):
            self.done = event.done
            if self._bar is not None:
                self._bar.update(event.done, extra=f"{len(event.polygons_wkb)} boxes in {event.tile.id}")
        elif isinstance(event, RunFailed):
            self.failed = event
        elif isinstance(event, RunFinished):
            self.finished = event

    def finish_bar(self, done: int | None = None) -> None:
        """End the bar's line: at ``done`` (a finished run's count), else where it got to."""
        if self._bar is not None:
            self._bar.finish(done)

    @property
    def pixel_mode(self) -> bool:
        return self.started is not None and self.started.crs_wkt is None

    def interrupted(self, output: str) -> str:
        """What an interrupted run left and how to go on."""
        started = self.started
        if started is None or started.answer_log is None:
            return "rsvg: interrupted before the first tile; nothing was written"
        log_path = Path(started.answer_log)
        text = f"rsvg: interrupted after {self.done}/{started.total} tiles"
        if Path(output).exists():
            text += f"; the finished tiles are in {output} (its run table records the interruption)"
        if log_path.is_file():
            text += (
                f"; their answers are in {log_path}: rebuild the output from it with: "
                f"{export_command(log_path, output, pixel_mode=self.pixel_mode)}"
            )
        return text


def cmd_detect(args: argparse.Namespace) -> int:
    from rsvg_desktop.cli.interrupts import show_until_interrupted
    from rsvg_desktop.cli.progress_json import current
    from rsvg_desktop.engine.model_jobs import detect

    if args.window is not None and min(args.window[2:]) <= 0:
        raise ConfigError(
            f"--window: width and height must be positive, got {args.window[2]} x {args.window[3]}"
        )
    spec = model_spec(args)
    writer = current()
    view = _DetectView(quiet=args.quiet or writer is not None)
    events = detect(_run_config(args), spec)
    stopped = show_until_interrupted(
        events, view.show, writer, end_bar=view.finish_bar, interrupted=lambda: view.interrupted(args.output)
    )
    if stopped is not None:
        return stopped
    return _detect_result(view, writer)


def _detect_result(view: _DetectView, writer: Any) -> int:
    """The last lines of a detect run that went to its end; the exit status."""
    finished = view.finished
    view.finish_bar(finished.done if finished is not None else None)  # a stopped run stays where it got
    if finished is None:
        return EXIT_INTERNAL
    problems = [view.failed.message] if view.failed is not None else []
    if finished.export_error is None:
        print(
            f"{finished.done}/{finished.total} tiles, {finished.raw_detections} boxes, "
            f"{finished.detections} after merging → {finished.output} (answers: {finished.answer_log})"
        )
    else:
        command = export_command(str(finished.answer_log), str(finished.output), pixel_mode=view.pixel_mode)
        problems.append(
            f"{finished.export_error}; the answer log {finished.answer_log} is complete "
            f"({finished.done} tiles): rebuild the output with: {command}"
        )
    if problems:
        message = " ".join("; ".join(problems).split())
        print(f"rsvg: error: {message}", file=sys.stderr)
        if writer is not None:
            writer.error(message, EXIT_USAGE)
        return EXIT_USAGE
    if writer is not None:
        writer.finished(
            EXIT_OK,
            output=finished.output,
            answer_log=finished.answer_log,
            done=finished.done,
            total=finished.total,
            detections=finished.detections,
            raw_detections=finished.raw_detections,
            seconds=round(finished.seconds, 3),
        )
    return EXIT_OK
