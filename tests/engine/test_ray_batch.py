"""``rsvg batch --ray`` on a local Ray instance (2 CPUs, small object store, one instance for the
module): the run store and merged detections equal a single-process run, a killed worker or a killed
driver changes nothing, and bad set-ups are one-line errors. Answers with boxes come from the
test-only BlobGenerator (run inside the Ray workers); reads, polygons and the store are the real code."""

from __future__ import annotations

import functools
import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import batch_helpers
import pyogrio
import pytest
import ray
from batch_helpers import BlobGenerator, blob_image, lattice, write_geotiff
from ray import cloudpickle  # Ray's own copy

from rsvg_desktop.engine.batch import BatchConfig, ModelIdentity, run_batch
from rsvg_desktop.engine.events import BatchFinished
from rsvg_desktop.engine.inputs import Query
from rsvg_desktop.engine.ray_batch import (
    RayOptions,
    RayUnavailableError,
    WorkersProgress,
    run_ray_batch,
)
from rsvg_desktop.errors import ConfigError

pytestmark = pytest.mark.slow  # a Ray instance and actors that import torch: minutes on 2 cores

MODEL = ModelIdentity(model="blob-detector", model_id="0123456789abcdef", precision="fp32")
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def ray_instance():
    cloudpickle.register_pickle_by_value(batch_helpers)  # workers need not import the tests
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        object_store_memory=80 * 1024 * 1024,
        log_to_driver=False,
        runtime_env={"env_vars": {"OMP_NUM_THREADS": "1"}},
    )
    yield ray.get_runtime_context().gcs_address
    ray.shutdown()


@pytest.fixture
def folder(tmp_path):
    """Eight single-tile GeoTIFFs and one 160 px scene whose objects straddle tile seams."""
    f = tmp_path / "tiles"
    f.mkdir()
    for i in range(8):
        img = blob_image(64, 64, [(8 + 5 * i, 10, 10), (40, 40, 12)], seed=i)
        write_geotiff(f / f"tile_{i}.tif", img, x0=500000.0 + 40 * i)
    write_geotiff(f / "scene.tif", blob_image(160, 160, lattice(160, 160, 37, 11), seed=9), x0=501000.0)
    return f


def _config(inputs, out, **kw):
    base = dict(
        inputs=tuple(str(i) for i in inputs),
        queries=(Query("refer", "car"), Query("refer", "plane")),
        output=str(out),
        tile_size=64,
        overlap=16,
        batch_size=2,
        max_new_tokens=16,
    )
    base.update(kw)
    return BatchConfig(**base)


def _ray(config, factory=BlobGenerator, workers=2, **kw):
    events = list(
        run_ray_batch(config, factory, model=MODEL, options=RayOptions(workers=workers), device="cpu", **kw)
    )
    return events, next(e for e in events if isinstance(e, BatchFinished)).summary


def _rows(path, layer):
    df = pyogrio.read_dataframe(path, layer=layer)
    keys = [k for k in ("run_id", "scene", "tile_row", "tile_col", "box_index", "phrase") if k in df]
    geoms = [g.wkb_hex for g in df.geometry] if hasattr(df, "geometry") else [""] * len(df)
    return sorted((*(df[k].iloc[i] for k in keys), geoms[i]) for i in range(len(df)))


def _ledger(path):
    df = pyogrio.read_dataframe(path, layer="tiles")
    return sorted(zip(df.run_id, df.scene, df.col_off, df.row_off, df.status, df.answer, strict=True))


def _same_store(a, b):
    for layer in ("detections", "tile_detections", "tile_footprints"):
        assert _rows(a, layer) == _rows(b, layer), layer
    assert _ledger(a) == _ledger(b)


def test_bad_address_and_missing_ray_are_one_line_errors(tmp_path, folder, monkeypatch):
    from rsvg_desktop.engine import ray_batch

    # First in the module, before ray_instance starts one; nothing else in the suite starts Ray in-process.
    assert not ray.is_initialized(), "a Ray instance was left running in this process by an earlier test"
    options = RayOptions(address="ray://127.0.0.1:1")
    with pytest.raises(ConfigError, match=r"^--ray ray://127\.0\.0\.1:1: cannot start or reach Ray") as exc:
        list(
            run_ray_batch(_config([folder], tmp_path / "r.gpkg"), BlobGenerator, model=MODEL, options=options)
        )
    assert "\n" not in str(exc.value)

    monkeypatch.setitem(sys.modules, "ray", None)  # as if Ray were not installed
    with pytest.raises(RayUnavailableError, match=r"pip install 'rsvg-desktop\[cluster\]'"):
        ray_batch.import_ray()


