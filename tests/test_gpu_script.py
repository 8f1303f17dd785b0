"""``benchmarks/gpu.sh``: its dry run lists every owed GPU step with commands the real parsers accept,
and a real run (with stand-ins for python and nvidia-smi, no GPU) keeps going after a failed or
timed-out step, logs each step, writes the summary and, run again, skips the steps that finished."""

from __future__ import annotations

import importlib.util
import os
import shlex
import shutil
import subprocess
import sys
from pathlib import Path
from types import ModuleType

import pytest

from rsvg_desktop.cli.main import build_parser
from rsvg_desktop.core.precisions import Precision

ROOT = Path(__file__).resolve().parents[1]
SCRIPT = ROOT / "benchmarks" / "gpu.sh"
STEPS = ["env", "speed-torchao", "compiled", "speed-all", "scene-10k"]


def _env(**extra: str) -> dict[str, str]:
    env = dict(os.environ, PYTHON=sys.executable, PYTHONPATH=str(ROOT))
    env.update(extra)
    return env


def _script_module(path: Path) -> ModuleType:
    spec = importlib.util.spec_from_file_location(f"checked_{path.stem}", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def dry_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, Path]:
    out = tmp_path_factory.mktemp("gpu") / "out"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--dry-run", str(out)],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "DOES NOT PARSE" not in proc.stdout
    assert not out.exists(), "a dry run writes nothing"
    return proc.stdout, out


def _commands(stdout: str, program: str) -> list[list[str]]:
    """The command lines of ``program`` the dry run prints (``  $ rsvg ...``), without the program."""
    prefix = f"$ {program} "
    return [shlex.split(line)[2:] for line in stdout.splitlines() if line.strip().startswith(prefix)]


def test_dry_run_lists_the_steps_in_order(dry_run: tuple[str, Path]) -> None:
    stdout, out = dry_run
    listed = [line.split()[1] for line in stdout.splitlines() if line.startswith("[")]
    assert listed == STEPS
    for i, name in enumerate(STEPS, 1):
        assert f"{out}/logs/{i:02d}-{name}.log" in stdout


def test_every_rsvg_command_parses_with_the_real_parser(dry_run: tuple[str, Path]) -> None:
    commands = _commands(dry_run[0], "rsvg")
    assert len(commands) >= 3
    parser = build_parser()
    for argv in commands:
        try:
            parser.parse_args(argv)
        except SystemExit as exc:  # argparse's way of refusing
            pytest.fail(f"rsvg {shlex.join(argv)} does not parse (exit {exc.code})")


def test_every_script_command_parses_with_its_own_parser(dry_run: tuple[str, Path]) -> None:
    commands = _commands(dry_run[0], "python")
    scripts = {Path(argv[0]).name for argv in commands}
    assert scripts == {"gpu_env.py", "bench_model.py", "make_scene.py"}
    for argv in commands:
        module = _script_module(ROOT / argv[0])
        try:
            module.build_parser().parse_args(argv[1:])
        except SystemExit as exc:
            pytest.fail(f"python {shlex.join(argv)} does not parse (exit {exc.code})")


def test_speed_steps_cover_every_precision_at_batch_1_8_32(dry_run: tuple[str, Path]) -> None:
    parser = build_parser()
    speed = [parser.parse_args(a) for a in _commands(dry_run[0], "rsvg") if a[:2] == ["bench", "speed"]]
    assert len(speed) == 2
    for args in speed:
        assert args.shape_of == "geochat-7b" and args.device == "cuda"
        assert args.batch_sizes == [1, 8, 32]
    assert {"int8wo", "int4wo", "fp8"} <= set(speed[0].precisions)
    # q4cal needs a calibration, which --shape-of does not make: every other precision is measured
    assert set(speed[1].precisions) == {p.value for p in Precision} - {"q4cal"}
    assert speed[0].output == speed[1].output, "one folder: the second run reuses the first one's rows"


