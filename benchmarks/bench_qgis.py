"""What the QGIS plugin adds to a run, and how fast Cancel stops the engine.

1. **Overhead**: the same ``rsvg detect`` (the sample scene ``RGB.byte.tif``, the built-in test model,
   fp32 on the CPU) run ``--runs`` times from a shell and ``--runs`` times through
   ``processing.run("rsvg:detect", ...)`` in headless QGIS (QGIS's own Python, ``/usr/bin/python3``);
   interleaved (shell, QGIS, shell, ...), medians of the wall time of the run itself (QGIS's start
   and ``Processing.initialize()`` are reported apart: a QGIS user pays them once, not per run).
2. **Cancel**: ``rsvg:detect`` on 96 px tiles, ``feedback.cancel()`` after the first progress event;
   seconds from ``cancel()`` to ``processing.run`` returning (the engine exited and was reaped), and the
   plugin's own figure from its noticing the Cancel to the engine's exit; ``--runs`` times, medians.

Usage::

    python benchmarks/bench_qgis.py [--runs 3] [--engine PATH]

``--engine`` defaults to this checkout's engine run by this Python (as the tests do).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SCENE = ROOT.parent / "shared" / "data" / "RGB.byte.tif"
QGIS_PYTHON = "/usr/bin/python3"
MODEL = ["--smoke", "--precision", "fp32", "--device", "cpu", "--query", "cars"]

_CHILD = textwrap.dedent(
    """
    import json, re, sys, time
    t0 = time.perf_counter()
    from qgis.core import QgsApplication, QgsProcessingFeedback
    app = QgsApplication([], False); app.initQgis()
    sys.path.append("/usr/share/qgis/python/plugins"); sys.path.insert(0, sys.argv[1])
    import processing
    from processing.core.Processing import Processing
    from processing.core.ProcessingConfig import ProcessingConfig
    Processing.initialize()
    import rsvg_qgis
    plugin = rsvg_qgis.classFactory(None); plugin.initProcessing()
    ProcessingConfig.setSettingValue("RSVG_ENGINE", sys.argv[2])
    job = json.loads(sys.argv[3])
    startup = time.perf_counter() - t0

    class Feedback(QgsProcessingFeedback):
        cancelled_at = None
        plugin_seconds = None
        def setProgress(self, percent):
            super().setProgress(percent)
            if job["cancel"] and percent > 0 and self.cancelled_at is None:
                self.cancelled_at = time.perf_counter(); self.cancel()
        def pushWarning(self, text):
            found = re.search(r"([0-9.]+) s after Cancel", text)
            if found: self.plugin_seconds = float(found.group(1))

    out = []
    for i in range(job["runs"]):
        fb = Feedback()
        params = dict(job["params"], OUTPUT=f"{job['out']}-{i}.gpkg")
        t = time.perf_counter()
        processing.run("rsvg:detect", params, feedback=fb)
        end = time.perf_counter()
        to_return = end - fb.cancelled_at if fb.cancelled_at else None
        out.append({"seconds": end - t, "cancel_to_return": to_return,
                    "plugin_cancel_to_exit": fb.plugin_seconds})
    print("RESULT " + json.dumps({"startup": startup, "runs": out}), flush=True)
    """
)


def _engine_wrapper(folder: Path) -> Path:
    script = folder / "rsvg"
    script.write_text(
        f'#!/bin/sh\nPYTHONPATH="{ROOT}" exec "{sys.executable}" -m rsvg_desktop.cli.main "$@"\n'
    )
    script.chmod(0o755)
    return script


def _qgis_env(tmp: Path) -> dict[str, str]:
    keep = ("PATH", "HOME", "LANG", "RSVG_DATA_DIR")
    env = {k: os.environ[k] for k in keep if k in os.environ}
    (tmp / "xdg").mkdir(mode=0o700, exist_ok=True)
    return {**env, "QT_QPA_PLATFORM": "offscreen", "QGIS_CUSTOM_CONFIG_PATH": str(tmp / "profile"),
            "XDG_RUNTIME_DIR": str(tmp / "xdg")}  # fmt: skip


def shell_runs(engine: Path, tmp: Path, runs: int) -> list[float]:
    times = []
    for i in range(runs):
        args = [str(engine), "detect", str(SCENE), *MODEL, "-o", str(tmp / f"shell-{i}.gpkg"), "--overwrite"]
        t = time.perf_counter()
        subprocess.run([*args, "--progress", "json"], check=True, capture_output=True)
        times.append(time.perf_counter() - t)
    return times


def qgis_runs(engine: Path, tmp: Path, runs: int, *, cancel: bool) -> dict:
    params = {"INPUT": str(SCENE), "QUERY": "cars", "TEST_MODEL": True, "PRECISION": "fp32", "DEVICE": "cpu"}
    if cancel:
        params.update(TILE_SIZE=96, OVERLAP=0)
    job = {
        "runs": runs,
        "cancel": cancel,
        "params": params,
        "out": str(tmp / ("cancel" if cancel else "qgis")),
    }
    proc = subprocess.run(
        [QGIS_PYTHON, "-c", _CHILD, str(ROOT / "packaging" / "qgis"), str(engine), json.dumps(job)],
        capture_output=True,
        text=True,
        env=_qgis_env(tmp),
        check=True,
    )
    line = next(x for x in proc.stdout.splitlines() if x.startswith("RESULT "))
    return json.loads(line.removeprefix("RESULT "))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--engine", type=Path, default=None)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="bench-qgis-") as name:
        tmp = Path(name)
        os.environ.setdefault("RSVG_DATA_DIR", str(tmp / "data"))
        engine = args.engine or _engine_wrapper(tmp)
        shell_runs(engine, tmp, 1)  # builds the test model once, warms the file cache
        shell: list[float] = []
        qgis: list[dict] = []
        for _ in range(args.runs):  # interleaved: the shared CPU's load changes by the minute
            shell += shell_runs(engine, tmp, 1)
            qgis.append(qgis_runs(engine, tmp, 1, cancel=False))
        cancel = qgis_runs(engine, tmp, args.runs, cancel=True)
    in_qgis = [q["runs"][0]["seconds"] for q in qgis]
    startup = statistics.median(q["startup"] for q in qgis)
    to_return = [r["cancel_to_return"] for r in cancel["runs"] if r["cancel_to_return"] is not None]
    to_exit = [r["plugin_cancel_to_exit"] for r in cancel["runs"] if r["plugin_cancel_to_exit"] is not None]
    print(f"rsvg detect {SCENE.name} (test model, fp32, CPU), {args.runs} runs each, medians:\n")
    print("| | seconds |\n|---|---|")
    print(f"| shell: `rsvg detect` | {statistics.median(shell):.2f} |")
    print(f"| QGIS: `processing.run('rsvg:detect')` | {statistics.median(in_qgis):.2f} |")
    print(f"| overhead of the plugin | {statistics.median(in_qgis) - statistics.median(shell):+.2f} |")
    print(f"| (once per QGIS session: start + Processing.initialize) | {startup:.2f} |")
    print(f"| Cancel → processing.run returns (engine exited) | {statistics.median(to_return):.2f} |")
    print(f"| plugin's Cancel noticed → engine exit | {statistics.median(to_exit):.2f} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
