"""``rsvg batch`` as a user runs it: the tiny real model (random weights, CPU), exit statuses, the JSON
summary, resuming, and a SIGKILL in the middle of a run (a real process; the other runs go through the
same ``main`` in this process, and one bad-argument case through a real process too).

The kill tests compare a killed-then-resumed run with an uninterrupted one: identical answers and
detections, no duplicates, no missing tiles. One uses the real CLI and the tiny model (batch size 1,
so answers are bit-for-bit reproducible; its boxes are noise, so it compares answers); the other runs
the batch engine in a subprocess with the test-only BlobGenerator so there are real boxes to merge.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pyogrio
import pytest
from batch_helpers import BlobGenerator, blob_image, lattice, write_geotiff, write_plain
from cli_runner import run_rsvg, run_rsvg_process

from rsvg_desktop.cli.main import main
from rsvg_desktop.core.answers import read_answer_log
from rsvg_desktop.engine.batch import BatchConfig, ModelIdentity, run_batch
from rsvg_desktop.engine.inputs import Query

HERE = Path(__file__).resolve().parent


def rsvg_background(*args: str) -> subprocess.Popen:
    """``rsvg ARGS`` in a real process that the test can kill."""
    cmd = [sys.executable, "-m", "rsvg_desktop.cli.main", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def _model_args(model_dir: Path, *extra: str) -> list[str]:
    return [
        "--model",
        str(model_dir),
        "--precision",
        "fp32",
        "--device",
        "cpu",
        "--max-new-tokens",
        "4",
        *extra,
    ]


def _summary(proc) -> dict:
    return json.loads(proc.stdout.strip().splitlines()[-1])


def _done_in_store(path: Path) -> int:
    """Answered pairs in a store another process is writing (0 while it does not exist yet)."""
    if not path.exists():
        return 0
    try:
        con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=5)
        try:
            return con.execute("SELECT count(*) FROM tiles WHERE status = 'done'").fetchone()[0]
        finally:
            con.close()
    except sqlite3.Error:
        return 0


def _kill_when(proc: subprocess.Popen, store: Path, at_least: int, timeout: float = 300.0) -> int:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"the batch ended before it could be killed:\n{proc.stderr.read()}")
        n = _done_in_store(store)
        if n >= at_least:
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            return n
        time.sleep(0.02)
    proc.kill()
    pytest.fail("the batch made no progress")


def _ledger(path: Path) -> list[tuple]:
    df = pyogrio.read_dataframe(path, layer="tiles")
    return sorted(
        zip(
            df["run_id"],
            df["scene"].map(lambda s: Path(s).name),
            df["col_off"],
            df["row_off"],
            df["width"],
            df["height"],
            df["status"],
            df["answer"].fillna(""),
            strict=True,
        )
    )


def _log_keys(path: Path) -> list[tuple]:
    return [(r.run_id, Path(r.scene).name, r.window, r.answer) for r in read_answer_log(path)]


@pytest.fixture
def mixed_folder(tmp_path, data_dir):
    folder = tmp_path / "mixed"
    (folder / "sub").mkdir(parents=True)
    img = blob_image(64, 64, [(10, 10, 12)])
    write_geotiff(folder / "a.tif", img)
    write_plain(folder / "sub" / "b.png", img)
    shutil.copy(data_dir / "corrupt.tif", folder / "c_corrupt.tif")
    return folder


def test_cli_mixed_folder_exit_status_summary_and_resume(tmp_path, mixed_folder, test_model_dir):
    out, summary_file = tmp_path / "out.gpkg", tmp_path / "summary.json"
    args = [
        "batch",
        str(mixed_folder),
        "--query",
        "cars",
        *_model_args(test_model_dir),
        "--tile-size",
        "504",
        "-o",
        str(out),
        "--json",
        "--summary",
        str(summary_file),
    ]
    proc = run_rsvg(*args)
    assert proc.returncode == 3, proc.stderr  # some inputs failed
    assert "Traceback" not in proc.stderr and "RANDOM WEIGHTS" in proc.stderr
    s = _summary(proc)
    assert s == json.loads(summary_file.read_text())
    assert (s["status"], s["exit_code"], s["inputs_total"], s["inputs_done"], s["inputs_failed"]) == (
        "partial",
        3,
        3,
        2,
        1,
    )
    assert s["inputs_pixel_mode"] == 1 and s["device"] == "CPU" and s["tiles_per_second"] > 0
    (failure,) = s["failures"]
    assert failure["input"].endswith("c_corrupt.tif") and "window" in failure["reason"]
    assert {"seconds", "timings", "detections", "tiles_done", "tiles_skipped_nodata"} <= s.keys()
    layers = dict(pyogrio.list_layers(out))
    assert {"detections", "detections_pixel", "tiles", "input_runs"} <= set(layers)
    logged = list(read_answer_log(tmp_path / "out.answers.jsonl"))
    assert len(logged) == s["tiles_done"] and {Path(r.scene).name for r in logged} >= {"a.tif", "b.png"}

    # Rerun: finished inputs are skipped, the corrupt one is tried again and fails again.
    again = _summary(run_rsvg(*args))
    assert (again["inputs_already_done"], again["inputs_failed"], again["exit_code"]) == (2, 1, 3)
    (mixed_folder / "c_corrupt.tif").unlink()
    proc = run_rsvg(*args)
    last = _summary(proc)
    assert proc.returncode == 0 and last["status"] == "complete" and last["tiles_done"] == 0
    assert last["tiles_already_done"] == 2 and last["inputs_already_done"] == 2


def test_cli_bad_arguments_exit_2_without_traceback(tmp_path, mixed_folder, test_model_dir, capsys):
    cases = [
        (["batch", str(tmp_path / "absent"), "--query", "x"], "no such file"),
        (["batch", str(mixed_folder)], "no question"),
        (["batch", str(mixed_folder), "--query", "x", "--overlap", "600"], "overlap"),
        (["batch", str(mixed_folder), "--query", "x", "--assume-crs", "EPSG:nope"], "not a usable CRS"),
        (["batch", str(mixed_folder), "--queries", str(tmp_path / "q.txt")], "not found"),
    ]
    cases.append((["batch", str(mixed_folder), "--query", "x"], "GeoPackage"))
    for i, (args, needle) in enumerate(cases):
        out = tmp_path / ("x.geojson" if i == len(cases) - 1 else "x.gpkg")
        assert main([*args, *_model_args(test_model_dir), "-o", str(out)]) == 2, args
        err = capsys.readouterr().err
        assert needle in err and "Traceback" not in err and err.startswith("rsvg: error:")
    assert not (tmp_path / "x.gpkg").exists()
    # The same through a real process: one line on stderr, exit status 2.
    proc = run_rsvg_process(
        "batch",
        str(tmp_path / "absent"),
        "--query",
        "x",
        *_model_args(test_model_dir),
        "-o",
        str(tmp_path / "x.gpkg"),
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "no such file" in proc.stderr


def test_cli_sigkill_then_rerun_equals_an_uninterrupted_run(tmp_path, test_model_dir):
    folder = tmp_path / "tiles"
    folder.mkdir()
    for i in range(8):
        img = blob_image(64, 64, [(5 + 3 * i, 20, 9)], seed=i)
        write_geotiff(folder / f"t{i:02d}.tif", img, x0=5e5 + 40 * i)
    common = [
        "--query",
        "storage tanks",
        *_model_args(test_model_dir, "--batch-size", "1"),
        "--tile-size",
        "64",
        "--overlap",
        "0",
        "--quiet",
        "--json",
    ]

    killed = tmp_path / "killed.gpkg"
    proc = rsvg_background("batch", str(folder), *common, "-o", str(killed))
    n = _kill_when(proc, killed, at_least=2)
    assert proc.returncode == -signal.SIGKILL and 2 <= n < 8
    resumed = run_rsvg("batch", str(folder), *common, "-o", str(killed))
    assert resumed.returncode == 0, resumed.stderr
    s = _summary(resumed)
    assert s["tiles_already_done"] + s["tiles_done"] == 8 and s["tiles_already_done"] >= n
    assert s["inputs_already_done"] + s["inputs_done"] == 8

    full = tmp_path / "full.gpkg"
    assert run_rsvg("batch", str(folder), *common, "-o", str(full)).returncode == 0
    assert _ledger(killed) == _ledger(full) and len(_ledger(full)) == 8
    for path in (killed, full):  # the log holds each stored answer once
        keys = _log_keys(path.with_name(path.stem + ".answers.jsonl"))
        assert len(keys) == len(set(keys)) == 8
    logged = [sorted(_log_keys(tmp_path / f"{name}.answers.jsonl")) for name in ("killed", "full")]
    assert logged[0] == logged[1]


_KILL_SCRIPT = textwrap.dedent("""
    import sys
    sys.path.insert(0, {helpers!r})
    from batch_helpers import BlobGenerator
    from rsvg_desktop.engine.batch import BatchConfig, ModelIdentity, run_batch
    from rsvg_desktop.engine.inputs import Query

    config = BatchConfig(inputs=(sys.argv[1],), queries=(Query("refer", "car"), Query("refer", "boat")),
                         output=sys.argv[2], tile_size=64, overlap=16, batch_size=3, max_new_tokens=16)
    for _ in run_batch(config, BlobGenerator(delay=float(sys.argv[3])),
                       model=ModelIdentity("blob-detector", "0123456789abcdef", "fp32")):
        pass
