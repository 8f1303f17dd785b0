"""The model worker process with the real tiny model: load, run, cancel, and a kill the client survives."""

from __future__ import annotations

import time

import pytest

from rsvg_desktop.engine.events import ModelLoaded, ModelSpec, RunConfig, RunFinished, RunStarted, TileDone
from rsvg_desktop.engine.protocol import WorkerDied, WorkerError, WorkerReady
from rsvg_desktop.engine.worker import ModelWorker

pytestmark = pytest.mark.slow


def _wait_for(worker, kind, timeout=120.0):
    """Collect messages until one of ``kind`` arrives; returns (that message, everything seen)."""
    seen = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for msg in worker.poll(0.1):
            seen.append(msg)
            if isinstance(msg, kind):
                return msg, seen
    raise AssertionError(f"no {kind} within {timeout} s; saw {seen}")


@pytest.fixture
def worker():
    w = ModelWorker()
    w.start()
    yield w
    w.stop()


def test_load_run_cancel_and_kill(worker, test_model_dir, data_dir, tmp_path):
    ready, _ = _wait_for(worker, WorkerReady)
    assert ready.pid == worker.pid

    worker.load(ModelSpec(str(test_model_dir), "fp32", "cpu"))
    loaded, _ = _wait_for(worker, ModelLoaded)
    assert loaded.info.random_weights and loaded.info.device_name == "CPU"
    assert "RANDOM WEIGHTS" in loaded.info.description

    # A whole run over a small scope.
    out = tmp_path / "a.gpkg"
    worker.run(
        RunConfig(
            scene=str(data_dir / "cogeo.tif"),
            query="q",
            output=str(out),
            scope=(0, 0, 460, 100),
            max_new_tokens=4,
            batch_size=2,
        )
    )
    finished, seen = _wait_for(worker, RunFinished)
    assert finished.done == finished.total == 2 and not finished.cancelled
    assert sum(isinstance(m, TileDone) for m in seen) == 2
    assert out.exists()

    # Cancel a second run midway: finished tiles kept.
    out2 = tmp_path / "b.gpkg"
    worker.run(
        RunConfig(
            scene=str(data_dir / "cogeo.tif"), query="q", output=str(out2), max_new_tokens=16, batch_size=1
        )
    )
    _wait_for(worker, TileDone)
    t0 = time.monotonic()
    worker.cancel()
    finished, _ = _wait_for(worker, RunFinished)
    assert time.monotonic() - t0 < 5.0
    assert finished.cancelled and 1 <= finished.done < finished.total
    assert out2.exists()

    # Kill during a run: the client gets WorkerDied, the answered tiles are on disk, and a restart works.
    out3 = tmp_path / "c.gpkg"
    worker.run(
        RunConfig(
            scene=str(data_dir / "cogeo.tif"), query="q", output=str(out3), max_new_tokens=16, batch_size=1
        )
    )
    _wait_for(worker, TileDone)
    worker.kill()
    died, _ = _wait_for(worker, WorkerDied, timeout=10)
    assert died.exitcode != 0
    assert (tmp_path / "c.answers.jsonl").stat().st_size > 0
    worker.start()
    _wait_for(worker, WorkerReady)


def test_run_without_model_and_bad_model_dir_are_reported(worker, tmp_path, data_dir):
    _wait_for(worker, WorkerReady)
    worker.run(RunConfig(scene=str(data_dir / "cogeo.tif"), query="q", output=str(tmp_path / "x.gpkg")))
    from rsvg_desktop.engine.events import RunFailed

    failed, _ = _wait_for(worker, RunFailed, timeout=30)
    assert "no model is loaded" in failed.message
    worker.load(ModelSpec(str(tmp_path / "nowhere"), "nf4", "cpu"))
    err, _ = _wait_for(worker, WorkerError, timeout=60)
    assert "nowhere" in err.message and not err.fatal
    assert worker.alive
    _ = RunStarted  # the run events are plain values shared with the GUI


def test_a_comparison_in_the_worker_process_and_its_cancel(worker, test_model_dir, data_dir, tmp_path):
    """RunChangeJob in the real process with the tiny model: both dates run and the change GeoPackage is
    written; a second comparison cancelled during its first date ends with ChangeFinished(cancelled)
    within seconds, its answers kept."""
    import pyogrio
    from change_scenes import make_pair

    from rsvg_desktop.engine.change import ChangeConfig, ChangeFinished, DateStarted, date_answer_log

    before, after = make_pair(data_dir, tmp_path)
    _wait_for(worker, WorkerReady)
    worker.load(ModelSpec(str(test_model_dir), "fp32", "cpu"))
    _wait_for(worker, ModelLoaded)

    out = tmp_path / "change.gpkg"
    config = ChangeConfig(str(before), str(after), "car", str(out), max_new_tokens=4, batch_size=2)
    worker.run_change(config)
    finished, seen = _wait_for(worker, ChangeFinished, timeout=300)
    assert finished.summary is not None and finished.error is None, finished
    assert [m.date for m in seen if isinstance(m, DateStarted)] == ["before", "after"]
    assert {"appeared", "disappeared", "persisting", "run"} <= set(pyogrio.list_layers(out)[:, 0])

    out2 = tmp_path / "cancelled.gpkg"
    worker.run_change(
        ChangeConfig(str(before), str(after), "car", str(out2), max_new_tokens=16, batch_size=1)
    )
    _wait_for(worker, TileDone, timeout=120)
    t0 = time.monotonic()
    worker.cancel()
    finished, _ = _wait_for(worker, ChangeFinished)
    assert time.monotonic() - t0 < 5.0
    assert finished.cancelled and finished.summary is None and not out2.exists()
    assert date_answer_log(out2, "before").stat().st_size > 0