def test_compiled_path_and_the_10000_px_scene(dry_run: tuple[str, Path]) -> None:
    python = _commands(dry_run[0], "python")
    (bench,) = [a for a in python if a[0].endswith("bench_model.py")]
    compiled = _script_module(ROOT / bench[0]).build_parser().parse_args(bench[1:])
    assert compiled.compiled and compiled.geochat7b_random and compiled.device == "cuda"
    (scene,) = [a for a in python if a[0].endswith("make_scene.py")]
    made = _script_module(ROOT / scene[0]).build_parser().parse_args(scene[1:])
    assert made.size == 10000
    (detect,) = [a for a in _commands(dry_run[0], "rsvg") if a[0] == "detect"]
    args = build_parser().parse_args(detect)
    assert Path(args.scene) == made.output and args.device == "cuda"
    assert args.output.startswith(str(dry_run[1]))


def test_a_bad_option_is_reported_by_the_dry_run(tmp_path: Path) -> None:
    """The dry run's own check catches a command the parser refuses (here: a script copy with a typo)."""
    bench = tmp_path / "benchmarks"
    bench.mkdir()
    text = SCRIPT.read_text().replace("--new-tokens 32", "--new-tokenz 32")
    (bench / "gpu.sh").write_text(text)
    for name in ("gpu_env.py", "bench_model.py", "make_scene.py"):
        shutil.copy(ROOT / "benchmarks" / name, bench / name)
    proc = subprocess.run(
        ["bash", str(bench / "gpu.sh"), "--dry-run", str(tmp_path / "out")],
        capture_output=True,
        text=True,
        env=_env(),
        timeout=300,
    )
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert proc.stdout.count("DOES NOT PARSE") == 2  # both rsvg bench speed lines


FAKE_PYTHON = """#!/usr/bin/env bash
case "$*" in
  *gpu_env.py*) [ -z "${FAKE_SLOW_ENV:-}" ] || sleep 60 ;;
  *make_scene.py*) echo "no scene today"; exit 3 ;;
esac
echo "fake python: $*"
"""


def _fake_bin(tmp_path: Path) -> Path:
    fake = tmp_path / "bin"
    fake.mkdir()
    (fake / "python").write_text(FAKE_PYTHON)
    (fake / "nvidia-smi").write_text('#!/usr/bin/env bash\necho "Fake GPU, 81559 MiB, 0.0"\n')
    for f in fake.iterdir():
        f.chmod(0o755)
    return fake


def test_real_run_goes_on_after_a_failure_and_resumes(tmp_path: Path) -> None:
    fake = _fake_bin(tmp_path)
    out, work = tmp_path / "out", tmp_path / "work"
    argv = ["bash", str(SCRIPT), "--budget", "30", "--work-dir", str(work), str(out)]
    env = _env(PATH=f"{fake}{os.pathsep}{os.environ['PATH']}", PYTHON=str(fake / "python"))

    slow_env = dict(env, FAKE_SLOW_ENV="1")
    first = subprocess.run(argv, capture_output=True, text=True, env=slow_env, timeout=120)
    assert first.returncode == 1, first.stdout + first.stderr
    summary = (out / "summary.md").read_text()
    assert "| 1 | env | TIMED OUT |" in summary
    assert "| 2 | speed-torchao | ok |" in summary and "| 4 | speed-all | ok |" in summary
    assert "| 5 | scene-10k | FAILED (exit 3) |" in summary
    assert "Fake GPU" in summary
    logs = out / "logs"
    assert "(TIMED OUT)" in (logs / "01-env.log").read_text()
    speed_log = (logs / "02-speed-torchao.log").read_text()
    assert "fake python: -m rsvg_desktop.cli.main bench speed --shape-of geochat-7b" in speed_log
    scene_log = (logs / "05-scene-10k.log").read_text()
    assert "no scene today" in scene_log and "$ rsvg detect" not in scene_log  # the step stopped there

    second = subprocess.run(argv, capture_output=True, text=True, env=env, timeout=120)
    assert second.returncode == 1, second.stdout + second.stderr  # the scene still fails
    assert "speed-torchao: done in an earlier run" in second.stdout
    assert "compiled: done in an earlier run" in second.stdout
    summary = (out / "summary.md").read_text()
    assert "| 1 | env | ok |" in summary
    assert "| 2 | speed-torchao | done in an earlier run |" in summary
    assert (logs / "02-speed-torchao.log").read_text() == speed_log, "a finished step is not run again"


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck is not installed")
def test_shellcheck_is_clean() -> None:
    proc = subprocess.run(["shellcheck", str(SCRIPT)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stdout
