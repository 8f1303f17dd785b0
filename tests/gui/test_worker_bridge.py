"""The worker bridge: worker messages become Qt signals, states follow, crashes are noticed."""

from __future__ import annotations

import time

import pytest
from gui_fakes import FakeWorker

from rsvg_desktop.engine.events import ModelSpec, RunConfig, TileDone
from rsvg_desktop.engine.protocol import WorkerError
from rsvg_desktop.gui.worker_bridge import WorkerBridge

pytestmark = pytest.mark.gui


@pytest.fixture
def bridge(qtbot):
    workers: list[FakeWorker] = []

    def make() -> FakeWorker:
        workers.append(FakeWorker())
        return workers[-1]

    b = WorkerBridge(make, poll_ms=5)
    b.workers = workers  # type: ignore[attr-defined]
    yield b
    b.stop()


def test_load_run_states_and_signals(qtbot, bridge: WorkerBridge, sample_scene, tmp_path) -> None:
    states: list[str] = []
    bridge.stateChanged.connect(states.append)
    loading: list[tuple[str, float]] = []
    bridge.modelLoading.connect(lambda stage, f: loading.append((stage, f)))
    with pytest.raises(RuntimeError):
        bridge.run(RunConfig(scene=str(sample_scene), query="x", output=str(tmp_path / "o.gpkg")))
    with qtbot.waitSignal(bridge.modelLoaded, timeout=5000) as loaded:
        bridge.load(ModelSpec("m", precision="int8"))
    assert loaded.args[0].precision == "int8" and bridge.loaded and bridge.state == "ready"
    assert states[:2] == ["starting", "loading"] and states[-1] == "ready"
    assert loading == [("weights", 0.5)]
    assert bridge.spec == ModelSpec("m", precision="int8")

    tiles: list[TileDone] = []
    bridge.tileDone.connect(tiles.append)
    with qtbot.waitSignal(bridge.runFinished, timeout=10000) as finished:
        bridge.run(RunConfig(scene=str(sample_scene), query="cars", output=str(tmp_path / "o.gpkg")))
        assert bridge.state == "running" and bridge.running
        with pytest.raises(RuntimeError):
            bridge.load(ModelSpec("m"))
    assert finished.args[0].done == 9 and len(tiles) == 9
    assert bridge.state == "ready"
    with qtbot.waitSignal(bridge.modelUnloaded, timeout=5000):
        bridge.unload()
    assert bridge.state == "idle" and not bridge.loaded and bridge.model_info is None


def test_errors_end_loads_and_runs(qtbot, bridge: WorkerBridge) -> None:
    bridge.start()
    worker = bridge.workers[0]
    worker.fail_load = "no such folder"
    with qtbot.waitSignal(bridge.error, timeout=5000) as err:
        bridge.load(ModelSpec("missing"))
    assert err.args == ["no such folder", False] and bridge.state == "idle"
    worker.fail_load = None
    with qtbot.waitSignal(bridge.modelLoaded, timeout=5000):
        bridge.load(ModelSpec("m"))
    bridge._set_state("running")  # as if a run were in progress
    bridge.dispatch(WorkerError("output exists", fatal=False))
    assert bridge.state == "ready"


def test_kill_and_silent_death_are_reported(qtbot, bridge: WorkerBridge) -> None:
    with qtbot.waitSignal(bridge.modelLoaded, timeout=5000):
        bridge.load(ModelSpec("m"))
    with qtbot.waitSignal(bridge.workerDied, timeout=5000) as died:
        bridge.kill()
    assert died.args == [-9] and bridge.state == "stopped" and bridge.worker is None
    assert bridge.spec == ModelSpec("m")  # kept to offer a reload
    # a new load starts a fresh worker
    with qtbot.waitSignal(bridge.modelLoaded, timeout=5000):
        bridge.load(ModelSpec("m"))
    assert len(bridge.workers) == 2
    # a process that dies without saying so is noticed by the liveness check
    worker = bridge.workers[1]
    worker.alive = False
    worker.exitcode = 137
    worker._died_reported = True  # it will never send WorkerDied itself
    with qtbot.waitSignal(bridge.workerDied, timeout=5000) as died:
        pass
    assert died.args == [137]


def test_a_burst_of_messages_is_spread_over_ticks(qtbot, bridge: WorkerBridge) -> None:
    """One poll tick handles at most ~budget_ms (12 ms) of slot work; the rest waits for the next tick,
    so the event loop keeps breathing during a burst of finished tiles."""
    bridge.start()
    worker = bridge.workers[0]
    handled: list[float] = []

    def slow_slot(_msg: object) -> None:
        time.sleep(0.002)
        handled.append(time.monotonic())

    bridge.tileDone.connect(slow_slot)
    done = TileDone(
        tile=None,
        answer="",
        text="",
        phrases=(),
        angles=(),  # type: ignore[arg-type]
        polygons_wkb=(),
        done=0,
        total=0,
        seconds=0.0,
    )
    bridge._timer.stop()
    now = time.monotonic()
    worker._queue.extend((now, done) for _ in range(60))
    started = time.monotonic()
    bridge._poll()
    took = time.monotonic() - started
    assert 1 <= len(handled) <= 8 and took < 0.03
    bridge._timer.start()
    qtbot.waitUntil(lambda: len(handled) == 60, timeout=10000)


def test_a_comparison_ends_with_change_finished_not_a_dates_run(qtbot, bridge, data_dir, tmp_path) -> None:
    from change_scenes import make_pair

    from rsvg_desktop.engine.change import ChangeConfig, ChangeFinished, DateStarted

    before, after = make_pair(data_dir, tmp_path)
    with qtbot.waitSignal(bridge.modelLoaded, timeout=5000):
        bridge.load(ModelSpec("m"))
    events: list[object] = []
    bridge.changeEvent.connect(events.append)
    states_at_date_end: list[str] = []
    bridge.runFinished.connect(lambda _ev: states_at_date_end.append(bridge.state))
    config = ChangeConfig(str(before), str(after), "car", str(tmp_path / "c.gpkg"), batch_size=2)
    with qtbot.waitSignal(bridge.changeFinished, timeout=60000) as finished:
        bridge.run_change(config)
        assert bridge.comparing and bridge.state == "running"
    assert states_at_date_end == ["running", "running"]  # each date's end left the comparison running
    assert [e.date for e in events if isinstance(e, DateStarted)] == ["before", "after"]
    assert isinstance(finished.args[0], ChangeFinished) and finished.args[0].summary is not None
    assert bridge.state == "ready" and not bridge.comparing
