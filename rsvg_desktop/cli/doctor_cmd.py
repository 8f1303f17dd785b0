"""``rsvg doctor [--json]``: the machine as the engine sees it (:mod:`rsvg_desktop.engine.doctor`)."""

from __future__ import annotations

import argparse
import json

from rsvg_desktop.cli._common import EXIT_OK
from rsvg_desktop.cli.model_cmds import model_list_lines


def add_doctor_command(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "doctor",
        help="versions, GPUs, whether the quantization kernels run here, models, data folder",
        description="What this machine gives the engine: rsvg, Python, torch and its CUDA build, each "
        "GPU with its memory, whether bitsandbytes' and torchao's kernels run on the CPU and on each GPU "
        "(a tiny quantized matmul in each), the known models and the data folder. Paste it into an issue.",
    )
    p.add_argument("--json", action="store_true", help="machine-readable output")
    p.add_argument("--no-kernels", action="store_true", help="leave out the kernel checks (a few seconds)")
    p.set_defaults(func=cmd_doctor)


def cmd_doctor(args: argparse.Namespace) -> int:
    from rsvg_desktop.engine.doctor import diagnose

    report = diagnose(kernels=not args.no_kernels)
    if args.json:
        print(json.dumps(report.to_dict(), indent=2))
        return EXIT_OK
    torch = report.torch or "not installed"
    build = f"CUDA {report.torch_cuda}" if report.torch_cuda else "CPU build"
    lines = [
        f"rsvg        {report.version}",
        f"python      {report.python}",
        f"platform    {report.platform}",
        f"torch       {torch} ({build})" if report.torch else f"torch       {torch}",
    ]
    for gpu in report.gpus:
        lines.append(
            f"gpu {gpu.index}       {gpu.name}, {gpu.memory_bytes / 2**30:.1f} GiB, compute capability "
            f"{gpu.capability}"
        )
    if not report.gpus:
        lines.append(f"gpu         none: {report.cuda_problem}")
    for check in report.kernels:
        state = "ok" if check.ok else "FAILED"
        lines.append(f"kernels     {check.library} on {check.device}: {state} ({check.detail})")
    lines.append(f"data folder {report.data_dir}")
    lines.append("models")
    lines += [f"  {line}" for line in model_list_lines(report.models)]
    print("\n".join(lines))
    return EXIT_OK