def test_two_workers_store_what_one_process_stores(ray_instance, tmp_path, folder):
    single = tmp_path / "single.gpkg"
    events = list(run_batch(_config([folder], single), BlobGenerator(), model=MODEL))
    ref = events[-1].summary
    events, summary = _ray(_config([folder], tmp_path / "ray.gpkg"))
    assert summary.status == "complete" and summary.tiles_done == ref.tiles_done == 2 * (8 + 9)
    assert summary.detections == ref.detections > 0
    _same_store(single, tmp_path / "ray.gpkg")
    stats = [e for e in events if isinstance(e, WorkersProgress)][-1]
    assert sum(w.tiles for w in stats.workers) == summary.tiles_done
    assert all(w.tiles > 0 for w in stats.workers)  # both workers answered


def test_a_killed_worker_changes_nothing(ray_instance, tmp_path, folder):
    single = tmp_path / "single.gpkg"
    list(run_batch(_config([folder], single), BlobGenerator(), model=MODEL))
    out = tmp_path / "ray.gpkg"
    killed = []

    def kill_one() -> bool:
        if not killed:
            names = [a for a in ray.util.list_named_actors() if a.startswith("rsvg-worker-")]
            if names:
                ray.kill(ray.get_actor(sorted(names)[0]))
                killed.append(names[0])
        return False

    factory = functools.partial(BlobGenerator, delay=0.2)
    events, summary = _ray(_config([folder], out), factory, cancel=kill_one)
    assert killed and summary.status == "complete"
    stats = [e for e in events if isinstance(e, WorkersProgress)][-1]
    assert stats.replaced_workers >= 1 and not all(w.alive for w in stats.workers)
    _same_store(single, out)
    ledger = pyogrio.read_dataframe(out, layer="tiles")
    assert not ledger.duplicated(["run_id", "input_id", "col_off", "row_off", "width", "height"]).any()


DRIVER = textwrap.dedent(
    """
    import functools, sys
    sys.path.insert(0, {tests!r})
    import batch_helpers, ray
    from ray import cloudpickle
    cloudpickle.register_pickle_by_value(batch_helpers)
    from batch_helpers import BlobGenerator
    from rsvg_desktop.engine.batch import BatchConfig, ModelIdentity
    from rsvg_desktop.engine.events import BatchProgress
    from rsvg_desktop.engine.inputs import Query
    from rsvg_desktop.engine.ray_batch import RayOptions, run_ray_batch
    ray.init(address={address!r}, log_to_driver=False)
    config = BatchConfig(inputs=({folder!r},), queries=(Query("refer", "car"), Query("refer", "plane")),
                         output={out!r}, tile_size=64, overlap=16, batch_size=2, max_new_tokens=16)
    model = ModelIdentity(model="blob-detector", model_id="0123456789abcdef", precision="fp32")
    for e in run_ray_batch(config, functools.partial(BlobGenerator, delay=0.3), model=model,
                           options=RayOptions(workers=2), device="cpu"):
        if isinstance(e, BatchProgress):
            print("progress", e.tiles_done, flush=True)
    """
)


def test_driver_killed_then_resumed_gives_the_same_store(ray_instance, tmp_path, folder):
    single = tmp_path / "single.gpkg"
    list(run_batch(_config([folder], single), BlobGenerator(), model=MODEL))
    out = tmp_path / "ray.gpkg"
    script = DRIVER.format(
        tests=str(Path(__file__).parent), address=ray_instance, folder=str(folder), out=str(out)
    )
    proc = subprocess.Popen(
        [sys.executable, "-c", script], stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO
    )
    done = 0
    assert proc.stdout is not None
    for line in proc.stdout:
        done = int(line.split()[1])
        if done >= 6:
            break
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert 6 <= done < 34
    deadline = time.monotonic() + 60
    while [a for a in ray.util.list_named_actors() if a.startswith("rsvg-worker-")]:
        if time.monotonic() > deadline:  # the dead driver's actors go with it
            break
        time.sleep(0.5)
    _, resumed = _ray(_config([folder], out))
    assert resumed.status == "complete" and resumed.tiles_already_done >= done
    assert resumed.tiles_done + resumed.tiles_already_done == 34  # resumed, not redone
    _same_store(single, out)


