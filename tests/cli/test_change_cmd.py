"""``rsvg change``: bad input is one line and exit 2; ``--logs`` compares two answer logs; the whole
command once with the test model (``--progress json``)."""

from __future__ import annotations

import json
from pathlib import Path

import pyogrio
import pytest
from change_scenes import SquareFinder, make_pair
from cli_runner import run_rsvg

from rsvg_desktop.engine.change import ChangeConfig, date_answer_log, run_change

LAYERS = {"appeared", "disappeared", "persisting", "unknown_area", "before", "after", "run"}


@pytest.fixture(scope="module")
def pair(data_dir, tmp_path_factory):
    return make_pair(data_dir, tmp_path_factory.mktemp("pair"))


def _one_line_error(result) -> str:
    assert result.returncode == 2, result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("rsvg: error:"), result.stderr
    return lines[0]


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--grid", "sideways"], "--grid"),
        (["--match-iou", "2"], "--match-iou"),
        (["--match-iou", "abc"], "--match-iou"),
        (["--task", "vqa"], "--task"),
    ],
)
def test_bad_options_are_one_line(pair, tmp_path, args, says):
    before, after = pair
    out = tmp_path / "out.gpkg"
    result = run_rsvg("change", str(before), str(after), "--query", "car", "-o", str(out), *args)
    assert says in _one_line_error(result)
    assert list(tmp_path.iterdir()) == []


def test_bad_scenes_are_one_line(pair, data_dir, tmp_path):
    before, _ = pair
    out = str(tmp_path / "out.gpkg")
    cases = {
        "missing": [str(before), str(tmp_path / "nope.tif")],
        "no overlap": [str(before), str(data_dir / "RGB.byte.tif")],
        "CRS on one side": [str(before), str(data_dir / "rotated.tif"), "--pixel-mode"],
        "one scene": [str(before)],
    }
    for what, scenes in cases.items():
        line = _one_line_error(run_rsvg("change", *scenes, "--query", "car", "-o", out))
        assert line, what
    assert list(tmp_path.iterdir()) == []


def test_logs_of_two_runs_are_compared_without_a_model(pair, tmp_path):
    before, after = pair
    runs = tmp_path / "runs.gpkg"
    config = ChangeConfig(before=str(before), after=str(after), query="car", output=str(runs), verify=False)
    list(run_change(config, SquareFinder(), model="scripted", precision="fp32"))
    out = tmp_path / "from_logs.gpkg"
    logs = [str(date_answer_log(runs, d)) for d in ("before", "after")]
    result = run_rsvg("change", "--logs", *logs, "-o", str(out), "--json")
    assert result.returncode == 0, result.stderr
    summary = json.loads(result.stdout)
    assert (summary["appeared"], summary["persisting"]) == (2, 2)
    assert set(pyogrio.list_layers(out)[:, 0]) >= LAYERS

    # A Shapefile per layer; the result line names each .shp (and the run table), not its sidecars.
    shp = run_rsvg("change", "--logs", *logs, "-o", str(tmp_path / "c.shp"))
    assert shp.returncode == 0, shp.stderr
    named = shp.stdout.strip().split(" → ")[1].split(", ")
    assert sorted(Path(n).name for n in named) == sorted(
        [f"c.{layer}.shp" for layer in LAYERS - {"run"}] + ["c.run.csv"]
    )
    assert (tmp_path / "c.appeared.dbf").is_file()


def test_logs_and_scenes_together_are_refused(pair, tmp_path):
    before, after = pair
    result = run_rsvg(
        "change", str(before), "--logs", str(before), str(after), "-o", str(tmp_path / "x.gpkg")
    )
    _one_line_error(result)


@pytest.mark.usefixtures("test_model_dir")
def test_whole_command_with_the_test_model(pair, tmp_path):
    """The real model path: both dates through the scene job, verification, the GeoPackage with its 7
    layers, the answer logs beside it and the JSON progress of both dates."""
    before, after = pair
    out = tmp_path / "change.gpkg"
    result = run_rsvg(
        "change", str(before), str(after), "--query", "car", "--smoke", "--precision", "fp32",
        "--device", "cpu", "--max-new-tokens", "12", "--batch-size", "2", "-o", str(out),
        "--progress", "json",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    events = [json.loads(line) for line in result.stdout.splitlines()]
    assert events[0]["event"] in ("warning", "started")
    assert next(e for e in events if e["event"] == "started")["grid"] == "before"
    stages = {e.get("stage") for e in events if e["event"] == "progress"}
    assert {"before", "after"} <= stages
    last = events[-1]
    assert last["event"] == "finished" and last["exit_code"] == 0
    assert last["outputs"]["outputs"] == [str(out)]
    assert set(pyogrio.list_layers(out)[:, 0]) >= LAYERS
    assert date_answer_log(out, "before").is_file() and date_answer_log(out, "after").is_file()
