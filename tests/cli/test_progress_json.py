"""``--progress json``: JSON Lines events on stdout and nothing else there (docs/progress.md)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from cli_runner import run_rsvg, run_rsvg_process

_MODEL = ("--smoke", "--precision", "fp32", "--device", "cpu", "--max-new-tokens", "4")


def _events(stdout: str) -> list[dict]:
    """Every stdout line is one JSON object with an ``event``."""
    lines = stdout.splitlines()
    events = [json.loads(line) for line in lines]
    assert all(isinstance(e, dict) and "event" in e for e in events), stdout
    return events


def test_tiles_events(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.gpkg"
    proc = run_rsvg("tiles", data_dir / "cogeo.tif", "-o", out, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    assert [e["event"] for e in events] == ["started", "finished"]
    assert events[-1]["outputs"]["output"] == str(out) and events[-1]["exit_code"] == 0
    assert "wrote 9 tile footprints" in proc.stderr  # the result line moved to stderr
    assert out.exists()


def test_error_event_from_a_guarded_error(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "t.gpkg"
    out.write_bytes(b"")
    proc = run_rsvg("tiles", data_dir / "cogeo.tif", "-o", out, "--progress", "json")
    assert proc.returncode == 2
    (event,) = _events(proc.stdout)
    assert event["event"] == "error" and event["exit_code"] == 2
    assert "exists" in event["message"] and "\n" not in event["message"]
    assert f"rsvg: error: {event['message']}" in proc.stderr


def test_error_event_of_export_on_a_missing_log(tmp_path: Path) -> None:
    proc = run_rsvg(
        "export", tmp_path / "none.answers.jsonl", "-o", tmp_path / "o.gpkg", "--progress", "json"
    )
    assert proc.returncode == 2
    events = _events(proc.stdout)
    assert events[-1]["event"] == "error" and events[-1]["exit_code"] == 2


def test_without_the_option_stdout_is_unchanged(data_dir: Path, tmp_path: Path) -> None:
    proc = run_rsvg("tiles", data_dir / "cogeo.tif", "-o", tmp_path / "t.gpkg")
    assert proc.returncode == 0 and proc.stdout.startswith("wrote 9 tile footprints")


@pytest.mark.usefixtures("test_model_dir")
def test_detect_then_export_events(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "d.gpkg"
    proc = run_rsvg(
        "detect", data_dir / "cogeo.tif", "--query", "cars", *_MODEL, "-o", out, "--progress", "json"
    )
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "warning" and "RANDOM WEIGHTS" in events[0]["message"]
    assert kinds[1] == "started" and events[1]["total"] == 9
    progress = [e for e in events if e["event"] == "progress"]
    assert [p["done"] for p in progress] == list(range(1, 10)) and all(p["total"] == 9 for p in progress)
    assert all("rate" in p and "seconds_left" in p for p in progress)
    assert progress[-1]["seconds_left"] == 0
    assert kinds[-1] == "finished" and kinds.count("finished") == 1
    outputs = events[-1]["outputs"]
    assert outputs["output"] == str(out) and outputs["answer_log"] == str(tmp_path / "d.answers.jsonl")
    assert "[" not in proc.stderr.replace("[RANDOM", "")  # no bar

    rebuilt = tmp_path / "e.gpkg"
    proc = run_rsvg("export", outputs["answer_log"], "-o", rebuilt, "--progress", "json")
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    assert [e["event"] for e in events] == ["started", "finished"]
    assert events[-1]["outputs"]["output"] == str(rebuilt) and events[-1]["outputs"]["records"] == 9


@pytest.mark.usefixtures("test_model_dir")
def test_batch_events_in_a_real_process(data_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "b.gpkg"
    proc = run_rsvg_process(
        "batch", data_dir / "cogeo.tif", "--query", "cars", *_MODEL, "-o", out, "--progress", "json", "--json"
    )
    assert proc.returncode == 0, proc.stderr
    events = _events(proc.stdout)
    kinds = [e["event"] for e in events]
    assert kinds[0] == "started" and kinds[-1] == "finished" and "progress" in kinds
    assert events[0]["output"] == str(out)
    done = [e["done"] for e in events if e["event"] == "progress"]
    assert done == sorted(done) and done[-1] == 9
    final = events[-1]
    assert final["exit_code"] == 0 and final["outputs"]["output"] == str(out)
    assert final["outputs"]["status"] == "complete" and final["outputs"]["report"]["tiles_done"] == 9
    assert '"status": "complete"' in proc.stderr  # --json's summary went to stderr