def test_inputs_a_worker_cannot_read_are_a_one_line_error_before_anything_runs(
    ray_instance, tmp_path, folder
):
    """A path the workers cannot open (here a link to storage that is not mounted) stops the run
    before any model is loaded or anything stored."""
    (folder / "tile_x.tif").symlink_to(tmp_path / "not-mounted" / "tile_x.tif")
    out = tmp_path / "ray.gpkg"
    with pytest.raises(ConfigError, match=r"tile_x\.tif: not readable by Ray worker") as exc:
        _ray(_config([folder], out))
    assert "\n" not in str(exc.value)
    assert pyogrio.read_dataframe(out, layer="tiles").empty


def test_unreadable_inputs_via_the_worker_check(tmp_path, folder):
    """The check itself (the same code the actors run), also where root reads everything."""
    from rsvg_desktop.engine.answerer import TileWorkerCore

    core = TileWorkerCore(BlobGenerator, name="w", max_new_tokens=8)
    gone = str(folder / "gone.tif")
    assert core.unreadable([str(folder / "tile_0.tif"), gone, str(folder)]) == [gone, str(folder)]


def _cli(*args: str) -> subprocess.CompletedProcess:
    cmd = [sys.executable, "-m", "rsvg_desktop.cli.main", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=600, cwd=REPO)


def test_cli_real_tiny_model_on_ray_workers_answers_like_one_process(ray_instance, tmp_path, test_model_dir):
    """The real path end to end: each worker loads the tiny model with the project's loader; at batch
    size 1 its answers are reproducible, so the ledgers of both runs must be equal."""
    folder = tmp_path / "t"
    folder.mkdir()
    for i in range(3):
        write_geotiff(folder / f"t{i}.tif", blob_image(64, 64, [(10, 10, 12)], seed=i), x0=5e5 + 40 * i)
    common = ["batch", str(folder), "--query", "cars", "--model", str(test_model_dir), "--precision", "fp32"]
    common += [
        "--device",
        "cpu",
        "--max-new-tokens",
        "4",
        "--batch-size",
        "1",
        "--tile-size",
        "64",
        "--overlap",
        "16",
    ]
    common += ["--json"]
    one = _cli(*common, "-o", str(tmp_path / "one.gpkg"))
    assert one.returncode == 0, one.stderr
    proc = _cli(*common, "-o", str(tmp_path / "ray.gpkg"), "--ray", ray_instance, "--workers", "2")
    assert proc.returncode == 0, proc.stderr
    assert "Traceback" not in proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["status"] == "complete" and summary["tiles_done"] == 3
    assert len(summary["workers"]) == 2 and sum(w["tiles"] for w in summary["workers"]) == 3
    assert _ledger(tmp_path / "ray.gpkg") == _ledger(tmp_path / "one.gpkg")


def test_cli_ray_errors_are_one_line(tmp_path, folder, test_model_dir):
    """Ray missing (hidden from the subprocess), --workers without --ray: one line, exit 2."""
    hide = tmp_path / "hide"
    hide.mkdir()
    (hide / "ray.py").write_text("raise ImportError('No module named ray')\n")
    model = ["--model", str(test_model_dir), "--precision", "fp32", "--device", "cpu"]
    cmd = [sys.executable, "-m", "rsvg_desktop.cli.main", "batch", str(folder), "--query", "x", *model]
    env = {**os.environ, "PYTHONPATH": str(hide)}
    proc = subprocess.run(
        [*cmd, "-o", str(tmp_path / "o.gpkg"), "--ray"], capture_output=True, text=True, env=env, timeout=300
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1, proc.stderr
    assert "pip install 'rsvg-desktop[cluster]'" in proc.stderr
    proc = _cli(
        "batch", str(folder), "--query", "x", "--smoke", "-o", str(tmp_path / "o.gpkg"), "--workers", "2"
    )
    assert proc.returncode == 2 and proc.stderr.count("\n") == 1 and "need --ray" in proc.stderr