""")


def _config(folder, out):
    return BatchConfig(
        inputs=(str(folder),),
        queries=(Query("refer", "car"), Query("refer", "boat")),
        output=str(out),
        tile_size=64,
        overlap=16,
        batch_size=3,
        max_new_tokens=16,
    )


def _rows(path: Path, layer: str) -> list[tuple]:
    df = pyogrio.read_dataframe(path, layer=layer)
    keys = ("run_id", "scene", "tile_row", "tile_col", "box_index", "phrase", "col_off", "row_off")
    return sorted((*(df[k].iloc[i] for k in keys), df.geometry.iloc[i].wkb) for i in range(len(df)))


def test_sigkill_mid_batch_then_resume_gives_identical_detections(tmp_path):
    """Thirty tiles and a 200 px scene with objects across its seams, two questions, answered three
    pairs per batch; the process is killed with SIGKILL mid-run, rerun, and compared with a run that
    was never interrupted."""
    folder = tmp_path / "archive"
    (folder / "scenes").mkdir(parents=True)
    for i in range(30):
        img = blob_image(64, 64, [(4 + i, 8, 10), (40, 30 + i % 20, 12)], seed=i)
        write_geotiff(folder / f"tile_{i:02d}.tif", img, x0=5e5 + 40 * i)
    write_geotiff(
        folder / "scenes" / "big.tif",
        blob_image(200, 200, lattice(200, 200, 41, 13), seed=7),
        x0=5e5,
        y0=4.7e6,
    )
    script = tmp_path / "run_batch.py"
    script.write_text(_KILL_SCRIPT.format(helpers=str(HERE)))
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(HERE.parents[1]), env.get("PYTHONPATH")) if p)

    killed = tmp_path / "killed.gpkg"
    proc = subprocess.Popen(
        [sys.executable, str(script), str(folder), str(killed), "0.15"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )
    n = _kill_when(proc, killed, at_least=12)
    assert n < 2 * (30 + 16)
    done = subprocess.run(
        [sys.executable, str(script), str(folder), str(killed), "0"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert done.returncode == 0, done.stderr

    full = tmp_path / "full.gpkg"
    for _ in run_batch(
        _config(folder, full),
        BlobGenerator(),
        model=ModelIdentity("blob-detector", "0123456789abcdef", "fp32"),
    ):
        pass

    for layer in ("detections", "tile_detections"):
        got, want = _rows(killed, layer), _rows(full, layer)
        assert got == want and len(want) > 0 and len(set(got)) == len(got)
    merged = pyogrio.read_dataframe(full, layer="detections")
    assert len(merged) < len(pyogrio.read_dataframe(full, layer="tile_detections"))  # seams were merged
    assert _ledger(killed) == _ledger(full) and len(_ledger(full)) == 2 * (30 + 16)
    runs = pyogrio.read_dataframe(killed, layer="input_runs")
    assert len(runs) == 2 * 31 and set(runs["status"]) == {"done"}
    keys = _log_keys(tmp_path / "killed.answers.jsonl")
    assert len(keys) == len(set(keys)) == 2 * (30 + 16)
    assert sorted(keys) == sorted(_log_keys(tmp_path / "full.answers.jsonl"))
