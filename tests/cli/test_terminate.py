"""SIGTERM (what a QGIS Cancel or ``kill`` sends) stops ``detect`` and ``batch`` as Ctrl-C does: at once,
keeping what finished, with exit status 143 (128 + SIGTERM). The time from the signal to the exit is a
figure for benchmarks (about 0.1 s here), not an assertion: the tests check that the run stopped
before its last tile."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rsvg_desktop.cli.interrupts import EXIT_TERMINATED

_MODEL = ("--smoke", "--precision", "fp32", "--device", "cpu", "--max-new-tokens", "4")


def _run_args(command: str, data_dir: Path, out: Path) -> list[str]:
    """``command`` on a scene of many 128 px tiles with the test model, into ``out``."""
    return [
        command,
        str(data_dir / "cogeo.tif"),
        "--query",
        "cars",
        *_MODEL,
        "--tile-size",
        "128",
        "-o",
        str(out),
    ]


def _terminate_after_first_tile(args: list[str]) -> tuple[int, float, list[dict], str]:
    """Run ``rsvg ARGS --progress json``, send SIGTERM once a tile is done; (exit status, seconds from the
    signal to the exit, the events, stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "rsvg_desktop.cli.main", *args, "--progress", "json"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    events = []
    try:
        for line in proc.stdout:
            events.append(json.loads(line))
            if events[-1]["event"] == "progress" and events[-1]["done"] >= 1:
                break
        else:
            pytest.fail(f"no tile was done: {proc.stderr.read() if proc.stderr else ''}")
        sent = time.monotonic()
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
        seconds = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
    events += [json.loads(line) for line in proc.stdout]
    stderr = proc.stderr.read() if proc.stderr else ""
    return code, seconds, events, stderr


@pytest.mark.usefixtures("test_model_dir")
def test_sigterm_stops_detect_and_keeps_what_finished(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.gpkg"
    code, _seconds, events, stderr = _terminate_after_first_tile(_run_args("detect", data_dir, out))
    assert code == EXIT_TERMINATED == 143, stderr
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 143
    assert "interrupted after" in events[-1]["message"]
    done = max(e["done"] for e in events if e["event"] == "progress")
    answers = (tmp_path / "d.answers.jsonl").read_text().splitlines()
    assert len(answers) >= done >= 1  # the finished tiles are kept
    total = next(e["total"] for e in events if e["event"] == "started")
    assert len(answers) < total  # it stopped: the run did not go on to its last tile
    assert out.exists()
    assert os.path.getsize(out) > 0


@pytest.mark.usefixtures("test_model_dir")
def test_sigterm_stops_batch_and_keeps_what_finished(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.gpkg"
    code, _seconds, events, stderr = _terminate_after_first_tile(_run_args("batch", data_dir, out))
    assert code == EXIT_TERMINATED, stderr
    assert events[-1] == {
        "event": "error",
        "command": "batch",
        "message": "terminated (SIGTERM)",
        "exit_code": 143,
    }
    assert "interrupted: " in stderr and "tiles answered" in stderr  # the summary, on stderr
    assert out.exists() and (tmp_path / "b.answers.jsonl").read_text().strip()


@pytest.mark.usefixtures("test_model_dir")
def test_sigterm_between_two_events_ends_the_batch_as_inside_the_engine(
    data_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The signal may land while the command shows an event (outside the engine's code): the engine is
    handed the interrupt and ends as when it lands inside it — its session recorded as interrupted, the
    summary said, the same last event."""
    from cli_runner import run_rsvg

    import rsvg_desktop.cli.batch_cmd as batch_cmd
    from rsvg_desktop.engine.events import BatchProgress

    show = batch_cmd._BatchView.show

    def show_then_terminated(view: object, event: object) -> None:
        show(view, event)
        if isinstance(event, BatchProgress) and event.tiles_done >= 1:
            os.kill(os.getpid(), signal.SIGTERM)  # handled here, in the command's code: it raises Terminated

    monkeypatch.setattr(batch_cmd._BatchView, "show", show_then_terminated)
    out = tmp_path / "b.gpkg"
    result = run_rsvg(*_run_args("batch", data_dir, out), "--progress", "json")
    assert result.returncode == EXIT_TERMINATED, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[-1] == {
        "event": "error",
        "command": "batch",
        "message": "terminated (SIGTERM)",
        "exit_code": 143,
    }
    assert "interrupted: " in result.stderr and "tiles answered" in result.stderr
    assert (tmp_path / "b.answers.jsonl").read_text().strip()
