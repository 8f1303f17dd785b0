"""``rsvg bench run|score``: the precision study. Argument parsing and output only.

The work is :mod:`rsvg_desktop.engine.bench.jobs`. Exit status: 0 done; 2 bad arguments or bad data
(one line naming the file and line); 1 an internal error. A rerun of ``run`` resumes.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from rsvg_desktop.cli._common import EXIT_FAILED_INPUTS, EXIT_OK, Progress
from rsvg_desktop.core.eval.names import TASKS
from rsvg_desktop.core.precisions import DEFAULT_INT4_GROUP_SIZE
from rsvg_desktop.errors import ConfigError


def _csv(value: str) -> list[str]:
    return [v.strip() for v in value.split(",") if v.strip()]


def _ints(value: str) -> list[int]:
    try:
        return [int(v) for v in _csv(value)]
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers, not {value!r}") from None


def _label_file(value: str) -> tuple[str, str]:
    label, sep, path = value.partition("=")
    if not sep or not label or not path:
        raise argparse.ArgumentTypeError(f"--answers takes LABEL=PATH (a file or a folder), not {value!r}")
    return label, path


def _tasks(value: str) -> list[str]:
    tasks = _csv(value)
    for t in tasks:
        if t not in TASKS:
            raise argparse.ArgumentTypeError(f"unknown task {t!r}; valid tasks: {', '.join(TASKS)}")
    return tasks


def add_bench_commands(sub: argparse._SubParsersAction) -> None:
    bench = sub.add_parser("bench", help="the precision study: benchmarks, scores, reports")
    bsub = bench.add_subparsers(dest="bench_command", metavar="BENCH_COMMAND", required=True)

    p = bsub.add_parser("run", help="ask the model every benchmark question at each precision, then score")
    p.add_argument("--data", required=True, metavar="DIR", help="GeoChat-Bench question files or DIOR-RSVG")
    p.add_argument("--images", metavar="DIR", help="the images (default DATA/images)")
    p.add_argument("--model", required=True, metavar="DIR", help="converted model folder")
    p.add_argument("--precisions", type=_csv, default=["bf16", "int8", "nf4"], metavar="P,...")
    p.add_argument("--tasks", type=_tasks, default=None, metavar="T,...", help=f"of {', '.join(TASKS)}")
    p.add_argument("--limit", type=int, default=None, metavar="N", help="a fixed, seeded subset per task")
    p.add_argument("--seed", type=int, default=0, metavar="S")
    p.add_argument("--device", default="auto", metavar="D")
    p.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_INT4_GROUP_SIZE,
        metavar="N",
        help="int4wo weights per scale",
    )
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N", help="(GeoChat's scripts: 256)")
    p.add_argument("--angle-convention", choices=("ccw", "cw"), default="ccw")
    _add_vqa_ground_truth(p)
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.set_defaults(func=cmd_bench_run)

    p = bsub.add_parser("speed", help="load time, time to first token, tokens/s, tiles/s, peak memory, size")
    src = p.add_mutually_exclusive_group(required=True)
    src.add_argument("--model", metavar="DIR", help="converted model folder")
    src.add_argument(
        "--shape-of", choices=("geochat-7b",), help="GeoChat-7B's exact architecture with random weights"
    )
    p.add_argument("--precisions", type=_csv, default=["bf16", "int8", "nf4"], metavar="P,...")
    p.add_argument("--device", default="auto", metavar="D")
    p.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_INT4_GROUP_SIZE,
        metavar="N",
        help="int4wo weights per scale",
    )
    p.add_argument("--batch-sizes", type=_ints, default=[1, 8, 32], metavar="N,...")
    p.add_argument(
        "--new-tokens", type=int, default=16, metavar="N", help="forced new tokens per tile (0: load only)"
    )
    p.add_argument("--work-dir", metavar="DIR", help="where --shape-of writes its random checkpoint")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.set_defaults(func=cmd_bench_speed)

    _add_agree_command(bsub)

    p = bsub.add_parser("score", help="score answer files (rsvg's or GeoChat's own) into one report")
    p.add_argument("--data", required=True, metavar="DIR")
    p.add_argument("--images", metavar="DIR", help="image sizes from the files (default: by image-id prefix)")
    p.add_argument(
        "--answers",
        type=_label_file,
        action="append",
        required=True,
        metavar="LABEL=PATH",
        help="an answer file (task from its name) or a folder of them; a label may be given several times",
    )
    p.add_argument("--tasks", type=_tasks, default=None, metavar="T,...")
    p.add_argument("--angle-convention", choices=("ccw", "cw"), default="ccw")
    _add_vqa_ground_truth(p)
    p.add_argument(
        "--only-answered",
        action="store_true",
        help="score only the questions each label answered (default: a missing answer is a miss)",
    )
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.set_defaults(func=cmd_bench_score)


def _add_vqa_ground_truth(p: argparse.ArgumentParser) -> None:
    p.add_argument(
        "--vqa-ground-truth",
        metavar="DIR",
        help="RSVQA's split files (<split>_questions.json, _answers.json): LRBEN/HRBEN answers",
    )


def _add_agree_command(bsub: argparse._SubParsersAction) -> None:
    p = bsub.add_parser(
        "agree", help="how far other precisions' answers drift from a reference (no ground truth)"
    )
    p.add_argument("inputs", nargs="+", metavar="INPUT", help="scenes (every tile is asked)")
    p.add_argument("--reference", default="bf16", metavar="P")
    p.add_argument("--precisions", type=_csv, default=["int8", "nf4"], metavar="P,...")
    model = p.add_mutually_exclusive_group(required=True)
    model.add_argument("--model", metavar="DIR", help="converted model folder")
    model.add_argument(
        "--smoke",
        action="store_true",
        help="use the built-in tiny test model with RANDOM WEIGHTS (the figures are meaningless)",
    )
    p.add_argument(
        "--task",
        default="refer",
        choices=("refer", "grounding", "classify", "vqa", "chat"),
        help="box tasks compare boxes and answers; the others compare answers per tile",
    )
    p.add_argument("--query", default="", metavar="Q")
    p.add_argument("--classes", default=None, metavar="A,B,...", help="class list for --task classify")
    p.add_argument("--device", default="auto", metavar="D")
    p.add_argument(
        "--group-size",
        type=int,
        default=DEFAULT_INT4_GROUP_SIZE,
        metavar="N",
        help="int4wo weights per scale",
    )
    p.add_argument("--batch-size", type=int, default=None, metavar="N")
    p.add_argument("--max-new-tokens", type=int, default=256, metavar="N")
    p.add_argument("--tile-size", type=int, default=None, metavar="N")
    p.add_argument("-o", "--output", required=True, metavar="OUT")
    p.add_argument(
        "--overwrite", action="store_true", help="replace a comparison in OUT made with other settings"
    )
    p.add_argument(
        "--allow-remote",
        action="store_true",
        help="read inputs given by URL or GDAL network path (/vsicurl/, /vsis3/...) (default: refused)",
    )
    p.set_defaults(func=cmd_bench_agree)


def _print_summary(summary) -> None:  # type: ignore[no-untyped-def]
    print(f"report  {summary.report}")
    print(f"metrics {summary.metrics_file} ({len(summary.metrics)} numbers)")
    for p in summary.plots:
        print(f"plot    {p}")


def cmd_bench_run(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.bench.jobs import run_bench

    if args.batch_size is not None and args.batch_size < 1:
        raise ConfigError(f"--batch-size must be positive, got {args.batch_size}")
    bars: dict[tuple[str, str], Progress] = {}

    def progress(label: str, task: str, done: int, total: int) -> None:
        bar = bars.get((label, task))
        if bar is None:  # the first call gives what was answered before (a resumed run)
            bar = bars[(label, task)] = Progress(
                total, label=f"{label} {task}", enabled=not args.quiet, done=done
            )
        bar.update(done)

    summary = run_bench(
        args.data,
        args.model,
        args.precisions,
        Path(args.output),
        images=args.images,
        tasks=args.tasks,
        limit=args.limit,
        seed=args.seed,
        device=args.device,
        group_size=args.group_size,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        convention=args.angle_convention,
        progress=progress,
        vqa_ground_truth=args.vqa_ground_truth,
    )
    _print_summary(summary)
    return EXIT_OK


def cmd_bench_score(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.bench.jobs import score_answer_files

    summary = score_answer_files(
        args.data,
        args.answers,
        Path(args.output),
        images=args.images,
        tasks=args.tasks,
        convention=args.angle_convention,
        vqa_ground_truth=args.vqa_ground_truth,
        only_answered=args.only_answered,
    )
    _print_summary(summary)
    return EXIT_OK


def cmd_bench_speed(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.bench.speed import run_speed

    def progress(text: str) -> None:
        if not args.quiet:
            print(text, flush=True)

    rows, report = run_speed(
        args.precisions,
        Path(args.output),
        model_dir=args.model,
        shape_of=args.shape_of,
        device=args.device,
        group_size=args.group_size,
        batch_sizes=args.batch_sizes,
        new_tokens=args.new_tokens,
        work_dir=args.work_dir,
        progress=progress,
    )
    print(report.read_text(encoding="utf-8").split("## Notes")[0].strip())
    print(f"report  {report}")
    failed = [r.label for r in rows if r.error]
    if failed:
        print(f"not measured: {', '.join(failed)} (why: in the table above)", file=sys.stderr)
        return EXIT_FAILED_INPUTS
    return EXIT_OK


def cmd_bench_agree(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.bench.agree import run_agree
    from rsvg_desktop.engine.model_files import ensure_test_model

    model_dir = ensure_test_model() if args.smoke else args.model
    bars: dict[str, Progress] = {}

    def progress(what: str, done: int, total: int) -> None:
        bar = bars.get(what)
        if bar is None:  # the first call is the scene run's start, once the model is loaded
            bar = bars[what] = Progress(total, label=what, enabled=not args.quiet, done=done)
        bar.update(done)

    summary = run_agree(
        args.inputs,
        model_dir,
        args.reference,
        args.precisions,
        Path(args.output),
        task=args.task,
        query=args.query,
        classes=_csv(args.classes) if args.classes else (),
        device=args.device,
        group_size=args.group_size,
        batch_size=args.batch_size,
        max_new_tokens=args.max_new_tokens,
        tile_size=args.tile_size,
        progress=progress,
        overwrite=args.overwrite,
        allow_remote=args.allow_remote,
    )
    _print_summary(summary)
    print(f"layers  {summary.out / 'agreement.gpkg'}")
    return EXIT_OK
